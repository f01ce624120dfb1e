"""Kafka helpers: the ACLs that say what each principal may do, the admin client, topic creation from
the contracts. How each client connects is ``lakehouse.clients``."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from lakehouse.clients import FASTPATH_GROUP, SPARK_GROUP_PREFIX, librdkafka_config, python_config
from lakehouse.contracts import TOPICS
from lakehouse.settings import Settings


def admin(s: Settings, timeout_ms: int = 5000, bootstrap: str | None = None) -> Any:
    """kafka-python's admin client as ``admin``; through BOOTSTRAP (one broker, "host:port") if given."""
    from kafka import KafkaAdminClient

    config = python_config(s, "admin") | ({"bootstrap_servers": bootstrap} if bootstrap else {})
    return KafkaAdminClient(client_id="lakehouse-admin", request_timeout_ms=timeout_ms, **config)


def acls() -> list[tuple[str, str, str, str, str]]:
    """What each principal may do, beyond which nothing is allowed (the broker denies where no ACL
    matches): (principal, resource type, pattern type, resource name, operation). admin is a super user."""
    out: list[tuple[str, str, str, str, str]] = []
    for topic in (t.name for t in TOPICS):
        out += [("producer", "TOPIC", "LITERAL", topic, op) for op in ("WRITE", "DESCRIBE")]
        out += [("spark", "TOPIC", "LITERAL", topic, op) for op in ("READ", "DESCRIBE")]
    out.append(("producer", "BROKER", "LITERAL", "kafka-cluster", "IDEMPOTENT_WRITE"))  # librdkafka: the cluster
    out.append(("spark", "GROUP", "PREFIXED", SPARK_GROUP_PREFIX, "READ"))
    out += [("fastpath", "TOPIC", "LITERAL", "payments", op) for op in ("READ", "DESCRIBE")]
    out += [("fastpath", "GROUP", "LITERAL", FASTPATH_GROUP, op) for op in ("READ", "DESCRIBE")]
    return out


