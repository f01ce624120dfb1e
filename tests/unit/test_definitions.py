from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

from lakehouse.contracts import TOPICS
from orchestration.definitions import defs

ROOT = Path(__file__).resolve().parents[2]


def test_code_location_has_the_kafka_topics_as_external_assets() -> None:
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {f"kafka/{t.name}" for t in TOPICS} <= keys
    spec = defs.resolve_assets_def(dg.AssetKey(["kafka", "payments"])).specs_by_key[dg.AssetKey(["kafka", "payments"])]
    assert spec.group_name == "kafka"
    assert spec.metadata["key"] == "user_id"


def test_dagster_definitions_validate_passes() -> None:
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_table_is_an_asset_with_lineage_and_its_column_schema() -> None:
    from lakehouse.tables import ALL_TABLES

    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    public = list(ALL_TABLES)
    assert {f"{t.layer}/{t.name}" for t in public} <= keys
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["bronze", "payments"])).parent_keys == {dg.AssetKey(["kafka", "payments"])}
    assert graph.get(dg.AssetKey(["silver", "iot"])).parent_keys == {dg.AssetKey(["bronze", "iot"])}
    assert graph.get(dg.AssetKey(["gold", "fraud_alerts"])).parent_keys == {dg.AssetKey(["silver", "payments"])}
    for t in public:
        node = graph.get(dg.AssetKey([t.layer, t.name]))
        assert node.group_name == t.layer
        columns = node.metadata["dagster/column_schema"].columns
        assert [c.name for c in columns] == t.column_names


def test_each_layer_is_one_stream_asset_with_continuous_and_catchup_jobs() -> None:
    repo = defs.get_repository_def()
    jobs = {j.name for j in repo.get_all_jobs()}
    for layer in ("bronze", "refine", "serving"):
        assert {f"stream_{layer}", f"catchup_{layer}"} <= jobs
        stream = repo.get_job(f"stream_{layer}")
        catchup = repo.get_job(f"catchup_{layer}")
        assert stream.tags["lakehouse/stream"] == catchup.tags["lakehouse/stream"] == layer  # one run queue slot
        assert stream.run_config["ops"][f"{layer}_stream"]["config"]["mode"] == "continuous"  # type: ignore[index]
        assert catchup.run_config["ops"][f"{layer}_stream"]["config"]["mode"] == "available_now"  # type: ignore[index]
    stream_keys = defs.resolve_assets_def(dg.AssetKey(["silver", "payments"])).keys
    assert dg.AssetKey(["silver", "quarantine"]) in stream_keys  # refine writes quarantine too
    assert dg.AssetKey(["gold", "fraud_alerts"]) in stream_keys  # ... and gold, in the same pass
    assert not {f"stream_{old}" for old in ("silver", "gold")} & jobs


def test_supervisors_and_catchup_schedules_exist_and_start_switched_off() -> None:
    repo = defs.get_repository_def()
    sensors = {s.name: s for s in repo.sensor_defs}
    schedules = {s.name: s for s in repo.schedule_defs}
    for layer in ("bronze", "refine", "serving"):
        assert sensors[f"supervise_{layer}"].job_name == f"stream_{layer}"
        assert sensors[f"supervise_{layer}"].default_status == dg.DefaultSensorStatus.STOPPED
        assert schedules[f"catchup_{layer}_schedule"].job_name == f"catchup_{layer}"
        assert schedules[f"catchup_{layer}_schedule"].default_status == dg.DefaultScheduleStatus.STOPPED


def test_stream_messages_map_to_the_tables_each_query_writes() -> None:
    from orchestration.defs.streaming.streams import observe

    assert observe({"query": "bronze_iot"}) == [dg.AssetKey(["bronze", "iot"])]
    assert set(observe({"query": "refine_payments"})) == {
        dg.AssetKey(["silver", "payments"]),
        dg.AssetKey(["silver", "quarantine"]),
        *(dg.AssetKey(["gold", n]) for n in ("merchant_minute", "fraud_alerts", "late_events")),
    }
    assert set(observe({"query": "refine_iot"})) == {
        dg.AssetKey(["silver", "iot"]),
        dg.AssetKey(["silver", "quarantine"]),
        dg.AssetKey(["gold", "device_minute"]),
        dg.AssetKey(["gold", "late_events"]),
    }
    assert observe({"query": "serving_fraud_alerts"}) == [dg.AssetKey(["serving", "redis"])]
    assert observe({"query": "something_else"}) == []


def test_redis_projection_is_an_asset_downstream_of_gold_with_a_freshness_policy() -> None:
    from lakehouse.serving import SERVED_KEYS

    node = defs.resolve_asset_graph().get(dg.AssetKey(["serving", "redis"]))
    assert node.parent_keys == {dg.AssetKey(["gold", name]) for name in SERVED_KEYS}
    assert node.group_name == "serving"
    policy = node.freshness_policy
    assert isinstance(policy, dg.FreshnessPolicy)
    assert policy.fail_window.to_timedelta().total_seconds() == 3600  # type: ignore[attr-defined]
    assert "merchant:{merchant_id}:minute:{window_start_epoch_s}" in str(node.metadata["key_layout"])


