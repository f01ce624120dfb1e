"""gold: silver -> gold.merchant_minute, gold.page_minute, gold.device_minute, gold.fraud_alerts.

    spark-submit spark_apps/gold.py [--available-now | --continuous]
    lakehouse stream run gold [--available-now | --continuous]

One query per silver table, each a ``foreachBatch`` that, per micro-batch:

1. takes the watermark the batch is processed with: the newest event_time of all earlier
   batches minus 10 minutes (contracts §2), read from ``gold._stream_progress``. Because it
   depends only on earlier batches, a replayed batch decides exactly as the first attempt;
2. splits late rows off: a row is late when its 1-minute window ended at or before the
   watermark (the window is final). Late rows are appended to ``gold.late_events``: kept in
   silver, counted, never added to a final window;
3. aggregates the on-time rows per key and minute and MERGEs the partial aggregates into
   the gold table (counts and sums add, min/max combine, ``sessions`` merges HLL sketches),
   so partial windows show with a batch's latency;
4. payments only: remembers the on-time payments in ``gold._fraud_state``, re-evaluates the
   four fraud rules for every payment the new ones can affect (rules only look backwards,
   so: same user or card, at or after the batch's earliest event) against the remembered
   context, upserts or retracts ``gold.fraud_alerts``, and sets ``flagged_count`` of the
   affected merchant windows;
5. records the batch in ``gold._stream_progress``.

Exactly once: every write carries (its own app id, batch id) as a Delta transaction, so a
batch replayed after a crash skips what it had committed and finishes the rest.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.contracts import NORMAL_RANGES, WATERMARK_MINUTES
from lakehouse.settings import Settings
from lakehouse.tables import (
    DEVICE_MINUTE,
    FRAUD_ALERTS,
    FRAUD_STATE,
    LATE_EVENTS,
    MERCHANT_MINUTE,
    PAGE_MINUTE,
    SILVER,
    STREAM_PROGRESS,
    TableSpec,
)
from spark_apps import fraud
from spark_apps._runtime import delta_foreach_batch, main_for, merge_metric, record_rows_out

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

APP = "gold"
WATERMARK = timedelta(minutes=WATERMARK_MINUTES)
HLL_LG_K = 14  # 2^14 buckets: ~0.8 % standard error, far inside the contract's 5 %


# -- pure transforms -----------------------------------------------------------------
def with_window(df: DataFrame) -> DataFrame:
    return df.withColumn("window_start", F.date_trunc("minute", F.col("event_time")))


def late_condition(watermark: datetime | None) -> Column:
    """True for rows whose 1-minute window had ended by the watermark (the window is final)."""
    if watermark is None:
        return F.lit(False)
    return (F.col("window_start") + F.expr("INTERVAL 1 MINUTE")) <= F.lit(watermark)


def merchant_partials(payments: DataFrame) -> DataFrame:
    return payments.groupBy("merchant_id", "window_start").agg(
        F.count(F.lit(1)).alias("tx_count"),
        F.sum("amount").alias("amount_sum"),
        F.max("amount").alias("amount_max"),
    )


def page_partials(clicks: DataFrame) -> DataFrame:
    def n(kind: str) -> Column:
        return F.sum((F.col("event_type") == kind).cast("bigint"))

    return clicks.groupBy("page", "window_start").agg(
        n("page_view").alias("views"),
        n("click").alias("clicks"),
        n("purchase").alias("purchases"),
        F.hll_sketch_agg("session_id", HLL_LG_K).alias("sessions_sketch"),
    )


def is_anomaly() -> Column:
    cond = F.lit(False)
    for sensor, (lo, hi) in NORMAL_RANGES.items():
        cond = cond | ((F.col("sensor_type") == sensor) & ((F.col("value") < lo) | (F.col("value") > hi)))
    return cond


def device_partials(readings: DataFrame) -> DataFrame:
    return readings.groupBy("device_id", "sensor_type", "window_start").agg(
        F.count(F.lit(1)).alias("readings"),
        F.sum("value").alias("value_sum"),
        F.min("value").alias("value_min"),
        F.max("value").alias("value_max"),
        F.sum(is_anomaly().cast("bigint")).alias("anomalies"),
    )


# -- writes ----------------------------------------------------------------------------
@contextmanager
def idempotent(spark: SparkSession, app_id: str, version: int) -> Iterator[None]:
    """Delta skips a write whose (txnAppId, txnVersion) it has already committed."""
    spark.conf.set("spark.databricks.delta.write.txnAppId", app_id)
    spark.conf.set("spark.databricks.delta.write.txnVersion", str(version))
    try:
        yield
    finally:
        spark.conf.unset("spark.databricks.delta.write.txnAppId")
        spark.conf.unset("spark.databricks.delta.write.txnVersion")


@dataclass(frozen=True)
class MinuteTable:
    spec: TableSpec
    partials: object  # Callable[[DataFrame], DataFrame]
    on_match: dict[str, str]
    on_insert: dict[str, str]


def _merge_minutes(
    spark: SparkSession, s: Settings, mt: MinuteTable, partials: DataFrame, writer: str, batch_id: int
) -> int:
    """MERGE one batch's partial aggregates; returns the minute rows inserted or updated."""
    from delta.tables import DeltaTable

    src = partials.withColumn("updated_at", F.current_timestamp())
    with idempotent(spark, f"gold-{mt.spec.name}-{writer}", batch_id):
        metrics = (
            DeltaTable.forPath(spark, mt.spec.path(s.lake_dir))
            .alias("t")
            .merge(src.alias("s"), mt.spec.merge_condition())
            .whenMatchedUpdate(set={**mt.on_match, "updated_at": "s.updated_at"})
            .whenNotMatchedInsert(values={**mt.on_insert, "updated_at": "s.updated_at"})
            .execute()
        )
    return merge_metric(metrics, "num_affected_rows")


