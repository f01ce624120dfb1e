"""replay: rebuild silver and gold from bronze for a range of event dates.

    spark-submit spark_apps/replay.py --from 2026-11-20 --to 2026-11-26 [--layers silver,gold]
    (Dagster: job ``replay``; CLI: ``lakehouse replay --from ... --to ...``)

For every event date D in the range (inclusive):

- **silver.<topic>**: bronze is re-validated with the same compiled schema, masked and
  deduplicated (the copy with the lowest Kafka coordinates wins), and the rows of dates D
  replace silver's in ONE commit (``replaceWhere``): readers see the old rows or the new,
  never a gap. Quarantine is left alone: it records bad input, not a date's results.
- **gold minute tables**: recomputed from the rebuilt silver rows of the range in ONE MERGE
  that updates, inserts, and deletes rows of the range that no longer have any event.
  Nothing is "late" in a replay, so every event counts; the range's ``late_events`` rows
  are deleted because their events are now counted.
- **gold.fraud_alerts**: the rules (``spark_apps/fraud.py``) re-judge every payment of the
  range against silver's payments since ``LAKEHOUSE_FRAUD_STATE_RETENTION_DAYS`` before it
  (alerts upserted or retracted), and merchant ``flagged_count`` is recounted for the range.

Bronze is only read: every table written is checked by ``assert_not_bronze`` first (and
bronze is ``delta.appendOnly``). The replay holds the refine stream's checkpoint lock (that
stream writes silver and gold), so it refuses to run while that stream runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import date
from functools import partial

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.contracts import TOPICS, schema
from lakehouse.delta.guards import assert_not_bronze
from lakehouse.delta.log_check import DeltaLogDamagedError
from lakehouse.delta.tables import ensure_table
from lakehouse.delta.validator import compile_schema
from lakehouse.settings import Settings, get_settings
from lakehouse.tables import BRONZE, FRAUD_ALERTS, LATE_EVENTS, MERCHANT_MINUTE, SILVER, TableSpec
from spark_apps import fraud, gold, silver
from spark_apps._pipes import Reporter, reporter
from spark_apps._runtime import (
    ALREADY_RUNNING,
    AlreadyRunningError,
    check_tables,
    exclusive,
    exit_on_damage,
    exit_on_disk_full,
    merge_metric,
)

APP = "replay"
ON_FULL_DISK = (
    "a write of the replay failed. Each table's rebuild is one commit: the tables the replay had rebuilt "
    "keep their new rows, the one it was writing is as it was, and bronze is untouched. Free space or grow "
    "the filesystem, then run the same replay again"
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="spark-submit spark_apps/replay.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="start", type=date.fromisoformat, required=True, help="first event date (UTC)")
    ap.add_argument("--to", dest="end", type=date.fromisoformat, required=True, help="last event date, inclusive")
    ap.add_argument("--layers", default="silver,gold", help="silver, gold or both (default: silver,gold)")
    ap.add_argument("--master", help="Spark master URL (default: LAKEHOUSE_SPARK_MASTER)")
    args = ap.parse_args(argv)
    if args.end < args.start:
        ap.error(f"--to {args.end} is before --from {args.start}")
    layers = {x.strip() for x in args.layers.split(",") if x.strip()}
    if not layers or layers - {"silver", "gold"}:
        ap.error(f"--layers: choose silver, gold or both (got {args.layers!r})")
    args.layers = layers
    return args


def in_range(column: str, start: date, end: date) -> str:
    return f"{column} >= DATE'{start.isoformat()}' AND {column} < DATE'{end.isoformat()}' + INTERVAL 1 DAY"


def rebuilt_silver(spark: SparkSession, s: Settings, topic: str, start: date, end: date) -> DataFrame:
    """Silver rows of the range, recomputed from every bronze record of the topic."""
    bronze = spark.read.format("delta").load(BRONZE[topic].path(s.lake_dir))
    parsed = silver.parse(bronze, compile_schema(schema(topic)))
    rows = silver.to_silver(parsed, SILVER[topic], s.secret_file("pii_hmac_key"))
    return silver.first_copies(rows.where(in_range("event_date", start, end)))


def replace_silver(spark: SparkSession, s: Settings, start: date, end: date, r: Reporter, *, topic: str) -> int:
    table = SILVER[topic]
    assert_not_bronze(table, operation="replay into")
    rows = rebuilt_silver(spark, s, topic, start, end).persist()
    try:
        count = rows.count()
        (
            rows.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", in_range("event_date", start, end))
            .save(table.path(s.lake_dir))
        )
    finally:
        rows.unpersist()
    r.message({"asset": f"silver/{topic}", "operation": "replay", "rows": count, "from": str(start), "to": str(end)})
    return count


def replace_minutes(spark: SparkSession, s: Settings, start: date, end: date, r: Reporter, *, stream: str) -> int:
    from delta.tables import DeltaTable

    mt = gold.MINUTE_TABLES[stream]
    spec: TableSpec = mt.spec
    assert_not_bronze(spec, operation="replay into")
    events = spark.read.format("delta").load(SILVER[stream].path(s.lake_dir)).where(in_range("event_date", start, end))
    partials = mt.partials(gold.with_window(events)).withColumn("updated_at", F.current_timestamp())
    if mt is gold.MERCHANT:
        partials = partials.withColumn("flagged_delta", F.lit(0).cast("bigint"))  # recounted by replay_fraud
    values: dict[str, str | Column] = {**mt.on_insert, "updated_at": "s.updated_at"}
    replace: dict[str, str | Column] = {k: v for k, v in values.items() if k not in spec.keys}
    if "flagged_count" in replace:
        replace["flagged_count"] = "t.flagged_count"  # the fraud re-evaluation below sets it
    metrics = (
        DeltaTable.forPath(spark, spec.path(s.lake_dir))
        .alias("t")
        .merge(partials.alias("s"), spec.merge_condition())
        .whenMatchedUpdate(set=replace)
        .whenNotMatchedInsert(values=values)
        .whenNotMatchedBySourceDelete(condition=in_range("CAST(t.window_start AS DATE)", start, end))
        .execute()
    )
    changed = merge_metric(metrics, "num_affected_rows")
    r.message({"asset": f"gold/{spec.name}", "operation": "replay", "rows_changed": changed})
    return changed


def drop_late(spark: SparkSession, s: Settings, start: date, end: date, r: Reporter) -> None:
    from delta.tables import DeltaTable

    assert_not_bronze(LATE_EVENTS, operation="replay into")
    DeltaTable.forPath(spark, LATE_EVENTS.path(s.lake_dir)).delete(in_range("CAST(window_start AS DATE)", start, end))
    r.message({"asset": "gold/late_events", "operation": "replay", "note": "late rows of the range now counted"})


def steps(layers: set[str]) -> list[tuple[str, Callable[[SparkSession, Settings, date, date, Reporter], object]]]:
    """What a replay of LAYERS does, in order: one step per table (gold's in the order they depend on
    each other: the minute tables, late events, then the fraud alerts, which recount merchant flags)."""
    out: list[tuple[str, Callable[[SparkSession, Settings, date, date, Reporter], object]]] = []
    if "silver" in layers:
        out += [(f"silver.{t.name}", partial(replace_silver, topic=t.name)) for t in TOPICS]
    if "gold" in layers:
        out += [
            (f"gold.{gold.MINUTE_TABLES[m].spec.name}", partial(replace_minutes, stream=m)) for m in gold.MINUTE_TABLES
        ]
        out += [(f"gold.{LATE_EVENTS.name}", drop_late), (f"gold.{FRAUD_ALERTS.name}", replay_fraud)]
    return out


def replay_fraud(spark: SparkSession, s: Settings, start: date, end: date, r: Reporter) -> None:
    """Re-judge every payment of the range; upsert or retract alerts; recount the range's flagged_count."""
    from datetime import timedelta

    from delta.tables import DeltaTable

    assert_not_bronze(FRAUD_ALERTS, operation="replay into")
    since = start - timedelta(days=s.fraud_state_retention_days)
    context = (
        spark.read.format("delta").load(SILVER["payments"].path(s.lake_dir)).where(in_range("event_date", since, end))
    )
    judged = fraud.evaluate(context).where(in_range("event_date", start, end)).persist()
    try:
        n = judged.count()
        gold.upsert_alerts(
            spark, FRAUD_ALERTS.path(s.lake_dir), judged, in_range("CAST(t.event_time AS DATE)", start, end)
        )
        counts = (
            gold.with_window(judged)
            .groupBy("merchant_id", "window_start")
            .agg(F.count_if(F.size("rules") > 0).cast("bigint").alias("flagged_count"))
        )
        assert_not_bronze(MERCHANT_MINUTE, operation="replay into")
        (
            DeltaTable.forPath(spark, MERCHANT_MINUTE.path(s.lake_dir))
            .alias("t")
            .merge(
                counts.alias("s"),
                f"{in_range('CAST(t.window_start AS DATE)', start, end)} AND " + MERCHANT_MINUTE.merge_condition(),
            )
            .whenMatchedUpdate(
                condition="NOT (t.flagged_count <=> s.flagged_count)",
                set={"flagged_count": "s.flagged_count", "updated_at": "current_timestamp()"},
            )
            .execute()
        )
    finally:
        judged.unpersist()
    r.message({"asset": "gold/fraud_alerts", "operation": "replay", "payments_judged": n})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    s = get_settings()
    with reporter() as r:
        try:
            with exclusive(s, ["refine"]):
                from lakehouse.delta.session import build_spark_session

                check_tables(s, "replay")

                spark = build_spark_session("lakehouse-replay", s, master=args.master)
                try:
                    for spec in (*SILVER.values(), *gold.GOLD_TABLES):
                        ensure_table(spark, spec, s.lake_dir)
                    todo = steps(args.layers)
                    for i, (what, step) in enumerate(todo, 1):
                        r.step(APP, i, len(todo), f"{what} for {args.start}..{args.end}")
                        step(spark, s, args.start, args.end, r)
                    r.log(f"replay: {', '.join(w for w, _ in todo)} rebuilt for {args.start}..{args.end}")
                finally:
                    spark.stop()
        except AlreadyRunningError as e:
            print(f"error: {e}. Stop the refine stream before a replay.", file=sys.stderr, flush=True)
            return ALREADY_RUNNING
        except DeltaLogDamagedError as e:
            return exit_on_damage(e) or 1
        except Exception as e:
            code = exit_on_disk_full(s, e, ON_FULL_DISK)
            if code is None:
                raise
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
