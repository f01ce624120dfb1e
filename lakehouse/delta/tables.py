"""The table specs (``lakehouse.tables``) made real in Spark: their schema and their Delta table."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import types as T

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


_COMMIT_OR_CHECKPOINT = re.compile(r"\d{20}\.(json|checkpoint\..*parquet)")


def never_committed(path: Path) -> str | None:
    """Why the table at PATH is a creation that never committed (a ``_delta_log`` directory without a
    commit or a checkpoint, what a creation cut short, by a full disk say, leaves), else None. Delta
    takes the directory for a table and then finds none (DELTA_TABLE_NOT_FOUND) on every start after;
    with no commit nothing refers to any file, so clearing it loses nothing."""
    log = path / "_delta_log"
    if not log.is_dir():
        return None
    names = [p.name for p in log.iterdir()]
    if any(_COMMIT_OR_CHECKPOINT.fullmatch(n) for n in names):
        return None
    left = ", ".join(sorted(names)[:3]) or "nothing"
    return f"its _delta_log holds no commit (a creation cut short, e.g. by a full disk; it holds {left})"


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
