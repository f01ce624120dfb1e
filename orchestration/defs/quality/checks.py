"""Great Expectations suites as Dagster asset checks, derived from the table specs and contracts.

One multi-asset check per layer (silver, gold) runs spark_apps/quality.py through Pipes
(lakehouse/quality.py builds the GE 1.x suites). Error-severity checks are *blocking*: in
a run that also materializes downstream assets (``catchup_pipeline``), a failed silver or
gold check stops the Redis projection from being built on bad data. Each result carries its failing examples.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_prometheus import PrometheusResource

from lakehouse.quality import CHECKS
from orchestration.defs.metrics import push_check_results
from orchestration.defs.streaming.launch import run_spark_app
from orchestration.defs.streaming.resources import SparkRunConfig
from orchestration.defs.streaming.streams import stream_assets


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
        context: dg.AssetCheckExecutionContext, config: SparkRunConfig, prometheus: PrometheusResource
    ) -> Iterator[Any]:
        s = config.resolve()
        selected = context.selected_asset_check_keys
        assets = sorted({k.asset_key.to_user_string() for k in selected})
        results: list[dg.AssetCheckResult] = []
        op_context = context.op_execution_context
        for result in run_spark_app(op_context, s, "quality", ["--assets", ",".join(assets)], observe=lambda m: []):
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
quality = dg.define_asset_job(
    name="quality",
    # The GE checks only: dbt's tests run in `dbt_marts`, after the marts they test exist.
    selection=dg.AssetSelection.checks(*quality_checks),
    description="Run every data-quality check (Great Expectations) on silver and gold.",
    tags={"lakehouse/kind": "quality"},
    executor_def=dg.in_process_executor,
)
quality_schedule = dg.ScheduleDefinition(
    name="quality_hourly",
    job=quality,
    cron_schedule="30 * * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every hour at :30: every data-quality check.",
)

# Hybrid batch with quality gates: bronze, then refine (silver and gold in one pass), then Redis,
# caught up in order; the blocking silver and gold checks run before Redis, so bad data never
# reaches the services.
catchup_pipeline = dg.define_asset_job(
    name="catchup_pipeline",
    selection=dg.AssetSelection.assets(*stream_assets.values()),
    description=(
        "Catch up bronze, refine (silver and gold) and the Redis projection (available-now), with the blocking "
        "quality checks on silver and gold before Redis."
    ),
    config={"ops": {f"{layer}_stream": {"config": {"mode": "available_now"}} for layer in stream_assets}},
    tags={"lakehouse/kind": "catchup"},
    executor_def=dg.in_process_executor,
)
