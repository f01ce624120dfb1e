"""Streams run by the real Dagster instance (webserver + daemon) of the stack, driven over GraphQL.

Each test writes to its own lake (a run-config override of ``lake_root``) and starts
reading Kafka at the offsets the topics had when it began, so it sees only what it produced.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from pyspark.sql import SparkSession

from lakehouse.contracts import TOPICS
from lakehouse.generator import GeneratorConfig, generate, produce
from lakehouse.services import dagster_api as api
from lakehouse.services import streams
from lakehouse.services.kafka import end_offsets_json
from lakehouse.settings import Settings
from lakehouse.stack import components as stack
from lakehouse.tables import BRONZE
from tests.integration.conftest import StandInPagerDuty

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def _wait(what: str, check: Callable[[], Any], timeout: float = 300, every: float = 2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def _overrides(s: Settings, lake: Path) -> dict[str, str]:
    return {
        "lake_root": str(lake),
        "kafka_starting_offsets": end_offsets_json(s),
        "stream_trigger_interval": "2 seconds",
    }


def _launch(s: Settings, layer: str, overrides: dict[str, str]) -> str:
    config = {"ops": {f"{layer}_stream": {"config": {"mode": "continuous", "settings": overrides}}}}
    return api.launch_run(s, f"stream_{layer}", config, {"test": "dagster-streams"})


def _status(s: Settings, run_id: str) -> str:
    status: str = api.runs(s, run_ids=[run_id])[0]["status"]
    return status


def _rows_in(s: Settings, run_id: str) -> dict[str, int]:
    """Rows each bronze table received, summed over the run's micro-batch observations."""
    totals: dict[str, int] = {}
    for e in api.run_events(s, run_id):
        if e["type"] == "ObservationEvent" and not e["metadata"].get("idle"):
            totals[e["asset"]] = totals.get(e["asset"], 0) + int(e["metadata"].get("rows_in") or 0)
    return totals


def _pushed(s: Settings, metric: str, **labels: str) -> list[float]:
    """Values of METRIC with LABELS that the pushgateway serves now."""
    text = requests.get(f"{s.pushgateway_url}/metrics", timeout=10, auth=s.http_auth(), verify=str(s.ca_file)).text
    values = []
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name != metric:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            values.append(float(rest.rsplit(" ", 1)[1]))
    return values


def _stop_everything(s: Settings, layer: str) -> None:
    api.set_sensor(s, f"supervise_{layer}", False)
    for r in api.runs(s, tags={"lakehouse/stream": layer}, statuses=api.IN_PROGRESS):
        api.terminate_run(s, r["runId"])
    _wait(
        f"every {layer} run to end",
        lambda: not api.runs(s, tags={"lakehouse/stream": layer}, statuses=api.IN_PROGRESS),
        timeout=240,
    )


@pytest.fixture
def bronze_clean(lakehouse_stack: Settings) -> Iterator[None]:
    _stop_everything(lakehouse_stack, "bronze")
    yield
    _stop_everything(lakehouse_stack, "bronze")


def _sent_per_topic(seed: int, count: int, s: Settings) -> dict[str, int]:
    run = generate(GeneratorConfig(seed=seed, count=count, rate=20, duplicates=5))
    assert produce(run, s).failed == 0
    return {f"bronze/{t.name}": run.truth.summary[t.name]["sent"] for t in TOPICS}


def _bronze_count(spark: SparkSession, lake: Path) -> tuple[int, int]:
    total, distinct = 0, 0
    for t in TOPICS:
        df = spark.read.format("delta").load(BRONZE[t.name].path(lake))
        total += df.count()
        distinct += df.select("topic", "partition", "offset").distinct().count()
    return total, distinct


