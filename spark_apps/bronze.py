"""bronze: the three Kafka topics -> bronze.payments / bronze.clickstream / bronze.iot, exactly once.

    spark-submit spark_apps/bronze.py [--available-now | --continuous]
    lakehouse stream run bronze [--available-now | --continuous]

Each record lands as it came (key and value as text, never parsed or dropped) with its
Kafka coordinates and the ingestion time. Exactly once: the Delta sink commits each
micro-batch together with its Kafka offsets in the query's checkpoint.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.clients import spark_options
from lakehouse.contracts import TOPICS
from lakehouse.services import retention
from lakehouse.settings import Settings
from lakehouse.tables import BRONZE
from spark_apps._metrics import KAFKA_OBSERVATION, age_bucket_aggs
from spark_apps._runtime import checkpoint, main_for, with_trigger

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

APP = "bronze"


def to_bronze(kafka_df: DataFrame) -> DataFrame:
    """Kafka source rows -> bronze columns. Pure: no parsing, no filtering."""
    ingested = F.current_timestamp()
    return kafka_df.select(
        F.col("key").cast("string").alias("key"),
        F.col("value").cast("string").alias("value"),
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        ingested.alias("ingested_at"),
        F.to_date(ingested).alias("ingest_date"),
    )


def with_latency_observed(bronze_df: DataFrame) -> DataFrame:
    """Count each batch's rows by age since their Kafka append (``_metrics``), in the write itself."""
    aggs = age_bucket_aggs(F.col("kafka_timestamp"), F.unix_micros(F.col("ingested_at")), "k")
    return bronze_df.observe(KAFKA_OBSERVATION, *aggs)


def starting_offsets(setting: str, topic: str) -> str:
    """'earliest'/'latest' as they are; per-partition JSON narrowed to this query's topic."""
    if not setting.lstrip().startswith("{"):
        return setting
    offsets = json.loads(setting)
    if topic not in offsets:
        return "earliest"
    return json.dumps({topic: offsets[topic]})


def start(topic: str, spark: SparkSession, s: Settings, available_now: bool) -> StreamingQuery:
    table = BRONZE[topic]
    if s.kafka_fail_on_data_loss:
        retention.check(s, [topic])  # records deleted before they were read: say which, stop (DATA_LOST)
    source = (
        spark.readStream.format("kafka")
        .options(**spark_options(s))  # SASL_SSL as the Spark principal
        .option("subscribe", topic)
        .option("startingOffsets", starting_offsets(s.kafka_starting_offsets, topic))  # new checkpoints only
        # Losing data silently is never acceptable: if offsets vanished (retention), fail loudly
        # (off only for the one run of `lakehouse stream skip-lost`, which has recorded the loss).
        .option("failOnDataLoss", str(s.kafka_fail_on_data_loss).lower())
        .option("maxOffsetsPerTrigger", s.max_offsets_per_trigger)
        .load()
    )
    writer = (
        with_latency_observed(to_bronze(source))
        .writeStream.format("delta")
        .queryName(f"bronze_{topic}")
        .outputMode("append")
        .option("checkpointLocation", checkpoint(s, APP, topic))
        .partitionBy(*table.partition_by)
    )
    return with_trigger(writer, s, available_now).start(table.path(s.lake_dir))


STARTERS = {t.name: partial(start, t.name) for t in TOPICS}


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(APP, STARTERS, argv)


if __name__ == "__main__":
    sys.exit(main())
