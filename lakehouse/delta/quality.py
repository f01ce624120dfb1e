"""Running the data-quality checks (``lakehouse.checks``) over the Delta tables, with Great Expectations.

``run_checks(spark, s, assets)`` reads the Delta tables under ``s.lake_dir`` and runs the checks,
returning one ``CheckOutcome`` per check with JSON-serialisable metadata (counts, the expectations
that failed and failing examples for a UI).

Great Expectations runs in an ephemeral context with one Spark data source, one dataframe
asset per table and a whole-dataframe batch definition. To keep the number of Spark jobs
low (a few per expectation), each table is validated once with ``BASIC`` results and no
examples; only the expectations that failed are validated again in ``SUMMARY`` form, with up
to ``EXAMPLES`` failing values and the identifying columns of their rows (the keys, plus the
Kafka coordinates ``_source_partition``/``_source_offset`` for silver). Each Spark job reads the
table's latest snapshot (tables only grow between the few jobs of one validation); the
reconciliation pins its snapshots by version instead, as its correctness depends on their order.
Nothing is collected to the driver but aggregates and at most ``EXAMPLES`` rows per expectation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import great_expectations as gx
from delta.tables import DeltaTable
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse.checks import (
    SEVERITY,
    CheckOutcome,
    Expect,
    checked_tables,
    expectations,
    fmt_num,
    freshness_column,
    freshness_max_age,
)
from lakehouse.settings import Settings
from lakehouse.tables import BRONZE, QUARANTINE, SILVER, TableSpec

#: failing examples kept per expectation (and in total per check)
EXAMPLES = 10
#: before reporting bronze records as lost, wait this long and look them up again in fresh snapshots
RECHECK_DELAY_S = 1.0

_AGE = "_age_seconds"  # the derived column the freshness expectation looks at


# -- running -------------------------------------------------------------------------------
def run_checks(spark: SparkSession, s: Settings, assets: Iterable[str] | None = None) -> list[CheckOutcome]:
    """Run the checks of ``assets`` (default: all) against the Delta tables under ``s.lake_dir``.

    A missing table gives failed outcomes that say so; an unknown asset name is a ValueError.
    """
    tables = checked_tables()
    selected = list(tables) if assets is None else list(dict.fromkeys(assets))
    unknown = [a for a in selected if a not in tables]
    if unknown:
        raise ValueError(f"unknown asset(s) {', '.join(unknown)}; known: {', '.join(tables)}")
    runner = _GxRunner(spark)
    max_age = freshness_max_age(s)
    out: list[CheckOutcome] = []
    for asset in selected:
        table = tables[asset]
        out.extend(runner.validate(asset, table, table.path(s.lake_dir), max_age))
        if table.layer == "silver":
            out.append(_reconcile(spark, s, table.name))
    return out


def _is_delta(spark: SparkSession, path: str) -> bool:
    return bool(DeltaTable.isDeltaTable(spark, path))


def _latest_version(spark: SparkSession, path: str) -> int:
    row = DeltaTable.forPath(spark, path).history(1).select("version").first()
    assert row is not None
    return int(row[0])


def _read(spark: SparkSession, path: str, version: int) -> DataFrame:
    return spark.read.format("delta").option("versionAsOf", version).load(path)


def _missing(asset: str, names: Iterable[str], what: str) -> list[CheckOutcome]:
    return [
        CheckOutcome(
            asset,
            n,
            False,
            SEVERITY[n][0],
            {"error": what, "failed_expectations": [], "unexpected_count": 0, "failing_examples": []},
        )
        for n in names
    ]


class _GxRunner:
    """One ephemeral Great Expectations context, with a Spark data source, for one ``run_checks`` call."""

    def __init__(self, spark: SparkSession) -> None:
        self._spark = spark
        self._source: Any = None

    def _datasource(self) -> Any:
        if self._source is None:
            config = DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False),
            )
            context = gx.get_context(mode="ephemeral", project_config=config)
            self._source = context.data_sources.add_spark(name="lakehouse")
        return self._source

    def validate(self, asset: str, table: TableSpec, path: str, max_age: timedelta) -> list[CheckOutcome]:
        checks = expectations(table)
        if not _is_delta(self._spark, path):
            return _missing(asset, checks, f"table {table.full_name} does not exist (no Delta table at {path})")
        # The latest snapshot at each Spark job: no time travel needed, as tables only grow between these jobs.
        ts = freshness_column(table)
        now_s = time.time()
        df = (
            self._spark.read.format("delta")
            .load(path)
            .withColumn(_AGE, F.lit(now_s) - F.unix_micros(F.col(ts)).cast("double") / 1e6)
        )
        rules = [
            (name, r if r.kind != "max_age" else Expect("max_age", (_AGE,), None, max_age.total_seconds(), why=r.why))
            for name, rs in checks.items()
            for r in rs
        ]
        index_cols = list(table.keys)
        if table.layer == "silver":
            index_cols += ["_source_partition", "_source_offset"]

        source = self._datasource()
        batch_def = source.add_dataframe_asset(name=asset).add_batch_definition_whole_dataframe(f"{asset} whole")
        batch = batch_def.get_batch(batch_parameters={"dataframe": df})
        # Pass 1: verdicts and counts for everything, no examples (partial_unexpected_count 0 costs no job).
        first = self._run(batch, asset, rules, {"result_format": "BASIC", "partial_unexpected_count": 0})
        # Pass 2: the failed column-map expectations again, with failing values and their rows' identifiers.
        failed = [i for i, r in enumerate(first) if not r.success and rules[i][1].kind != "max_age"]
        if failed:
            detail_format = {
                "result_format": "SUMMARY",
                "partial_unexpected_count": EXAMPLES,
                "unexpected_index_column_names": index_cols,
            }
            again = self._run(batch, f"{asset} failed", [rules[i] for i in failed], detail_format)
            for i, r in zip(failed, again, strict=True):
                first[i] = r

        out = []
        counted = [r.result["element_count"] for r in first if "element_count" in (r.result or {})]
        base = {"table": table.full_name, "path": path, "rows": counted[0] if counted else None}
        for name in checks:
            idx = [i for i, (n, _) in enumerate(rules) if n == name]
            results = [_result_dict(rules[i][1], first[i], ts) for i in idx]
            passed = all(r["success"] for r in results)
            md: dict[str, Any] = {**base, **_summarise(results)}
            if name == "freshness":
                md.update(_freshness_metadata(results[0], ts, now_s, max_age))
                passed = passed and md.get("newest") is not None
            out.append(CheckOutcome(asset, name, passed, SEVERITY[name][0], _jsonable(md)))
        return out

    def _run(self, batch: Any, suite_name: str, rules: list[tuple[str, Expect]], fmt: dict[str, Any]) -> list[Any]:
        expectations = [_gx_expectation(r, n, i) for i, (n, r) in enumerate(rules)]
        result = batch.validate(gx.ExpectationSuite(name=suite_name, expectations=expectations), result_format=fmt)
        by_index: dict[int, Any] = {}
        for r in result.results:
            by_index[int(r.expectation_config.meta["index"])] = r
        return [by_index[i] for i in range(len(rules))]


def _gx_expectation(rule: Expect, check: str, index: int) -> Any:
    gxe: Any = gx.expectations  # the Expect* classes are not re-exported for mypy
    meta = {"check": check, "index": index, "why": rule.why}
    col = rule.columns[0]
    if rule.kind == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(column=col, meta=meta)
    if rule.kind == "unique":
        return gxe.ExpectColumnValuesToBeUnique(column=col, meta=meta)
    if rule.kind == "compound_unique":
        return gxe.ExpectCompoundColumnsToBeUnique(column_list=list(rule.columns), meta=meta)
    if rule.kind == "in_set":
        return gxe.ExpectColumnValuesToBeInSet(column=col, value_set=list(rule.value_set), meta=meta)
    if rule.kind == "max_age":
        return gxe.ExpectColumnMinToBeBetween(column=col, max_value=rule.max_value, meta=meta)
    return gxe.ExpectColumnValuesToBeBetween(column=col, min_value=rule.min_value, max_value=rule.max_value, meta=meta)


def _result_dict(rule: Expect, r: Any, ts: str) -> dict[str, Any]:
    """One expectation's result, reduced to what a UI shows."""
    cfg = r.expectation_config
    result: dict[str, Any] = dict(r.result or {})
    kwargs = {k: v for k, v in dict(cfg.kwargs).items() if k not in ("batch_id", "result_format")}
    out: dict[str, Any] = {
        "expectation": cfg.type,
        "kwargs": kwargs,
        "rule": rule.describe() if rule.kind != "max_age" else f"newest {ts} at most {fmt_num(rule.max_value)} s old",
        "why": rule.why,
        "success": bool(r.success),
    }
    for key in ("element_count", "unexpected_count", "unexpected_percent", "missing_count", "observed_value"):
        if key in result:
            out[key] = result[key]
    if not r.success and "partial_unexpected_list" in result:
        out["partial_unexpected_list"] = list(result.get("partial_unexpected_list") or [])[:EXAMPLES]
        rows = list(result.get("partial_unexpected_index_list") or [])[:EXAMPLES]
        if rows:
            out["partial_unexpected_index_list"] = rows
        info = r.exception_info or {}
        if info.get("raised_exception"):
            out["exception"] = info.get("exception_message")
    return out


