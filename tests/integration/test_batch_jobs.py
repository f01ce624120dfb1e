"""Batch jobs run by the stack's real Dagster instance on real tables: replay, maintenance, quality.

One isolated lake (a run-config override of ``lake_root``) is built once by the pipeline
(available-now) from records this module produces; each job is launched over GraphQL.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.generator import GeneratorConfig, generate, produce
from lakehouse.services import dagster_api as api
from lakehouse.services import streams
from lakehouse.services.kafka import end_offsets_json
from lakehouse.settings import Settings
from lakehouse.tables import BRONZE, GOLD, SILVER

# When this module was imported: pushes older than that are an earlier session's.
_MODULE_START = time.time()


def _wait_run(s: Settings, run_id: str, timeout: float = 600) -> dict[str, Any]:
    try:
        return api.wait_run(s, run_id, timeout)
    except TimeoutError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def lake(lakehouse_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A lake built by the pipeline from this module's own records."""
    base = lakehouse_stack
    s = base.model_copy(
        update={
            "lake_root": tmp_path_factory.mktemp("batch") / "lake",
            "kafka_starting_offsets": end_offsets_json(base),
        }
    )
    start = datetime.now(UTC).replace(microsecond=0, second=0) - timedelta(hours=2)
    run = generate(
        GeneratorConfig(seed=51, count=900, rate=1, start_time=start, duplicates=10, invalid=6, fraud_velocity=2)
    )
    assert produce(run, s).failed == 0
    assert streams.run(s, "all", available_now=True) == 0
    return s


def _read(spark: SparkSession, s: Settings, spec: Any) -> DataFrame:
    return spark.read.format("delta").load(spec.path(s.lake_dir))


def _launch(s: Settings, job: str, op: str, config: dict[str, Any]) -> str:
    overrides = {"lake_root": str(s.lake_dir)}
    return api.launch_run(s, job, {"ops": {op: {"config": {**config, "settings": overrides}}}}, {"test": "batch"})


def _snapshot(spark: SparkSession, s: Settings) -> dict[str, Any]:
    return {
        "silver": {
            t: sorted(tuple(r) for r in _read(spark, s, SILVER[t]).select("event_id", "event_time").collect())
            for t in SILVER
        },
        "merchant": sorted(
            tuple(r)
            for r in _read(spark, s, GOLD["merchant_minute"])
            .select("merchant_id", "window_start", "tx_count", "amount_sum", "flagged_count")
            .collect()
        ),
        "pages": sorted(
            tuple(r)
            for r in _read(spark, s, GOLD["page_minute"]).select("page", "window_start", "views", "clicks").collect()
        ),
        "devices": sorted(
            tuple(r)
            for r in _read(spark, s, GOLD["device_minute"])
            .select("device_id", "sensor_type", "window_start", "readings", "anomalies")
            .collect()
        ),
        "alerts": sorted((r["event_id"], tuple(r["rules"])) for r in _read(spark, s, GOLD["fraud_alerts"]).collect()),
    }


