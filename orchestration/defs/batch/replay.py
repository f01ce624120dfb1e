"""Backfill / replay: rebuild silver and gold from bronze for a range of event dates.

Two jobs run the same app:

- ``replay``: one run for a range of dates (UI: Jobs → replay → Launchpad; ``lakehouse replay
  --from D1 --to D2 --dagster``);
- ``replay_by_date``: partitioned by event date (UTC), so a rebuild is a **backfill** that shows on
  Dagster's partition and backfill pages, one run per date, each date's last rebuild and its status
  kept per partition (UI: Jobs → replay_by_date → Partitions → Launch backfill; ``lakehouse replay
  --from D1 --to D2 --backfill``). The run queue admits one replay at a time (``lakehouse/kind:
  replay`` in dagster.yaml): two at once would only refuse each other on the checkpoint lock. A
  backfill's run config (``settings`` overrides, ``master``, ``layers``) applies to each of its runs.

The Spark app refuses to write bronze (``assert_not_bronze``) and to run while the refine
stream (which writes silver and gold) holds its checkpoints; each table it rewrites is recorded as a
materialization with the rows written.
"""

from collections.abc import Mapping
from datetime import date
from typing import Any

import dagster as dg
from pydantic import Field, field_validator

from orchestration.lib.config import SparkRunConfig
from orchestration.lib.jobs import KIND_TAG
from orchestration.lib.spark import SparkApp, SparkPipes

#: Event dates a backfill can choose from: 2024-01-01 to today (UTC). The range job takes any date.
REPLAY_DATES = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_offset=1)


class ReplayDateConfig(SparkRunConfig):
    layers: list[str] = Field(default_factory=lambda: ["silver", "gold"], description="silver, gold or both.")


class ReplayConfig(ReplayDateConfig):
    from_date: str = Field(description="First event date to rebuild (YYYY-MM-DD, UTC).")
    to_date: str = Field(description="Last event date to rebuild, inclusive (YYYY-MM-DD, UTC).")

    @field_validator("from_date", "to_date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a date: use YYYY-MM-DD") from None
        return value


@dg.op(description="spark_apps/replay.py through Pipes: silver and gold for the dates, rebuilt from bronze.")
def replay_tables(context: dg.OpExecutionContext, config: ReplayConfig, spark: SparkPipes) -> None:
    _replay(context, config, spark, config.from_date, config.to_date, config.layers)


@dg.op(description="spark_apps/replay.py through Pipes: silver and gold of the run's event date, rebuilt from bronze.")
def replay_date(context: dg.OpExecutionContext, config: ReplayDateConfig, spark: SparkPipes) -> None:
    day = context.partition_key
    _replay(context, config, spark, day, day, config.layers)


def _replay(
    context: dg.OpExecutionContext, config: SparkRunConfig, spark: SparkPipes, start: str, end: str, layers: list[str]
) -> None:
    args = ["--from", start, "--to", end, "--layers", ",".join(layers)]
    rewritten: list[Mapping[str, Any]] = []

    def collect(message: Mapping[str, Any]) -> list[dg.AssetKey]:
        if message.get("asset"):
            rewritten.append(message)
        return []

    for _ in spark.run(context, config.resolve(), SparkApp("replay", args, observe=collect), config.master):
        pass
    # Only once the app succeeded: each rewritten table as a materialization, with what changed.
    for message in rewritten:
        key = dg.AssetKey(str(message["asset"]).split("/"))
        metadata = {k: v for k, v in message.items() if k != "asset" and isinstance(v, str | int | float | bool)}
        context.log_event(dg.AssetMaterialization(asset_key=key, metadata=metadata))


@dg.job(
    description="Rebuild silver and gold from bronze for a date range (bronze is only read). "
    "Stop the refine stream first.",
    tags={KIND_TAG: "replay"},
    executor_def=dg.in_process_executor,
)
def replay() -> None:
    replay_tables()


@dg.job(
    description="Rebuild silver and gold from bronze, one event date (UTC) per run: backfill the dates "
    "from the Partitions tab. Bronze is only read. Stop the refine stream first.",
    tags={KIND_TAG: "replay"},
    partitions_def=REPLAY_DATES,
    executor_def=dg.in_process_executor,
)
def replay_by_date() -> None:
    replay_date()