def _keys(spec: TableSpec) -> dict[str, str]:
    return {k: f"s.`{k}`" for k in spec.keys}


MERCHANT = MinuteTable(
    MERCHANT_MINUTE,
    merchant_partials,
    on_match={
        "tx_count": "t.tx_count + s.tx_count",
        "amount_sum": "t.amount_sum + s.amount_sum",
        "amount_max": "greatest(t.amount_max, s.amount_max)",
        "amount_avg": "(t.amount_sum + s.amount_sum) / (t.tx_count + s.tx_count)",
    },
    on_insert={
        **_keys(MERCHANT_MINUTE),
        "tx_count": "s.tx_count",
        "amount_sum": "s.amount_sum",
        "amount_max": "s.amount_max",
        "amount_avg": "s.amount_sum / s.tx_count",
        "flagged_count": "0",
    },
)
PAGE = MinuteTable(
    PAGE_MINUTE,
    page_partials,
    on_match={
        "views": "t.views + s.views",
        "clicks": "t.clicks + s.clicks",
        "purchases": "t.purchases + s.purchases",
        "sessions_sketch": "hll_union(t.sessions_sketch, s.sessions_sketch)",
        "sessions": "hll_sketch_estimate(hll_union(t.sessions_sketch, s.sessions_sketch))",
    },
    on_insert={
        **_keys(PAGE_MINUTE),
        "views": "s.views",
        "clicks": "s.clicks",
        "purchases": "s.purchases",
        "sessions_sketch": "s.sessions_sketch",
        "sessions": "hll_sketch_estimate(s.sessions_sketch)",
    },
)
DEVICE = MinuteTable(
    DEVICE_MINUTE,
    device_partials,
    on_match={
        "readings": "t.readings + s.readings",
        "value_sum": "t.value_sum + s.value_sum",
        "value_avg": "(t.value_sum + s.value_sum) / (t.readings + s.readings)",
        "value_min": "least(t.value_min, s.value_min)",
        "value_max": "greatest(t.value_max, s.value_max)",
        "anomalies": "t.anomalies + s.anomalies",
    },
    on_insert={
        **_keys(DEVICE_MINUTE),
        "readings": "s.readings",
        "value_sum": "s.value_sum",
        "value_avg": "s.value_sum / s.readings",
        "value_min": "s.value_min",
        "value_max": "s.value_max",
        "anomalies": "s.anomalies",
    },
)
MINUTE_TABLES = {"payments": MERCHANT, "clickstream": PAGE, "iot": DEVICE}


