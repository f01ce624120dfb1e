"""The fraud fast path (Flink) against the real stack: Kafka in, Redis out.

The job runs as users run it (``lakehouse stream run fastpath``, one JVM) on a private checkpoint
directory, starting at the offsets ``payments`` has when the module starts, so it judges exactly
the payments produced here; the expected alerts are the Python reference's
(``lakehouse.fraud_reference``) over those payments. What the module wrote to Redis is retracted
at the end, so later tests see the stack's Redis as they would without it.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import requests

from lakehouse.clients import python_config
from lakehouse.fraud_reference import evaluate
from lakehouse.generator import GeneratorConfig, generate, produce
from lakehouse.services import fastpath
from lakehouse.services.kafka import end_offsets_json
from lakehouse.serving import connect, keys, retract_fraud_alerts
from lakehouse.settings import Settings

LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")
WAIT_S = 90.0


@dataclass
class FastPathRun:
    """The fast path as a user runs it, plus what the tests produced for it."""

    s: Settings
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    payments: list[dict[str, Any]] = field(default_factory=list)  # every payment produced here, first copies

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")} | self.s.to_env()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [LAKEHOUSE, "stream", "run", fastpath.NAME], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def jvm(self) -> psutil.Process:
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the fast path exited ({self.proc.returncode}):\n{self.tail()}"
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                if fastpath.MAIN_CLASS in " ".join(child.cmdline()):
                    return child
            time.sleep(0.2)
        raise AssertionError(f"no fast path JVM under pid {self.proc.pid}:\n{self.tail()}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def add(self, run: Any) -> None:
        assert produce(run, self.s).failed == 0
        self.payments.extend(run.truth.payments)

    def expected(self) -> dict[str, tuple[list[str], float]]:
        return {e: (a.rules, a.score) for e, a in evaluate(self.payments).items()}


@pytest.fixture(scope="module")
def fast(lakehouse_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastPathRun]:
    work = tmp_path_factory.mktemp("fastpath")
    offsets = json.loads(end_offsets_json(lakehouse_stack))
    s = lakehouse_stack.model_copy(
        update={
            "checkpoint_root": work / "checkpoints",
            "fastpath_start": json.dumps({"payments": offsets["payments"]}),
        }
    )
    run = FastPathRun(s, work / "fastpath.log")
    run.start()
    try:
        yield run
    finally:
        run.stop()
        r = connect(s, role="admin")
        try:  # leave the stack's Redis as the other tests expect it
            ids = [p["event_id"] for p in run.payments]
            retract_fraud_alerts(r, ids)
            for i in range(0, len(ids), 500):
                r.delete(*(keys.fraud_fast_alert_key(e) for e in ids[i : i + 500]))
        finally:
            r.close()


def verdicts(r: redis.Redis, ids: list[str]) -> dict[str, tuple[list[str], float]]:
    """The fast path's verdicts (``fraud:fast:*``) on IDS."""
    pipe = r.pipeline(transaction=False)
    for e in ids:
        pipe.hgetall(keys.fraud_fast_alert_key(e))
    return {e: (json.loads(h["rules"]), float(h["score"])) for e, h in zip(ids, pipe.execute(), strict=True) if h}


def wait_for(fast: FastPathRun, r: redis.Redis) -> dict[str, tuple[list[str], float]]:
    """The verdicts once every expected alert is there (or the deadline passed), and the group has caught up."""
    expected = fast.expected()
    ids = [p["event_id"] for p in fast.payments]
    deadline = time.monotonic() + WAIT_S
    got: dict[str, tuple[list[str], float]] = {}
    while time.monotonic() < deadline:
        got = verdicts(r, ids)
        if expected.keys() <= got.keys():
            break
        time.sleep(0.5)
    time.sleep(2 * fast.s.fastpath_checkpoint_interval_s)  # anything extra that was coming has come
    return verdicts(r, ids)


def stream_entries(r: redis.Redis, ids: set[str]) -> Counter[str]:
    """How many ``fraud:alerts`` entries each of IDS has."""
    return Counter(f["event_id"] for _, f in r.xrange(keys.FRAUD_ALERTS_STREAM) if f.get("event_id") in ids)


