"""refine: bronze -> silver.*, silver.quarantine and gold.*, in one pass per micro-batch.

    spark-submit spark_apps/refine.py [--available-now | --continuous]
    lakehouse stream run refine [--available-now | --continuous]

One query per topic reads its bronze table (a Delta stream) and runs:

1. **validate** (stateless): the compiled JSON Schema (``lakehouse.validation``), typing,
   ``_extra``, the card number masked (``spark_apps/silver.py``);
2. **watermark**: 10 minutes behind the newest *bounded* event time, where an event time is
   bounded by its bronze ``ingested_at`` plus ``LAKEHOUSE_MAX_CLOCK_SKEW_S``: one record
   claiming to be from tomorrow cannot make every other record late. The watermark is
   Spark's own, so it is in the checkpoint's offset log and a replayed batch sees the same;
3. **deduplicate** on ``event_id`` in Spark's state store (``lakehouse.spark.Dedup``, RocksDB,
   event-time timers): ids are held while their event time is within
   ``LAKEHOUSE_DEDUP_HORIZON_MINUTES`` behind the watermark. A copy older than that is looked
   up in its silver partition (bounded by event time) before it is written: exact whatever
   the delay, with state bounded by the horizon;
4. payments only: **the fraud rules in keyed state** (``lakehouse.spark.CardFraud`` per card,
   ``UserFraud`` per user): each payment is judged as it arrives, on time or late, and
   payments whose verdict an out-of-order arrival changes are judged again;
5. **the sink** (``write_batch``), per micro-batch: silver append, quarantine append, late
   events append, one bounded MERGE into the topic's minute table (merchant minutes also take
   the flagged-count changes), and for payments one bounded MERGE into ``gold.fraud_alerts``.
   Nothing is written (no commit) when a part is empty.

Exactly once: every write is marked with (its writer, batch id) — appends in the commit's
``userMetadata`` (``gold.AppendLog``), MERGEs as Delta transaction ids — and the state store
is versioned by batch, so a batch replayed after a crash decides as before, skips what it had
committed and finishes the rest.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.contracts import TOPICS, WATERMARK_MINUTES, schema
from lakehouse.delta.validator import compile_schema
from lakehouse.settings import Settings
from lakehouse.tables import BRONZE, FRAUD_ALERTS, LATE_EVENTS, QUARANTINE, SILVER
from spark_apps import gold, silver
from spark_apps._metrics import AgeSample, age_bucket_aggs, record_latency
from spark_apps._runtime import checkpoint, checkpoint_epoch, main_for, record_batch, retrying, with_trigger

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

APP = "refine"


# -- the streaming plan (pure: DataFrame in, DataFrame out) ---------------------------------
def bounded_event_time(max_clock_skew_s: float) -> Column:
    """The event time that drives the watermark: at most ``ingested_at`` + skew; NULL for invalid records."""
    skew = F.expr(f"INTERVAL {int(max_clock_skew_s * 1_000_000)} MICROSECONDS")
    return F.when(F.col("_error").isNull(), F.least(F.col("event_time"), F.col("ingested_at") + skew))


def staged(bronze_rows: DataFrame, topic: str, s: Settings) -> DataFrame:
    """Bronze rows -> the silver columns plus what the later steps need (coordinates, ``_error``,
    the raw value of invalid records only), with the event-time watermark defined."""
    table = SILVER[topic]
    parsed = silver.parse(bronze_rows, compile_schema(schema(topic)))
    cols = silver.silver_columns(table, s.secret_file("pii_hmac_key"))
    rows = parsed.select(
        "topic",
        "partition",
        "offset",
        # The raw record travels on only where quarantine needs it: valid records are typed now.
        F.when(F.col("_error").isNotNull(), F.col("_raw_value")).alias("_raw_value"),
        "_error",
        *[c for c, name in zip(cols, table.column_names, strict=True) if name not in ("partition", "offset")],
    )
    # The watermark column is dropped again: a stateful operator that sees it drops late rows,
    # and late rows must reach silver (and be judged by the fraud rules).
    return (
        rows.withColumn("_wm_time", bounded_event_time(s.max_clock_skew_s))
        .withWatermark("_wm_time", f"{WATERMARK_MINUTES} minutes")
        .drop("_wm_time")
    )


def _jvm_op(df: DataFrame, name: str, *args: Any) -> DataFrame:
    spark = df.sparkSession
    op = getattr(spark._jvm.lakehouse.spark.Ops, name)  # type: ignore[union-attr]
    return DataFrame(op(df._jdf, *args), spark)


def deduplicated(rows: DataFrame, s: Settings) -> DataFrame:
    """``lakehouse.spark.Dedup``: first copies only; adds ``_wm`` (watermark, ms) and ``_check``."""
    return _jvm_op(rows, "dedup", int(s.dedup_horizon_minutes * 60_000))


def judged(rows: DataFrame, s: Settings) -> DataFrame:
    """``lakehouse.spark.CardFraud`` then ``UserFraud``: adds ``rules``, ``score`` and ``_verdict``."""
    return _jvm_op(
        rows, "fraud", int(s.fraud_late_horizon_minutes * 60_000), int(s.fraud_state_retention_days * 86_400_000)
    )


def plan(bronze_rows: DataFrame, topic: str, s: Settings) -> DataFrame:
    rows = deduplicated(staged(bronze_rows, topic, s), s)
    return judged(rows, s) if topic == "payments" else rows


# -- the sink ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Facts:
    """What one aggregation over the batch says about it (one Spark job)."""

    rows: int
    invalid: int
    new: int
    checks: int
    late: int
    future: int
    watermark_ms: int
    check_us: tuple[int, int] | None
    ontime_window_us: tuple[int, int] | None
    changes: int
    change_us: tuple[int, int] | None
    flag_window_us: tuple[int, int] | None
    event_ages: AgeSample | None = None  # new valid rows by age at ``ages_at`` (epoch s)
    ages_at: float = 0.0


def _range(row: Any, lo: str, hi: str) -> tuple[int, int] | None:
    return None if row[lo] is None else (int(row[lo]), int(row[hi]))


def changed() -> Column:
    """Verdict rows that change gold.fraud_alerts: a new payment that fired a rule, or any update."""
    return F.col("_verdict").isin("new", "update") & ((F.col("_verdict") == "update") | (F.size("rules") > 0))


def facts(rows: DataFrame, s: Settings, payments: bool) -> Facts:
    valid = F.col("_error").isNull()
    new = valid & (F.col("_verdict") == "new") if payments else valid
    late = new & gold.late_condition(F.col("_wm"))
    ontime = new & ~late
    skew = F.expr(f"INTERVAL {int(s.max_clock_skew_s * 1_000_000)} MICROSECONDS")
    us = F.unix_micros(F.col("event_time"))
    win = F.unix_micros(F.col("window_start"))
    ages_at = time.time()
    aggs = [
        *age_bucket_aggs(F.col("event_time"), int(ages_at * 1e6), "e", where=new),
        F.count(F.lit(1)).alias("rows"),
        F.count_if(~valid).alias("invalid"),
        F.count_if(new).alias("new"),
        F.count_if(new & F.col("_check")).alias("checks"),
        F.count_if(late).alias("late"),
        F.count_if(new & (F.col("event_time") > F.col("ingested_at") + skew)).alias("future"),
        F.max("_wm").alias("wm"),
        F.min(F.when(new & F.col("_check"), us)).alias("check_lo"),
        F.max(F.when(new & F.col("_check"), us)).alias("check_hi"),
        F.min(F.when(ontime, win)).alias("win_lo"),
        F.max(F.when(ontime, win)).alias("win_hi"),
    ]
    if payments:
        change = changed()
        flag = change & F.col("_counted")
        aggs += [
            F.count_if(change).alias("changes"),
            F.min(F.when(change, us)).alias("change_lo"),
            F.max(F.when(change, us)).alias("change_hi"),
            F.min(F.when(flag, win)).alias("flag_lo"),
            F.max(F.when(flag, win)).alias("flag_hi"),
        ]
    row = gold.with_window(rows).agg(*aggs).first()
    assert row is not None
    return Facts(
        rows=int(row["rows"]),
        invalid=int(row["invalid"]),
        new=int(row["new"]),
        checks=int(row["checks"]),
        late=int(row["late"]),
        future=int(row["future"]),
        watermark_ms=int(row["wm"] or 0),
        check_us=_range(row, "check_lo", "check_hi"),
        ontime_window_us=_range(row, "win_lo", "win_hi"),
        changes=int(row["changes"]) if payments else 0,
        change_us=_range(row, "change_lo", "change_hi") if payments else None,
        flag_window_us=_range(row, "flag_lo", "flag_hi") if payments else None,
        event_ages=AgeSample.from_row(row.asDict(), "e"),
        ages_at=ages_at,
    )


def already_in_silver(spark: SparkSession, path: str, new: DataFrame, check_us: tuple[int, int]) -> DataFrame:
    """event_ids of the batch's out-of-band rows that silver already holds (their partitions and times only)."""
    lo, hi = check_us
    held = (
        spark.read.format("delta")
        .load(path)
        .where(
            f"event_date BETWEEN to_date({gold.micros_literal(lo)}) AND to_date({gold.micros_literal(hi)}) "
            f"AND event_time >= {gold.micros_literal(lo)} AND event_time <= {gold.micros_literal(hi)}"
        )
        .select("event_id", "event_time")
    )
    return new.where("_check").select("event_id", "event_time").join(held, ["event_id", "event_time"], "left_semi")


