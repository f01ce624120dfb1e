"""What a topic holds, read back record by record (the Kafka tests compare it with what was acknowledged)."""

from __future__ import annotations

import time

from lakehouse.clients import python_config
from lakehouse.settings import Settings


def stored(s: Settings, topic: str) -> dict[bytes, tuple[int, int]]:
    """Every record TOPIC holds: value -> (partition, offset)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**python_config(s, "spark"), enable_auto_commit=False, consumer_timeout_ms=5_000)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out: dict[bytes, tuple[int, int]] = {}
        deadline = time.monotonic() + 120
        while any(consumer.position(p) < ends[p] for p in parts) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1_000).values():
                for record in batch:
                    out[record.value] = (record.partition, record.offset)
        return out
    finally:
        consumer.close()
