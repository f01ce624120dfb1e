"""The cluster profile's stack is what it claims (`make test-cluster`: LAKEHOUSE_PROFILE=cluster, after the
pipeline's contract tests ran on it): three Kafka brokers holding every contract topic on three replicas
with two in sync, a Spark standalone master whose two workers ran the pipeline's tasks with the project's
code shipped to them, and Dagster storing in PostgreSQL; no shared secret on any command line."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from lakehouse.contracts import TOPICS
from lakehouse.settings import Settings
from lakehouse.stack import components
from lakehouse.stack.spark_cluster import SparkWorker, alive_workers, master_state

pytestmark = pytest.mark.cluster_profile


@pytest.fixture(autouse=True)
def _cluster_only(lakehouse_stack: Settings) -> None:
    if lakehouse_stack.profile != "cluster":
        pytest.fail("run by `make test-cluster` (LAKEHOUSE_PROFILE=cluster), not on the local profile")


def test_kafka_is_three_brokers_with_every_topic_on_three_replicas_two_in_sync(lakehouse_stack: Settings) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType

    from lakehouse.services.kafka import admin

    s = lakehouse_stack
    client = admin(s)
    try:
        brokers = {b["node_id"] for b in client.describe_cluster()["brokers"]}
        assert brokers == {1, 2, 3}
        for topic in client.describe_topics([t.name for t in TOPICS]):
            replicas = {(len(p["replica_nodes"]), len(p["isr_nodes"])) for p in topic["partitions"]}
            assert replicas == {(3, 3)}, topic["name"]
        configs = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t.name) for t in TOPICS])
        found = {
            (resource["resource_name"], entry["name"]): entry["value"]
            for response in configs
            for resource in response.to_object()["results"]
            for entry in resource["configs"]
        }
        for t in TOPICS:
            assert found[(t.name, "min.insync.replicas")] == "2"
    finally:
        client.close()


def test_the_pipeline_ran_on_both_spark_workers_with_the_shipped_code(lakehouse_stack: Settings) -> None:
    s = lakehouse_stack
    assert s.spark_master == f"spark://{s.host}:{s.spark_master_port}"
    state = master_state(s)
    assert state is not None
    assert state["status"] == "ALIVE"
    assert len(alive_workers(s)) == 2
    ran = [a for a in state["completedapps"] + state["activeapps"] if a["name"] == "lakehouse-all"]
    assert ran, f"no pipeline app on the master: {[a['name'] for a in state['completedapps']]}"
    # Each worker's executor logs: tasks of the pipeline ran there, reading the code from the shipped archive.
    for worker in (SparkWorker(s, 1), SparkWorker(s, 2)):
        logs = [p.read_text(errors="replace") for p in Path(worker.workdir / "work").glob("app-*/*/stderr")]
        assert any("Finished task" in log for log in logs), f"no task finished on {worker.name}"
        assert any(Path(p).name.startswith("lakehouse-code-") for p in (worker.workdir / "work").glob("app-*/*/*.zip"))


def test_dagster_stores_in_postgres(lakehouse_stack: Settings) -> None:
    from lakehouse.stack.postgres import connect

    s = lakehouse_stack
    assert s.dagster_storage == "postgres"
    with connect(s) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM daemon_heartbeats")
        heartbeats = cur.fetchone()[0]
    assert heartbeats > 0  # the daemon writes there
    assert not (s.dagster_home / "history" / "runs.db").exists()  # and not in SQLite


def test_no_secret_of_the_cluster_is_on_a_command_line(lakehouse_stack: Settings) -> None:
    s = lakehouse_stack
    secrets = {n: s.secret(n).get_secret_value() for n in ("spark_auth", "postgres_admin", "postgres_dagster")}
    ours = [c.process() for c in components.components(s)]
    for proc in [p for p in ours if p is not None]:
        for child in (proc, *proc.children(recursive=True)):
            try:
                line = " ".join(child.cmdline())
            except psutil.NoSuchProcess:
                continue
            leaked = [n for n, v in secrets.items() if v in line]
            assert leaked == [], f"{leaked} on the command line of {child.pid} ({child.name()})"
