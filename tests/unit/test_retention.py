"""Records Kafka deleted before bronze read them: the ranges, the message, the report (no broker here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lakehouse.services.retention import DataLostError, LostRange, lost_ranges, reports, write_report
from lakehouse.settings import Settings

pytestmark = pytest.mark.unit


def test_a_partition_loses_what_lies_between_where_bronze_stopped_and_the_oldest_record_kafka_holds() -> None:
    read_to = {0: 100, 1: 250, 2: 40, 3: 0}
    earliest = {0: 100, 1: 300, 2: 0, 3: 7, 4: 9}  # 4: a partition the checkpoint does not know yet
    assert lost_ranges("payments", read_to, earliest) == [
        LostRange("payments", 1, 250, 300),
        LostRange("payments", 3, 0, 7),
    ]
    assert lost_ranges("payments", read_to, {0: 100, 1: 250}) == []  # nothing deleted past the position
    assert sum(r.count for r in lost_ranges("payments", read_to, earliest)) == 57


def test_the_error_names_the_ranges_the_counts_and_the_way_out() -> None:
    lost = [LostRange("payments", p, 10 * p, 10 * p + 5) for p in range(8)] + [LostRange("iot", 0, 3, 4)]
    text = str(DataLostError(lost))
    assert "Kafka no longer holds 41 records bronze had not read (payments: 40, iot: 1)" in text
    assert "payments-0 offsets 0..4, payments-1 offsets 10..14" in text
    assert "and 3 more" in text  # six shown, the rest counted
    assert "lakehouse stream skip-lost" in text
    assert "docs/runbook.md" in text


def test_each_skip_leaves_a_report_of_what_the_lake_never_saw(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    first = write_report(s, [LostRange("iot", 2, 5, 9)], now=datetime(2026, 12, 2, 10, 0, tzinfo=UTC))
    write_report(s, [LostRange("payments", 0, 0, 1)], now=datetime(2026, 12, 2, 11, 0, tzinfo=UTC))
    assert first.parent == s.lake_dir / "_lost_offsets"
    assert json.loads(first.read_text())["ranges"] == [
        {"topic": "iot", "partition": 2, "first": 5, "end": 9, "count": 4}
    ]
    assert [r["records"] for r in reports(s)] == [4, 1]  # oldest first, none overwritten


def test_the_cli_names_every_chaos_scenario() -> None:
    from lakehouse.chaos.scenarios import SCENARIOS
    from lakehouse.cli.chaos import SCENARIO_NAMES

    assert set(SCENARIO_NAMES) == set(SCENARIOS)
