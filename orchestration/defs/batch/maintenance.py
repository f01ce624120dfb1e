"""Table maintenance as scheduled jobs: OPTIMIZE (+ Z-order on gold keys), VACUUM, checkpoints, pruning.

The work is spark_apps/maintenance.py (lakehouse/delta/maintenance.py), launched through Pipes.
Each table's result (files and bytes before and after, files deleted, retries) is
recorded as an AssetObservation on that table's asset, so the UI's asset page shows
compaction over time. Everything is safe while the streams write: Delta concurrency
conflicts are retried with backoff, and VACUUM never goes below the table's retention
unless ``force`` is set.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import Field

from orchestration.defs.streaming.tables import table_specs
from orchestration.lib.config import SparkRunConfig
from orchestration.lib.jobs import KIND_TAG, schedule
from orchestration.lib.spark import SparkApp, SparkPipes

PUBLIC = {spec.key for spec in table_specs}


class MaintenanceConfig(SparkRunConfig):
    operations: list[str] = Field(
        default_factory=lambda: ["optimize", "checkpoint"],
        description="Any of rekey, optimize, vacuum, checkpoint (run in that order per table); rekey re-encrypts "
        "files under an older Parquet master key after `lakehouse keys rotate`.",
    )
    tables: list[str] = Field(
        default_factory=list, description='layer/name of the tables (e.g. ["gold/merchant_minute"]); empty: all.'
    )
    zorder: bool = Field(True, description="Z-order gold tables by their keys when optimizing.")
    retention_hours: float | None = Field(None, description="VACUUM retention; default: each table's own (7 days).")
    force: bool = Field(False, description="Allow a VACUUM retention below the table's own (unsafe for readers).")


def _args(config: MaintenanceConfig) -> list[str]:
    unknown = set(config.operations) - {"rekey", "optimize", "vacuum", "checkpoint"}
    if unknown:
        raise dg.Failure(description=f"unknown maintenance operations {sorted(unknown)}")
    args = [f"--{op}" for op in config.operations]
    if config.tables:
        args += ["--tables", ",".join(config.tables)]
    if not config.zorder:
        args.append("--no-zorder")
    if config.retention_hours is not None:
        args += ["--retention-hours", str(config.retention_hours)]
    if config.force:
        args.append("--force")
    return args


@dg.op(description="spark_apps/maintenance.py through Pipes; each table's result becomes an AssetObservation.")
def maintain_tables(context: dg.OpExecutionContext, config: MaintenanceConfig, spark: SparkPipes) -> None:
    def observe(message: Mapping[str, Any]) -> list[dg.AssetKey]:
        key = dg.AssetKey(str(message.get("asset", "")).split("/"))
        return [key] if key in PUBLIC else []

    app = SparkApp("maintenance", _args(config), observe=observe)
    for _ in spark.run(context, config.resolve(), app, config.master):
        pass


def _job(name: str, description: str, operations: list[str]) -> dg.JobDefinition:
    @dg.job(
        name=name,
        description=description,
        config={"ops": {"maintain_tables": {"config": {"operations": operations}}}},
        tags={KIND_TAG: "maintenance"},
        executor_def=dg.in_process_executor,
    )
    def _maintenance() -> None:
        maintain_tables()

    return _maintenance


maintenance = _job(
    "maintenance",
    "OPTIMIZE (gold Z-ordered by key) and checkpoint every table.",
    ["optimize", "checkpoint"],
)
vacuum = _job("vacuum", "VACUUM every table at its own retention (7 days), never shorter unless forced.", ["vacuum"])

maintenance_schedules = [
    schedule(maintenance, "0 3 * * *", "Every night at 03:00: compact and checkpoint.", name="maintenance_nightly"),
    schedule(vacuum, "0 4 * * 0", "Sundays at 04:00: VACUUM at each table's retention.", name="vacuum_weekly"),
]
