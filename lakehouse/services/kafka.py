"""Kafka helpers: admin client, topic creation from the contracts."""

from __future__ import annotations

from typing import Any

from lakehouse.contracts import TOPICS
from lakehouse.settings import Settings


def admin(s: Settings, timeout_ms: int = 5000) -> Any:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=s.bootstrap_servers, client_id="lakehouse-admin", request_timeout_ms=timeout_ms
    )


def broker_ready(s: Settings) -> bool:
    """True when the broker answers a metadata request (the cluster has a controller and a broker)."""
    try:
        client = admin(s, timeout_ms=3000)
    except Exception:
        return False
    try:
        client.list_topics()
        return True
    except Exception:
        return False
    finally:
        client.close()


def ensure_topics(s: Settings) -> list[str]:
    """Create the contract's topics that are missing; return the names created."""
    from kafka.admin import NewTopic

    client = admin(s)
    try:
        existing = set(client.list_topics())
        missing = [t.name for t in TOPICS if t.name not in existing]
        if missing:
            client.create_topics(
                [NewTopic(name, num_partitions=s.kafka_partitions, replication_factor=1) for name in missing]
            )
        return missing
    finally:
        client.close()


def partition_counts(s: Settings) -> dict[str, int]:
    client = admin(s)
    try:
        described = client.describe_topics([t.name for t in TOPICS])
        return {d.get("name", d.get("topic")): len(d["partitions"]) for d in described}
    finally:
        client.close()


def end_offsets_json(s: Settings) -> str:
    """The contract topics' current end offsets in Spark's startingOffsets JSON form.

    Handy to start a NEW bronze checkpoint "from now" (LAKEHOUSE_KAFKA_STARTING_OFFSETS)
    without missing what is produced after this call, which 'latest' would.
    """
    import json

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=s.bootstrap_servers)
    try:
        offsets: dict[str, dict[str, int]] = {}
        for t in TOPICS:
            parts = [TopicPartition(t.name, p) for p in sorted(consumer.partitions_for_topic(t.name) or [])]
            for tp, off in consumer.end_offsets(parts).items():
                offsets.setdefault(tp.topic, {})[str(tp.partition)] = off
        return json.dumps(offsets, sort_keys=True)
    finally:
        consumer.close()
