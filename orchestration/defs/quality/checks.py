"""Great Expectations suites as Dagster asset checks, derived from the table specs and contracts.

One multi-asset check per layer (silver, gold) runs spark_apps/quality.py through Pipes
(lakehouse/checks.py declares the checks, lakehouse/delta/quality.py runs them with GE 1.x).
Error-severity checks are *blocking*: in a run that also materializes downstream assets
(``catchup_pipeline``), a failed silver or gold check stops the Redis projection from being
built on bad data. Each result carries its failing examples.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_prometheus import PrometheusResource

from lakehouse.checks import CHECKS
from orchestration.defs.streaming.streams import stream_assets
from orchestration.lib.config import SparkRunConfig
from orchestration.lib.jobs import asset_job, schedule
from orchestration.lib.metrics import push_check_results
from orchestration.lib.spark import SparkApp, SparkPipes


def _specs(layer: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            name=c.name,
            asset=dg.AssetKey(c.asset.split("/")),
            description=f"[{c.severity}] {c.description}",
            blocking=c.blocking,
        )
        for c in CHECKS
        if c.asset.split("/")[0] == layer
    ]


def _checks(layer: str) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        name=f"{layer}_quality",
        specs=_specs(layer),
        can_subset=True,
        description=f"Great Expectations suites of the {layer} tables (spark_apps/quality.py via Pipes).",
    )
    def _run(
        context: dg.AssetCheckExecutionContext,
        config: SparkRunConfig,
        prometheus: PrometheusResource,
        spark: SparkPipes,
    ) -> Iterator[Any]:
        selected = context.selected_asset_check_keys
        assets = sorted({k.asset_key.to_user_string() for k in selected})
        results: list[dg.AssetCheckResult] = []
        app = SparkApp("quality", ["--assets", ",".join(assets)])
        for result in spark.run(context.op_execution_context, config.resolve(), app, config.master):
            if isinstance(result, dg.AssetCheckResult):
                key = dg.AssetCheckKey(result.asset_key, result.check_name)  # type: ignore[arg-type]
                if key not in selected:
                    continue
                results.append(result)
                yield result
        push_check_results(prometheus, results, layer, context.log)

    return _run


quality_checks = [_checks("silver"), _checks("gold")]

# Checks only, on every silver and gold table; scheduled hourly once switched on.
quality = asset_job(
    "quality",
    # The GE checks only: dbt's tests run in `dbt_marts`, after the marts they test exist.
    dg.AssetSelection.checks(*quality_checks),
    "Run every data-quality check (Great Expectations) on silver and gold.",
    kind="quality",
)
quality_schedule = schedule(
    quality, "30 * * * *", "Every hour at :30: every data-quality check.", name="quality_hourly"
)

# Hybrid batch with quality gates: bronze, then refine (silver and gold in one pass), then Redis,
# caught up in order; the blocking silver and gold checks run before Redis, so bad data never
# reaches the services.
catchup_pipeline = asset_job(
    "catchup_pipeline",
    dg.AssetSelection.assets(*stream_assets.values()),
    "Catch up bronze, refine (silver and gold) and the Redis projection (available-now), with the blocking "
    "quality checks on silver and gold before Redis.",
    kind="catchup",
    config={"ops": {f"{layer}_stream": {"config": {"mode": "available_now"}} for layer in stream_assets}},
)
