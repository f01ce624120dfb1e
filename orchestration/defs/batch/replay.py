"""Backfill / replay: rebuild silver and gold from bronze for a range of event dates.

Launch from the UI (Jobs → replay → Launchpad) or ``lakehouse replay --from D1 --to D2``.
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


class ReplayConfig(SparkRunConfig):
    from_date: str = Field(description="First event date to rebuild (YYYY-MM-DD, UTC).")
    to_date: str = Field(description="Last event date to rebuild, inclusive (YYYY-MM-DD, UTC).")
    layers: list[str] = Field(default_factory=lambda: ["silver", "gold"], description="silver, gold or both.")

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
    args = ["--from", config.from_date, "--to", config.to_date, "--layers", ",".join(config.layers)]
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