def _span(*ranges: tuple[int, int] | None) -> tuple[int, int] | None:
    present = [r for r in ranges if r is not None]
    if not present:
        return None
    return min(r[0] for r in present), max(r[1] for r in present)


def write_batch(
    batch: DataFrame, batch_id: int, *, topic: str, s: Settings, epoch: str, appends: gold.AppendLog
) -> None:
    """One micro-batch of one topic: silver, quarantine, late events, the minute table, fraud alerts."""
    spark = batch.sparkSession
    payments = topic == "payments"
    writer = f"{APP}-{topic}-{epoch}"
    rows = gold.with_window(batch).persist(StorageLevel.MEMORY_AND_DISK)
    known: DataFrame | None = None
    clock = _Clock()
    try:
        f = facts(rows, s, payments)  # runs the streaming plan: validation, dedup, fraud state
        clock.lap("plan")
        if f.rows == 0:
            record_batch(f"{APP}_{topic}", batch_id, rows_out=0)
            return
        new = rows.where(F.col("_error").isNull())
        if payments:
            new = new.where(F.col("_verdict") == "new")
        verdicts = rows.where(changed()) if payments and f.changes else None
        duplicates = 0
        if f.checks and f.check_us is not None:
            # Copies older than the dedup horizon: the state cannot tell, their silver partition can.
            known = already_in_silver(spark, SILVER[topic].path(s.lake_dir), new, f.check_us).select("event_id")
            known = known.persist()
            duplicates = known.count()
            if duplicates:
                new = new.join(F.broadcast(known), "event_id", "left_anti")
                if verdicts is not None:
                    verdicts = verdicts.join(F.broadcast(known), "event_id", "left_anti")
            clock.lap("silver_lookup")
        table = SILVER[topic]
        if f.new > duplicates:
            appends.append(new.select(*table.column_names), table.path(s.lake_dir), f"{writer}-silver", batch_id)
            clock.lap("silver")
        if f.invalid:
            appends.append(silver.to_quarantine(rows), QUARANTINE.path(s.lake_dir), f"{writer}-quarantine", batch_id)
            clock.lap("quarantine")
        late = gold.late_condition(F.col("_wm"))
        if f.late:
            late_events = gold.late_rows(new.where(late), f"silver.{topic}", batch_id)
            appends.append(late_events, LATE_EVENTS.path(s.lake_dir), f"{writer}-late", batch_id)
            clock.lap("late")
        mt = gold.MINUTE_TABLES[topic]
        partials = mt.partials(new.where(~late)) if f.ontime_window_us is not None else None
        deltas = gold.flagged_deltas(verdicts) if verdicts is not None and f.flag_window_us is not None else None
        window_us = _span(f.ontime_window_us, f.flag_window_us if deltas is not None else None)
        upserted = 0
        if window_us is not None:
            source = partials
            if payments:
                source = gold.merchant_source(partials if partials is not None else _no_partials(spark), deltas)
            assert source is not None
            path = mt.spec.path(s.lake_dir)
            upserted = gold.merge_minutes(spark, path, mt, source, window_us, f"{writer}-minutes", batch_id)
            clock.lap("minutes")
        if verdicts is not None and f.change_us is not None:
            path = FRAUD_ALERTS.path(s.lake_dir)
            gold.merge_alerts(spark, path, verdicts, f.change_us)
            clock.lap("alerts")
        record_batch(
            f"{APP}_{topic}",
            batch_id,
            rows_out=f.new - duplicates + f.invalid,
            silver_rows=f.new - duplicates,
            quarantined=f.invalid,
            late_rows=f.late,
            late_copies=duplicates,
            gold_rows=upserted,
            alert_changes=f.changes,
            future_event_times=f.future,
            watermark_ms=f.watermark_ms,
            sink_ms=clock.laps,
        )
        if f.event_ages is not None:  # everything committed: event -> commit
            record_latency(f"{APP}_{topic}", batch_id, "event_time", f.event_ages, f.ages_at)
    finally:
        if known is not None:
            known.unpersist()
        rows.unpersist()


