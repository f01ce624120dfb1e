"""lakehouse.delta.maintenance and spark_apps.maintenance on tiny Delta tables (the session `spark` fixture)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lakehouse.delta import guards
from lakehouse.delta import maintenance as m
from lakehouse.delta.tables import ensure_table, spark_schema
from lakehouse.settings import Settings
from lakehouse.tables import BRONZE, MERCHANT_MINUTE, Col, TableSpec

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
#: A small table of the gold layer for tests that need any table to write to.
SCRATCH = TableSpec(
    layer="gold",
    name="scratch",
    columns=(Col("event_id", "STRING", nullable=False), Col("event_time", "TIMESTAMP"), Col("amount", "DOUBLE")),
    keys=("event_id",),
    description="test table",
)
FAST = guards.RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05)
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"


@pytest.fixture
def s(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path)


def merchant_rows(start: int, n: int) -> list[tuple[Any, ...]]:
    return [(f"m{i}", T0 + timedelta(minutes=i), 1, 1.0, 1.0, 1.0, 0, T0) for i in range(start, start + n)]


def append(spark: SparkSession, spec: TableSpec, lake: Path, rows: list[tuple[Any, ...]], files: int = 1) -> None:
    """One commit of ``files`` small files."""
    rdd = spark.sparkContext.parallelize(rows, files)  # `files` slices, none empty when rows >= files
    spark.createDataFrame(rdd, spark_schema(spec)).write.format("delta").mode("append").save(spec.path(lake))


def small_files_table(spark: SparkSession, lake: Path, files: int) -> str:
    """gold.merchant_minute holding ``files`` small files, 2 rows each (m0, m1, ...)."""
    ensure_table(spark, MERCHANT_MINUTE, lake)
    append(spark, MERCHANT_MINUTE, lake, merchant_rows(0, 2 * files), files=files)
    return MERCHANT_MINUTE.path(lake)


def parquet_files(path: str) -> set[str]:
    return {str(p.relative_to(path)) for p in Path(path).rglob("*.parquet") if "_delta_log" not in p.parts}


# --------------------------------------------------------------------------- retrying conflicts (no Spark)


class ConcurrentAppendException(Exception):  # named like delta.exceptions.ConcurrentAppendException
    pass


class FakeJavaClass:
    def __init__(self, name: str, parent: FakeJavaClass | None = None) -> None:
        self.name, self.parent = name, parent

    def getSimpleName(self) -> str:
        return self.name

    def getSuperclass(self) -> FakeJavaClass | None:
        return self.parent


class FakeThrowable:
    def __init__(self, cls: FakeJavaClass, cause: FakeThrowable | None = None) -> None:
        self.cls, self.cause = cls, cause

    def getClass(self) -> FakeJavaClass:
        return self.cls

    def getCause(self) -> FakeThrowable | None:
        return self.cause


def test_conflict_name_reads_python_classes_java_classes_causes_and_traces() -> None:
    assert guards.conflict_name(ConcurrentAppendException("x")) == "ConcurrentAppendException"
    delta_cls = FakeJavaClass(
        "ConcurrentDeleteReadException",
        FakeJavaClass("DeltaConcurrentModificationException", FakeJavaClass("RuntimeException")),
    )
    wrapped = RuntimeError("py4j")
    setattr(wrapped, "java_exception", FakeThrowable(FakeJavaClass("SparkException"), cause=FakeThrowable(delta_cls)))  # noqa: B010
    assert guards.conflict_name(wrapped) == "ConcurrentDeleteReadException"
    traced = RuntimeError("captured")
    trace = "org.apache.spark.SparkException: boom\nCaused by: io.delta.exceptions.ProtocolChangedException: x"
    setattr(traced, "_stackTrace", trace)  # noqa: B010 (what pyspark's CapturedException carries)
    assert guards.conflict_name(traced) == "ProtocolChangedException"
    outer = RuntimeError("outer")
    outer.__cause__ = ConcurrentAppendException("inner")
    assert guards.conflict_name(outer) == "ConcurrentAppendException"
    assert guards.conflict_name(RuntimeError("ConcurrentAppendException in the text only")) is None
    assert guards.conflict_name(ValueError("x")) is None


def test_retry_backs_off_exponentially_and_records_attempts() -> None:
    calls: list[int] = []
    pauses: list[float] = []
    attempts = guards.Attempts()

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConcurrentAppendException("lost the race")
        return "done"

    policy = guards.RetryPolicy(max_attempts=5, base_delay_s=1.0, max_delay_s=100.0)
    assert guards.retry_on_conflict(flaky, what="t", policy=policy, sleep=pauses.append, attempts=attempts) == "done"
    assert attempts.count == 3
    assert attempts.conflicts == ["ConcurrentAppendException"] * 2
    assert 0.5 <= pauses[0] <= 1.0
    assert 1.0 <= pauses[1] <= 2.0


def test_retry_never_swallows_other_errors_and_is_bounded() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("not a conflict")

    with pytest.raises(ValueError, match="not a conflict"):
        guards.retry_on_conflict(broken, what="t", policy=FAST, sleep=lambda _s: None)
    assert len(calls) == 1

    def always() -> None:
        raise ConcurrentAppendException("again")

    with pytest.raises(guards.ConflictRetriesExhaustedError, match=r"gave up after 4 attempts") as info:
        guards.retry_on_conflict(always, what="OPTIMIZE gold.x", policy=FAST, sleep=lambda _s: None)
    assert isinstance(info.value.__cause__, ConcurrentAppendException)


def test_a_real_delta_conflict_is_recognised_and_retried(spark: SparkSession, tmp_path: Path) -> None:
    """A transaction that read the whole table loses to a concurrent append: Delta's ConcurrentAppendException."""
    ensure_table(spark, SCRATCH, tmp_path)
    path = SCRATCH.path(tmp_path)
    append(spark, SCRATCH, tmp_path, [("e1", T0, 1.0)])
    jvm: Any = spark._jvm  # type: ignore[attr-defined]
    attempts = guards.Attempts()

    def losing_then_winning() -> int:
        log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)  # type: ignore[attr-defined]
        txn = log.startTransaction()
        removes = jvm.java.util.ArrayList()
        for f in jvm.scala.jdk.javaapi.CollectionConverters.asJava(txn.filterFiles()):
            removes.add(f.remove())
        if attempts.count == 1:  # someone else commits first, adding a file this transaction should have read
            append(spark, SCRATCH, tmp_path, [("e2", T0, 2.0)])
        op = getattr(getattr(jvm.org.apache.spark.sql.delta, "DeltaOperations$ManualUpdate$"), "MODULE$")
        return int(txn.commit(jvm.scala.jdk.javaapi.CollectionConverters.asScala(removes).toSeq(), op))

    guards.retry_on_conflict(losing_then_winning, what="t", policy=FAST, attempts=attempts)
    assert attempts.count == 2
    assert attempts.conflicts == ["ConcurrentAppendException"]


