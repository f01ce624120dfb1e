"""The drivers' class-data-sharing archive: written once by a run that succeeded, then mapped by every run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.delta import cds as spark_cds
from lakehouse.settings import Settings


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "jvm" / "cds" / "spark-0123456789abcdef.jsa"
    monkeypatch.setattr(spark_cds, "archive_path", lambda s: path)
    return path


def _dump_target(options: list[str]) -> Path:
    [target] = [o.split("=", 1)[1] for o in options if o.startswith("-XX:ArchiveClassesAtExit=")]
    return Path(target)


def test_a_run_that_ends_by_itself_writes_the_archive_and_it_is_published_on_success(
    tmp_path: Path, archive: Path
) -> None:
    s = Settings(state_dir=tmp_path)
    assert spark_cds.driver_options(s) == []
    with spark_cds.recording(s, ends_by_itself=True) as rec:
        target = _dump_target(rec.options)
        assert target.parent == archive.parent
        assert target != archive
        assert archive.with_suffix(".lock").read_text() == str(os.getpid())
        target.write_bytes(b"classes")  # what the JVM does as it exits
        rec.succeeded = True
    assert archive.read_bytes() == b"classes"
    assert not target.exists()
    assert not archive.with_suffix(".lock").exists()
    assert spark_cds.driver_options(s) == [f"-XX:SharedArchiveFile={archive}"]
    with spark_cds.recording(s, ends_by_itself=True) as rec:  # from now on runs only map it
        assert rec.options == [f"-XX:SharedArchiveFile={archive}"]


def test_a_failed_run_leaves_no_archive_behind(tmp_path: Path, archive: Path) -> None:
    s = Settings(state_dir=tmp_path)
    with spark_cds.recording(s, ends_by_itself=True) as rec:
        target = _dump_target(rec.options)
        target.write_bytes(b"half")
    assert not archive.exists()
    assert not target.exists()
    assert list(archive.parent.iterdir()) == []


def test_a_continuous_stream_never_writes_it(tmp_path: Path, archive: Path) -> None:
    with spark_cds.recording(Settings(state_dir=tmp_path), ends_by_itself=False) as rec:
        assert rec.options == []


def test_only_one_run_writes_it_and_a_dead_writer_s_lock_is_taken_over(tmp_path: Path, archive: Path) -> None:
    s = Settings(state_dir=tmp_path)
    lock = archive.with_suffix(".lock")
    lock.parent.mkdir(parents=True)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock.write_text(str(writer.pid))
        with spark_cds.recording(s, ends_by_itself=True) as rec:
            assert rec.options == []  # the other run is writing it
    finally:
        writer.kill()
        writer.wait()
    with spark_cds.recording(s, ends_by_itself=True) as rec:
        assert _dump_target(rec.options)
    assert not lock.exists()


def test_publishing_removes_archives_of_other_jars(tmp_path: Path, archive: Path) -> None:
    s = Settings(state_dir=tmp_path)
    archive.parent.mkdir(parents=True)
    old = archive.parent / "spark-fedcba9876543210.jsa"
    old.write_bytes(b"old jars")
    with spark_cds.recording(s, ends_by_itself=True) as rec:
        _dump_target(rec.options).write_bytes(b"new")
        rec.succeeded = True
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]


def test_switched_off_it_is_neither_written_nor_mapped(tmp_path: Path, archive: Path) -> None:
    s = Settings(state_dir=tmp_path, spark_class_archive=False)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"classes")
    assert spark_cds.driver_options(s) == []
    with spark_cds.recording(s, ends_by_itself=True) as rec:
        assert rec.options == []


def test_spark_submit_puts_the_options_on_the_driver_jvm(tmp_path: Path, archive: Path) -> None:
    from lakehouse.services import streams

    jars = tmp_path / "jvm" / "spark"
    jars.mkdir(parents=True)
    for name in ("delta-spark_4.2_2.13-4.4.0.jar", "spark-sql-kafka-0-10_2.13-4.2.0.jar"):
        (jars / name).write_bytes(b"")
    s = Settings(state_dir=tmp_path, spark_driver_java_options="-XX:TieredStopAtLevel=1")
    cmd = streams.submit_command(s, "all", True, java_options=["-XX:ArchiveClassesAtExit=/x.tmp"])
    [opts] = [c.split("=", 1)[1] for c in cmd if c.startswith("spark.driver.extraJavaOptions=")]
    assert opts.split()[-2:] == ["-XX:TieredStopAtLevel=1", "-XX:ArchiveClassesAtExit=/x.tmp"]
