"""Trino over the lake, against the stack's real Trino 476, Spark and Delta tables.

On the stack's own lake (the ``stack_lake`` fixture: records produced, the pipeline run):
every table spec is registered by the Spark apps themselves, Trino returns exactly what
Spark reads from the same Delta version, table and column comments come from the specs,
a column Spark adds shows up without re-registering, a wiped table is unregistered, and a
query never sees part of a commit while Spark writes. Scratch tables live under
``<lake>/scratch/`` in a ``scratch`` schema and are removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.cli.app import main
from lakehouse.contracts import LAYERS
from lakehouse.delta.tables import ensure_table
from lakehouse.services import streams
from lakehouse.services.trino import connect, query, sync_tables
from lakehouse.settings import Settings
from lakehouse.tables import ALL_TABLES, GOLD, QUARANTINE, SILVER, Col, TableSpec

pytestmark = pytest.mark.integration

EXPOSED = list(ALL_TABLES)
SCRATCH = "scratch"


def _registered(s: Settings) -> set[str]:
    names = ", ".join(f"'{x}'" for x in LAYERS)
    rows = query(
        s,
        f"SELECT table_schema, table_name FROM {s.trino_catalog}.information_schema.tables "
        f"WHERE table_schema IN ({names})",
    )
    return {f"{schema}.{table}" for schema, table in rows}


def _unregister(s: Settings, full_name: str) -> None:
    schema, table = full_name.split(".")
    query(s, f"CALL {s.trino_catalog}.system.unregister_table(schema_name => '{schema}', table_name => '{table}')")


# -- registration -----------------------------------------------------------------------------
def test_the_pipeline_registered_every_table_in_its_layer_schema(stack_lake: Settings) -> None:
    # No sync here: `lakehouse up` and the Spark apps of the pipeline registered them.
    registered = _registered(stack_lake)
    assert {t.full_name for t in EXPOSED} <= registered
    schemas = {r[0] for r in query(stack_lake, f"SHOW SCHEMAS FROM {stack_lake.trino_catalog}")}
    assert set(LAYERS) <= schemas


def test_a_spark_app_registers_the_tables_trino_lacks_when_it_starts(stack_lake: Settings) -> None:
    """refine (nothing new to read in bronze) starts its queries, then registers what is missing."""
    s = stack_lake
    dropped = ["bronze.iot", QUARANTINE.full_name, GOLD["late_events"].full_name]
    for name in dropped:
        _unregister(s, name)
    try:
        assert not set(dropped) & _registered(s)
        proc = subprocess.run(
            streams.submit_command(s, "refine", available_now=True),
            env=streams.submit_env(s),
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert set(dropped) <= _registered(s)
        assert "trino catalog lakehouse: 3 registered now" in proc.stdout, proc.stdout[-3000:]
    finally:
        sync_tables(s)  # whatever happened, leave the catalog complete for the other tests


def test_lakehouse_trino_sync_reports_every_table(stack_lake: Settings) -> None:
    result = CliRunner().invoke(main, ["trino", "sync", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["skipped"] is None
    states = {t["table"]: t["state"] for t in report["tables"]}
    assert states == {f"{stack_lake.trino_catalog}.{t.full_name}": "present" for t in EXPOSED}


# -- Trino returns what Spark reads -----------------------------------------------------------
def _norm(v: Any) -> Any:
    """One value in a form both engines agree on.

    Trino's Delta Lake connector reads a Delta TIMESTAMP as timestamp(3) with time zone:
    microseconds are truncated to milliseconds (documented type mapping), so Spark's values
    are truncated the same way. PySpark returns naive local times, Trino aware ones.
    """
    if isinstance(v, datetime):
        v = v.astimezone(UTC)  # a naive value is local time, as PySpark built it
        return v.replace(microsecond=v.microsecond // 1000 * 1000)
    if isinstance(v, bytes | bytearray):
        return bytes(v)
    if isinstance(v, list | tuple):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _norm(x)) for k, x in v.items()))
    return v


def _key(row: tuple[Any, ...]) -> str:
    return repr(row)


def _same_version(spark: SparkSession, s: Settings, spec: TableSpec) -> tuple[list[str], list[Any], list[Any]]:
    """(columns, Spark's rows, Trino's rows) of the table at one Delta version, normalised and sorted."""
    path = spec.path(s.lake_dir)
    version = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()["version"]  # type: ignore[index]
    df = spark.read.format("delta").option("versionAsOf", version).load(path)
    # The columns encrypted at rest (quarantine's raw_value) Trino cannot decrypt: it shows every user the mask.
    df = df.select(*(F.lit(TRINO_MASK).alias(c) if c in spec.encrypted else F.col(c) for c in df.columns))
    spark_rows = sorted((_norm(tuple(r)) for r in df.collect()), key=_key)
    conn = connect(s)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT * FROM {s.trino_catalog}.{spec.full_name} FOR VERSION AS OF {version}")
        trino_rows = sorted((_norm(tuple(r)) for r in cur.fetchall()), key=_key)
        trino_columns = [d[0] for d in cur.description]
    finally:
        conn.close()
    assert trino_columns == df.columns
    return df.columns, spark_rows, trino_rows


COMPARED = [*GOLD.values(), SILVER["payments"], QUARANTINE]
TRINO_MASK = "(encrypted at rest: read it with Spark)"  # infra/trino/rules.json


@pytest.mark.parametrize("spec", COMPARED, ids=[t.full_name for t in COMPARED])
def test_trino_returns_exactly_what_spark_reads(stack_lake: Settings, spark: SparkSession, spec: TableSpec) -> None:
    columns, spark_rows, trino_rows = _same_version(spark, stack_lake, spec)
    if spec is not GOLD["late_events"]:  # late events exist only if some arrived late
        assert spark_rows, f"{spec.full_name} is empty: the comparison would prove nothing"
    if trino_rows != spark_rows:
        in_spark, in_trino = set(spark_rows), set(trino_rows)
        only_spark = [r for r in spark_rows if r not in in_trino][:3]
        only_trino = [r for r in trino_rows if r not in in_spark][:3]
        pytest.fail(
            f"{spec.full_name}: {len(spark_rows)} rows in Spark, {len(trino_rows)} in Trino; columns {columns}; "
            f"only in Spark (first 3): {only_spark}; only in Trino: {only_trino}"
        )


def test_lakehouse_sql_prints_trino_results_as_csv_and_json(stack_lake: Settings, spark: SparkSession) -> None:
    alerts = spark.read.format("delta").load(GOLD["fraud_alerts"].path(stack_lake.lake_dir)).count()
    sql = "SELECT count(*) AS n, 'x,y' AS label FROM gold.fraud_alerts"
    as_json = CliRunner().invoke(main, ["sql", sql, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == [{"n": alerts, "label": "x,y"}]
    as_csv = CliRunner().invoke(main, ["sql", sql, "--format", "csv"])
    assert as_csv.output.splitlines() == ["n,label", f'{alerts},"x,y"']
    missing = CliRunner().invoke(main, ["sql", "SELECT * FROM gold.no_such_table"])
    assert missing.exit_code == 1
    assert "TABLE_NOT_FOUND" in missing.output
    assert "Traceback" not in missing.output


# -- comments ------------------------------------------------------------------------------------
def test_table_and_column_comments_come_from_the_specs(stack_lake: Settings) -> None:
    s = stack_lake
    rows = query(
        s,
        "SELECT schema_name, table_name, comment FROM system.metadata.table_comments WHERE catalog_name = ?",
        [s.trino_catalog],
    )
    table_comments = {f"{schema}.{table}": comment for schema, table, comment in rows}
    for t in EXPOSED:
        assert table_comments.get(t.full_name) == t.description, t.full_name
        described = {r[0]: r[3] or "" for r in query(s, f"DESCRIBE {s.trino_catalog}.{t.full_name}")}
        assert described == {c.name: c.comment for c in t.columns}, t.full_name
    create = query(s, f"SHOW CREATE TABLE {s.trino_catalog}.gold.fraud_alerts")[0][0]
    assert "COMMENT 'every rule that fired (contracts §3)'" in create


# -- scratch tables: schema changes, a wiped table, consistency ------------------------------------
@pytest.fixture
def scratch(stack_lake: Settings) -> Iterator[tuple[Settings, TableSpec]]:
    """A table spec in schema `scratch`, at <lake>/scratch/<name>; unregistered and deleted afterwards."""
    s = stack_lake
    spec = TableSpec(
        layer=SCRATCH,
        name=f"t_{uuid.uuid4().hex[:8]}",
        columns=(Col("id", "BIGINT", "row id"), Col("name", "STRING")),
        keys=("id",),
        description="a scratch table of the Trino integration tests",
    )
    yield s, spec
    if spec.name in _scratch_tables(s):
        _unregister(s, spec.full_name)
    shutil.rmtree(s.lake_dir / spec.relative_path, ignore_errors=True)
    if not _scratch_tables(s):
        query(s, f"DROP SCHEMA IF EXISTS {s.trino_catalog}.{SCRATCH}")
        with contextlib.suppress(OSError):
            (s.lake_dir / SCRATCH).rmdir()


def _scratch_tables(s: Settings) -> set[str]:
    names = f"SELECT table_name FROM {s.trino_catalog}.information_schema.tables WHERE table_schema = '{SCRATCH}'"
    return {r[0] for r in query(s, names)}


def _trino_rows(s: Settings, spec: TableSpec, columns: str = "*") -> list[tuple[Any, ...]]:
    return sorted(query(s, f"SELECT {columns} FROM {s.trino_catalog}.{spec.full_name}"))


def test_a_column_spark_adds_shows_up_in_trino_without_registering_again(
    scratch: tuple[Settings, TableSpec], spark: SparkSession
) -> None:
    s, spec = scratch
    path = spec.path(s.lake_dir)
    ensure_table(spark, spec, s.lake_dir)
    spark.createDataFrame([(1, "a"), (2, "b")], "id BIGINT, name STRING").write.format("delta").mode("append").save(
        path
    )
    report = sync_tables(s, [spec])
    assert report.registered == [spec.full_name]
    assert _trino_rows(s, spec) == [(1, "a"), (2, "b")]
    assert query(s, f"SELECT comment FROM system.metadata.table_comments WHERE table_name = '{spec.name}'") == [
        (spec.description,)
    ]

    # Schema evolution by Spark: a new column in an append (mergeSchema), then its comment.
    spark.createDataFrame([(3, "c", 0.5)], "id BIGINT, name STRING, score DOUBLE").write.format("delta").mode(
        "append"
    ).option("mergeSchema", "true").save(path)
    spark.sql(f"ALTER TABLE delta.`{path}` ALTER COLUMN score COMMENT 'added by Spark later'")

    assert _trino_rows(s, spec) == [(1, "a", None), (2, "b", None), (3, "c", 0.5)]
    described = {r[0]: (r[1], r[3] or "") for r in query(s, f"DESCRIBE {s.trino_catalog}.{spec.full_name}")}
    assert described == {
        "id": ("bigint", "row id"),
        "name": ("varchar", ""),
        "score": ("double", "added by Spark later"),
    }
    assert sync_tables(s, [spec]).present == [spec.full_name]  # nothing to re-register


def test_a_wiped_table_is_unregistered_and_a_recreated_one_read_afresh(
    scratch: tuple[Settings, TableSpec], spark: SparkSession
) -> None:
    s, spec = scratch
    path = spec.path(s.lake_dir)
    spark.createDataFrame([(1, "old")], "id BIGINT, name STRING").write.format("delta").save(path)
    assert sync_tables(s, [spec]).registered == [spec.full_name]
    assert _trino_rows(s, spec) == [(1, "old")]

    # Spark re-creates the table in place (the lake was wiped, the app ran again): after a
    # sync, Trino reads the new log, not the snapshot it had cached for the old one.
    shutil.rmtree(path)
    spark.createDataFrame([(7, "new"), (8, "new")], "id BIGINT, name STRING").write.format("delta").save(path)
    assert sync_tables(s, [spec]).present == [spec.full_name]
    assert _trino_rows(s, spec) == [(7, "new"), (8, "new")]

    shutil.rmtree(path)
    report = sync_tables(s, [spec])
    assert report.unregistered == [spec.full_name]
    assert spec.name not in _scratch_tables(s)
    assert sync_tables(s, [spec]).missing == [spec.full_name]


def test_a_query_never_sees_part_of_a_commit_while_spark_writes(
    scratch: tuple[Settings, TableSpec], spark: SparkSession
) -> None:
    """Spark appends COMMITS batches of ROWS rows, each one commit of 4 files; Trino queries meanwhile.

    Every query must see each batch whole (ROWS rows, ids 0..ROWS-1) or not at all, and the
    batches it sees must be a prefix 0..k-1 (commits are ordered). A reader that listed
    data files instead of reading the Delta log would see a batch in 1-3 of its 4 files.
    """
    s, spec = scratch
    commits, rows_per_commit = 15, 2000
    path = spec.path(s.lake_dir)
    spark.createDataFrame([], "batch INT, id BIGINT").write.format("delta").save(path)
    assert sync_tables(s, [spec]).registered == [spec.full_name]
    errors: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        try:
            for b in range(commits):
                if stop.is_set():
                    return
                (
                    spark.range(rows_per_commit)
                    .select(F.lit(b).alias("batch"), F.col("id"))
                    .repartition(4)
                    .write.format("delta")
                    .mode("append")
                    .save(path)
                )
        except BaseException as e:  # re-raised in the test thread
            errors.append(e)

    writer = threading.Thread(target=write, name="delta-writer", daemon=True)
    sql = (
        f"SELECT batch, count(*), count(DISTINCT id), min(id), max(id) "
        f"FROM {s.trino_catalog}.{spec.full_name} GROUP BY batch"
    )
    seen: list[tuple[int, ...]] = []
    t0 = time.monotonic()
    writer.start()
    try:
        while True:
            done = not writer.is_alive()  # one more query after the last commit
            result = query(s, sql)
            for batch, n, distinct, lo, hi in result:
                assert (n, distinct, lo, hi) == (rows_per_commit, rows_per_commit, 0, rows_per_commit - 1), (
                    f"query {len(seen) + 1} saw batch {batch} partially: {n} rows ({distinct} distinct ids "
                    f"{lo}..{hi}) of {rows_per_commit}"
                )
            batches = tuple(sorted(r[0] for r in result))
            assert batches == tuple(range(len(batches))), f"batches seen out of commit order: {batches}"
            seen.append(batches)
            if done or time.monotonic() - t0 > 300:
                break
    finally:
        stop.set()
        writer.join(timeout=120)
    assert not errors, errors
    assert seen[-1] == tuple(range(commits))
    states = sorted({len(b) for b in seen})
    # The reader really overlapped the writer: it saw several intermediate versions.
    assert len(states) >= 4, f"Trino saw only {states} batches across {len(seen)} queries"
    assert query(s, f"SELECT count(*) FROM {s.trino_catalog}.{spec.full_name}") == [(commits * rows_per_commit,)]


def test_norm_treats_both_engines_timestamps_alike() -> None:
    # The comparison's own premise: Spark's naive local time and Trino's aware UTC value
    # of the same instant normalise equal, microseconds truncated as Trino does.
    aware = datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    naive_local = aware.astimezone().replace(tzinfo=None, microsecond=123456)
    assert _norm(naive_local) == _norm(aware)
    assert _norm([b"\x01", date(2024, 5, 1)]) == (b"\x01", date(2024, 5, 1))