def test_every_quality_check_is_an_asset_check_and_error_checks_block() -> None:
    from lakehouse.checks import CHECKS

    graph = defs.resolve_asset_graph()
    declared = {
        (k.asset_key.to_user_string(), k.name)
        for k in graph.asset_check_keys
        if k.asset_key.path[0] in ("bronze", "silver", "gold")  # dbt's tests: tests/unit/test_dbt_project.py
    }
    assert {(c.asset, c.name) for c in CHECKS} == declared
    specs = {
        (spec.asset_key.to_user_string(), spec.name): spec
        for checks in defs.get_repository_def().asset_checks_defs_by_key.values()
        for spec in checks.check_specs
    }
    for c in CHECKS:
        assert specs[(c.asset, c.name)].blocking == (c.severity == "ERROR"), c
    assert {a for a, _ in declared} == {f"{t.layer}/{t.name}" for t in _public_silver_and_gold()}


def _public_silver_and_gold() -> list:  # type: ignore[type-arg]
    from lakehouse.tables import ALL_TABLES

    # quarantine has no suite of its own: each silver table's reconciliation accounts for it
    return [t for t in ALL_TABLES if t.layer in ("silver", "gold") and t.name != "quarantine"]


def test_batch_jobs_and_their_schedules_exist() -> None:
    repo = defs.get_repository_def()
    jobs = {j.name for j in repo.get_all_jobs()}
    assert {"replay", "maintenance", "vacuum", "quality", "catchup_pipeline"} <= jobs
    schedules = {s.name: s.job_name for s in repo.schedule_defs}
    assert schedules["maintenance_nightly"] == "maintenance"
    assert schedules["vacuum_weekly"] == "vacuum"
    assert schedules["quality_hourly"] == "quality"
    # the quality gate sits between the lake and Redis in the catch-up pipeline
    nodes = {n.name for n in repo.get_job("catchup_pipeline").graph.node_defs}
    assert {
        "bronze_stream",
        "refine_stream",
        "serving_stream",
        "silver_quality",
        "gold_quality",
    } == nodes
    # no job that rewrites tables selects bronze except the bronze stream's own
    for name in ("replay", "maintenance", "vacuum", "quality"):
        assert not any(k.path[0] == "bronze" for k in repo.get_job(name).asset_layer.executable_asset_keys)


def test_metrics_sensors_are_on_by_default() -> None:
    sensors = {s.name: s for s in defs.get_repository_def().sensor_defs}
    for status in ("success", "failure", "canceled"):
        assert sensors[f"run_metrics_{status}"].default_status == dg.DefaultSensorStatus.RUNNING


def test_a_catchup_tick_behind_a_running_stream_is_skipped_with_the_reason() -> None:
    """The run queue admits one run per stream: a catch-up queued behind a continuous stream would wait
    forever, and one more would queue on every tick."""
    from dagster._core.storage.dagster_run import DagsterRun

    from orchestration.defs.streaming.streams import catchup_schedules

    schedule = next(s for s in catchup_schedules if s.name == "catchup_bronze_schedule")
    with dg.instance_for_test() as instance:
        first = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
        assert [r.job_name or schedule.job_name for r in first.run_requests or []] == ["catchup_bronze"]
        instance.add_run(
            DagsterRun(
                job_name="stream_bronze",
                run_id="0123456789abcdef",
                status=dg.DagsterRunStatus.STARTED,
                tags={"lakehouse/stream": "bronze", "lakehouse/mode": "continuous"},
            )
        )
        second = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
        assert not second.run_requests
        assert second.skip_message == (
            "bronze is already running (continuous, run 01234567, STARTED): "
            "nothing to catch up that it does not read itself"
        )
        other = next(s for s in catchup_schedules if s.name == "catchup_refine_schedule")
        assert other.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests  # another stream's slot


def test_replay_by_date_backfills_one_event_date_per_run_and_queues_replays_one_at_a_time(tmp_path: Path) -> None:
    """The partitioned replay: daily UTC partitions from 2024-01-01 to today, each run rebuilding its
    own date only (the app gets --from D --to D) with the run's settings; the run queue admits one
    replay at a time (they take the refine stream's checkpoint lock)."""
    from datetime import UTC, datetime

    import yaml

    from orchestration.defs.batch.replay import REPLAY_DATES, replay_by_date
    from orchestration.lib.spark import SparkPipes

    job = defs.get_repository_def().get_job("replay_by_date")
    assert job.partitions_def == REPLAY_DATES
    assert job.tags["lakehouse/kind"] == "replay"
    keys = REPLAY_DATES.get_partition_keys()
    assert keys[0] == "2024-01-01"
    assert keys[-1] == datetime.now(UTC).date().isoformat()

    launched: list[tuple[list[str], str]] = []

    class StandIn(SparkPipes):  # records the launch instead of starting Spark
        def run(self, context, s, app, master=None):  # type: ignore[no-untyped-def, override]
            launched.append((list(app.args), str(s.lake_dir)))
            yield from ()

    result = replay_by_date.execute_in_process(
        partition_key="2026-11-02",
        run_config={"ops": {"replay_date": {"config": {"layers": ["gold"], "settings": {"lake_root": str(tmp_path)}}}}},
        resources={"spark": StandIn()},
    )
    assert result.success
    assert launched == [(["--from", "2026-11-02", "--to", "2026-11-02", "--layers", "gold"], str(tmp_path))]

    limits = yaml.safe_load((ROOT / "infra/dagster/dagster.yaml").read_text())["run_coordinator"]["config"][
        "tag_concurrency_limits"
    ]
    assert {"key": "lakehouse/kind", "value": "replay", "limit": 1} in limits