class _Clock:
    """Milliseconds per step of a micro-batch's sink, reported with its progress (where the time went)."""

    def __init__(self) -> None:
        self.laps: dict[str, int] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round((now - self._t) * 1000)
        self._t = now


def _no_partials(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [], "merchant_id STRING, window_start TIMESTAMP, tx_count BIGINT, amount_sum DOUBLE, amount_max DOUBLE"
    )


# -- the queries ---------------------------------------------------------------------------
def start(topic: str, spark: SparkSession, s: Settings, available_now: bool) -> StreamingQuery:
    """Start the topic's refine query; its tables exist (``prepare_tables``, before any query starts)."""
    source = (
        spark.readStream.format("delta")
        .option("maxFilesPerTrigger", s.max_files_per_trigger)
        # Bronze is append-only; OPTIMIZE commits carry no data change and are skipped anyway.
        .option("skipChangeCommits", "true")
        .load(BRONZE[topic].path(s.lake_dir))
    )
    name = f"{APP}_{topic}"
    sink = partial(write_batch, topic=topic, s=s, epoch=checkpoint_epoch(s, APP, topic), appends=gold.AppendLog())
    writer = (
        plan(source, topic, s)
        .writeStream.queryName(name)
        .outputMode("append")
        .option("checkpointLocation", checkpoint(s, APP, topic))
        .foreachBatch(retrying(sink, name))
    )
    return with_trigger(writer, s, available_now).start()


STARTERS = {t.name: partial(start, t.name) for t in TOPICS}


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(APP, STARTERS, argv)


if __name__ == "__main__":
    sys.exit(main())