def watermark_for(spark: SparkSession, s: Settings, writer: str, batch_id: int) -> datetime | None:
    """Newest event_time of the batches before ``batch_id``, minus the watermark delay."""
    row = (
        spark.read.format("delta")
        .load(STREAM_PROGRESS.path(s.lake_dir))
        .where((F.col("stream") == writer) & (F.col("batch_id") < batch_id))
        .agg(F.max("max_event_time"))
        .first()
    )
    newest = row[0] if row else None
    return newest - WATERMARK if newest is not None else None


def _record_progress(
    spark: SparkSession, s: Settings, writer: str, batch_id: int, batch: DataFrame, wm: datetime | None, late: int
) -> None:
    stats = batch.agg(F.max("event_time").alias("m"), F.count(F.lit(1)).alias("n")).first()
    assert stats is not None
    prev = wm + WATERMARK if wm is not None else None
    newest = max((t for t in (stats["m"], prev) if t is not None), default=None)
    row = spark.createDataFrame(
        [(writer, batch_id, newest, wm, stats["n"], late, datetime.now(UTC).replace(tzinfo=None))],
        STREAM_PROGRESS.struct(),
    )
    # A blind append (not a MERGE): the three gold streams record progress concurrently,
    # and appends never conflict; the transaction id makes a replay write nothing.
    (
        row.write.format("delta")
        .mode("append")
        .option("txnAppId", f"gold-progress-{writer}")
        .option("txnVersion", batch_id)
        .save(STREAM_PROGRESS.path(s.lake_dir))
    )


def _fraud(spark: SparkSession, s: Settings, ontime: DataFrame, batch_id: int, writer: str) -> None:
    from delta.tables import DeltaTable

    state_path = FRAUD_STATE.path(s.lake_dir)
    new = ontime.select(*FRAUD_STATE.column_names)
    (
        new.write.format("delta")
        .mode("append")
        .option("txnAppId", f"gold-fraud-state-{writer}")
        .option("txnVersion", batch_id)
        .save(state_path)
    )
    bounds = new.agg(F.min("event_time")).first()
    if bounds is None or bounds[0] is None:
        return
    since = bounds[0]
    users = new.select("user_id").distinct()
    cards = new.select("card_token").distinct()
    state = spark.read.format("delta").load(state_path)
    context = (
        state.join(F.broadcast(users), "user_id", "left_semi")
        .unionByName(state.join(F.broadcast(cards), "card_token", "left_semi"))
        .distinct()
    )
    judged = fraud.evaluate(context).where(F.col("event_time") >= F.lit(since)).persist()
    try:
        alerts = judged.select(*[c for c in FRAUD_ALERTS.column_names if c != "detected_at"]).withColumn(
            "detected_at", F.current_timestamp()
        )
        with idempotent(spark, f"gold-fraud-alerts-{writer}", batch_id):
            (
                DeltaTable.forPath(spark, FRAUD_ALERTS.path(s.lake_dir))
                .alias("t")
                .merge(alerts.alias("s"), "t.event_id = s.event_id")
                .whenMatchedDelete(condition="size(s.rules) = 0")
                .whenMatchedUpdate(
                    condition="NOT (t.rules <=> s.rules) OR NOT (t.score <=> s.score)",
                    set={"rules": "s.rules", "score": "s.score"},
                )
                .whenNotMatchedInsertAll(condition="size(s.rules) > 0")
                .execute()
            )
        windows = with_window(judged).select("merchant_id", "window_start").distinct()
        flagged = with_window(spark.read.format("delta").load(FRAUD_ALERTS.path(s.lake_dir))).select(
            "merchant_id", "window_start"
        )
        counts = windows.join(
            flagged.groupBy("merchant_id", "window_start").count(), ["merchant_id", "window_start"], "left"
        ).select("merchant_id", "window_start", F.coalesce("count", F.lit(0)).cast("bigint").alias("flagged_count"))
        with idempotent(spark, f"gold-merchant-flagged-{writer}", batch_id):
            (
                DeltaTable.forPath(spark, MERCHANT_MINUTE.path(s.lake_dir))
                .alias("t")
                .merge(counts.alias("s"), MERCHANT_MINUTE.merge_condition())
                .whenMatchedUpdate(
                    condition="NOT (t.flagged_count <=> s.flagged_count)",
                    set={"flagged_count": "s.flagged_count", "updated_at": "current_timestamp()"},
                )
                .execute()
            )
    finally:
        judged.unpersist()
    if batch_id % 50 == 0:  # keep the rules' memory bounded
        DeltaTable.forPath(spark, state_path).delete(
            F.col("event_time") < F.lit(since - timedelta(days=s.fraud_state_retention_days))
        )