def _summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [r for r in results if not r["success"]]
    examples: list[dict[str, Any]] = []
    for r in failed:
        rows = r.get("partial_unexpected_index_list") or []
        values = r.get("partial_unexpected_list") or []
        for i in range(max(len(rows), len(values))):
            ex: dict[str, Any] = {"rule": r["rule"]}
            if i < len(values):
                ex["value"] = values[i]
            if i < len(rows):
                ex["row"] = rows[i]
            examples.append(ex)
    return {
        "expectations": results,
        "failed_expectations": [f"{r['expectation']}: {r['rule']}" for r in failed],
        "unexpected_count": sum(int(r.get("unexpected_count") or 0) for r in failed),
        "failing_examples": examples[:EXAMPLES],
    }


def _freshness_metadata(r: dict[str, Any], ts: str, now_s: float, max_age: timedelta) -> dict[str, Any]:
    age = r.get("observed_value")
    md: dict[str, Any] = {"column": ts, "max_age_seconds": max_age.total_seconds(), "checked_at": _iso(now_s)}
    if age is None:
        md.update(newest=None, age_seconds=None, error=f"no {ts} to measure: the table is empty or {ts} is all NULL")
        return md
    age_s = float(age)
    md.update(newest=_iso(now_s - age_s), age_seconds=round(age_s, 3))
    if not r["success"]:
        md["failing_examples"] = [{"rule": r["rule"], "value": md["newest"], "age_seconds": md["age_seconds"]}]
    return md


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat()


