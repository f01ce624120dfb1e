"""The supervisor's decision, from the run history it sees (no Dagster instance needed)."""

from __future__ import annotations

import dagster as dg
import pytest

from lakehouse.settings import Settings
from orchestration.defs.streaming.supervisor import PastRun, decide

S = Settings(supervisor_backoff_s=10, supervisor_max_backoff_s=60, supervisor_max_restarts=3, supervisor_stable_s=300)
NOW = 10_000.0
F, OK, X = dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.CANCELED


def run(status: dg.DagsterRunStatus, start: float, end: float | None, rid: str = "r") -> PastRun:
    return PastRun(rid + "0" * 8, status, start, end)


def test_first_start() -> None:
    d = decide("bronze", [], [], NOW, S)
    assert d.launch
    assert d.restart == 0


def test_never_two_copies_while_one_is_queued_or_running() -> None:
    busy = [run(dg.DagsterRunStatus.QUEUED, NOW, None, "q")]
    d = decide("bronze", [run(F, NOW - 50, NOW - 40)], busy, NOW, S)
    assert not d.launch
    assert "running" in d.reason


@pytest.mark.parametrize("status", [OK, X])
def test_a_stream_that_ended_without_failing_is_started_again_at_once(status: dg.DagsterRunStatus) -> None:
    d = decide("refine", [run(status, NOW - 100, NOW - 1)], [], NOW, S)
    assert d.launch
    assert d.restart == 0


def test_backoff_doubles_per_consecutive_failure() -> None:
    one = [run(F, NOW - 30, NOW - 5)]
    assert not decide("refine", one, [], NOW, S).launch  # 10 s backoff, 5 s waited
    assert decide("refine", one, [], NOW + 6, S).launch
    two = [run(F, NOW - 30, NOW - 15), run(F, NOW - 80, NOW - 70)]
    d = decide("refine", two, [], NOW, S)  # 20 s backoff, 15 s waited
    assert not d.launch
    assert "restart #2 in 5s" in d.reason
    later = decide("refine", two, [], NOW + 5, S)
    assert later.launch
    assert later.restart == 2


def test_backoff_is_capped() -> None:
    three = [run(F, NOW - 100, NOW - 61), run(F, NOW - 200, NOW - 150), run(F, NOW - 300, NOW - 250)]
    assert decide("refine", three, [], NOW, S).launch  # 10*2^2 = 40 s < 61 s waited


def test_gives_up_after_max_restarts_quick_failures() -> None:
    runs = [run(F, NOW - 20 * i - 10, NOW - 20 * i) for i in range(4)]
    d = decide("bronze", runs, [], NOW + 10_000, S)
    assert not d.launch
    assert "gave up on bronze after 4 consecutive failures" in d.reason


def test_a_failure_after_a_long_healthy_run_starts_the_count_again() -> None:
    runs = [run(F, NOW - 4000, NOW - 20), *[run(F, NOW - 5000 - 20 * i, NOW - 4990 - 20 * i) for i in range(5)]]
    d = decide("bronze", runs, [], NOW, S)
    assert d.launch
    assert d.restart == 1


def test_a_stream_that_lost_kafka_records_is_not_restarted_until_someone_decides() -> None:
    """A restart would find the same offsets gone: no loop of failing starts, and no 'gave up' page on
    top of LakehouseKafkaRecordsLost. Once skip-lost ran and the stream was started, all is as before."""
    from lakehouse.services.retention import DATA_LOST

    lost = PastRun("l" + "0" * 8, F, NOW - 100, NOW - 90, exit_code=DATA_LOST)
    d = decide("bronze", [lost], [], NOW + 3600, S)
    assert not d.launch
    assert not d.gave_up
    assert "skip-lost" in d.reason
    other = PastRun("o" + "0" * 8, F, NOW - 100, NOW - 90, exit_code=1)
    assert decide("bronze", [other], [], NOW + 3600, S).launch  # any other failure: restarted with backoff
    assert decide("bronze", [run(OK, NOW - 50, NOW - 1), lost], [], NOW, S).launch


def test_a_stream_stopped_by_a_damaged_checkpoint_pages_at_once_and_is_not_restarted() -> None:
    """A restart would stop on the same file: the supervisor gives up on the first failure (the page
    LakehouseSupervisorGaveUp) and says where to look."""
    from lakehouse.services.checkpoints import CHECKPOINT_DAMAGED

    damaged = PastRun("d" + "0" * 8, F, NOW - 100, NOW - 90, exit_code=CHECKPOINT_DAMAGED)
    d = decide("refine", [damaged], [], NOW + 3600, S)
    assert not d.launch
    assert d.gave_up
    assert d.restart == 1
    assert "A damaged checkpoint" in d.reason
    assert decide("refine", [run(OK, NOW - 50, NOW - 1), damaged], [], NOW, S).launch  # started again by a person


def test_a_stream_stopped_by_a_damaged_delta_commit_pages_at_once_and_is_not_restarted() -> None:
    from lakehouse.delta.log_check import DELTA_LOG_DAMAGED

    damaged = PastRun("e" + "0" * 8, F, NOW - 100, NOW - 90, exit_code=DELTA_LOG_DAMAGED)
    d = decide("bronze", [damaged], [], NOW + 3600, S)
    assert not d.launch
    assert d.gave_up
    assert "Delta log" in d.reason
    assert "A damaged Delta commit" in d.reason
