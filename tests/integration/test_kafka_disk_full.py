"""Kafka's log on a full disk: a broker of this test's own (its log on a tmpfs), never the stack's.

A broker whose only log directory cannot be written takes the directory offline and, with no other
left, stops: loudly (its log names the directory and the error), and a producer with ``acks=all``
gets an error for every record it was not acknowledged, so nothing is lost silently. Once the disk
has room, the broker starts again and every record it had acknowledged is there, byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lakehouse.chaos.scenarios import SmallDisk
from lakehouse.clients import python_config
from lakehouse.settings import Settings
from lakehouse.stack import components, secrets
from tests import kafka_records

TOPIC = "payments"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    if (why := SmallDisk.unavailable()) is not None:
        pytest.skip(why)
    disk = SmallDisk(tmp_path / "state" / "kafka" / "data", size_bytes=1 << 30)  # the broker's log.dirs only
    disk.mount()
    try:
        yield disk
    finally:
        disk.unmount()


def _private_broker(base: Settings, state_dir: Path) -> components.Kafka:
    """A broker configured as the stack's (TLS, SCRAM, ACLs, the contract topics) in STATE_DIR, on free ports."""
    s = base.model_copy(
        update={
            "state_dir": state_dir,
            "jvm_root": base.jvm_dir,  # the downloaded jars, shared
            "kafka_port": components.free_port(),
            "kafka_controller_port": components.free_port(),
            "kafka_metrics_port": components.free_port(),
        }
    )
    secrets.ensure(s)
    return components.Kafka(s)


def _send(s: Settings, values: list[bytes]) -> tuple[dict[bytes, tuple[int, int]], list[str]]:
    """Send VALUES with acks=all; what the broker acknowledged (value -> partition, offset) and the errors."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        **python_config(s, "producer"),
        acks="all",
        linger_ms=5,
        retries=2,
        request_timeout_ms=10_000,
        max_block_ms=10_000,
    )
    futures = []
    errors: list[str] = []
    try:
        for value in values:
            try:
                futures.append((value, producer.send(TOPIC, value=value)))
            except Exception as e:  # the broker gone: metadata or buffer timeouts at send
                errors.append(f"send: {type(e).__name__}: {e}")
        producer.flush(timeout=60)
    except Exception as e:
        errors.append(f"flush: {type(e).__name__}: {e}")
    finally:
        try:
            producer.close(timeout=5)
        except Exception as e:  # records still unacknowledged: counted below
            errors.append(f"close: {type(e).__name__}: {e}")
    acked: dict[bytes, tuple[int, int]] = {}
    for value, future in futures:
        if future.is_done and future.exception is None:
            acked[value] = (future.value.partition, future.value.offset)
        else:
            errors.append(f"{type(future.exception).__name__}" if future.is_done else "not acknowledged")
    return acked, errors


def _values(start: int, n: int, pad: int) -> list[bytes]:
    return [json.dumps({"event_id": f"disk-{i:07d}", "pad": "x" * pad}).encode() for i in range(start, start + n)]


def test_a_broker_whose_log_disk_fills_stops_loudly_and_keeps_every_acknowledged_record(
    own_stack: Settings, small_disk: SmallDisk
) -> None:
    kafka = _private_broker(own_stack, small_disk.path.parent.parent)
    s = kafka.s
    assert kafka.start(print) == "started"
    try:
        before, errors = _send(s, _values(0, 2_000, 200))
        assert errors == []
        assert len(before) == 2_000

        proc = kafka.process()
        assert proc is not None
        small_disk.resize(small_disk.used() + (2 << 20))  # 2 MB left for ~8 MB of records
        during, errors = _send(s, _values(2_000, 8_000, 1_000))
        assert errors, "every record was acknowledged on a full disk"
        assert len(during) < 8_000

        # The broker takes its only log directory offline and stops, saying why.
        try:
            proc.wait(timeout=120)
        except psutil.TimeoutExpired:
            pytest.fail(f"the broker kept running with its log directory full; see {kafka.logfile}")
        log = kafka.logfile.read_text(errors="replace")
        assert "No space left on device" in log
        assert "all log dirs" in log, log[-3000:]
        assert kafka.process() is None
        assert "stopped on a full disk" in kafka.why_down()  # what `lakehouse status` shows beside it

        small_disk.resize(small_disk.size)
        assert kafka.start(print) == "started"
        stored = kafka_records.stored(s, TOPIC)
        acknowledged = {**before, **during}
        lost = {v[:40]: at for v, at in acknowledged.items() if stored.get(v) != at}
        assert lost == {}, f"{len(lost)} acknowledged records missing or moved after the restart"
        after, errors = _send(s, _values(10_000, 100, 10))
        assert errors == []
        assert len(after) == 100  # and it takes writes again
    finally:
        kafka.stop()
