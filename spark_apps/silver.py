"""silver: the transforms from bronze records to silver rows and quarantine records (pure; no I/O).

The refine stream (``spark_apps/refine.py``) and the replay (``spark_apps/replay.py``) use them:

- every record is validated by the rules of its JSON Schema (``lakehouse.validation``,
  compiled from the contract file) plus the contract's "not more than a day in the
  future"; an invalid one goes to ``silver.quarantine`` with a reason naming the field;
- a valid one is typed, its unknown fields kept in ``_extra``, ``card_number`` replaced
  by ``card_token`` (HMAC-SHA256 keyed by ``LAKEHOUSE_PII_HMAC_KEY``) and ``card_last4``.

Deduplication on ``event_id`` is the refine stream's (state store) or the replay's
(``first_copies``) business.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse.delta.validator import CompiledSchema
from lakehouse.tables import TableSpec


# -- pure transforms -----------------------------------------------------------------
def card_token(message: Column, key_file: Path | str) -> Column:
    """HMAC-SHA256 of MESSAGE, keyed by the PII key, as lowercase hex (``lakehouse.spark.CardToken``).

    The plan holds KEY_FILE, the key's path, never the key: the function reads it where it runs
    (``LAKEHOUSE_PII_HMAC_KEY`` in the environment overrides it, as in the settings).
    """
    session = SparkSession.getActiveSession()
    if session is None:
        raise RuntimeError("card_token needs an active Spark session")
    name = "lakehouse_card_token_" + hashlib.sha256(str(key_file).encode()).hexdigest()[:16]
    session._jvm.lakehouse.spark.CardToken.register(session._jsparkSession, name, str(key_file))  # type: ignore[union-attr]
    return F.call_function(name, message)


def parse(bronze_df: DataFrame, compiled: CompiledSchema, now: Column | None = None) -> DataFrame:
    """Bronze rows + ``_error`` (NULL when valid) + the schema's typed fields + ``_extra``.

    The raw record becomes ``_raw_value``: iot events have a field named ``value`` themselves.
    "More than 1 day in the future" is judged against ``now``, by default the record's bronze
    ``ingested_at``: when the platform received it. That keeps the verdict the same when a batch
    or a replay runs later, and keeps the plan free of a per-batch timestamp literal (which would
    make Spark compile the validator's code again for every micro-batch).
    """
    raw = bronze_df.withColumnRenamed("value", "_raw_value").select(
        "topic", "partition", "offset", "_raw_value", "ingested_at"
    )
    return compiled.annotate(raw, "_raw_value", now if now is not None else F.col("ingested_at"))


def silver_columns(table: TableSpec, key_file: Path | str) -> list[Column]:
    """The silver table's columns computed from parsed rows, in the spec's order (card numbers masked)."""
    derived: dict[str, Column] = {
        "_source_partition": F.col("partition"),
        "_source_offset": F.col("offset"),
        "event_date": F.to_date("event_time"),
    }
    if "card_token" in table.column_names:
        derived["card_token"] = card_token(F.col("card_number"), key_file)
        derived["card_last4"] = F.substring(F.col("card_number"), -4, 4)
    return [derived[c].alias(c) if c in derived else F.col(c) for c in table.column_names]


def to_silver(parsed: DataFrame, table: TableSpec, key_file: Path | str) -> DataFrame:
    """Valid parsed rows -> the silver table's columns (card numbers masked for payments; KEY_FILE: the PII key's)."""
    return parsed.where(F.col("_error").isNull()).select(*silver_columns(table, key_file))


def to_quarantine(parsed: DataFrame) -> DataFrame:
    return parsed.where(F.col("_error").isNotNull()).select(
        "topic",
        "partition",
        "offset",
        F.col("_raw_value").alias("raw_value"),
        F.col("_error").alias("error"),
        F.current_timestamp().alias("quarantined_at"),
    )


def first_copies(silver_rows: DataFrame) -> DataFrame:
    """One row per event_id within a batch: the copy with the lowest Kafka coordinates."""
    w = Window.partitionBy("event_id").orderBy("_source_partition", "_source_offset")
    return silver_rows.withColumn("_n", F.row_number().over(w)).where("_n = 1").drop("_n")
