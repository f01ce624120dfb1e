"""The cluster profile's stack is what it claims (`make test-cluster`: LAKEHOUSE_PROFILE=cluster, after the
pipeline's contract tests ran on it): three Kafka brokers holding every contract topic on three replicas
with two in sync, a Spark standalone master whose two workers ran the pipeline's tasks with the project's
code shipped to them, and Dagster storing in PostgreSQL; no shared secret on any command line."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from lakehouse.contracts import TOPICS
from lakehouse.delta.session import CODE_DIR
from lakehouse.settings import Settings
from lakehouse.stack import components
from lakehouse.stack.spark_cluster import SparkWorker, alive_workers, master_state

pytestmark = pytest.mark.cluster_profile


@pytest.fixture(autouse=True)
def _cluster_only(lakehouse_stack: Settings) -> None:
    if lakehouse_stack.profile != "cluster":
        pytest.fail("run by `make test-cluster` (LAKEHOUSE_PROFILE=cluster), not on the local profile")


def test_kafka_is_three_brokers_with_every_topic_on_three_replicas_two_in_sync(lakehouse_stack: Settings) -> None:
    from lakehouse.services import topics
    from lakehouse.services.kafka import admin

    s = lakehouse_stack
    client = admin(s)
    try:
        assert {b["broker_id"] for b in client.describe_cluster()["brokers"]} == {1, 2, 3}
    finally:
        client.close()
    described = {t.name: t for t in topics.describe(s, [t.name for t in TOPICS])}
    for name, info in described.items():
        assert {(len(p.replicas), len(p.isr)) for p in info.partitions} == {(3, 3)}, name
        assert info.configs["min.insync.replicas"] == "2", name
        assert {p.leader for p in info.partitions} == {1, 2, 3}, f"{name}: leaders not spread over the brokers"


def test_the_pipeline_ran_on_both_spark_workers_with_the_shipped_code(lakehouse_stack: Settings) -> None:
    s = lakehouse_stack
    assert s.spark_master == f"spark://{s.host}:{s.spark_master_port}"
    state = master_state(s)
    assert state is not None
    assert state["status"] == "ALIVE"
    assert len(alive_workers(s)) == 2
    ran = [a for a in state["completedapps"] + state["activeapps"] if a["name"] == "lakehouse-pipeline"]
    assert ran, f"no pipeline app on the master: {[a['name'] for a in state['completedapps']]}"
    # Each worker's executor logs: tasks of the pipeline ran there, with the code archive unpacked beside them.
    for worker in (SparkWorker(s, 1), SparkWorker(s, 2)):
        logs = [p.read_text(errors="replace") for p in Path(worker.workdir / "work").glob("app-*/*/stderr")]
        assert any("Finished task" in log for log in logs), f"no task finished on {worker.name}"
        shipped = list((worker.workdir / "work").glob(f"app-*/*/{CODE_DIR}/lakehouse/__init__.py"))
        assert shipped, f"no executor of {worker.name} unpacked the code archive"


def test_dagster_stores_in_postgres(lakehouse_stack: Settings) -> None:
    from lakehouse.stack.postgres import connect

    s = lakehouse_stack
    assert s.dagster_storage == "postgres"
    with connect(s) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM daemon_heartbeats")
        heartbeats = cur.fetchone()[0]
    assert heartbeats > 0  # the daemon writes there
    assert not (s.dagster_home / "history" / "runs.db").exists()  # and not in SQLite


def test_no_secret_of_the_cluster_is_on_a_command_line_in_an_environment_or_a_log(lakehouse_stack: Settings) -> None:
    s = lakehouse_stack
    names = ("spark_auth", "postgres_admin", "postgres_dagster", "s3_lakehouse", "s3_trino", "seaweedfs_jwt")
    secrets = {n: s.secret(n).get_secret_value() for n in names}
    ours = [c.process() for c in components.components(s)]
    for proc in [p for p in ours if p is not None]:
        for child in (proc, *proc.children(recursive=True)):
            try:
                line = " ".join(child.cmdline())
                env = " ".join(f"{k}={v}" for k, v in child.environ().items())
            except psutil.NoSuchProcess:
                continue
            leaked = [n for n, v in secrets.items() if v in line]
            assert leaked == [], f"{leaked} on the command line of {child.pid} ({child.name()})"
            leaked = [n for n, v in secrets.items() if v in env and n.startswith(("s3_", "seaweedfs"))]
            assert leaked == [], f"{leaked} in the environment of {child.pid} ({child.name()})"
    for c in components.components(s):  # nor in a log (the object store's, Trino's, ...)
        text = c.logfile.read_text(errors="replace") if c.logfile.exists() else ""
        leaked = [n for n, v in secrets.items() if v in text]
        assert leaked == [], f"{leaked} in {c.logfile}"


def test_prometheus_scrapes_postgres_through_its_exporter_and_it_is_up(lakehouse_stack: Settings) -> None:
    import time

    import requests

    s = lakehouse_stack
    exporter = f"https://{s.host}:{s.postgres_exporter_port}/metrics"
    assert requests.get(exporter, timeout=10, verify=str(s.ca_file)).status_code == 401  # no login, no metrics
    deadline = time.monotonic() + 60  # the first scrape comes within one 15 s interval
    while True:
        r = requests.get(
            f"{s.prometheus_url}/api/v1/query",
            params={"query": 'pg_up{job="postgres"}'},
            timeout=10,
            auth=s.http_auth(),
            verify=str(s.ca_file),
        ).json()
        values = [float(v["value"][1]) for v in r["data"]["result"]]
        if values or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert values == [1.0], r  # the exporter reaches PostgreSQL (TLS, the monitor role) and Prometheus the exporter
