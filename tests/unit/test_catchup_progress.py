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


def test_a_batch_apps_step_lines_read_back_and_other_output_is_not_a_step() -> None:
    from lakehouse.services.catchup import parse_step, step_line

    line = step_line("serving-rebuild", 3, 5, "gold.page_minute into Redis")
    assert line == "[serving-rebuild] step 3/5: gold.page_minute into Redis"
    assert parse_step(line) == (3, 5, "gold.page_minute into Redis")
    assert parse_step("replay: silver.iot rebuilt") is None
    assert parse_step("26/12/03 WARN step 1/2: not ours") is None


def test_the_step_bar_follows_the_steps_and_fills_only_when_told_the_app_succeeded() -> None:
    from rich.console import Console
    from rich.progress import Progress

    shown = Console(record=True, width=120, force_terminal=False)
    progress = Progress(console=shown)
    lines = display.StepLines(progress, "replay")
    lines("[replay] step 2/8: silver.clickstream for 2026-11-01..2026-11-02")
    task = progress.tasks[0]
    assert (task.completed, task.total, task.fields["detail"]) == (
        1,
        8,
        "silver.clickstream for 2026-11-01..2026-11-02",
    )
    lines("an ordinary line of the app")
    assert "an ordinary line of the app" in shown.export_text()
    assert progress.tasks[0].completed == 1
    lines.finished()
    assert (progress.tasks[0].completed, progress.tasks[0].fields["detail"]) == (8, "done")


def test_a_replay_rebuilds_its_tables_in_the_order_they_depend_on_each_other() -> None:
    from spark_apps.replay import steps

    names = [what for what, _ in steps({"silver", "gold"})]
    assert names == [
        "silver.payments",
        "silver.clickstream",
        "silver.iot",
        "gold.merchant_minute",
        "gold.page_minute",
        "gold.device_minute",
        "gold.late_events",
        "gold.fraud_alerts",
    ]
    assert [w for w, _ in steps({"gold"})] == names[3:]
    assert [w for w, _ in steps({"silver"})] == names[:3]