# --------------------------------------------------------------------------- OPTIMIZE


def test_optimize_compacts_small_files_and_z_orders_gold_by_its_keys(spark: SparkSession, tmp_path: Path) -> None:
    path = small_files_table(spark, tmp_path, files=5)
    rows_before = sorted(spark.read.format("delta").load(path).collect())

    r = m.optimize(spark, MERCHANT_MINUTE, tmp_path)

    assert (r.table, r.asset, r.operation, r.attempts) == (
        "gold.merchant_minute",
        "gold/merchant_minute",
        "optimize",
        1,
    )
    x = r.metrics
    assert x["files_before"] == 5
    assert x["files_after"] == 1
    assert x["numFilesRemoved"] == 5
    assert x["numFilesAdded"] == 1
    assert x["bytes_before"] == x["numBytesRemoved"]
    assert x["bytes_after"] == x["numBytesAdded"]
    assert x["zorder_by"] == "merchant_id,window_start"
    assert x["zorder_excluded"] == ""
    from delta.tables import DeltaTable

    last = DeltaTable.forPath(spark, path).history(1).first()
    assert last is not None
    assert last["operation"] == "OPTIMIZE"
    assert last["version"] == x["commit_version"]
    assert last["operationParameters"]["zOrderBy"] == '["merchant_id","window_start"]'
    assert sorted(spark.read.format("delta").load(path).collect()) == rows_before
    import json

    json.dumps(r.message())  # the Pipes message is JSON

    again = m.optimize(spark, MERCHANT_MINUTE, tmp_path)  # one file left: Z-order would only rewrite it
    assert again.metrics["zorder_by"] == ""
    assert again.metrics["zorder_skipped"] == "1 file(s): nothing to cluster"
    assert (again.metrics["numFilesAdded"], again.metrics["commit_version"]) == (0, None)