def test_a_dagster_stream_reports_each_batch_pages_when_killed_survives_and_stops_at_a_batch_boundary(
    lakehouse_stack: Settings, bronze_clean: None, tmp_path: Path, spark: SparkSession, pager: StandInPagerDuty
) -> None:
    """One stream through its life: started over GraphQL, observed live while the Dagster daemon is
    dead (SIGKILLed: a page), its driver SIGKILLed (a page reaches the stand-in PagerDuty), the daemon
    started again, the stream restarted by the supervisor with nothing lost (both pages resolve), then
    stopped gracefully (its metrics leave the pushgateway)."""
    s = lakehouse_stack
    lake = tmp_path / "lake"
    first = _launch(s, "bronze", _overrides(s, lake))
    _wait("the run to start", lambda: _status(s, first) == "STARTED", timeout=120)

    # 0. The daemon dies (SIGKILL: no clean shutdown; its code servers are orphaned as in a crash). A
    # running stream does not depend on it: everything below until step 3 happens without a daemon.
    daemon = stack.DagsterDaemon(s).process()
    assert daemon is not None, "the stack's Dagster daemon should be running"
    daemon_killed_at = time.time()
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=30)
    sent_a = _sent_per_topic(31, 300, s)

    # 1. Observations arrive while the run is still going: one per micro-batch, with rows in and lag.
    _wait("observations covering every record sent", lambda: _rows_in(s, first) == sent_a)
    assert _status(s, first) == "STARTED"
    events = api.run_events(s, first)
    batch = next(e for e in events if e["type"] == "ObservationEvent" and e["metadata"].get("rows_in"))
    for field in ("batch_id", "rows_out", "batch_duration_ms", "input_rows_per_second", "processed_rows_per_second"):
        assert field in batch["metadata"], f"observation lacks {field}: {batch['metadata']}"
    assert batch["metadata"]["kafka_lag"] >= 0
    materialized = {e["asset"] for e in events if e["type"] == "MaterializationEvent"}
    assert materialized == set(sent_a)  # each table materialized by its first batch, while the stream runs

    # The driver itself pushed each batch to the pushgateway: counters of rows, a heartbeat.
    _wait(
        "stream metrics in the pushgateway",
        lambda: sum(_pushed(s, "lakehouse_stream_input_rows_total", app="bronze")) == sum(sent_a.values()),
    )
    assert _pushed(s, "lakehouse_stream_heartbeat_timestamp_seconds", app="bronze")

    # 2. SIGKILL the Spark driver JVM (what an out-of-memory kill does): the run fails and, with nobody
    # restarting it, LakehouseStreamDown pages (the stand-in PagerDuty) within its 30 s + 30 s window.
    holder = streams.lock_holder(s.model_copy(update={"lake_root": lake}), "bronze")
    assert holder is not None, "the running stream should hold its checkpoint lock"
    python_driver = psutil.Process(holder)
    jvm = python_driver.parent()
    assert jvm is not None
    assert "java" in jvm.name()
    killed_at = time.time()
    jvm.send_signal(signal.SIGKILL)
    assert _wait("the killed run to fail", lambda: _status(s, first) in TERMINAL and _status(s, first)) == "FAILURE"
    (page,) = _wait(
        "a page for the dead stream",
        lambda: pager.received("trigger", killed_at, alert="LakehouseStreamDown", app="Stream bronze is down"),
        timeout=240,
        every=5,
    )
    paged_after = time.time() - killed_at
    assert page["payload"]["severity"] == "critical"
    assert page["payload"]["custom_details"]["runbook"] == "docs/runbook.md#lakehousestreamdown"

    # The dead daemon paged too (heartbeats older than 90 s, for 30 s): start it again.
    (daemon_page,) = _wait(
        "a page for the dead Dagster daemon",
        lambda: pager.received("trigger", daemon_killed_at, alert="The Dagster daemon has sent no heartbeat"),
        timeout=300,
        every=5,
    )
    daemon_paged_after = time.time() - daemon_killed_at
    assert daemon_page["payload"]["custom_details"]["runbook"] == "docs/runbook.md#lakehousedagsterdaemondown"
    assert stack.up(s, ["dagster-daemon"], log=print) == {"dagster-daemon": "started"}

    # 3. The supervisor (a sensor: the daemon's) restarts it from the checkpoint; the new driver's
    # heartbeat resolves the stream's page, the new daemon's heartbeats the daemon's.
    assert api.set_sensor(s, "supervise_bronze", True) == "RUNNING"

    def restarted() -> dict[str, Any] | None:
        for r in api.runs(s, job="stream_bronze", limit=5):
            if r["runId"] != first and r["tags"].get("lakehouse/supervisor") == "supervise_bronze":
                return r if r["status"] == "STARTED" else None
        return None

    second = _wait("the supervisor to restart the stream", restarted, timeout=240)
    assert int(second["tags"]["lakehouse/restart"]) >= 1  # a recovery (earlier failed runs on a reused stack count too)
    _wait(
        "the page to resolve",
        lambda: [e for e in pager.received("resolve", killed_at) if e["dedup_key"] == page["dedup_key"]],
        timeout=240,
        every=5,
    )
    _wait(
        "the daemon's page to resolve",
        lambda: [e for e in pager.received("resolve", daemon_killed_at) if e["dedup_key"] == daemon_page["dedup_key"]],
        timeout=240,
        every=5,
    )
    print(f"paged {paged_after:.0f}s after the driver's kill, {daemon_paged_after:.0f}s after the daemon's")
    sent_b = _sent_per_topic(42, 200, s)
    expected = sum(sent_a.values()) + sum(sent_b.values())
    _wait("every record in bronze", lambda: _bronze_count(spark, lake)[0] >= expected or None, every=5)

    # 4. Stop as `lakehouse stream stop bronze` does: supervisor off, then terminate the run.
    assert api.set_sensor(s, "supervise_bronze", False) == "STOPPED"
    api.terminate_run(s, second["runId"])
    ended = _wait("the run to end", lambda: _status(s, second["runId"]) in TERMINAL and _status(s, second["runId"]))
    assert ended == "CANCELED"
    log = (s.logs_dir / "runs" / f"{second['runId']}-bronze.log").read_text()
    assert "stopping after the current micro-batch" in log
    assert "bronze: stopped on request" in log  # the driver stopped its queries itself: not killed
    total, distinct = _bronze_count(spark, lake)
    assert total == distinct == expected  # nothing lost, nothing twice
    assert (
        _pushed(s, "lakehouse_stream_heartbeat_timestamp_seconds", app="bronze") == []
    )  # a clean end: no stale metrics
