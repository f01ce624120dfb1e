"""A catch-up's progress from the app's progress lines: done, behind, ETA; and what the CLI prints in a log."""

from __future__ import annotations

import json

import pytest

from lakehouse.cli import progress as display
from lakehouse.services.catchup import CatchupTracker


def _line(**msg: object) -> str:
    return "progress " + json.dumps(msg)


def test_kafka_queries_count_records_read_against_the_remaining_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.0, 10.0, 20.0])  # started, created, first batch, second batch
    monkeypatch.setattr("lakehouse.services.catchup.time.monotonic", lambda: next(clock))
    t = CatchupTracker()
    assert t.feed(_line(query="bronze_payments", rows_in=1000, kafka_lag=3000))
    q = t.queries["bronze_payments"]
    assert (q.read, q.behind, q.total, q.unit) == (1000, 3000, 4000, "records")
    assert q.fraction == 0.25
    assert q.eta_s() == pytest.approx(30.0)  # 1000 rows in 10 s, 3000 to go
    t.feed(_line(query="bronze_payments", rows_in=3000, kafka_lag=0))
    assert (q.read, q.behind, q.fraction) == (4000, 0, 1.0)
    assert display.describe(q) == "catch-up bronze_payments: 4,000 rows read, 0 records behind (100%), caught up"


def test_delta_queries_count_files_of_the_backlog_and_idle_heartbeats_read_nothing() -> None:
    t = CatchupTracker()
    t.feed(_line(query="refine_iot", rows_in=500, kafka_lag=None, delta_files_behind=8))
    t.feed(_line(query="refine_iot", rows_in=0, kafka_lag=None, delta_files_behind=2, idle=True))
    q = t.queries["refine_iot"]
    assert (q.unit, q.most_behind, q.behind, q.done, q.read, q.batches) == ("files", 8, 2, 6, 500, 1)
    assert q.fraction == 0.75


def test_other_output_passes_through_and_a_log_gets_a_line_per_batch(capsys: pytest.CaptureFixture[str]) -> None:
    with display.catchup_display("catching bronze up") as on_line:  # not a terminal here: plain lines
        on_line("bronze: 3 queries started (available-now)")
        on_line(_line(query="bronze_iot", rows_in=10, kafka_lag=30))
        on_line("progress not json")
    out = capsys.readouterr().out
    assert "bronze: 3 queries started (available-now)" in out
    assert "catch-up bronze_iot: 10 rows read, 30 records behind (25%)" in out
    assert "progress not json" in out
    assert '"rows_in"' not in out  # no raw JSON
