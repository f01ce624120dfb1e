"""The smoke check of the stack: Spark writes a Delta table, Trino reads the same rows.

Used by `lakehouse smoke`, `lakehouse demo` and the integration tests.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from lakehouse.services.trino import ensure_schema, query, register_table
from lakehouse.settings import Settings
from lakehouse.storage import rmtree

SMOKE_SCHEMA = "smoke"
SMOKE_TABLE = "spark_roundtrip"

SMOKE_ROWS: list[tuple[int, str, float]] = [
    (1, "payments", 12.5),
    (2, "clickstream", 0.0),
    (3, "iot", -3.25),
    (4, "payments", 999999.99),
]


@dataclass
class SmokeResult:
    written: list[tuple[Any, ...]]
    read_back: list[tuple[Any, ...]]
    seconds: float

    @property
    def ok(self) -> bool:
        return sorted(self.written) == sorted(self.read_back)


def spark_to_trino_roundtrip(s: Settings, rows: list[tuple[int, str, float]] | None = None) -> SmokeResult:
    """Overwrite a small Delta table with Spark, register it in Trino and read it back."""
    from pyspark.sql import SparkSession

    from lakehouse.delta.session import build_spark_session

    rows = rows or SMOKE_ROWS
    t0 = time.monotonic()
    rel = f"_smoke/{SMOKE_TABLE}"
    path = s.lake_dir / rel
    table = f"{s.trino_catalog}.{SMOKE_SCHEMA}.{SMOKE_TABLE}"
    ensure_schema(s, SMOKE_SCHEMA, "_smoke")
    # Start clean so the table's schema and rows are exactly this run's.
    query(s, f"DROP TABLE IF EXISTS {table}")
    with contextlib.suppress(FileNotFoundError):
        rmtree(path)
    # A caller's session (a test's, a notebook's) is used and left running; one started here is stopped.
    owned = SparkSession.getActiveSession() is None
    spark = build_spark_session("lakehouse-smoke", s)
    try:
        spark.createDataFrame(rows, "id INT, source STRING, amount DOUBLE").write.format("delta").save(str(path))
        written = [tuple(r) for r in spark.read.format("delta").load(str(path)).collect()]
    finally:
        if owned:
            spark.stop()
    register_table(s, SMOKE_SCHEMA, SMOKE_TABLE, rel)
    back = query(s, f"SELECT id, source, amount FROM {table}")
    return SmokeResult(written=written, read_back=back, seconds=time.monotonic() - t0)
