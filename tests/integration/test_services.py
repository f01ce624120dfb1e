"""Each service of the stack does its job for real."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lakehouse.cli.app import main
from lakehouse.clients import python_config
from lakehouse.contracts import TOPICS
from lakehouse.settings import Settings
from lakehouse.stack import components as stack


def test_status_reports_every_component_healthy(lakehouse_stack: Settings) -> None:
    states = {r.name: r.state for r in stack.status(lakehouse_stack)}
    assert set(states) == {c.name for c in stack.components(lakehouse_stack)}
    assert set(states.values()) == {"healthy"}, states
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 0, result.output
    assert "kafka" in result.output
    assert "trino" in result.output


def test_contract_topics_exist_with_their_partitions(lakehouse_stack: Settings) -> None:
    from lakehouse.services.kafka import partition_counts

    assert partition_counts(lakehouse_stack) == {t.name: lakehouse_stack.kafka_partitions for t in TOPICS}


def test_a_record_goes_through_the_broker(lakehouse_stack: Settings) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    from lakehouse.services.kafka import admin

    topic = f"it-roundtrip-{uuid.uuid4().hex[:8]}"
    client = admin(lakehouse_stack)
    client.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    try:
        payload = f'{{"event_id": "{uuid.uuid4()}"}}'.encode()
        producer = KafkaProducer(**python_config(lakehouse_stack, "admin"), acks="all")  # a test topic: admin
        meta = producer.send(topic, key=b"k1", value=payload).get(timeout=30)
        producer.close()
        assert meta.topic == topic
        assert meta.offset == 0
        consumer = KafkaConsumer(
            topic,
            **python_config(lakehouse_stack, "admin"),
            auto_offset_reset="earliest",
            consumer_timeout_ms=20000,
            group_id=None,
        )
        first = next(consumer, None)  # waits up to consumer_timeout_ms, not for the timeout every time
        assert first is not None, "the record did not come back within 20 s"
        tp = TopicPartition(topic, 0)
        end = consumer.end_offsets([tp])[tp]
        consumer.close()
        assert (first.key, first.value, first.offset) == (b"k1", payload, 0)
        assert end == 1, f"the topic holds {end} records, expected exactly the one sent"
    finally:
        client.delete_topics([topic])
        client.close()


def test_redis_set_get_with_ttl(lakehouse_stack: Settings) -> None:
    from lakehouse.serving import connect

    r = connect(lakehouse_stack, role="admin", decode_responses=False)
    key = f"it:{uuid.uuid4().hex}"
    value = uuid.uuid4().hex
    try:
        assert r.set(key, value, ex=60)
        assert r.get(key) == value.encode()
        assert 0 < r.ttl(key) <= 60
    finally:
        r.delete(key)
    assert r.get(key) is None


def test_spark_written_delta_table_reads_the_same_through_trino(lakehouse_stack: Settings) -> None:
    from lakehouse.stack.smoke import spark_to_trino_roundtrip

    rng = random.Random(time.time_ns())
    rows = [(i, rng.choice(["payments", "clickstream", "iot"]), round(rng.uniform(-1e5, 1e5), 2)) for i in range(50)]
    result = spark_to_trino_roundtrip(lakehouse_stack, rows)
    assert sorted(result.written) == sorted(rows)
    assert sorted(result.read_back) == sorted(rows)


def test_trino_has_the_medallion_schemas(lakehouse_stack: Settings) -> None:
    from lakehouse.services.trino import query

    schemas = {r[0] for r in query(lakehouse_stack, f"SHOW SCHEMAS FROM {lakehouse_stack.trino_catalog}")}
    assert {"bronze", "silver", "gold"} <= schemas


def test_dagster_graphql_lists_the_code_location_and_its_assets(lakehouse_stack: Settings) -> None:
    from lakehouse.services.dagster_api import code_locations, graphql

    locations = {loc["name"]: loc["status"] for loc in code_locations(lakehouse_stack)}
    assert locations.get("lakehouse") == "LOADED", locations
    data = graphql(lakehouse_stack, "{ assetNodes { assetKey { path } } }")
    keys = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
    assert {f"kafka/{t.name}" for t in TOPICS} <= keys


def test_a_pushed_metric_is_served_by_the_pushgateway(lakehouse_stack: Settings) -> None:
    import requests

    job = f"it_{uuid.uuid4().hex[:8]}"
    url = f"{lakehouse_stack.pushgateway_url}/metrics/job/{job}"
    https: dict[str, Any] = {"auth": lakehouse_stack.http_auth("pusher"), "verify": str(lakehouse_stack.ca_file)}
    r = requests.post(url, data="lakehouse_it_metric 42\n", timeout=10, **https)
    assert r.ok, r.text
    try:
        text = requests.get(f"{lakehouse_stack.pushgateway_url}/metrics", timeout=10, **https).text
        assert f'lakehouse_it_metric{{instance="",job="{job}"}} 42' in text
    finally:
        requests.delete(url, timeout=10, **https)


def test_stream_forget_removes_what_a_killed_driver_left_in_the_pushgateway(lakehouse_stack: Settings) -> None:
    """What a killed serving driver leaves (its heartbeat), removed by `lakehouse stream forget serving`;
    the other apps' groups stay."""
    import requests

    s = lakehouse_stack
    https: dict[str, Any] = {"verify": str(s.ca_file)}
    left = 'lakehouse_stream_heartbeat_timestamp_seconds{app="serving"} 1.7e9\nlakehouse_stream_batches_total 3\n'
    other = f"{s.pushgateway_url}/metrics/job/lakehouse_stream/app/it-other"
    for url, body in ((f"{s.pushgateway_url}/metrics/job/lakehouse_stream/app/serving", left), (other, "x_it 1\n")):
        assert requests.put(url, data=body, auth=s.http_auth("pusher"), timeout=10, **https).ok
    try:
        result = CliRunner().invoke(main, ["stream", "forget", "serving"])
        assert result.exit_code == 0, result.output
        assert "forgot serving: 2 series removed" in result.output
        text = requests.get(f"{s.pushgateway_url}/metrics", auth=s.http_auth(), timeout=10, **https).text
        assert 'app="serving"' not in text
        assert 'app="it-other"' in text
        again = CliRunner().invoke(main, ["stream", "forget", "serving"])
        assert "serving had no metrics there" in again.output
    finally:
        requests.delete(other, auth=s.http_auth("pusher"), timeout=10, **https)