def test_a_replay_backfill_rebuilds_silver_and_gold_from_bronze_date_by_date_and_never_touches_bronze(
    lake: Settings, spark: SparkSession
) -> None:
    """The partitioned job ``replay_by_date`` launched as a Dagster backfill (what the UI's Partitions
    tab and ``lakehouse replay --backfill`` do): one run per event date, each tagged with its partition
    and the backfill, together restoring silver and gold exactly."""
    from delta.tables import DeltaTable

    s = lake
    before = _snapshot(spark, s)
    assert before["alerts"], "the scenario should raise fraud alerts"
    bronze_versions = {t: DeltaTable.forPath(spark, BRONZE[t].path(s.lake_dir)).history(1).first()[0] for t in BRONZE}  # type: ignore[index]
    dates = _read(spark, s, SILVER["payments"]).agg(F.min("event_date"), F.max("event_date")).first()
    assert dates is not None
    days = [str(dates[0] + timedelta(days=i)) for i in range((dates[1] - dates[0]).days + 1)]

    # Damage silver and gold the way a bug would: rows lost, aggregates wrong, an alert gone.
    DeltaTable.forPath(spark, SILVER["payments"].path(s.lake_dir)).delete("event_id LIKE '%1'")
    DeltaTable.forPath(spark, GOLD["merchant_minute"].path(s.lake_dir)).update(set={"tx_count": "tx_count * 10"})
    DeltaTable.forPath(spark, GOLD["fraud_alerts"].path(s.lake_dir)).delete(f"event_id = '{before['alerts'][0][0]}'")
    assert _snapshot(spark, s) != before

    overrides = {"lake_root": str(s.lake_dir)}
    config = {"ops": {"replay_date": {"config": {"settings": overrides}}}}
    backfill_id = api.launch_backfill(s, "replay_by_date", days, config, {"test": "batch"}, "test replay")
    try:
        state = api.wait_backfill(s, backfill_id, timeout=600)
    except TimeoutError as e:
        pytest.fail(str(e))
    assert set(state["partitions"]) == set(days), state
    run_ids = {day: p["runId"] for day, p in state["partitions"].items()}
    for day, run_id in run_ids.items():
        run = api.runs(s, run_ids=[run_id])[0]
        assert run["status"] == "SUCCESS", [e for e in api.run_events(s, run_id) if e["error"]]
        assert run["jobName"] == "replay_by_date"
        assert run["tags"]["dagster/partition"] == day
        assert run["tags"]["dagster/backfill"] == backfill_id

    assert _snapshot(spark, s) == before
    for t, version in bronze_versions.items():  # bronze was only read
        assert DeltaTable.forPath(spark, BRONZE[t].path(s.lake_dir)).history(1).first()[0] == version  # type: ignore[index]
    events = {run_id: api.run_events(s, run_id) for run_id in run_ids.values()}
    materialized = {e["asset"] for run in events.values() for e in run if e["type"] == "MaterializationEvent"}
    for day, run_id in run_ids.items():  # each run said which step it was at (the CLI draws them as a bar)
        said = [e["message"] for e in events[run_id]]
        assert f"[replay] step 1/8: silver.payments for {day}..{day}" in said
        assert f"[replay] step 8/8: gold.fraud_alerts for {day}..{day}" in said
    assert {"silver/payments", "gold/merchant_minute", "gold/fraud_alerts"} <= materialized
    assert not any(a.startswith("bronze/") for a in materialized)


def test_replay_refuses_to_run_while_the_streams_hold_their_checkpoints(lake: Settings) -> None:
    from spark_apps._runtime import exclusive

    with exclusive(lake, ["refine"]):  # as a running refine stream does
        run = _wait_run(
            lake, _launch(lake, "replay", "replay_tables", {"from_date": "2026-01-01", "to_date": "2026-01-01"})
        )
    assert run["status"] == "FAILURE"
    failure = next(e for e in api.run_events(lake, run["runId"]) if e["error"])
    assert "already running" in failure["error"]


def _observations(events: list[dict[str, Any]], operation: str) -> dict[str, dict[str, Any]]:
    return {
        e["asset"]: e["metadata"]
        for e in events
        if e["type"] == "ObservationEvent" and e["metadata"].get("operation") == operation
    }


def test_maintenance_compacts_checkpoints_and_records_it_on_each_asset(lake: Settings, spark: SparkSession) -> None:
    s = lake
    before = _snapshot(spark, s)
    run_id = _launch(s, "maintenance", "maintain_tables", {"operations": ["optimize", "checkpoint"]})
    run = _wait_run(s, run_id)
    events = api.run_events(s, run_id)
    assert run["status"] == "SUCCESS", [e for e in events if e["error"]]
    optimized = _observations(events, "optimize")
    public = {f"{t.layer}/{t.name}" for t in (*BRONZE.values(), *SILVER.values(), *GOLD.values())}
    assert public <= set(optimized), f"no optimize result for {public - set(optimized)}"
    for asset, m in optimized.items():
        assert m["files_after"] <= m["files_before"], (asset, m)
    assert any(m["files_after"] < m["files_before"] for m in optimized.values()), "nothing was compacted"
    assert set(_observations(events, "checkpoint")) >= public
    log = Path(GOLD["merchant_minute"].path(s.lake_dir)) / "_delta_log"
    assert list(log.glob("*.checkpoint*.parquet")), "no Delta checkpoint written"
    assert _snapshot(spark, s) == before  # compaction changes files, never rows


