"""silver: bronze -> typed, validated, deduplicated, PII-masked silver tables + silver.quarantine.

    spark-submit spark_apps/silver.py [--available-now | --continuous]
    lakehouse stream run silver [--available-now | --continuous]

Per micro-batch of each bronze table:

- every record is validated by the rules of its JSON Schema (``lakehouse.validation``,
  compiled from the contract file) plus the contract's "not more than a day in the
  future"; an invalid one goes to ``silver.quarantine`` with a reason naming the field;
- a valid one is typed, its unknown fields kept in ``_extra``, ``card_number`` replaced
  by ``card_token`` (HMAC-SHA256 keyed by ``LAKEHOUSE_PII_HMAC_KEY``) and ``card_last4``;
- it is inserted only if its ``event_id`` is not in silver yet (insert-only MERGE), so a
  resent event counts once whatever its partition or delay. The table itself is the
  deduplication state: no unbounded streaming state, and no watermark that could let a
  very late copy through. (A resent event carries the same event_time, so the match is
  restricted to the batch's event dates, which keeps the MERGE to those partitions.)

Exactly once: the insert-only MERGE is idempotent, and the quarantine append carries
the batch id as a Delta transaction version, so a replayed batch writes nothing twice.
valid + quarantined + duplicates = bronze, exactly.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.contracts import TOPICS, schema
from lakehouse.settings import Settings
from lakehouse.tables import BRONZE, QUARANTINE, SILVER, TableSpec
from lakehouse.validation import CompiledSchema, compile_schema
from spark_apps._runtime import delta_foreach_batch, main_for, merge_metric, record_rows_out

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

APP = "silver"
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
    """
    raw = bronze_df.withColumnRenamed("value", "_raw_value").select(
        "topic", "partition", "offset", "_raw_value", "ingested_at"
    )
    return compiled.annotate(raw, "_raw_value", now)


def to_silver(parsed: DataFrame, table: TableSpec, hmac_key: bytes) -> DataFrame:
    """Valid parsed rows -> the silver table's columns (card numbers masked for payments)."""
    valid = parsed.where(F.col("_error").isNull())
    extra_cols: dict[str, Column] = {
        "_source_partition": F.col("partition"),
        "_source_offset": F.col("offset"),
        "event_date": F.to_date("event_time"),
    }
    if "card_token" in table.column_names:
        extra_cols["card_token"] = hmac_sha256_hex(F.col("card_number"), hmac_key)
        extra_cols["card_last4"] = F.substring(F.col("card_number"), -4, 4)
    return valid.withColumns(extra_cols).select(*table.column_names)


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


# -- the sink ----------------------------------------------------------------------
def write_batch(
    batch: DataFrame, batch_id: int, *, topic: str, s: Settings, compiled: CompiledSchema, epoch: str
) -> None:
    from delta.tables import DeltaTable

    spark = batch.sparkSession
    table = SILVER[topic]
    parsed = parse(batch, compiled).persist()
    try:
        rows = first_copies(to_silver(parsed, table, s.pii_hmac_key.get_secret_value().encode()))
        dates = [r[0] for r in rows.select("event_date").distinct().collect()]
        inserted = 0
        if dates:
            in_dates = ", ".join(f"DATE'{d.isoformat()}'" for d in dates)
            metrics = (
                DeltaTable.forPath(spark, table.path(s.lake_dir))
                .alias("t")
                .merge(rows.alias("s"), f"t.event_date IN ({in_dates}) AND t.event_id = s.event_id")
                .whenNotMatchedInsertAll()
                .execute()
            )
            inserted = merge_metric(metrics, "num_inserted_rows")
        quarantined = to_quarantine(parsed)
        record_rows_out(f"{APP}_{topic}", batch_id, inserted + quarantined.count())
        (
            quarantined.write.format("delta")
            .mode("append")
            .option("txnAppId", f"silver-quarantine-{topic}-{epoch}")
            .option("txnVersion", batch_id)
            .save(QUARANTINE.path(s.lake_dir))
        )
    finally:
        parsed.unpersist()


def start(topic: str, spark: SparkSession, s: Settings, available_now: bool) -> StreamingQuery:
    for t in (BRONZE[topic], SILVER[topic], QUARANTINE):
        t.ensure(spark, s.lake_dir)
    return delta_foreach_batch(
        spark,
        s,
        app=APP,
        query=topic,
        source_path=BRONZE[topic].path(s.lake_dir),
        write_batch=partial(write_batch, topic=topic, s=s, compiled=compile_schema(schema(topic))),
        available_now=available_now,
    )


STARTERS = {t.name: partial(start, t.name) for t in TOPICS}


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(APP, STARTERS, argv)


if __name__ == "__main__":
    sys.exit(main())
