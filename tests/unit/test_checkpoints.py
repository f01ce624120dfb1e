"""A checkpoint checked before its query starts: what a failure left is repaired where that is provably
safe, and the query stops with a plain message where it is not. The Spark cases run a real (local)
streaming query on the damaged checkpoint, before and after, so what is claimed of Spark is Spark's."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lakehouse.services.checkpoints import CheckpointDamagedError, clear_failed_first_batch, prepare, unreadable
from lakehouse.settings import Settings
from spark_apps._runtime import checkpoint

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

QUERY_ID = "9a0bd9a4-5f0e-4d43-a8f3-4b1c1f4a8f1e"
TMP = "5c1f9a52-0c1e-4f4e-9d57-0b2f3f8e9a11"


def _failed_first_offsets_write(root: Path) -> None:
    """What a write of ``offsets/0`` that found the disk full leaves: the query's id, and the offset log's
    temporary file with its checksum, never renamed to ``0``."""
    (root / "offsets").mkdir(parents=True)
    (root / "metadata").write_text(json.dumps({"id": QUERY_ID}))
    (root / "offsets" / f".0.{TMP}.tmp").write_text('v1\n{"batchWatermarkMs":0,')
    (root / "offsets" / f"..0.{TMP}.tmp.crc").write_bytes(b"crc")


@pytest.fixture
def run_query(spark: SparkSession) -> Callable[[str], None]:
    """One micro-batch of a stateful query (deduplication keeps state) into a sink that drops rows."""

    def run(location: str) -> None:
        df = spark.readStream.format("rate").option("rowsPerSecond", 10).load().dropDuplicates(["value"])
        query = df.writeStream.format("noop").option("checkpointLocation", location).trigger(once=True).start()
        query.awaitTermination()

    return run


def _committed_batches(run_query: Callable[[str], None], root: Path, n: int) -> None:
    """Run until the checkpoint holds N committed batches (a run that finds no new rows makes none)."""
    for _ in range(50):
        if len([p for p in (root / "commits").glob("[0-9]*")]) >= n:
            return
        run_query(str(root))
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} batches after 50 runs")


def test_a_first_micro_batch_that_failed_before_its_offsets_no_longer_blocks_the_query(
    run_query: Callable[[str], None], tmp_path: Path
) -> None:
    """Found by the disk-full drill: Spark 4 refuses to start a query whose offset log has no batch but is not
    empty, so the leftovers of a failed ``offsets/0`` write stopped the stream for good."""
    s = Settings(state_dir=tmp_path)
    root = Path(s.checkpoint_dir) / "refine" / "payments"
    _failed_first_offsets_write(root)
    with pytest.raises(Exception, match="STATE_STORE_CHECKPOINT_LOCATION_NOT_EMPTY"):
        run_query(str(root))  # Spark's own behaviour: the reason for the repair

    location = checkpoint(s, "refine", "payments")
    assert not (root / "offsets").exists(), "the failed batch's temporary offsets are removed"
    assert json.loads((root / "metadata").read_text())["id"] == QUERY_ID
    run_query(location)
    assert (root / "offsets" / "0").is_file()
    assert (root / "commits" / "0").is_file()


def test_an_unreadable_newest_commit_is_removed_and_its_batch_runs_again_over_the_same_offsets(
    run_query: Callable[[str], None], tmp_path: Path
) -> None:
    root = tmp_path / "ck"
    _committed_batches(run_query, root, 3)
    recorded = (root / "offsets" / "2").read_text()
    (root / "commits" / "2").write_text('v1\n{"nextBatchWater')  # torn
    with pytest.raises(Exception, match="Unexpected end-of-input"):
        run_query(str(root))  # Spark alone: no file named, no way out

    done = prepare(root)
    assert [line.split(":")[0] for line in done.repairs] == ["commits/2"]
    assert "runs again over its recorded offsets" in done.repairs[0]
    run_query(str(root))
    assert (root / "offsets" / "2").read_text() == recorded, "batch 2 ran again over what it had recorded"
    assert unreadable(root / "commits" / "2", offsets=False) is None
    assert sorted(p.name for p in (root / "commits").glob("[0-9]*")) == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda root: (root / "offsets" / "2").write_text('v1\n{"batchWaterm'), "offsets/2: line 2 is not JSON"),
        (lambda root: (root / "offsets" / "2").write_text(""), "offsets/2: empty"),
        (lambda root: (root / "metadata").unlink(), "metadata: missing"),
    ],
    ids=["torn-offsets", "empty-offsets", "no-metadata"],
)
def test_damage_that_cannot_be_repaired_safely_stops_the_query_naming_the_file(
    run_query: Callable[[str], None], tmp_path: Path, damage: Callable[[Path], object], named: str
) -> None:
    root = tmp_path / "ck"
    _committed_batches(run_query, root, 3)
    (root / "commits" / "2").unlink()  # batch 2 was in flight: its sink may have written it
    damage(root)
    before = sorted((p.relative_to(root), p.read_bytes()) for p in root.rglob("*") if p.is_file())
    with pytest.raises(CheckpointDamagedError) as e:
        prepare(root)
    assert named in str(e.value)
    assert "docs/runbook.md, 'A damaged checkpoint'" in str(e.value)
    after = sorted((p.relative_to(root), p.read_bytes()) for p in root.rglob("*") if p.is_file())
    assert after == before, "nothing is changed when the repair is not provably safe"


def test_torn_offsets_with_a_commit_are_not_repaired_either(tmp_path: Path) -> None:
    (tmp_path / "offsets").mkdir()
    (tmp_path / "commits").mkdir()
    (tmp_path / "metadata").write_text(json.dumps({"id": QUERY_ID}))
    (tmp_path / "offsets" / "0").write_text('v1\n{"batchWatermarkMs":0}\n{"payments":{"0":5}}')
    (tmp_path / "offsets" / "1").write_text("v1\n{")
    (tmp_path / "commits" / "0").write_text('v1\n{"nextBatchWatermarkMs":0}')
    (tmp_path / "commits" / "1").write_text('v1\n{"nextBatchWatermarkMs":0}')
    with pytest.raises(CheckpointDamagedError, match=r"offsets/1: line 2 is not JSON .*\(batch 1; its commit exists\)"):
        prepare(tmp_path)


def test_older_damage_is_a_warning_and_a_sound_checkpoint_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "offsets").mkdir()
    (tmp_path / "commits").mkdir()
    (tmp_path / "metadata").write_text(json.dumps({"id": QUERY_ID}))
    for n in range(3):
        (tmp_path / "offsets" / str(n)).write_text('v1\n{"batchWatermarkMs":0}\n-\n{"payments":{"0":5}}')
        (tmp_path / "commits" / str(n)).write_text('v1\n{"nextBatchWatermarkMs":0}')
    assert prepare(tmp_path).repairs == []
    assert prepare(tmp_path).warnings == []
    (tmp_path / "commits" / "1").write_bytes(b"v1\n\xff")
    done = prepare(tmp_path)
    assert done.repairs == []
    assert done.warnings == ["commits/1: not UTF-8 text (byte 3) (an older batch Spark does not read again)"]


def test_a_checkpoint_with_a_batch_keeps_its_leftovers(tmp_path: Path) -> None:
    _failed_first_offsets_write(tmp_path)
    (tmp_path / "commits").mkdir()
    (tmp_path / "commits" / "0").write_text("v1\n{}")
    (tmp_path / "state" / "0" / "0").mkdir(parents=True)
    (tmp_path / "state" / "0" / "0" / "1.delta").write_bytes(b"x")
    before = sorted(tmp_path.rglob("*"))
    assert clear_failed_first_batch(tmp_path) == []
    assert sorted(tmp_path.rglob("*")) == before


def test_a_never_started_checkpoint_loses_its_leftovers_and_an_unreadable_id_but_keeps_its_sources(
    tmp_path: Path,
) -> None:
    _failed_first_offsets_write(tmp_path)
    (tmp_path / "metadata").write_text("")  # the id's own write found the disk full
    (tmp_path / "state" / "0" / "0").mkdir(parents=True)
    (tmp_path / "state" / "0" / "0" / ".1.delta.tmp").write_bytes(b"x")
    (tmp_path / "sources" / "0").mkdir(parents=True)
    (tmp_path / "sources" / "0" / "0").write_text('v1\n{"payments":{"0":0}}')
    (tmp_path / "_lakehouse_epoch").write_text("0123456789ab")
    assert clear_failed_first_batch(tmp_path) == [
        f"offsets/..0.{TMP}.tmp.crc",
        f"offsets/.0.{TMP}.tmp",
        "state/0/0/.1.delta.tmp",
        "metadata",
    ]
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "_lakehouse_epoch",
        "sources/0/0",
    ]
    assert clear_failed_first_batch(tmp_path / "missing") == []
    shutil.rmtree(tmp_path / "sources")
    assert prepare(tmp_path).repairs == []  # nothing left to do


def test_lakehouse_stream_checkpoints_shows_each_query_and_exits_66_on_damage(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from lakehouse.cli.app import main
    from lakehouse.settings import get_settings

    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path))
    s = Settings(state_dir=tmp_path)
    sound, torn = s.checkpoint_dir / "bronze" / "iot", s.checkpoint_dir / "refine" / "iot"
    for root in (sound, torn):
        (root / "offsets").mkdir(parents=True)
        (root / "commits").mkdir()
        (root / "metadata").write_text(json.dumps({"id": QUERY_ID}))
        (root / "offsets" / "0").write_text('v1\n{"batchWatermarkMs":0}\n{"iot":{"0":5}}')
        (root / "commits" / "0").write_text('v1\n{"nextBatchWatermarkMs":0}')
    (torn / "offsets" / "1").write_text("v1\n{")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["stream", "checkpoints"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 66, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert rows["bronze/iot"].split("│")[4].strip() == "ok"
    assert rows["refine/iot"].split("│")[4].strip().startswith("damaged: offsets/1:")
    flat = re.sub(r"[│\s]+", " ", result.output)  # the note as one line, however the table wrapped it
    assert "offsets/1: line 2 is not JSON (Expecting property name" in flat
    assert "(batch 1; it has no commit)" in flat
    assert (torn / "offsets" / "1").read_text() == "v1\n{", "read only"
