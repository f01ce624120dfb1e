"""The fault suite: each scenario of ``lakehouse chaos`` against the real stack, ending with the exact
accounting (bronze = produced; silver + quarantine + duplicates = bronze; gold = recomputation;
fraud alerts = reference). A scenario that finds the books wrong fails with what it found."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.chaos.scenarios import run
from lakehouse.settings import Settings


def test_ten_driver_kills_in_a_row_under_load_lose_and_double_nothing(
    lakehouse_stack: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    outcome = run("kill-driver", lakehouse_stack, tmp_path, spark, times=10)
    assert len([e for e in outcome.events if e.startswith("kill ")]) == 10
    assert outcome.exact, outcome.accounting.summary()
    assert len(outcome.accounting.problems) == 4  # every check ran
    counts = outcome.accounting.counts
    assert all(counts[t]["bronze"] == counts[t]["sent"] > 0 for t in ("payments", "clickstream", "iot"))
    print(f"kill-driver: {outcome.seconds:.0f}s; {counts}")


def test_a_broker_killed_under_a_running_stream_loses_and_doubles_nothing(
    lakehouse_stack: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    outcome = run("kafka-restart", lakehouse_stack, tmp_path, spark)
    assert "broker restarted" in outcome.events
    assert outcome.exact, outcome.accounting.summary()
    assert len(outcome.accounting.problems) == 4  # every check ran
    print(f"kafka-restart: {outcome.seconds:.0f}s; events: {outcome.events}")