def _jsonable(value: Any) -> Any:
    """Results as plain JSON types: datetimes as ISO text, Decimals and numpy scalars as numbers, tuples as lists."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if hasattr(value, "asDict"):  # pyspark Row
        return _jsonable(value.asDict(recursive=True))
    if hasattr(value, "item"):  # numpy scalar
        return _jsonable(value.item())
    return str(value)


# -- reconciliation -------------------------------------------------------------------------
_OK = ("first_copy", "quarantined", "duplicate")
_PROCESSED = ("first_copy", "quarantined", "in_silver_and_quarantine")  # silver recorded handling these rows
_EXTRA = ("silver_without_bronze", "quarantine_without_bronze", "in_silver_and_quarantine")


def _reconcile(spark: SparkSession, s: Settings, topic: str) -> CheckOutcome:
    """bronze = silver first copies + quarantined + duplicates, for the bronze records silver has processed.

    Which bronze records silver has processed, while the streams write: silver handles bronze
    in commit order, and all rows of a bronze commit share one ``ingested_at`` (the bronze
    micro-batch's time), increasing from commit to commit. So every bronze row with an
    ``ingested_at`` strictly below the newest one silver has recorded handling (a first copy
    in silver or a quarantined record of the topic) has been through silver; rows at or
    after that cutoff are pending and not counted (strictly below: ``maxFilesPerTrigger`` may
    split a bronze commit between two silver micro-batches).

    Snapshots are pinned in this order: quarantine, then silver, then bronze. Silver commits a
    micro-batch's MERGE before its quarantine append, so a quarantined record implies its
    batch's silver rows, and bronze, read last, holds every record silver or quarantine mention.
    The one gap: silver's newest rows can belong to a micro-batch whose quarantine append had
    not landed when quarantine was read. Records that look lost are therefore looked up once
    more, after ``RECHECK_DELAY_S``, in fresh snapshots of silver and quarantine (same bronze
    snapshot, same cutoff); only records still unaccounted for are reported.

    Each bronze row below the cutoff is, by its Kafka coordinates: ``quarantined`` (in
    silver.quarantine for the topic), ``first_copy`` (a silver row's ``_source_partition`` /
    ``_source_offset``), ``duplicate`` (neither, but its ``event_id`` is in silver: a later
    copy of a known event), else ``lost``. ``extra`` counts what bronze cannot explain:
    coordinates in silver or quarantine that bronze lacks, a record both in silver and in
    quarantine, and coordinates recorded more than once.

    Limits: it relies on ``ingested_at`` growing with bronze commits (one clock, one bronze
    writer per topic); records at or after the cutoff are checked by a later run; it scans
    bronze, silver and the quarantine fully (two shuffles: by coordinates, then by event_id),
    so on a very large lake it should be restricted to recent ``ingest_date`` partitions.
    """
    asset = SILVER[topic].relative_path
    severity = SEVERITY["reconciliation"][0]
    paths = {"bronze": BRONZE[topic].path(s.lake_dir), "silver": SILVER[topic].path(s.lake_dir)}
    paths["quarantine"] = QUARANTINE.path(s.lake_dir)
    missing = [f"{k} ({p})" for k, p in paths.items() if not _is_delta(spark, p)]
    if missing:
        error = {"error": f"missing Delta table(s): {', '.join(missing)}", "failing_examples": []}
        return CheckOutcome(asset, "reconciliation", False, severity, error)

    versions = {k: _latest_version(spark, paths[k]) for k in ("quarantine", "silver", "bronze")}  # this order
    bronze = _read(spark, paths["bronze"], versions["bronze"])
    facts = _facts(
        bronze,
        _read(spark, paths["silver"], versions["silver"]),
        _read(spark, paths["quarantine"], versions["quarantine"]),
        topic,
    )
    cutoff_us, counts = _tally(facts, None)
    md: dict[str, Any] = {
        "topic": topic,
        "versions": versions,
        "method": "bronze rows with ingested_at < cutoff, the newest ingested_at silver recorded handling",
    }
    lost_facts = facts
    if counts["lost"]:
        _settle()
        fresh = {k: _latest_version(spark, paths[k]) for k in ("quarantine", "silver")}
        md["recheck_versions"] = fresh
        lost_facts = _facts(
            bronze,
            _read(spark, paths["silver"], fresh["silver"]),
            _read(spark, paths["quarantine"], fresh["quarantine"]),
            topic,
        )
        _, again = _tally(lost_facts, cutoff_us)
        # Only the rows below the cutoff: bronze was read after the first snapshots, not after these.
        counts.update({k: again[k] for k in ("lost", *_OK, "in_silver_and_quarantine")})

    extra = sum(counts[k] for k in _EXTRA) + counts["repeated_coordinates"]
    examples: list[dict[str, Any]] = []
    if counts["lost"]:
        examples += _examples(lost_facts.where(F.col("status") == "lost"), topic)
    if extra:
        examples += _examples(facts.where(F.col("status").isin(*_EXTRA) | (F.col("_repeats") > 0)), topic)
    bronze_rows = sum(counts[k] for k in ("lost", "in_silver_and_quarantine", *_OK))
    md.update(
        cutoff=None if cutoff_us is None else _iso(cutoff_us / 1e6),
        bronze_rows=bronze_rows,
        silver_first_copies=counts["first_copy"],
        quarantined=counts["quarantined"],
        duplicates=counts["duplicate"],
        lost=counts["lost"],
        extra=extra,
        extra_by_kind={k: counts[k] for k in (*_EXTRA, "repeated_coordinates")},
        bronze_rows_pending=counts["pending"],
        equation=(
            f"bronze {bronze_rows} = silver first copies {counts['first_copy']} + quarantined "
            f"{counts['quarantined']} + duplicates {counts['duplicate']} + lost {counts['lost']}"
        ),
        rechecked="recheck_versions" in md,
        failing_examples=examples[:EXAMPLES],
        unexpected_count=counts["lost"] + extra,
    )
    if cutoff_us is None:
        md["note"] = "silver has recorded no record of this topic yet: every bronze record is pending"
    passed = counts["lost"] == 0 and extra == 0
    return CheckOutcome(asset, "reconciliation", passed, severity, _jsonable(md))


def _settle() -> None:
    """Give a silver micro-batch caught between its MERGE and its quarantine append the time to finish."""
    time.sleep(RECHECK_DELAY_S)


def _facts(bronze: DataFrame, silver: DataFrame, quarantine: DataFrame, topic: str) -> DataFrame:
    """One row per Kafka coordinate seen in bronze, silver or the topic's quarantine, with its status.

    Two shuffles, whatever the table sizes: a group-by on the coordinates over the union of the
    three tables, then a window on event_id that tells whether silver holds the event.
    Columns: partition, offset, _ingested_us (NULL when bronze lacks the coordinates), event_id,
    status, _repeats (times the coordinates were recorded beyond once).
    """

    def tagged(df: DataFrame, p: str, o: str, ingested: Column, event_id: Column, tag: str) -> DataFrame:
        flags = [F.lit(1 if t == tag else 0).alias(t) for t in ("_b", "_q", "_s")]
        return df.select(
            F.col(p).cast("int").alias("partition"),
            F.col(o).cast("bigint").alias("offset"),
            ingested.alias("_ingested_us"),
            event_id.alias("event_id"),
            *flags,
        )

    none_ts, none_id = F.lit(None).cast("bigint"), F.lit(None).cast("string")
    rows = (
        tagged(
            bronze,
            "partition",
            "offset",
            F.unix_micros("ingested_at"),
            F.get_json_object("value", "$.event_id"),
            "_b",
        )
        .unionByName(tagged(quarantine.where(F.col("topic") == topic), "partition", "offset", none_ts, none_id, "_q"))
        .unionByName(tagged(silver, "_source_partition", "_source_offset", none_ts, none_id, "_s"))
    )
    coords = rows.groupBy("partition", "offset").agg(
        F.max("_ingested_us").alias("_ingested_us"),
        F.max("event_id").alias("event_id"),
        F.sum("_b").alias("_n_b"),
        F.sum("_q").alias("_n_q"),
        F.sum("_s").alias("_n_s"),
    )
    # Is the event in silver? Silver's event_ids ride along as marker rows in the same window.
    ids = silver.where(F.col("event_id").isNotNull()).select("event_id")
    markers = ids.select(
        none_id.cast("int").alias("partition"),
        F.lit(None).cast("bigint").alias("offset"),
        none_ts.alias("_ingested_us"),
        "event_id",
        *[F.lit(0).cast("bigint").alias(c) for c in ("_n_b", "_n_q", "_n_s")],
        F.lit(1).alias("_marker"),
    )
    with_known = (
        coords.withColumn("_marker", F.lit(0))
        .unionByName(markers)
        .withColumn("_known", F.max("_marker").over(Window.partitionBy("event_id")))
        .where(F.col("_marker") == 0)
    )
    in_b, in_q, in_s = F.col("_n_b") > 0, F.col("_n_q") > 0, F.col("_n_s") > 0
    status = (
        F.when(~in_b & in_s, "silver_without_bronze")
        .when(~in_b, "quarantine_without_bronze")
        .when(in_q & in_s, "in_silver_and_quarantine")
        .when(in_q, "quarantined")
        .when(in_s, "first_copy")
        .when(F.col("event_id").isNotNull() & (F.col("_known") == 1), "duplicate")
        .otherwise("lost")
    )
    repeats = sum((F.greatest(F.col(c), F.lit(1)) - 1 for c in ("_n_b", "_n_q", "_n_s")), F.lit(0).cast("bigint"))
    return with_known.withColumns({"status": status, "_repeats": repeats})


def _tally(facts: DataFrame, cutoff_us: int | None) -> tuple[int | None, dict[str, int]]:
    """The cutoff (newest ingested_at silver recorded handling; given, or computed) and the counts below it.

    Facts are first reduced to one row per (ingested_at, status) - one per bronze micro-batch
    and status, small - and cached, so the cutoff and the counts cost one pass over the tables.
    """
    per_batch = (
        facts.groupBy("_ingested_us", "status")
        .agg(F.count(F.lit(1)).alias("n"), F.sum("_repeats").alias("repeats"))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        if cutoff_us is None:
            row = per_batch.where(F.col("status").isin(*_PROCESSED)).agg(F.max("_ingested_us")).first()
            cutoff_us = None if row is None or row[0] is None else int(row[0])
        ingested = F.col("_ingested_us")
        window = ingested.isNotNull() & (ingested < F.lit(cutoff_us)) if cutoff_us is not None else F.lit(False)
        kind = F.when(ingested.isNull(), F.col("status")).when(window, F.col("status")).otherwise(F.lit("pending"))
        rows = per_batch.groupBy(kind.alias("kind")).agg(F.sum("n"), F.sum("repeats")).collect()
    finally:
        per_batch.unpersist()
    counts = dict.fromkeys(("pending", "lost", *_OK, *_EXTRA), 0)
    counts["repeated_coordinates"] = 0
    for kind_name, n, repeats in rows:
        counts[kind_name] = counts.get(kind_name, 0) + int(n or 0)
        counts["repeated_coordinates"] += int(repeats or 0)
    return cutoff_us, counts


def _examples(rows: DataFrame, topic: str) -> list[dict[str, Any]]:
    """Up to EXAMPLES rows, by Kafka coordinates: status, topic, partition, offset, ingested_at, event_id."""
    picked = rows.select(
        "status",
        F.lit(topic).alias("topic"),
        "partition",
        "offset",
        F.date_format(F.timestamp_micros("_ingested_us"), "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX").alias("ingested_at"),
        "event_id",
    )
    return [r.asDict() for r in picked.orderBy("partition", "offset").limit(EXAMPLES).collect()]
