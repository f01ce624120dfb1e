"""gold: minute aggregates and fraud alerts from silver rows (transforms and idempotent, bounded writes).

The refine stream (``spark_apps/refine.py``) calls these once per micro-batch with the batch's
new silver rows; the replay (``spark_apps/replay.py``) with a date range of silver.

- **Lateness.** A row is late when its 1-minute window had ended by the batch's watermark
  (the newest bounded event time of earlier batches minus 10 minutes, contracts §2): the
  window is final. Late rows go to ``gold.late_events`` (kept in silver, counted, never
  added to a final window).
- **Minute tables.** The on-time rows' partial aggregates are MERGEd into the gold table
  (counts and sums add, min/max combine, ``sessions`` merges HLL sketches), so a window
  shows with a batch's latency. The MERGE condition carries literal ``window_start`` bounds,
  so Delta reads only the files that can hold the batch's windows, whatever the table's size.
  ``merchant_minute.flagged_count`` changes by the batch's verdict changes (``flagged_delta``),
  in the same MERGE: no recount.
- **Fraud alerts.** Verdicts come from the stream's keyed state (``lakehouse.spark.UserFraud``)
  or from the batch evaluation in ``spark_apps/fraud.py`` (replay); ``merge_alerts`` inserts
  new alerts, updates changed ones and deletes retracted ones, bounded by event time.

Exactly once: appends are marked with (writer, batch id) in their commit (``AppendLog``), the
minute MERGE carries them as a Delta transaction id (it adds partial aggregates), and the
alerts MERGE sets verdicts (idempotent by itself); a batch replayed after a crash skips what
it had committed and finishes the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.contracts import NORMAL_RANGES
from lakehouse.tables import (
    DEVICE_MINUTE,
    FRAUD_ALERTS,
    LATE_EVENTS,
    MERCHANT_MINUTE,
    PAGE_MINUTE,
    TableSpec,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

HLL_LG_K = 14  # 2^14 buckets: ~0.8 % standard error, far inside the contract's 5 %


# -- pure transforms -----------------------------------------------------------------
def with_window(df: DataFrame) -> DataFrame:
    return df.withColumn("window_start", F.date_trunc("minute", F.col("event_time")))


def late_condition(watermark_ms: Column | int | None) -> Column:
    """True for rows whose 1-minute window had ended by the watermark (epoch ms): the window is final."""
    if watermark_ms is None:
        return F.lit(False)
    wm = watermark_ms if isinstance(watermark_ms, Column) else F.lit(watermark_ms)
    return F.unix_micros(F.col("window_start")) + F.lit(60_000_000) <= wm * F.lit(1000)


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


def flagged_deltas(verdicts: DataFrame) -> DataFrame:
    """Per merchant window, how ``flagged_count`` changes with these verdicts.

    ``verdicts``: payments whose rules were just decided (``rules``), with ``_was_flagged`` (their
    rules were not empty before) and ``_counted`` (the payment is in its merchant minute, i.e. it
    was on time: a late payment's alert does not touch a final window).
    """
    delta = F.when(F.size("rules") > 0, 1).otherwise(0) - F.when(F.col("_was_flagged"), 1).otherwise(0)
    return (
        with_window(verdicts.where(F.col("_counted")))
        .groupBy("merchant_id", "window_start")
        .agg(F.sum(delta).cast("bigint").alias("flagged_delta"))
        .where(F.col("flagged_delta") != 0)
    )


@dataclass(frozen=True)
class MinuteTable:
    spec: TableSpec
    partials: Callable[[DataFrame], DataFrame]
    on_match: dict[str, str]
    on_insert: dict[str, str]


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
        "flagged_count": "t.flagged_count + s.flagged_delta",
    },
    on_insert={
        **_keys(MERCHANT_MINUTE),
        "tx_count": "s.tx_count",
        "amount_sum": "s.amount_sum",
        "amount_max": "s.amount_max",
        "amount_avg": "s.amount_sum / s.tx_count",
        "flagged_count": "s.flagged_delta",
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


def merchant_source(partials: DataFrame, deltas: DataFrame | None) -> DataFrame:
    """Partial aggregates and flagged-count changes of the same windows, one row per window."""
    base = partials.withColumn("flagged_delta", F.lit(0).cast("bigint"))
    if deltas is None:
        return base
    only_deltas = deltas.select(
        "merchant_id",
        "window_start",
        F.lit(0).cast("bigint").alias("tx_count"),
        F.lit(0.0).alias("amount_sum"),
        F.lit(None).cast("double").alias("amount_max"),
        "flagged_delta",
    )
    return (
        base.unionByName(only_deltas)
        .groupBy("merchant_id", "window_start")
        .agg(
            F.sum("tx_count").alias("tx_count"),
            F.sum("amount_sum").alias("amount_sum"),
            F.max("amount_max").alias("amount_max"),
            F.sum("flagged_delta").alias("flagged_delta"),
        )
    )


# -- writes ----------------------------------------------------------------------------
def micros_literal(us: int) -> str:
    """A timestamp literal from epoch microseconds, independent of any time zone."""
    return f"timestamp_micros({int(us)})"


class AppendLog:
    """Idempotent appends marked in the commit itself, cheaper than Delta's transaction ids.

    Delta's ``txnAppId``/``txnVersion`` on an append reconstructs the table's state to look the
    id up: three extra Spark jobs per append, more than the append itself. Instead each append
    carries ``userMetadata = "<writer>@<batch>"`` in its commit, and this process remembers the
    newest batch it committed per (table, writer). Only the first append after a (re)start, when
    the previous run may have committed this very batch just before it died, reads the table's
    recent history (commit infos, no Spark job) to find the writer's newest committed batch.
    A retried batch (``retrying``) finds its own earlier appends in memory.
    """

    HISTORY = 1000  # commits looked back at once per (table, writer) and process start

    def __init__(self) -> None:
        self._newest: dict[tuple[str, str], int] = {}

    def newest(self, spark: SparkSession, path: str, writer: str) -> int:
        key = (path, writer)
        if key not in self._newest:
            self._newest[key] = newest_marked_batch(spark, path, writer, self.HISTORY)
        return self._newest[key]

    def append(self, df: DataFrame, path: str, writer: str, batch_id: int) -> bool:
        """Append unless this writer's batch is already in the table; True when it wrote."""
        spark = df.sparkSession
        if self.newest(spark, path, writer) >= batch_id:
            return False
        df.write.format("delta").mode("append").option("userMetadata", f"{writer}@{batch_id}").save(path)
        self._newest[(path, writer)] = batch_id
        return True


def newest_marked_batch(spark: SparkSession, path: str, writer: str, history: int) -> int:
    """The newest batch id ``writer`` marked in the table's last ``history`` commits; -1 if none."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return -1
    prefix = f"{writer}@"
    newest = -1
    for row in DeltaTable.forPath(spark, path).history(history).select("userMetadata").collect():
        marker = row["userMetadata"] or ""
        if marker.startswith(prefix) and marker[len(prefix) :].isdigit():
            newest = max(newest, int(marker[len(prefix) :]))
    return newest


def _txn(spark: SparkSession, app_id: str, version: int) -> None:
    spark.conf.set("spark.databricks.delta.write.txnAppId", app_id)
    spark.conf.set("spark.databricks.delta.write.txnVersion", str(version))


def _untxn(spark: SparkSession) -> None:
    spark.conf.unset("spark.databricks.delta.write.txnAppId")
    spark.conf.unset("spark.databricks.delta.write.txnVersion")


def merge_minutes(
    spark: SparkSession,
    path: str,
    mt: MinuteTable,
    source: DataFrame,
    window_us: tuple[int, int],
    app_id: str,
    version: int,
) -> int:
    """MERGE partial aggregates into a minute table; only files that can hold [lo, hi] windows are read.

    Returns the rows inserted or updated. ``source`` has the partial columns (and, for
    merchant_minute, ``flagged_delta``).
    """
    from delta.tables import DeltaTable

    lo, hi = window_us
    cond = (
        f"t.window_start >= {micros_literal(lo)} AND t.window_start <= {micros_literal(hi)} AND "
        + mt.spec.merge_condition()
    )
    src = source.withColumn("updated_at", F.current_timestamp())
    insert_when = "s.tx_count > 0" if mt is MERCHANT else None  # a flag change alone never creates a window
    _txn(spark, app_id, version)
    try:
        metrics = (
            DeltaTable.forPath(spark, path)
            .alias("t")
            .merge(src.alias("s"), cond)
            .whenMatchedUpdate(set={**mt.on_match, "updated_at": "s.updated_at"})
            .whenNotMatchedInsert(condition=insert_when, values={**mt.on_insert, "updated_at": "s.updated_at"})
            .execute()
        )
    finally:
        _untxn(spark)
    row = metrics.first() if metrics is not None else None
    return int(row.asDict().get("num_affected_rows") or 0) if row is not None else 0


def alert_rows(verdicts: DataFrame) -> DataFrame:
    """``gold.fraud_alerts`` columns of verdict rows (``detected_at``: now, kept for existing alerts)."""
    return verdicts.select(
        *[c for c in FRAUD_ALERTS.column_names if c != "detected_at"], F.current_timestamp().alias("detected_at")
    )


def merge_alerts(spark: SparkSession, path: str, verdicts: DataFrame, event_us: tuple[int, int]) -> None:
    """Insert new alerts, update changed ones, delete the ones whose rules became empty.

    ``verdicts`` holds only payments whose verdict changed (or is new). Bounded by the literal
    event-time range, so the MERGE reads the files of those times only. Idempotent by itself
    (it sets verdicts, it does not add to them): a replayed batch changes nothing.
    """
    lo, hi = event_us
    upsert_alerts(
        spark, path, verdicts, f"t.event_time >= {micros_literal(lo)} AND t.event_time <= {micros_literal(hi)}"
    )


def upsert_alerts(spark: SparkSession, path: str, verdicts: DataFrame, target_bound: str) -> None:
    """The fraud_alerts MERGE shared by the stream and the replay: ``target_bound`` (a predicate on
    ``t``) limits the files read; verdicts with empty rules delete, changed ones update, new ones insert."""
    from delta.tables import DeltaTable

    (
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(alert_rows(verdicts).alias("s"), f"{target_bound} AND t.event_id = s.event_id")
        .whenMatchedDelete(condition="size(s.rules) = 0")
        .whenMatchedUpdate(
            condition="NOT (t.rules <=> s.rules) OR NOT (t.score <=> s.score)",
            set={"rules": "s.rules", "score": "s.score"},
        )
        .whenNotMatchedInsertAll(condition="size(s.rules) > 0")
        .execute()
    )


def late_rows(late: DataFrame, source: str, batch_id: int) -> DataFrame:
    """``gold.late_events`` rows; ``late`` has event_id, event_time, window_start and ``_wm`` (ms)."""
    return late.select(
        F.lit(source).alias("source"),
        "event_id",
        "event_time",
        "window_start",
        F.timestamp_millis(F.col("_wm")).alias("watermark"),
        F.lit(batch_id).cast("bigint").alias("batch_id"),
        F.current_timestamp().alias("detected_at"),
    )


GOLD_TABLES = (MERCHANT_MINUTE, PAGE_MINUTE, DEVICE_MINUTE, FRAUD_ALERTS, LATE_EVENTS)