def test_z_order_leaves_out_partition_columns_and_columns_without_stats(spark: SparkSession, tmp_path: Path) -> None:
    spec = TableSpec(
        layer="gold",
        name="zorder_probe",
        columns=(Col("day", "DATE"), Col("k", "STRING"), Col("sketch", "BINARY")),
        keys=("day", "k", "sketch"),
        description="probe",
        partition_by=("day",),
    )
    ensure_table(spark, spec, tmp_path)
    append(spark, spec, tmp_path, [(date(2026, 11, 26), f"k{i}", b"\x00") for i in range(2)], files=2)

    cols, excluded = m.zorder_columns(spark, spec, tmp_path)
    assert cols == ["k"]
    assert set(excluded) == {"day", "sketch"}
    assert "partition column" in excluded["day"]
    assert "BinaryType" in excluded["sketch"]

    r = m.optimize(spark, spec, tmp_path)  # and Delta accepts the choice
    assert r.metrics["zorder_by"] == "k"
    assert "day: partition column" in str(r.metrics["zorder_excluded"])
    assert r.metrics["files_after"] == 1


# --------------------------------------------------------------------------- VACUUM and checkpoint


def test_vacuum_refuses_a_short_retention_unless_forced(spark: SparkSession, tmp_path: Path) -> None:
    path = small_files_table(spark, tmp_path, files=3)
    m.optimize(spark, MERCHANT_MINUTE, tmp_path, zorder=False)
    rows = sorted(spark.read.format("delta").load(path).collect())
    assert len(parquet_files(path)) == 4  # 3 removed by OPTIMIZE + 1 live

    assert m.table_retention_hours(spark, MERCHANT_MINUTE, tmp_path) == 168.0  # the default: 7 days
    with pytest.raises(m.RetentionTooShortError, match=r"gold\.merchant_minute.*at least 168 h"):
        m.vacuum(spark, MERCHANT_MINUTE, tmp_path, retention_hours=0)
    assert len(parquet_files(path)) == 4

    r = m.vacuum(spark, MERCHANT_MINUTE, tmp_path, retention_hours=0, force=True)
    assert r.metrics["forced"] is True
    assert r.metrics["numFilesToDelete"] is not None
    assert r.metrics["files_deleted"] is not None
    assert int(r.metrics["files_deleted"]) >= 3  # the 3 data files (plus their .crc on a local disk)
    assert len(parquet_files(path)) == 1
    assert spark.conf.get(RETENTION_CHECK, None) is None  # restored: it was not set before
    assert sorted(spark.read.format("delta").load(path).collect()) == rows


def test_checkpoint_writes_the_current_version(spark: SparkSession, tmp_path: Path) -> None:
    path = small_files_table(spark, tmp_path, files=2)  # versions 0 (create), 1 (append)
    append(spark, MERCHANT_MINUTE, tmp_path, merchant_rows(4, 1))  # 2

    r = m.checkpoint(spark, MERCHANT_MINUTE, tmp_path)

    assert r.metrics["checkpoint_version"] == 2
    assert (Path(path) / "_delta_log" / f"{2:020d}.checkpoint.parquet").is_file()
    assert r.metrics["checkpoint_files"] == f"{2:020d}.checkpoint.parquet"
    assert int(r.metrics["checkpoint_bytes"] or 0) > 0


# --------------------------------------------------------------------------- bronze is never wiped