def _kafka_auth(s: Settings) -> str:
    """What the broker's metrics endpoint says to the scraper's login now, and when its configuration was
    written against when the broker started (a CI run once saw Prometheus refused with 401 throughout)."""
    import requests

    from lakehouse.stack.components import Kafka

    kafka = Kafka(s)
    url = f"https://{s.host}:{s.kafka_metrics_port}/metrics"
    try:
        status = requests.get(url, timeout=10, verify=str(s.ca_file), auth=s.http_auth("scraper")).status_code
    except requests.RequestException as e:
        status = f"{type(e).__name__}"  # type: ignore[assignment]
    proc = kafka.process()
    conf = kafka.workdir / "jmx-exporter.yml"
    return (
        f"direct scrape as scraper: {status}; broker started {proc.create_time() if proc else None}, "
        f"its metrics config written {conf.stat().st_mtime if conf.exists() else None}, the scraper's password "
        f"file written {s.secret_file('prometheus_scraper').stat().st_mtime}"
    )


def test_prometheus_scrapes_every_target_and_loads_the_alert_rules(lakehouse_stack: Settings) -> None:
    import requests

    expected = ("prometheus", "pushgateway", "trino", "alertmanager", "node", "redis", "kafka", "dagster")
    deadline = time.monotonic() + 60  # the first scrape happens within one 15 s interval
    while True:
        targets = requests.get(
            f"{lakehouse_stack.prometheus_url}/api/v1/targets",
            timeout=10,
            auth=lakehouse_stack.http_auth(),
            verify=str(lakehouse_stack.ca_file),
        ).json()
        health = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in targets["data"]["activeTargets"]}
        if (len(health) == len(expected) and all(h == "up" for h, _ in health.values())) or time.monotonic() > deadline:
            break
        time.sleep(2)
    states = {job: h for job, (h, _) in health.items()}
    assert states == dict.fromkeys(expected, "up"), (health, _kafka_auth(lakehouse_stack))
    rules = requests.get(
        f"{lakehouse_stack.prometheus_url}/api/v1/rules",
        timeout=10,
        auth=lakehouse_stack.http_auth(),
        verify=str(lakehouse_stack.ca_file),
    ).json()["data"]["groups"]
    kafka = f"https://{lakehouse_stack.host}:{lakehouse_stack.kafka_metrics_port}/metrics"
    ca = str(lakehouse_stack.ca_file)
    assert requests.get(kafka, timeout=10, verify=ca).status_code == 401  # the broker's metrics: no login, no entry
    assert requests.get(kafka, timeout=10, verify=ca, auth=("scraper", "wrong")).status_code == 401
    served = requests.get(kafka, timeout=10, verify=ca, auth=lakehouse_stack.http_auth("scraper")).text
    from prometheus_client.parser import text_string_to_metric_families

    partitions = {
        (sample.labels["topic"], sample.labels["partition"])
        for family in text_string_to_metric_families(served)
        if family.name == "kafka_log_end_offset"
        for sample in family.samples
    }
    assert {(t.name, str(p)) for t in TOPICS for p in range(lakehouse_stack.kafka_partitions)} <= partitions
    # Dagster's health, from the dashboards server (the Dagster users' login): every required daemon beat lately.
    dagster = f"{lakehouse_stack.dashboard_url}/metrics"
    assert requests.get(dagster, timeout=10, verify=ca).status_code == 401
    served = requests.get(dagster, timeout=30, verify=ca, auth=lakehouse_stack.dagster_auth("viewer")).text
    samples = [s for f in text_string_to_metric_families(served) for s in f.samples]
    assert [s.value for s in samples if s.name == "lakehouse_dagster_webserver_up"] == [1.0]
    ages = {s.labels["daemon_type"]: s.value for s in samples if s.labels.get("required") == "true"}
    assert {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR"} <= set(ages), ages
    assert all(age < 90 for age in ages.values()), ages
    loaded = {r["name"] for g in rules for r in g["rules"]}
    assert {"LakehouseStreamDown", "LakehouseSupervisorGaveUp", "LakehouseDagsterDaemonDown"} <= loaded
    assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules


def test_the_stacks_redis_refuses_strangers_and_keeps_roles_to_their_job(
    lakehouse_stack: Settings, tmp_path: Path
) -> None:
    from tests.redis_denial import refuses_strangers, roles_do_their_job_only

    refuses_strangers(lakehouse_stack, tmp_path)
    roles_do_their_job_only(lakehouse_stack)


def test_prometheus_and_the_pushgateway_refuse_strangers(lakehouse_stack: Settings, tmp_path: Path) -> None:
    """TLS and Basic auth on both; no lifecycle endpoint on Prometheus; each first works with the login."""
    import requests

    from lakehouse.stack import secrets

    s = lakehouse_stack
    ca = str(s.ca_file)
    other = secrets.make_ca("another CA")
    (tmp_path / "other-ca.pem").write_bytes(other.cert_pem)
    for url in (f"{s.prometheus_url}/api/v1/status/buildinfo", f"{s.pushgateway_url}/api/v1/status"):
        assert requests.get(url, auth=s.http_auth("admin"), verify=ca, timeout=10).status_code == 200
        assert requests.get(url, verify=ca, timeout=10).status_code == 401
        assert requests.get(url, auth=("admin", "not-the-password"), verify=ca, timeout=10).status_code == 401
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, auth=s.http_auth("admin"), verify=str(tmp_path / "other-ca.pem"), timeout=10)
        plain = requests.get(url.replace("https://", "http://"), timeout=10)  # a TLS port speaks no plain HTTP
        assert plain.status_code == 400, plain.text  # Go answers "client sent an HTTP request to an HTTPS server"
    job = f"it_{uuid.uuid4().hex[:8]}"
    assert (
        requests.post(f"{s.pushgateway_url}/metrics/job/{job}", data="x 1\n", verify=ca, timeout=10).status_code == 401
    )
    quit_ = requests.post(f"{s.prometheus_url}/-/quit", auth=s.http_auth("admin"), verify=ca, timeout=10)
    assert quit_.status_code == 403  # no lifecycle endpoint, even for admin
    assert requests.get(f"{s.prometheus_url}/-/ready", auth=s.http_auth("admin"), verify=ca, timeout=10).ok
