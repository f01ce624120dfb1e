"""A damaged Delta commit stops the apps that would read it, naming the file (lakehouse.delta.log_check)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.delta import log_check
from lakehouse.delta.log_check import DeltaLogDamagedError, problems

pytestmark = pytest.mark.unit


def _commit(log: Path, version: int, *actions: dict[str, object]) -> Path:
    log.mkdir(parents=True, exist_ok=True)
    path = log / f"{version:020d}.json"
    path.write_text("".join(json.dumps(a) + "\n" for a in actions))
    return path


def _table(root: Path, versions: int) -> Path:
    for v in range(versions):
        _commit(root / "_delta_log", v, {"commitInfo": {"operation": "WRITE"}}, {"add": {"path": f"p{v}.parquet"}})
    return root


def test_a_sound_log_and_a_missing_table_have_no_problems(tmp_path: Path) -> None:
    assert problems(_table(tmp_path / "t", 4)) == []
    assert problems(tmp_path / "nothing here") == []


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "00000000000000000002.json is empty"),
        (b"\n\n", "00000000000000000002.json is empty"),
        (b'{"commitInfo": {"operation": "WRI', "00000000000000000002.json line 1 is not JSON"),
        (b'{"add": {}}\n\x00\x00\x00', "00000000000000000002.json line 2 is not JSON"),
        (b"\xff\xfe{}", "00000000000000000002.json is not UTF-8 text (byte 0)"),
        (b'{"add": {}, "remove": {}}\n', "00000000000000000002.json line 1 is not one Delta action"),
        (b"[1, 2]\n", "00000000000000000002.json line 1 is not one Delta action"),
    ],
)
def test_each_kind_of_damage_is_named_with_its_file(tmp_path: Path, content: bytes, said: str) -> None:
    table = _table(tmp_path / "t", 4)
    (table / "_delta_log" / "00000000000000000002.json").write_bytes(content)
    (found,) = problems(table)
    assert found.startswith(said), found


def test_a_missing_commit_is_named(tmp_path: Path) -> None:
    table = _table(tmp_path / "t", 6)
    (table / "_delta_log" / "00000000000000000002.json").unlink()
    (table / "_delta_log" / "00000000000000000003.json").unlink()
    assert problems(table) == ["commits 2..3 are missing"]


def test_only_the_commits_after_the_newest_checkpoint_are_read(tmp_path: Path) -> None:
    """Delta reads a checkpoint and the commits after it: damage before it is history (and VACUUM's)."""
    table = _table(tmp_path / "t", 6)
    log = table / "_delta_log"
    (log / "00000000000000000001.json").write_bytes(b"")
    (log / "00000000000000000003.checkpoint.parquet").write_bytes(b"PAR1")
    assert problems(table) == []
    (log / "00000000000000000005.json").write_bytes(b"")
    assert problems(table) == ["00000000000000000005.json is empty"]


def test_check_names_every_damaged_table_and_the_runbook(tmp_path: Path) -> None:
    good, bad = _table(tmp_path / "good", 2), _table(tmp_path / "bad", 3)
    (bad / "_delta_log" / "00000000000000000002.json").write_bytes(b"")
    log_check.check([("bronze.good", good)])
    with pytest.raises(DeltaLogDamagedError) as e:
        log_check.check([("bronze.good", good), ("silver.bad", bad)])
    assert e.value.problems == {"silver.bad": ["00000000000000000002.json is empty"]}
    assert "silver.bad" in str(e.value)
    assert "'A damaged Delta commit'" in str(e.value)


def test_an_empty_commit_loses_rows_silently_in_delta_and_the_check_catches_it(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Why the check exists: Delta reads an empty commit as a version without actions; no error."""
    path = str(tmp_path / "t")
    for i in range(3):
        spark.range(i * 10, i * 10 + 10).write.format("delta").mode("append").save(path)
    newest = tmp_path / "t" / "_delta_log" / "00000000000000000002.json"
    newest.write_bytes(b"")
    assert spark.read.format("delta").load(path).count() == 20  # 30 written: Delta says nothing
    assert problems(tmp_path / "t") == ["00000000000000000002.json is empty"]

    # The runbook's mends. Later commits on top: N replaced by a commit of no action, readable again.
    spark.range(30, 40).write.format("delta").mode("append").save(path)  # version 3, on the broken 2
    newest.write_text('{"commitInfo":{"operation":"REPAIR"}}\n')
    newest.with_name(f".{newest.name}.crc").unlink()
    assert problems(tmp_path / "t") == []
    assert spark.read.format("delta").load(path).count() == 30  # 0-9, 10-19, 30-39: 20-29 are for a replay
    # N the newest: moved aside, the table is back at N-1 and takes the batch again.
    third = tmp_path / "t" / "_delta_log" / "00000000000000000003.json"
    third.write_bytes(b"")
    assert problems(tmp_path / "t") == ["00000000000000000003.json is empty"]
    third.rename(third.with_name(third.name + ".damaged"))
    third.with_name(f".{third.name}.crc").unlink()
    assert problems(tmp_path / "t") == []
    spark.range(30, 40).write.format("delta").mode("append").save(path)
    assert spark.read.format("delta").load(path).count() == 30


def test_each_app_checks_the_tables_it_reads_or_writes(tmp_path: Path) -> None:
    from lakehouse.settings import Settings
    from lakehouse.tables import GOLD
    from spark_apps._runtime import check_tables, exit_on_failure, tables_of

    assert {t.layer for t in tables_of("bronze")} == {"bronze"}
    assert {t.layer for t in tables_of("serving")} == {"gold"}
    assert {t.layer for t in tables_of("refine")} == {"bronze", "silver", "gold"}
    assert [t.full_name for t in tables_of("bronze", "refine")] == [t.full_name for t in tables_of("refine")]

    s = Settings(state_dir=tmp_path, lake_root=tmp_path / "lake")
    alerts = GOLD["fraud_alerts"]
    table = _table(tmp_path / "lake" / alerts.layer / alerts.name, 2)
    (table / "_delta_log" / "00000000000000000001.json").write_bytes(b"")
    check_tables(s, "bronze")  # bronze never touches gold: it goes on
    with pytest.raises(DeltaLogDamagedError) as e:
        check_tables(s, "serving")
    assert exit_on_failure(s, e.value, print, reads_kafka=False) == log_check.DELTA_LOG_DAMAGED


def test_a_table_creation_cut_short_is_cleared_by_its_writer_and_created_again(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by the fault suite (disk-full, then the next scenario's start): a full disk during a table's
    creation left its _delta_log without a commit. Delta takes that directory for a table, finds none,
    and every later start failed with DELTA_TABLE_NOT_FOUND, room or not."""
    from delta.tables import DeltaTable

    from lakehouse.delta.log_check import never_committed
    from lakehouse.delta.tables import ensure_table
    from lakehouse.tables import SILVER

    spec = SILVER["clickstream"]
    path = Path(spec.path(tmp_path))
    (path / "_delta_log").mkdir(parents=True)
    (path / "_delta_log" / ".00000000000000000000.json.0b1c.tmp").write_text("{")  # the write the disk refused
    assert "holds no commit" in (never_committed(path) or "")
    with pytest.raises(Exception, match="DELTA_TABLE_NOT_FOUND"):  # what Delta alone does with it
        DeltaTable.createIfNotExists(spark).location(str(path)).addColumn("x", "INT").execute()
    with pytest.raises(RuntimeError, match="its writer clears it"):  # a reader leaves it to the writer
        ensure_table(spark, spec, tmp_path, writer=False)
    ensure_table(spark, spec, tmp_path)
    assert "silver.clickstream: its _delta_log holds no commit" in capsys.readouterr().err
    assert DeltaTable.isDeltaTable(spark, str(path))
    assert never_committed(path) is None
    assert spark.read.format("delta").load(str(path)).count() == 0