def ensure_acls(s: Settings) -> int:
    """Create the ACLs of ``acls`` (creating an existing one is a no-op); return how many there are."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported, as documented
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    wanted = [
        AclBinding(
            ResourceType[rtype],
            name,
            ResourcePatternType[pattern],
            f"User:{principal}",
            "*",
            AclOperation[op],
            AclPermissionType.ALLOW,
        )
        for principal, rtype, pattern, name, op in acls()
    ]
    config = librdkafka_config(s, "admin")
    client = AdminClient(config)
    for binding, future in client.create_acls(wanted, request_timeout=30).items():
        try:
            future.result()
        except Exception as e:
            raise RuntimeError(f"creating Kafka ACL {binding} failed: {e}") from e

    # The controller has them; each broker's authorizer applies them from the metadata log a moment
    # later, and a client that connects to a broker in between is denied (seen: a producer right after
    # `up` got TopicAuthorizationFailed, from the third broker of three 1.4 s after the ACLs were
    # created). DescribeAcls is answered by the authorizer of the broker it is sent to: wait until
    # every broker lists every ACL.
    want = {(name, pattern, f"User:{principal}", op) for principal, _, pattern, name, op in acls()}
    deadline = time.monotonic() + 30
    while True:
        held = acls_per_broker(s)
        behind = [f"broker {node} lacks {len(want - have)}" for node, have in sorted(held.items()) if not want <= have]
        if len(held) < s.kafka_brokers:  # the client has not learnt of every broker yet
            behind.append(f"{s.kafka_brokers - len(held)} of {s.kafka_brokers} brokers not in the metadata")
        if not behind:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kafka does not enforce every ACL 30 s after creating them: {', '.join(behind)}")
        time.sleep(0.2)
    return len(wanted)


def acls_per_broker(s: Settings) -> dict[int, set[tuple[str, str, str, str]]]:
    """The ACLs each broker's own authorizer holds, by node id: (resource name, pattern type, principal,
    operation). DescribeAcls goes to each node in turn: kafka-python's and librdkafka's public calls
    send it to whichever broker they like, which may be the one that is already up to date."""
    from kafka.admin import ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourceType
    from kafka.protocol.admin import DescribeAclsRequest

    request = DescribeAclsRequest(
        resource_type_filter=ResourceType.ANY,
        resource_name_filter=None,
        pattern_type_filter=ACLResourcePatternType.ANY,
        principal_filter=None,
        host_filter=None,
        operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
    )
    client = admin(s, timeout_ms=10_000)
    try:
        manager = client._manager  # kafka-python 3.0's connection manager: the one way to pick the node
        out = {}
        for broker in manager.cluster.brokers():
            response = manager.run(manager.send, request, broker.node_id)
            found, _ = client._convert_describe_acls_response_to_acls(response)
            out[broker.node_id] = {
                (a.resource_pattern.resource_name, a.resource_pattern.pattern_type.name, a.principal, a.operation.name)
                for a in found
            }
        return out
    finally:
        client.close()


def broker_ready(s: Settings, bootstrap: str | None = None) -> bool:
    """True when the cluster answers a metadata request (it has a controller and a broker), asked through
    BOOTSTRAP (one broker) when given."""
    try:
        client = admin(s, timeout_ms=3000, bootstrap=bootstrap)
    except Exception:
        return False
    try:
        client.list_topics()
        return True
    except Exception:
        return False
    finally:
        client.close()


def topic_config(s: Settings) -> dict[str, str]:
    """The topic-level settings the contract topics are created with (from the settings)."""
    return {"min.insync.replicas": str(s.kafka_min_insync_replicas)}


def ensure_topics(s: Settings) -> list[str]:
    """Create the contract's topics that are missing (partitions, replicas and ``topic_config`` from the
    settings); return the names created."""
    from kafka.admin import NewTopic

    client = admin(s)
    try:
        existing = set(client.list_topics())
        missing = [t.name for t in TOPICS if t.name not in existing]
        if missing:
            client.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=s.kafka_partitions,
                        replication_factor=s.kafka_replication_factor,
                        topic_configs=topic_config(s),
                    )
                    for name in missing
                ]
            )
        return missing
    finally:
        client.close()


def align_topic_configs(s: Settings) -> dict[str, dict[str, str]]:
    """Set ``topic_config`` on the contract topics that exist with other values (topics are created with
    it, but a setting changed later, e.g. ``kafka_min_insync_replicas``, must reach them too), through
    IncrementalAlterConfigs: only those keys change. Returns what was changed, per topic."""
    from kafka.admin import ConfigResource, ConfigResourceType

    want = topic_config(s)
    client = admin(s)
    try:
        existing = set(client.list_topics())
        names = [t.name for t in TOPICS if t.name in existing]
        if not names:
            return {}
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        answer = client.describe_configs(resources, config_filter="all").get("topic") or {}
        changes: dict[str, dict[str, str]] = {}
        for name in names:
            have = answer.get(name, {})
            differ = {k: v for k, v in want.items() if str((have.get(k) or {}).get("value")) != v}
            if differ:
                changes[name] = differ
        if changes:
            client.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, n, configs=c) for n, c in changes.items()], incremental=True
            )
        return changes
    finally:
        client.close()


def partition_counts(s: Settings) -> dict[str, int]:
    client = admin(s)
    try:
        described = client.describe_topics([t.name for t in TOPICS])
        return {d.get("name", d.get("topic")): len(d["partitions"]) for d in described}
    finally:
        client.close()


def end_offsets(s: Settings, topics: Iterable[str]) -> dict[str, dict[int, int]]:
    """The next offset Kafka will write, per partition of TOPICS."""
    return log_offsets(s, topics, earliest=False)


def log_offsets(s: Settings, topics: Iterable[str], earliest: bool) -> dict[str, dict[int, int]]:
    """Per partition of TOPICS: the oldest offset Kafka holds (EARLIEST: the log start, which retention
    moves), or the next it will write."""
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    client = admin(s)
    try:
        names = list(topics)
        described = client.describe_topics(names)
        tps = [TopicPartition(d["name"], p["partition_index"]) for d in described for p in d["partitions"]]
        spec = OffsetSpec.EARLIEST if earliest else OffsetSpec.LATEST
        found = client.list_partition_offsets(dict.fromkeys(tps, spec))
    finally:
        client.close()
    out: dict[str, dict[int, int]] = {}
    for tp, o in found.items():
        out.setdefault(tp.topic, {})[tp.partition] = o.offset
    return out


def end_offsets_json(s: Settings) -> str:
    """The contract topics' current end offsets in Spark's startingOffsets JSON form.

    Handy to start a NEW bronze checkpoint "from now" (LAKEHOUSE_KAFKA_STARTING_OFFSETS)
    without missing what is produced after this call, which 'latest' would.
    """
    import json

    ends = end_offsets(s, [t.name for t in TOPICS])
    return json.dumps({t: {str(p): o for p, o in parts.items()} for t, parts in ends.items()}, sort_keys=True)


def group_lag(s: Settings, group: str, topic: str) -> dict[str, int | None]:
    """A consumer group's position on TOPIC: ``{"committed": …, "end": …, "lag": …}`` summed over partitions.

    ``lag`` is None when the group has committed nothing on the topic yet (a job that has not
    completed its first checkpoint, or never ran); a partition without a commit counts from 0.
    """
    client = admin(s)
    try:
        committed = {
            tp.partition: meta.offset
            for tp, meta in (client.list_group_offsets({group: None}).get(group) or {}).items()
            if tp.topic == topic and meta.offset >= 0
        }
    finally:
        client.close()
    end = end_offsets(s, [topic]).get(topic, {})
    total_end = sum(end.values())
    if not committed:
        return {"committed": None, "end": total_end, "lag": None}
    done = sum(committed.get(p, 0) for p in end)
    return {"committed": done, "end": total_end, "lag": max(0, total_end - done)}


def first_unread_time(s: Settings, group: str, topic: str) -> datetime | None:
    """The Kafka timestamp of the oldest record GROUP has not committed past on TOPIC (None: it has read
    everything, or committed nothing). What the group has certainly processed was sent before it."""
    from kafka import KafkaConsumer, TopicPartition

    client = admin(s)
    try:
        committed = {
            tp.partition: meta.offset
            for tp, meta in (client.list_group_offsets({group: None}).get(group) or {}).items()
            if tp.topic == topic and meta.offset >= 0
        }
    finally:
        client.close()
    if not committed:
        return None
    consumer = KafkaConsumer(client_id="lakehouse-lag", enable_auto_commit=False, **python_config(s, "admin"))
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        end = consumer.end_offsets(parts)
        behind = [tp for tp in parts if committed.get(tp.partition, 0) < end[tp]]
        if not behind:
            return None
        consumer.assign(behind)
        for tp in behind:
            consumer.seek(tp, committed.get(tp.partition, 0))
        oldest: int | None = None
        pending = set(behind)
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500, max_records=len(behind) * 10).items():
                if tp in pending and records:
                    pending.discard(tp)
                    consumer.pause(tp)
                    oldest = records[0].timestamp if oldest is None else min(oldest, records[0].timestamp)
        return datetime.fromtimestamp(oldest / 1000, UTC) if oldest is not None else None
    finally:
        consumer.close()
