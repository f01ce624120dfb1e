"""Row counts, files, size and latest version of every table, read with Spark."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.settings import Settings
from lakehouse.tables import ALL_TABLES, TableSpec


@dataclass
class TableStats:
    name: str
    exists: bool
    rows: int = 0
    files: int = 0
    size_bytes: int = 0
    version: int | None = None
    modified: datetime | None = None


def table_stats(spark: SparkSession, s: Settings, spec: TableSpec) -> TableStats:
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
    )


def all_stats(spark: SparkSession, s: Settings) -> list[TableStats]:
    return [table_stats(spark, s, t) for t in ALL_TABLES]
