from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.settings import Settings
from spark_apps._runtime import (
    AlreadyRunningError,
    ProgressReporter,
    checkpoint,
    checkpoint_epoch,
    exclusive,
    kafka_lag,
    parse_args,
    progress_summary,
    record_rows_out,
    retrying,
)

ROOT = Path(__file__).resolve().parents[2]


def test_checkpoint_epoch_is_stable_and_changes_with_a_new_checkpoint(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    first = checkpoint_epoch(s, "gold", "payments")
    assert first == checkpoint_epoch(s, "gold", "payments")
    assert first != checkpoint_epoch(s, "gold", "iot")
    shutil.rmtree(checkpoint(s, "gold", "payments"))
    assert checkpoint_epoch(s, "gold", "payments") != first


def test_modes() -> None:
    assert parse_args("bronze", ["--available-now"]).available_now
    assert not parse_args("bronze", ["--continuous"]).available_now
    assert not parse_args("bronze", []).available_now
    assert parse_args("bronze", ["--master", "spark://h:7077"]).master == "spark://h:7077"


# -- progress reports (what Pipes sends per micro-batch) ----------------------------------
KAFKA_PROGRESS = {
    "name": "bronze_payments",
    "batchId": 7,
    "timestamp": "2026-11-26T07:00:00.000Z",
    "numInputRows": 120,
    "inputRowsPerSecond": 40.0,
    "processedRowsPerSecond": 60.123,
    "durationMs": {"triggerExecution": 2000, "addBatch": 1500},
    "sources": [
        {
            "description": "KafkaV2[Subscribe[payments]]",
            "startOffset": {"payments": {"0": 10, "1": 20}},
            "endOffset": {"payments": {"0": 70, "1": 80}},
            "latestOffset": {"payments": {"0": 100, "1": 85}},
            "metrics": {"avgOffsetsBehindLatest": "17.5"},
        }
    ],
    "sink": {"description": "DeltaSink", "numOutputRows": -1},
}


def test_kafka_lag_is_latest_minus_end_offsets_per_partition() -> None:
    assert kafka_lag(KAFKA_PROGRESS) == (100 - 70) + (85 - 80)
    source = KAFKA_PROGRESS["sources"][0]  # type: ignore[index]
    as_strings = {**KAFKA_PROGRESS, "sources": [{k: json.dumps(v) if "Offset" in k else v for k, v in source.items()}]}
    assert kafka_lag(as_strings) == 35


def test_kafka_lag_counts_a_partition_the_batch_has_not_reached_yet() -> None:
    progress = {"sources": [{"endOffset": {"t": {"0": 5}}, "latestOffset": {"t": {"0": 5, "1": 9}}}]}
    assert kafka_lag(progress) == 9


def test_delta_sources_have_no_kafka_lag_but_report_files_behind() -> None:
    progress = {
        "name": "silver_iot",
        "batchId": 3,
        "numInputRows": 10,
        "sources": [{"endOffset": {"reservoirVersion": 4, "index": -1}, "metrics": {"numFilesOutstanding": "6"}}],
        "sink": {"numOutputRows": -1},
    }
    summary = progress_summary(progress, rows_out=9)
    assert summary["kafka_lag"] is None
    assert summary["delta_files_behind"] == 6
    assert summary["rows_out"] == 9


def test_progress_summary_names_what_a_person_watches() -> None:
    summary = progress_summary(KAFKA_PROGRESS)
    assert summary == {
        "query": "bronze_payments",
        "batch_id": 7,
        "timestamp": "2026-11-26T07:00:00.000Z",
        "rows_in": 120,
        "rows_out": None,  # a -1 from the sink means "unknown", never a count
        "batch_duration_ms": 2000,
        "input_rows_per_second": 40.0,
        "processed_rows_per_second": 60.12,
        "kafka_lag": 35,
        "phases_ms": {"addBatch": 1500},  # where the batch's time went, as Spark measured it
    }
    json.dumps(summary)  # JSON-safe: it travels through Pipes


class _Query:
    def __init__(self, *progress: dict[str, object]) -> None:
        self.recentProgress = list(progress)
        self.lastProgress = progress[-1] if progress else None
        self.name = str(progress[0]["name"])


class _Collect:
    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []

    def message(self, payload: dict[str, object]) -> None:
        self.sent.append(payload)


def test_progress_reporter_sends_each_batch_once_with_the_sinks_own_count() -> None:
    r = _Collect()
    reporter = ProgressReporter("silver", r)  # type: ignore[arg-type]
    batch7 = {**KAFKA_PROGRESS, "name": "silver_payments", "sources": []}
    q = _Query(batch7)
    record_rows_out("silver_payments", 7, 118)
    reporter.poll([q])  # type: ignore[list-item]
    reporter.poll([q])  # type: ignore[list-item]
    assert len(r.sent) == 1
    assert r.sent[0]["rows_out"] == 118
    assert (r.sent[0]["app"], r.sent[0]["batch_id"]) == ("silver", 7)
    batch8 = {**batch7, "batchId": 8, "timestamp": "2026-11-26T07:00:10.000Z"}
    batch9 = {**batch7, "batchId": 9, "timestamp": "2026-11-26T07:00:20.000Z"}
    reporter.poll([_Query(batch7, batch8, batch9)])  # type: ignore[list-item]
    assert [m["batch_id"] for m in r.sent] == [7, 8, 9]  # none lost between two polls


def test_idle_progress_is_a_heartbeat_and_never_hides_the_batch_that_follows() -> None:
    """Spark's idle progress carries the number of the batch it has not run yet."""
    r = _Collect()
    reporter = ProgressReporter("bronze", r)  # type: ignore[arg-type]
    idle = {"name": "bronze_iot", "batchId": 1, "timestamp": "2026-11-26T07:00:00.000Z", "numInputRows": 0}
    idle2 = {**idle, "timestamp": "2026-11-26T07:00:10.000Z"}
    ran = {
        **idle,
        "timestamp": "2026-11-26T07:00:20.000Z",
        "numInputRows": 50,
        "durationMs": {"addBatch": 900, "triggerExecution": 1000},
    }
    reporter.poll([_Query(idle, idle2)])  # type: ignore[list-item]
    assert len(r.sent) == 1
    assert r.sent[0]["idle"] is True  # one heartbeat, not one per idle update
    reporter.poll([_Query(idle, idle2, ran)])  # type: ignore[list-item]
    assert len(r.sent) == 2
    assert (r.sent[1]["batch_id"], r.sent[1]["rows_in"], r.sent[1]["rows_out"]) == (1, 50, 50)
    assert "idle" not in r.sent[1]


# -- one writer per checkpoint ----------------------------------------------------------
def test_exclusive_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    with exclusive(s, ["bronze"]):
        # flock is per open file description: a second open in the same process conflicts too
        expected = rf"stream bronze is already running \(pid {os.getpid()}\)"
        with pytest.raises(AlreadyRunningError, match=expected), exclusive(s, ["bronze"]):
            pass
        with exclusive(s, ["silver"]):  # other streams are independent
            pass
    with exclusive(s, ["bronze"]):  # released on exit
        pass


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    code = (
        "import os, sys, time; from lakehouse.settings import Settings; from spark_apps._runtime import exclusive\n"
        f"s = Settings(state_dir={str(tmp_path)!r})\n"
        "with exclusive(s, ['gold']):\n    print('locked', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(AlreadyRunningError), exclusive(s, ["gold"]):
            pass
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs
        proc.wait()
    with exclusive(s, ["gold"]):
        pass


# -- a micro-batch that loses a Delta conflict is retried ---------------------------------
class ConcurrentAppendException(Exception):
    """Stands in for delta.exceptions.ConcurrentAppendException (matched by class name)."""


def test_a_batch_that_lost_a_delta_conflict_is_retried_and_other_errors_are_not() -> None:
    calls: list[int] = []

    def write_batch(batch: object, batch_id: int) -> None:
        calls.append(batch_id)
        if len(calls) == 1:
            raise ConcurrentAppendException("a concurrent OPTIMIZE added data")

    retrying(write_batch, "gold_payments")(None, 7)  # type: ignore[arg-type]
    assert calls == [7, 7]

    def broken(batch: object, batch_id: int) -> None:
        calls.append(batch_id)
        raise ValueError("a real bug")

    calls.clear()
    with pytest.raises(ValueError, match="a real bug"):
        retrying(broken, "gold_payments")(None, 8)  # type: ignore[arg-type]
    assert calls == [8]


def test_a_failure_on_a_full_disk_exits_disk_full_whatever_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by the disk-full drill: a table created while the disk filled fails as DELTA_TABLE_NOT_FOUND,
    which says nothing of space; the filesystem under the lake does."""
    from spark_apps import _runtime
    from spark_apps._runtime import DISK_FULL, exit_on_disk_full

    s = Settings(state_dir=tmp_path, lake_root=tmp_path / "lake" / "not-yet")  # its nearest parent is asked
    assert exit_on_disk_full(s, OSError(28, "No space left on device")) == DISK_FULL
    assert "no space left on the disk under" in capsys.readouterr().err
    unrelated = RuntimeError("[DELTA_TABLE_NOT_FOUND] Delta table `silver/clickstream` doesn't exist.")
    assert exit_on_disk_full(s, unrelated) is None  # a disk with room: the failure is what it says

    real = os.statvfs

    def full_under_the_lake(path: os.PathLike[str] | str) -> os.statvfs_result:
        st = real(path)
        if Path(path) != tmp_path:
            return st
        fields = list(st)
        fields[4] = 10  # f_bavail: 10 blocks
        return os.statvfs_result(fields)

    monkeypatch.setattr(_runtime.os, "statvfs", full_under_the_lake)
    assert exit_on_disk_full(s, unrelated) == DISK_FULL


def test_a_replay_on_a_full_disk_says_what_it_kept_and_to_run_it_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spark_apps._runtime import DISK_FULL, exit_on_disk_full
    from spark_apps.replay import ON_FULL_DISK

    s = Settings(state_dir=tmp_path, lake_root=tmp_path / "lake")
    assert exit_on_disk_full(s, OSError(28, "No space left on device"), ON_FULL_DISK) == DISK_FULL
    said = capsys.readouterr().err
    assert "a write of the replay failed" in said
    assert "run the same replay again" in said
    assert "start the stream again" not in said  # not a stream's advice
