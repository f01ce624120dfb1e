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

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.delta.validator import CompiledSchema
from lakehouse.tables import TableSpec

_BLOCK = 64  # SHA-256 block size, for HMAC


# -- pure transforms -----------------------------------------------------------------
def hmac_sha256_hex(message: Column, key: bytes) -> Column:
    """HMAC-SHA256(key, message) as lowercase hex, in native Spark (RFC 2104).

    Spark has SHA-2 but no HMAC; the construction is H((K^opad) || H((K^ipad) || m)).
    """
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    ipad = bytes(b ^ 0x36 for b in key)
    opad = bytes(b ^ 0x5C for b in key)
    inner = F.unhex(F.sha2(F.concat(F.lit(ipad), F.encode(message, "UTF-8")), 256))
    return F.sha2(F.concat(F.lit(opad), inner), 256)


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


def silver_columns(table: TableSpec, hmac_key: bytes) -> list[Column]:
    """The silver table's columns computed from parsed rows, in the spec's order (card numbers masked)."""
    derived: dict[str, Column] = {
        "_source_partition": F.col("partition"),
        "_source_offset": F.col("offset"),
        "event_date": F.to_date("event_time"),
    }
    if "card_token" in table.column_names:
        derived["card_token"] = hmac_sha256_hex(F.col("card_number"), hmac_key)
        derived["card_last4"] = F.substring(F.col("card_number"), -4, 4)
    return [derived[c].alias(c) if c in derived else F.col(c) for c in table.column_names]


def to_silver(parsed: DataFrame, table: TableSpec, hmac_key: bytes) -> DataFrame:
    """Valid parsed rows -> the silver table's columns (card numbers masked for payments)."""
    return parsed.where(F.col("_error").isNull()).select(*silver_columns(table, hmac_key))


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
