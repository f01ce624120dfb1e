"""The table specs (``lakehouse.tables``) made real in Spark: their schema and their Delta table."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from lakehouse.delta.log_check import never_committed
from lakehouse.delta.log_stats import table_properties
from lakehouse.tables import TableSpec


def spark_schema(spec: TableSpec) -> T.StructType:
    """The schema as a Spark StructType (built in Python: no JVM needed)."""
    simple: dict[str, T.DataType] = {
        "STRING": T.StringType(),
        "INT": T.IntegerType(),
        "BIGINT": T.LongType(),
        "DOUBLE": T.DoubleType(),
        "BOOLEAN": T.BooleanType(),
        "TIMESTAMP": T.TimestampType(),
        "DATE": T.DateType(),
        "BINARY": T.BinaryType(),
        "ARRAY<STRING>": T.ArrayType(T.StringType()),
    }
    return T.StructType(
        [
            T.StructField(c.name, simple[c.type], c.nullable, {"comment": c.comment} if c.comment else {})
            for c in spec.columns
        ]
    )


def ensure_table(spark: SparkSession, spec: TableSpec, lake_dir: Path, *, writer: bool = True) -> None:
    """Create the Delta table at its location if it is missing (idempotent). The table's
    writer (``writer=True``) also brings the spec's table properties to an existing table
    whose values differ (they apply to new files); a reader never changes a table another
    stream may be writing."""
    path = spec.path(lake_dir)
    uncommitted = never_committed(Path(path))
    if uncommitted is not None:
        if not writer:
            raise RuntimeError(f"table {spec.full_name} at {path}: {uncommitted}; its writer clears it when it starts")
        shutil.rmtree(Path(path) / "_delta_log")
        print(f"table {spec.full_name}: {uncommitted}; cleared, created again", file=sys.stderr, flush=True)
    if DeltaTable.isDeltaTable(spark, path):
        if not writer:
            return
        # From the newest commit's checksum when it has one: DESCRIBE DETAIL is a Spark job, which waits
        # for a free task slot behind the micro-batches of queries already running in this driver.
        have = table_properties(Path(path))
        if have is None:
            current = DeltaTable.forPath(spark, path).detail().first()
            have = dict(current["properties"] or {}) if current is not None else {}
        stale = {k: p.value for k, p in spec.properties.items() if have.get(k) != p.value}
        if stale:
            props = ", ".join(f"'{k}' = '{v}'" for k, v in stale.items())
            spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({props})")
        return
    builder = DeltaTable.createIfNotExists(spark).location(path).comment(spec.description)
    for c in spec.columns:
        builder = builder.addColumn(c.name, c.type, nullable=c.nullable, comment=c.comment or None)
    if spec.partition_by:
        builder = builder.partitionedBy(*spec.partition_by)
    for key, prop in spec.properties.items():
        builder = builder.property(key, prop.value)
    builder.execute()
