"""Row counts, files, size and latest version of every table: from the Delta log where it says
(``lakehouse.delta.log_stats``: milliseconds, no JVM), else counted with Spark."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from lakehouse.delta.log_stats import log_stats
from lakehouse.settings import Settings
from lakehouse.storage import lake_path
from lakehouse.tables import ALL_TABLES, TableSpec

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass
class TableStats:
    name: str
    exists: bool
    rows: int = 0
    files: int = 0
    size_bytes: int = 0
    version: int | None = None
    modified: datetime | None = None
    counted_by: str = ""  # "Delta log" or "Spark"


def fast_table_stats(s: Settings, spec: TableSpec) -> TableStats | None:
    """From the table's log alone; None when it needs Spark (it exists but its log cannot say)."""
    path = lake_path(s, spec.path(s.lake_dir))
    if not (path / "_delta_log").is_dir():
        return TableStats(spec.full_name, exists=False)
    st = log_stats(path)
    if st is None:
        return None
    return TableStats(spec.full_name, True, st.rows, st.files, st.size_bytes, st.version, st.modified, "Delta log")


def table_stats(spark: SparkSession, s: Settings, spec: TableSpec) -> TableStats:
    from delta.tables import DeltaTable

    path = spec.path(s.lake_dir)
    if not DeltaTable.isDeltaTable(spark, path):
        return TableStats(spec.full_name, exists=False)
    table = DeltaTable.forPath(spark, path)
    detail = table.detail().first()
    last = table.history(1).first()
    assert detail is not None
    assert last is not None
    return TableStats(
        name=spec.full_name,
        exists=True,
        rows=table.toDF().count(),
        files=int(detail["numFiles"]),
        size_bytes=int(detail["sizeInBytes"]),
        version=int(last["version"]),
        modified=last["timestamp"],
        counted_by="Spark",
    )


def all_stats(spark: SparkSession, s: Settings) -> list[TableStats]:
    return [table_stats(spark, s, t) for t in ALL_TABLES]