def test_guard_refuses_bronze_in_every_spelling(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    (lake / "bronze").mkdir(parents=True)
    for target in (
        BRONZE["payments"],
        "bronze.payments",
        BRONZE["payments"].path(lake),
        "s3a://bucket/lake/bronze/iot/ingest_date=2026-11-26",
        str(lake / "bronze"),
        str(lake),  # the whole lake holds bronze
        f"file://{lake}",
    ):
        with pytest.raises(guards.BronzeProtectedError, match="never deleted from or overwritten"):
            guards.assert_not_bronze(target)
    for fine in (MERCHANT_MINUTE, "gold.merchant_minute", MERCHANT_MINUTE.path(lake), "s3a://b/lake/silver/iot"):
        guards.assert_not_bronze(fine)


def test_delta_itself_refuses_deletes_on_bronze_but_allows_compaction(spark: SparkSession, tmp_path: Path) -> None:
    spec = BRONZE["payments"]
    ensure_table(spark, spec, tmp_path)
    now = datetime(2026, 11, 26, 10, 0)
    append(spark, spec, tmp_path, [("k", "{}", "payments", 0, off, now, now, now.date()) for off in range(2)], files=2)
    with pytest.raises(Exception, match=r"(?i)append.?only"):
        spark.sql(f"DELETE FROM delta.`{spec.path(tmp_path)}` WHERE offset = 0")
    r = m.optimize(spark, spec, tmp_path)
    assert r.metrics["zorder_by"] == ""  # bin-packing only outside gold
    assert (r.metrics["files_before"], r.metrics["files_after"]) == (2, 1)
    assert spark.read.format("delta").load(spec.path(tmp_path)).count() == 2


# --------------------------------------------------------------------------- while a stream writes


def test_optimize_while_a_writer_appends_loses_no_row(spark: SparkSession, tmp_path: Path) -> None:
    path = small_files_table(spark, tmp_path, files=4)  # m0..m7
    stop, appended, errors = threading.Event(), [8], []

    def writer() -> None:
        try:
            while not stop.is_set() or appended[0] < 12:  # at least two commits
                append(spark, MERCHANT_MINUTE, tmp_path, merchant_rows(appended[0], 2))
                appended[0] += 2
        except Exception as exc:  # surfaced below
            errors.append(exc)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        r = m.optimize(spark, MERCHANT_MINUTE, tmp_path, retry=FAST)
    finally:
        stop.set()
        t.join(timeout=120)
    assert not errors
    assert r.attempts >= 1
    ids = [row[0] for row in spark.read.format("delta").load(path).select("merchant_id").collect()]
    assert len(ids) == appended[0]
    assert sorted(ids) == sorted(f"m{i}" for i in range(appended[0]))


# --------------------------------------------------------------------------- the spark app


def test_app_arguments() -> None:
    from spark_apps import maintenance as app

    a = app.parse_args([])
    assert a.operations == ("optimize", "vacuum", "checkpoint")
    assert len(a.tables) > 10
    a = app.parse_args(["--vacuum", "--tables", "gold/merchant_minute, silver.payments", "--retention-hours", "1"])
    assert a.operations == ("vacuum",)
    assert [t.full_name for t in a.tables] == ["gold.merchant_minute", "silver.payments"]
    assert a.retention_hours == 1.0
    with pytest.raises(SystemExit):
        app.parse_args(["--tables", "gold/nope"])


class FakePipes:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.log = self

    def report_custom_message(self, payload: dict[str, Any]) -> None:
        self.messages.append(payload)

    def info(self, _text: str) -> None:
        pass


def test_app_runs_each_operation_reports_it_and_skips_missing_tables(spark: SparkSession, s: Settings) -> None:
    from spark_apps import maintenance as app
    from spark_apps._pipes import Reporter

    small_files_table(spark, s.lake_dir, files=2)
    pipes = FakePipes()
    tables = "gold/merchant_minute,gold/page_minute"
    args = app.parse_args(["--vacuum", "--checkpoint", "--retention-hours", "0", "--tables", tables])

    outcomes = app.run(spark, s, args, Reporter(pipes))  # type: ignore[arg-type]

    by_op = {(o.table.name, o.operation): o for o in outcomes}
    assert by_op[("page_minute", "vacuum,checkpoint")].skipped  # one line for a missing table
    assert by_op[("merchant_minute", "vacuum")].error is not None  # 0 h without --force is refused
    assert "RetentionTooShortError" in str(by_op[("merchant_minute", "vacuum")].error)
    done = [(p["asset"], p["operation"]) for p in pipes.messages]
    assert done == [("gold/merchant_minute", "checkpoint")]
    assert {"attempts", "duration_s", "files_before", "files_after"} <= set(pipes.messages[0])
    table = app.summary(outcomes)
    assert "FAILED: RetentionTooShortError" in table
    assert "skipped: no Delta table yet" in table


def test_app_leaves_a_table_with_a_damaged_log_alone(spark: SparkSession, s: Settings) -> None:
    """VACUUM on a log Delta misreads (an empty commit) would delete the files that commit added."""
    from spark_apps import maintenance as app
    from spark_apps._pipes import Reporter

    small_files_table(spark, s.lake_dir, files=2)
    log = s.lake_dir / "gold" / "merchant_minute" / "_delta_log"
    newest = max(log.glob("*.json"))
    files_before = sorted(p.name for p in log.parent.rglob("*.parquet"))
    saved = newest.read_bytes()
    newest.write_bytes(b"")
    try:
        args = app.parse_args(["--vacuum", "--retention-hours", "0", "--force", "--tables", "gold/merchant_minute"])
        (outcome,) = app.run(spark, s, args, Reporter(FakePipes()))  # type: ignore[arg-type]
        assert outcome.error is not None
        assert f"{newest.name} is empty" in outcome.error
        assert "A damaged Delta commit" in outcome.error
        assert sorted(p.name for p in log.parent.rglob("*.parquet")) == files_before  # nothing vacuumed
    finally:
        newest.write_bytes(saved)