def write_batch(batch: DataFrame, batch_id: int, *, stream: str, s: Settings, epoch: str) -> None:
    """One micro-batch of one silver table. ``writer`` names this checkpoint's writes (see checkpoint_epoch)."""
    spark = batch.sparkSession
    mt = MINUTE_TABLES[stream]
    writer = f"{stream}-{epoch}"
    wm = watermark_for(spark, s, writer, batch_id)
    rows = with_window(batch).withColumn("_late", late_condition(wm)).persist()
    try:
        late = rows.where("_late")
        late_count = late.count()
        if late_count:
            (
                late.select(
                    F.lit(f"silver.{stream}").alias("source"),
                    "event_id",
                    "event_time",
                    "window_start",
                    F.lit(wm).cast("timestamp").alias("watermark"),
                    F.lit(batch_id).cast("bigint").alias("batch_id"),
                    F.current_timestamp().alias("detected_at"),
                )
                .write.format("delta")
                .mode("append")
                .option("txnAppId", f"gold-late-{writer}")
                .option("txnVersion", batch_id)
                .save(LATE_EVENTS.path(s.lake_dir))
            )
        ontime = rows.where(~F.col("_late")).drop("_late")
        upserted = _merge_minutes(spark, s, mt, mt.partials(ontime), writer, batch_id)  # type: ignore[operator]
        record_rows_out(f"{APP}_{stream}", batch_id, upserted + late_count)
        if stream == "payments":
            _fraud(spark, s, ontime, batch_id, writer)
        _record_progress(spark, s, writer, batch_id, rows, wm, late_count)
    finally:
        rows.unpersist()


GOLD_TABLES = (MERCHANT_MINUTE, PAGE_MINUTE, DEVICE_MINUTE, FRAUD_ALERTS, LATE_EVENTS, STREAM_PROGRESS, FRAUD_STATE)


def start(stream: str, spark: SparkSession, s: Settings, available_now: bool) -> StreamingQuery:
    for t in (SILVER[stream], *GOLD_TABLES):
        t.ensure(spark, s.lake_dir)
    return delta_foreach_batch(
        spark,
        s,
        app=APP,
        query=stream,
        source_path=SILVER[stream].path(s.lake_dir),
        write_batch=partial(write_batch, stream=stream, s=s),
        available_now=available_now,
    )


STARTERS = {name: partial(start, name) for name in MINUTE_TABLES}


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(APP, STARTERS, argv)


if __name__ == "__main__":
    sys.exit(main())
