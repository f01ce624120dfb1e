"""Sending a generated run to Kafka: the generator's only I/O (kafka-python, idempotent, acks=all).

``produce(run, settings)`` sends the records of :func:`lakehouse.generator.scenario.generate` in
order and counts every failure; it never raises for one record, only when Kafka cannot be reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.clients import python_config
from lakehouse.generator.scenario import GeneratedRun, default_partition

if TYPE_CHECKING:
    from lakehouse.settings import Settings


class ProduceError(RuntimeError):
    """Kafka could not be reached or refused the producer; the message names the bootstrap servers."""


@dataclass(frozen=True)
class ProduceSummary:
    attempted: int
    sent: int  # acknowledged by the broker
    failed: int
    elapsed_s: float
    rate: float  # acknowledged records per second of wall time
    errors: list[str] = field(default_factory=list)  # up to 10 distinct error messages


def _describe(exc: BaseException) -> str:
    """``Name: message`` without repeating the name (kafka-python's messages often start with it)."""
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def _kafka_producer(**config: Any) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(**config)


def produce(
    run: GeneratedRun,
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
    *,
    producer_factory: Callable[..., Any] | None = None,
    flush_timeout_s: float = 120.0,
) -> ProduceSummary:
    """Send the run's records in order; count every failure (a send that raised, failed or was never acknowledged).

    Explicit partitions are honoured; when a topic has a different partition count than
    ``run.config.partitions`` they are re-mapped to "the key's partition + 1" for the
    real count. With ``run.config.throttle`` sends are paced at ``run.config.rate``.
    Raises :class:`ProduceError` when the brokers cannot be reached.
    """
    from kafka.errors import KafkaError

    servers = settings.bootstrap_servers
    factory = producer_factory or _kafka_producer
    try:
        # kafka-python 3.0 accepts enable_idempotence=True together with acks="all" (no fallback needed);
        # idempotence makes the producer's own retries safe (no broker-side duplicates).
        producer = factory(
            **python_config(settings, "producer"),
            client_id="lakehouse-generator",
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            retries=10,
            retry_backoff_ms=200,
            max_block_ms=30_000,
            bootstrap_timeout_ms=10_000,
        )
    except (KafkaError, OSError) as exc:
        raise ProduceError(f"cannot reach Kafka at {servers}: {_describe(exc)}") from None

    records = run.records
    total = len(records)
    cfg = run.config
    futures: list[Any] = []
    failed_at_send = 0
    errors: list[str] = []

    def note(msg: str) -> None:
        if msg not in errors and len(errors) < 10:
            errors.append(msg)

    t0 = time.monotonic()
    try:
        remap: dict[str, int] = {}
        for topic_name in sorted({r.topic for r in records if r.partition is not None}):
            try:
                n = len(producer.partitions_for(topic_name) or ())
            except KafkaError as exc:
                raise ProduceError(f"Kafka at {servers}: no metadata for topic {topic_name!r}: {exc}") from None
            if n and n != cfg.partitions:
                remap[topic_name] = n

        step = max(1, total // 200)
        for i, r in enumerate(records):
            if cfg.throttle:
                delay = t0 + i / cfg.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            partition = r.partition
            if partition is not None and r.topic in remap and r.key is not None:
                partition = (default_partition(r.key, remap[r.topic]) + 1) % remap[r.topic]
            try:
                futures.append(producer.send(r.topic, value=r.value, key=r.key, partition=partition))
            except (KafkaError, ValueError, TypeError, AssertionError, BufferError) as exc:
                failed_at_send += 1
                note(_describe(exc))
            if progress is not None and ((i + 1) % step == 0 or i + 1 == total):
                progress(i + 1, total)
        try:
            producer.flush(timeout=flush_timeout_s)
        except KafkaError as exc:
            note(f"flush: {_describe(exc)}")
    finally:
        try:
            producer.close(timeout=10)
        except Exception as exc:  # closing must not hide the counts
            note(f"close: {_describe(exc)}")
    elapsed = time.monotonic() - t0

    acked = 0
    failed = failed_at_send
    for fut in futures:
        if fut.is_done and fut.exception is None:
            acked += 1
        else:
            failed += 1
            error = fut.exception if fut.is_done else None
            note(_describe(error) if error is not None else "not acknowledged before the flush timeout")
    return ProduceSummary(
        attempted=total,
        sent=acked,
        failed=failed,
        elapsed_s=elapsed,
        rate=acked / elapsed if elapsed > 0 else 0.0,
        errors=errors,
    )