def _checks(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["asset"], e["check"]["checkName"]): e for e in events if e["check"]}


def test_quality_checks_pass_on_good_tables_and_a_failing_one_blocks_redis(lake: Settings, spark: SparkSession) -> None:

    s = lake
    overrides = {"settings": {"lake_root": str(s.lake_dir)}}
    run_id = api.launch_run(
        s, "quality", {"ops": {"silver_quality": {"config": overrides}, "gold_quality": {"config": overrides}}}
    )
    run = _wait_run(s, run_id)
    checks = _checks(api.run_events(s, run_id))
    failed_errors = {
        k: c["metadata"] for k, c in checks.items() if not c["check"]["success"] and c["check"]["severity"] == "ERROR"
    }
    assert not failed_errors, failed_errors
    assert ("silver/payments", "reconciliation") in checks
    assert ("gold/merchant_minute", "keys_unique") in checks
    assert run["status"] == "SUCCESS"

    # A duplicated gold row: keys_unique (ERROR, blocking) fails, and Redis is not built on it.
    gold = _read(spark, s, GOLD["merchant_minute"])
    dup = gold.limit(1)
    dup_key = dup.first()["merchant_id"]  # type: ignore[index]
    dup.write.format("delta").mode("append").save(GOLD["merchant_minute"].path(s.lake_dir))
    # catchup_pipeline's last two steps: the gold check that fails, then Redis (bronze and refine
    # have nothing new to read; the other checks passed above, running them again proves nothing)
    ops = ("gold_quality", "serving_stream")
    assets = ["serving/redis"]
    checks = [("gold/merchant_minute", "keys_unique")]
    run_id = api.launch_run(
        s, "catchup_pipeline", {"ops": {op: {"config": overrides} for op in ops}}, assets=assets, checks=checks
    )
    run = _wait_run(s, run_id)
    events = api.run_events(s, run_id)
    unique = _checks(events)[("gold/merchant_minute", "keys_unique")]
    assert unique["check"]["success"] is False
    assert dup_key in json.dumps(unique["metadata"]), "the failing example should name the duplicated key"
    started = {e["step"] for e in events if e["type"] == "ExecutionStepStartEvent"}
    assert "gold_quality" in started
    assert "serving_stream" not in started, "Redis was built on data that failed a blocking check"
    assert run["status"] == "FAILURE"


def test_check_and_run_results_reach_prometheus(lake: Settings) -> None:
    """After the quality runs above: dagster-prometheus pushed check results and run outcomes."""
    from tests.integration.test_dagster_streams import _pushed

    s = lake
    # The pushgateway keeps its groups across restarts: what an earlier session pushed must not pass
    # for this one, so each group must have been pushed since this module was imported.
    assert max(_pushed(s, "push_time_seconds", job="lakehouse_quality", layer="gold"), default=0) >= _MODULE_START
    passed = "lakehouse_quality_check_passed"
    assert _pushed(
        s, passed, job="lakehouse_quality", layer="gold", asset="gold/merchant_minute", check="keys_unique"
    ) == [0.0]
    assert _pushed(
        s, passed, job="lakehouse_quality", layer="silver", asset="silver/payments", check="keys_not_null"
    ) == [1.0]
    deadline = time.monotonic() + 120  # the run status sensors tick every 15 s
    jobs = ("quality", "catchup_pipeline")
    while time.monotonic() < deadline and not all(_pushed_since(s, job) for job in jobs):
        time.sleep(3)
    assert all(_pushed_since(s, job) for job in jobs), "no run outcome pushed by this session"
    assert _pushed(s, "lakehouse_dagster_run_success", dagster_job="catchup_pipeline") == [0.0]
    assert _pushed(s, "lakehouse_dagster_run_success", dagster_job="quality") == [1.0]


def _pushed_since(s: Settings, job: str) -> bool:
    """Whether the run-status sensor pushed an outcome of JOB that ended after this module started."""
    from tests.integration.test_dagster_streams import _pushed

    ends = _pushed(s, "lakehouse_dagster_run_last_end_timestamp_seconds", dagster_job=job)
    return max(ends, default=0) >= _MODULE_START