def test_every_fraud_pattern_reaches_redis_within_seconds_equal_to_the_reference(fast: FastPathRun) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    run = generate(
        GeneratorConfig.every_fault(
            2400, seed=1201, rate=10, start_time=start, topics=("payments",), anomalies=0, late=8
        )
    )
    assert len(run.truth.expected_fraud_alerts) >= 8  # two instances of each pattern, at least
    sent = time.monotonic()
    fast.add(run)
    r = connect(fast.s)
    got = wait_for(fast, r)
    took = time.monotonic() - sent
    expected = fast.expected()
    assert got == expected, f"fast path differs from the reference:\n{fast.tail()}"
    entries = stream_entries(r, set(expected))
    assert entries == Counter(dict.fromkeys(expected, 1))
    for _, f in r.xrange(keys.FRAUD_ALERTS_STREAM):
        if f["event_id"] in expected:
            assert f["path"] == "fast"
    print(f"{len(expected)} alerts in Redis {took:.1f}s after the first send")


def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(fast: FastPathRun) -> None:
    run = generate(
        GeneratorConfig.every_fault(4000, seed=1202, rate=800, throttle=True, topics=("payments",), anomalies=0)
    )
    jvm = fast.jvm()
    sender = threading.Thread(target=fast.add, args=(run,))
    sender.start()
    time.sleep(2.5)  # mid-stream: about half of the records sent
    jvm.send_signal(signal.SIGKILL)
    code = fast.proc.wait(timeout=60) if fast.proc else None
    assert code not in (0, None)
    restored = fastpath.latest_checkpoint(fast.s)
    assert restored is not None, "no retained checkpoint to restart from"
    fast.start()
    sender.join(timeout=120)
    assert not sender.is_alive()
    r = connect(fast.s)
    got = wait_for(fast, r)
    expected = fast.expected()
    assert got == expected, f"after SIGKILL and restart the fast path differs from the reference:\n{fast.tail()}"
    entries = stream_entries(r, set(expected))
    doubled = {e: n for e, n in entries.items() if n > 1}
    assert doubled == {}
    assert set(entries) == set(expected)
    assert f"restoring {restored}" in fast.log.read_text()


def _answers(port: int, context: ssl.SSLContext | None) -> str:
    """What a client gets from 127.0.0.1:PORT asking GET /jobs: "HTTP <status>" or why it got nothing."""
    import http.client

    conn = (
        http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
        if context is not None
        else http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    )
    try:
        conn.request("GET", "/jobs")
        return f"HTTP {conn.getresponse().status}"
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        conn.close()


def test_flinks_endpoints_take_only_clients_with_a_certificate_of_the_stacks_ca(fast: FastPathRun) -> None:
    """The MiniCluster's REST endpoint can cancel the job and its blob server takes uploads: both on
    loopback ports anyone on the machine can reach, so both demand a client certificate (mutual TLS)."""
    s = fast.s
    fast.jvm()
    deadline = time.monotonic() + WAIT_S
    ports: list[int] = []
    while time.monotonic() < deadline and len(ports) < 2:
        ports = sorted(c.laddr.port for c in fast.jvm().net_connections("tcp") if c.status == psutil.CONN_LISTEN)
        time.sleep(0.5)
    assert len(ports) >= 2, f"expected Flink's REST endpoint and blob server to listen, found {ports}"
    no_cert = ssl.create_default_context(cafile=str(s.ca_file))
    with_cert = ssl.create_default_context(cafile=str(s.ca_file))
    with_cert.load_cert_chain(s.secrets_dir / "server.pem", s.secrets_dir / "server.key")
    got = {port: (_answers(port, None), _answers(port, no_cert), _answers(port, with_cert)) for port in ports}
    for port, (plain, anonymous, _) in got.items():
        assert not plain.startswith("HTTP 2"), f"port {port} answered plain HTTP: {got}"
        assert not anonymous.startswith("HTTP"), f"port {port} answered TLS without a client certificate: {got}"
    assert [p for p, (_, _, certified) in got.items() if certified == "HTTP 200"], f"no REST endpoint found: {got}"


def _pushed(metric: str, s: Settings) -> float | None:
    text = requests.get(f"{s.pushgateway_url}/metrics", timeout=5, auth=s.http_auth(), verify=str(s.ca_file)).text
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(metric + "{") and f'job="{fastpath.PUSH_JOB}"' in line
    ]
    return sum(values) if values else None


