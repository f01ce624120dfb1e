"""The cluster profile's Kafka: three KRaft brokers of this test's own (never the stack's), every contract
topic on 3 replicas with ``min.insync.replicas=2``, a producer with ``acks=all`` under load.

A broker SIGKILLed under load costs nothing acknowledged: the producer goes on through the other two
(each acknowledged record is on at least two brokers), and once it is back every record acknowledged
before, during and after is where the producer was told it is, byte for byte. With two of three down
(one replica left, no controller majority) nothing can be acknowledged: the producer's records fail
(time out) instead of being promised on a single copy. A topic setting changed after the topics were
created reaches them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from lakehouse.clients import librdkafka_config
from lakehouse.contracts import TOPICS
from lakehouse.settings import Settings
from lakehouse.stack import components, secrets
from tests import kafka_records

TOPIC = "payments"


def _free_base() -> tuple[int, int, int]:
    """Client, controller and metrics ports for broker 1 whose brokers 2 and 3 (+100, +200) are free too."""
    while True:
        base = (components.free_port(), components.free_port(), components.free_port())
        shifted = [p + 100 * k for p in base for k in (0, 1, 2)]
        if len(set(shifted)) == 9 and all(p < 65536 and not components.port_open("127.0.0.1", p) for p in shifted):
            return base


@pytest.fixture(scope="module")
def cluster(own_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    client, controller, metrics = _free_base()
    s = own_stack.model_copy(
        update={
            "state_dir": tmp_path_factory.mktemp("kafka-cluster") / "state",
            "jvm_root": own_stack.jvm_dir,  # the downloaded jars, shared
            "kafka_brokers": 3,
            "kafka_replication_factor": 3,
            "kafka_min_insync_replicas": 2,
            "kafka_port": client,
            "kafka_controller_port": controller,
            "kafka_metrics_port": metrics,
        }
    )
    secrets.ensure(s)
    names = ["kafka", "kafka-2", "kafka-3"]
    try:
        states = components.up(s, names, log=print)
        assert states == dict.fromkeys(names, "started")
        yield s
    finally:
        components.down(s, names, log=print)


class Load:
    """A producer (librdkafka, ``acks=all``, idempotent) sending numbered records until stopped; what was
    acknowledged (value -> (partition, offset), and when) and what failed."""

    def __init__(self, s: Settings) -> None:
        from confluent_kafka import Producer

        self.producer = Producer(
            librdkafka_config(s, "producer")
            | {"acks": "all", "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 20_000}
        )
        self.acked: dict[bytes, tuple[int, int, float]] = {}
        self.failed: dict[bytes, str] = {}
        self.sent = 0
        #: What stopped the producing thread (None: running, or stopped by the test).
        self.error: Exception | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _report(self, err: object, msg: object) -> None:
        value = msg.value()  # type: ignore[attr-defined]
        with self._lock:
            if err is None:
                self.acked[value] = (msg.partition(), msg.offset(), time.monotonic())  # type: ignore[attr-defined]
            else:
                self.failed[value] = str(err)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for _ in range(50):
                    value = json.dumps({"event_id": f"cluster-{self.sent:07d}", "pad": "x" * 200}).encode()
                    try:
                        self.producer.produce(TOPIC, value=value, on_delivery=self._report)
                        self.sent += 1
                    except BufferError:  # the local queue is full while the cluster fails over: wait, not drop
                        break
                self.producer.poll(0.01)
        except Exception as e:  # e.g. the topic refused: said by the test instead of a silent stall
            self.error = e

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.producer.flush(60)

    def acked_between(self, t0: float, t1: float) -> int:
        with self._lock:
            return sum(1 for _, _, at in self.acked.values() if t0 <= at <= t1)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)


def _replicas(s: Settings) -> dict[int, tuple[int, int]]:
    """Partition -> (replicas, in-sync replicas) of the topic."""
    from lakehouse.services.kafka import admin

    client = admin(s)
    try:
        (topic,) = client.describe_topics([TOPIC])
        return {p["partition_index"]: (len(p["replica_nodes"]), len(p["isr_nodes"])) for p in topic["partitions"]}
    finally:
        client.close()


def _wait(what: str, check: object, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(1)


def test_a_broker_killed_under_load_loses_no_acknowledged_record(cluster: Settings) -> None:
    s = cluster
    nodes = {c.name: c for c in components.components(s) if isinstance(c, components.Kafka)}
    assert set(_replicas(s).values()) == {(3, 3)}  # every partition on three brokers, all in sync
    with Load(s) as load:
        _wait("records acknowledged", lambda: load.count() > 2_000 or load.error is not None)
        assert load.error is None, f"the producer stopped: {load.error!r}"
        victim = nodes["kafka"]  # the first bootstrap server, a controller and the leader of some partitions
        proc = victim.process()
        assert proc is not None
        proc.kill()
        proc.wait(30)
        killed_at = time.monotonic()
        time.sleep(15)
        acked_without_it = load.acked_between(killed_at, time.monotonic())
        assert acked_without_it > 0, "no record acknowledged while one broker of three was down"
        victim.pidfile.remove()
        assert victim.start(print) == "started"
        _wait("the restarted broker back in sync", lambda: set(_replicas(s).values()) == {(3, 3)})
        time.sleep(3)
    assert load.failed == {}, f"{len(load.failed)} records failed with one broker down: {set(load.failed.values())}"
    stored = kafka_records.stored(s, TOPIC)
    lost = {v[:40]: at[:2] for v, at in load.acked.items() if stored.get(v) != at[:2]}
    assert lost == {}, f"{len(lost)} of {len(load.acked)} acknowledged records missing or moved"
    print(f"acknowledged {len(load.acked)} records, {acked_without_it} of them with a broker down; none lost")

    # Two of three down: one replica left, below min.insync.replicas, and no controller majority to change
    # anything: nothing may be acknowledged.
    for name in ("kafka-2", "kafka-3"):
        node = nodes[name]
        proc = node.process()
        assert proc is not None
        proc.kill()
        proc.wait(30)
        node.pidfile.remove()
    from confluent_kafka import Producer

    refused: list[str] = []
    # Not idempotent, so what fails is the write itself (an idempotent producer cannot even get its producer id
    # from the transaction coordinator now: "Coordinator load in progress").
    producer = Producer(
        librdkafka_config(s, "producer") | {"acks": "all", "enable.idempotence": False, "message.timeout.ms": 10_000}
    )
    for i in range(20):
        producer.produce(
            TOPIC,
            value=f"unsafe-{i}".encode(),
            on_delivery=lambda err, msg: refused.append(str(err)) if err is not None else None,
        )
    producer.flush(30)
    assert len(refused) == 20, f"{20 - len(refused)} records acknowledged by a single broker of three"
    print(f"with two brokers of three down, every write refused: {sorted(set(refused))}")
    for name in ("kafka-2", "kafka-3"):
        assert nodes[name].start(print) == "started"
    _wait("the cluster back in sync", lambda: set(_replicas(s).values()) == {(3, 3)})
    stored = kafka_records.stored(s, TOPIC)
    lost = {v[:40]: at[:2] for v, at in load.acked.items() if stored.get(v) != at[:2]}
    assert lost == {}, f"{len(lost)} acknowledged records missing after two brokers were killed and restarted"


def test_a_changed_topic_setting_reaches_the_existing_topics(cluster: Settings) -> None:
    """Topics are created with the settings' configuration; a setting changed later is applied to them at
    the next start (``align_topic_configs``, run by the broker's start), and only where it differs."""
    from lakehouse.services import topics
    from lakehouse.services.kafka import align_topic_configs

    names = [t.name for t in TOPICS]

    def min_isr() -> set[str]:
        return {t.configs["min.insync.replicas"] for t in topics.describe(cluster, names, with_configs=True)}

    assert min_isr() == {"2"}
    assert align_topic_configs(cluster) == {}  # as created: nothing to change
    stricter = cluster.model_copy(update={"kafka_min_insync_replicas": 3})
    assert align_topic_configs(stricter) == {key: {"min.insync.replicas": "3"} for key in names}
    assert min_isr() == {"3"}
    assert align_topic_configs(stricter) == {}
    assert align_topic_configs(cluster) == {key: {"min.insync.replicas": "2"} for key in names}
    assert min_isr() == {"2"}