def test_a_malformed_flood_is_counted_and_skipped_and_the_job_keeps_judging(fast: FastPathRun) -> None:
    from kafka import KafkaProducer

    jvm = fast.jvm()
    before = _pushed("flink_taskmanager_job_task_operator_payments_invalid", fast.s) or 0.0
    nested = ("[" * 5000 + "]" * 5000).encode()
    future = json.dumps({"event_id": "f", "event_time": "2099-01-01T00:00:00Z", "user_id": "u", "card_number": "4"})
    flood = [
        b"not json",
        b"\xff\xfe\x00\x01",  # not UTF-8
        nested,  # deeper than the JSON parser's limit
        b'{"event_id": 1}',
        b"[1, 2, 3]",
        future.encode(),
        b"x" * 900_000,  # near the broker's 1 MB record limit
    ]
    producer = KafkaProducer(**python_config(fast.s, "producer"), max_request_size=2_000_000)
    n = 0
    for i in range(1400):
        producer.send("payments", flood[i % len(flood)], key=str(i).encode())
        n += 1
    producer.flush(60)
    producer.close()
    run = generate(GeneratorConfig(seed=1203, count=600, topics=("payments",), fraud_card_testing=1, fraud_velocity=1))
    fast.add(run)
    r = connect(fast.s)
    got = wait_for(fast, r)
    assert got == fast.expected(), f"after the flood the fast path differs from the reference:\n{fast.tail()}"
    assert jvm.is_running(), "the flood stopped the job"
    assert fast.jvm().pid == jvm.pid
    deadline = time.monotonic() + 30  # metrics are pushed every 10 s
    counted = before
    while time.monotonic() < deadline:
        counted = _pushed("flink_taskmanager_job_task_operator_payments_invalid", fast.s) or 0.0
        if counted - before >= n:
            break
        time.sleep(1)
    assert counted - before >= n  # every record of the flood (the baseline is at most 10 s old: >=)
    restarts = _pushed("flink_jobmanager_job_numRestarts", fast.s)
    assert restarts == 0.0


def test_dagster_starts_observes_and_stops_the_fast_path(fast: FastPathRun, tmp_path: Path) -> None:
    """`lakehouse stream start|status|stop fastpath`: a Dagster run is the job's life, with its lag observed."""
    from lakehouse.services import dagster_api as api

    fast.stop()  # one fast path at a time: this test runs its own, under Dagster
    s = fast.s
    start = json.dumps({"payments": json.loads(end_offsets_json(s))["payments"]})
    overrides = {"checkpoint_root": str(tmp_path / "checkpoints"), "fastpath_start": start}
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")} | s.to_env()
    sets = [x for k, v in overrides.items() for x in ("--set", f"{k}={v}")]
    out = subprocess.run(
        [LAKEHOUSE, "stream", "start", fastpath.NAME, *sets], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    run_id = out.stdout.split("run ", 1)[1].split()[0]
    fast.add(generate(GeneratorConfig(seed=1204, count=400, topics=("payments",), fraud_card_testing=1)))
    r = connect(s)
    got = wait_for(fast, r)
    assert fast.expected().keys() <= got.keys()

    def materialized() -> bool:
        return any(
            e["type"] == "MaterializationEvent" and e["asset"] == "serving/fraud_fast_path"
            for e in api.run_events(s, run_id)
        )

    deadline = time.monotonic() + 60
    while not materialized() and time.monotonic() < deadline:
        time.sleep(2)
    assert materialized(), "the run did not materialize serving/fraud_fast_path after its first checkpoint"
    status = subprocess.run([LAKEHOUSE, "stream", "status"], env=env, capture_output=True, text=True, check=False)
    line = next(x for x in status.stdout.splitlines() if fastpath.NAME in x)
    assert run_id[:8] in line
    assert "STARTED" in line
    stop = subprocess.run(
        [LAKEHOUSE, "stream", "stop", fastpath.NAME, "--timeout", "120"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert api.runs(s, run_ids=[run_id])[0]["status"] == "CANCELED"
    assert not any(fastpath.MAIN_CLASS in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))
