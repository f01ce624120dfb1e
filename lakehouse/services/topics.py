"""Looking at Kafka as an operator does: topics, partitions, the newest records, and who is how far behind.

Behind ``lakehouse kafka topics | describe | tail | lag``. Lag comes from two places: the streams'
checkpoints (what Spark really processed: the offsets of the last committed micro-batch) and the
broker's consumer groups (what the fast path commits, and what each Spark driver commits on its
streams' behalf after every batch, under ``spark-kafka-lakehouse-<app>``, so outside tools such as
``kafka-consumer-groups.sh`` see the pipeline's lag too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lakehouse.clients import SPARK_GROUP_PREFIX, python_config
from lakehouse.contracts import TOPICS
from lakehouse.services.kafka import admin, end_offsets
from lakehouse.settings import Settings

if TYPE_CHECKING:
    from lakehouse.settings import LakePath
from lakehouse.validation import WITHHELD_FIELDS


def spark_group(app: str) -> str:
    """The consumer group a Spark driver of APP commits its Kafka queries' progress to (informational:
    Spark itself resumes from its checkpoint, never from these offsets)."""
    return f"{SPARK_GROUP_PREFIX}lakehouse-{app}"


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    start: int
    end: int
    size_bytes: int

    @property
    def records(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: tuple[PartitionInfo, ...]
    configs: Mapping[str, str] = field(default_factory=dict)

    @property
    def replication(self) -> int:
        return min((len(p.replicas) for p in self.partitions), default=0)

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def size_bytes(self) -> int:
        return sum(p.size_bytes for p in self.partitions)

    @property
    def retention_bytes(self) -> int | None:
        value = int(self.configs.get("retention.bytes", "-1"))
        return None if value < 0 else value

    @property
    def fullest_partition_ratio(self) -> float | None:
        """The fullest partition's share of ``retention.bytes`` (None: no size limit)."""
        limit = self.retention_bytes
        if not limit or not self.partitions:
            return None
        return max(p.size_bytes for p in self.partitions) / limit


class UnknownTopicError(LookupError):
    pass


def topic_names(s: Settings) -> list[str]:
    client = admin(s)
    try:
        return sorted(t for t in client.list_topics() if not t.startswith("__"))
    finally:
        client.close()


def describe(s: Settings, names: Iterable[str] | None = None, with_configs: bool = True) -> list[TopicInfo]:
    """Partitions (leader, replicas, in-sync replicas, offsets, bytes on disk) and configs of NAMES (all)."""
    from kafka import TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, OffsetSpec

    client = admin(s)
    try:
        existing = sorted(t for t in client.list_topics() if not t.startswith("__"))
        wanted = existing if names is None else list(names)
        for name in wanted:
            if name not in existing:
                raise UnknownTopicError(f"no topic {name!r} on {s.bootstrap_servers}; topics: {', '.join(existing)}")
        if not wanted:
            return []
        described = {d["name"]: d for d in client.describe_topics(wanted)}
        tps = [TopicPartition(n, p["partition_index"]) for n in wanted for p in described[n]["partitions"]]
        starts = client.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.EARLIEST))
        ends = client.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.LATEST))
        sizes: dict[tuple[str, int], int] = {}
        for broker in client.describe_log_dirs():
            for log_dir in broker.get("log_dirs", []):
                for t in log_dir.get("topics", []):
                    for p in t.get("partitions", []):
                        # One replica's bytes: each replica's broker reports the partition (the cluster
                        # profile has three); summed, a partition would count three times its size.
                        key = (t["name"], p["partition_index"])
                        sizes[key] = max(sizes.get(key, 0), int(p["partition_size"]))
        configs: dict[str, dict[str, str]] = {}
        if with_configs:
            resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in wanted]
            answer = client.describe_configs(resources, config_filter="all")
            for n, entries in (answer.get("topic") or {}).items():
                configs[n] = {k: str(v.get("value")) for k, v in entries.items() if not v.get("is_sensitive")}
    finally:
        client.close()
    out = []
    for n in wanted:
        parts = []
        for p in sorted(described[n]["partitions"], key=lambda p: p["partition_index"]):
            tp = TopicPartition(n, p["partition_index"])
            parts.append(
                PartitionInfo(
                    partition=p["partition_index"],
                    leader=p["leader_id"],
                    replicas=tuple(p["replica_nodes"]),
                    isr=tuple(p["isr_nodes"]),
                    start=starts[tp].offset,
                    end=ends[tp].offset,
                    size_bytes=sizes.get((n, p["partition_index"]), 0),
                )
            )
        out.append(TopicInfo(n, tuple(parts), configs.get(n, {})))
    return out


# -- records ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: datetime
    key: str | None
    value: str


_CARD_DIGITS = re.compile(r"(?<!\d)(\d[ -]?){9,15}(\d{4})(?!\d)")


def masked(value: bytes | None) -> str:
    """A record value as text a person may see: JSON with withheld fields masked (last 4 kept), any
    long digit run masked in what is not JSON, bytes that are not UTF-8 shown escaped."""
    if value is None:
        return "(null)"
    text = value.decode("utf-8", errors="backslashreplace")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past Python's recursion limit
        return _CARD_DIGITS.sub(lambda m: "*" * 4 + m.group(2), text)
    if isinstance(doc, dict):
        for name in WITHHELD_FIELDS & doc.keys():
            raw = str(doc[name])
            doc[name] = "*" * max(0, len(raw) - 4) + raw[-4:] if len(raw) > 4 else "****"
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return _CARD_DIGITS.sub(lambda m: "*" * 4 + m.group(2), text)


def tail(s: Settings, topic: str, n: int = 10, timeout_s: float = 10.0) -> list[Record]:
    """The newest N records of TOPIC over all partitions (by timestamp), values masked."""
    from kafka import KafkaConsumer, TopicPartition

    info = describe(s, [topic], with_configs=False)[0]
    consumer = KafkaConsumer(
        client_id="lakehouse-tail",
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout_s * 1000),
        **python_config(s, "admin"),
    )
    records: list[Record] = []
    try:
        wanted = {TopicPartition(topic, p.partition): p for p in info.partitions if p.records}
        consumer.assign(list(wanted))
        for tp, p in wanted.items():
            consumer.seek(tp, max(p.start, p.end - n))
        remaining = {tp: min(n, p.records) for tp, p in wanted.items()}
        for msg in consumer:
            tp = TopicPartition(msg.topic, msg.partition)
            if remaining.get(tp, 0) <= 0:
                continue
            remaining[tp] -= 1
            records.append(
                Record(
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    datetime.fromtimestamp(msg.timestamp / 1000, UTC),
                    msg.key.decode("utf-8", errors="backslashreplace") if msg.key is not None else None,
                    masked(msg.value),
                )
            )
            if all(v <= 0 for v in remaining.values()):
                break
    finally:
        consumer.close()
    records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
    return records[-n:]


# -- lag -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lag:
    """How far WHO is behind TOPIC's end: per partition and in total (None: nothing committed yet)."""

    who: str
    source: str  # "checkpoint" or "group"
    topic: str
    behind: Mapping[int, int] | None
    committed_at: datetime | None = None

    @property
    def total(self) -> int | None:
        return None if self.behind is None else sum(self.behind.values())


def checkpoint_offsets(checkpoint: LakePath) -> tuple[dict[str, dict[int, int]], datetime] | None:
    """The Kafka offsets the last committed micro-batch of the query at CHECKPOINT ended at, and when.

    Spark writes ``offsets/<batch>`` before running a batch and ``commits/<batch>`` after it; the
    offsets file holds one JSON line per source after a version line and the batch's metadata.
    """
    commits = checkpoint / "commits"
    batches = sorted((int(p.name) for p in commits.glob("[0-9]*") if p.name.isdigit()), reverse=True)
    for batch in batches:
        path = checkpoint / "offsets" / str(batch)
        if not path.exists():
            continue
        out: dict[str, dict[int, int]] = {}
        for line in path.read_text().splitlines()[2:]:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                for topic, parts in doc.items():
                    if isinstance(parts, dict):
                        out[topic] = {int(p): int(o) for p, o in parts.items()}
        when = datetime.fromtimestamp((commits / str(batch)).stat().st_mtime, UTC)
        return out, when
    return None


def checkpoint_positions(s: Settings, app: str = "bronze") -> dict[str, dict[int, int]]:
    """Where each Kafka-reading query of APP's checkpoints (one per topic) will read next, per topic
    and partition: its last committed batch's end. A query without a committed batch is left out."""
    out: dict[str, dict[int, int]] = {}
    for t in TOPICS:
        found = checkpoint_offsets(s.checkpoint_dir / app / t.name)
        if found is not None and t.name in found[0]:
            out[t.name] = found[0][t.name]
    return out


def checkpoint_lags(s: Settings, ends: Mapping[str, Mapping[int, int]]) -> list[Lag]:
    """Lag of every stream query that reads Kafka, from its checkpoint (bronze: one query per topic)."""
    out = []
    root = s.checkpoint_dir
    for app_dir in sorted(p for p in root.glob("*") if p.is_dir()) if root.exists() else []:
        for query_dir in sorted(p for p in app_dir.glob("*") if (p / "offsets").is_dir()):
            found = checkpoint_offsets(query_dir)
            if found is None:
                continue
            offsets, when = found
            for topic, parts in offsets.items():
                if topic not in ends:
                    continue
                behind = {p: max(0, end - parts.get(p, 0)) for p, end in ends[topic].items()}
                out.append(Lag(f"{app_dir.name}/{query_dir.name}", "checkpoint", topic, behind, when))
    return out


def group_lags(s: Settings, ends: Mapping[str, Mapping[int, int]]) -> list[Lag]:
    """Lag of every consumer group with committed offsets on the topics in ENDS."""
    client = admin(s)
    try:
        groups = sorted({g[0] if isinstance(g, tuple) else g.get("group_id") for g in client.list_groups()} - {None})
        committed = client.list_group_offsets(dict.fromkeys(groups)) if groups else {}
    finally:
        client.close()
    out = []
    for group in groups:
        per_topic: dict[str, dict[int, int]] = {}
        for tp, meta in (committed.get(group) or {}).items():
            if meta.offset >= 0:
                per_topic.setdefault(tp.topic, {})[tp.partition] = meta.offset
        for topic, parts in sorted(per_topic.items()):
            if topic in ends:
                behind = {p: max(0, end - parts.get(p, 0)) for p, end in ends[topic].items()}
                out.append(Lag(str(group), "group", topic, behind))
    return out


def all_lags(s: Settings) -> list[Lag]:
    names = [t.name for t in TOPICS]
    ends = end_offsets(s, names)
    return checkpoint_lags(s, ends) + group_lags(s, ends)


def commit_group_offsets(s: Settings, group: str, offsets: Mapping[str, Mapping[str | int, int]]) -> None:
    """Record OFFSETS (``{topic: {partition: next offset}}``) as GROUP's committed position, as the
    Spark principal (it may use the groups under ``spark-kafka-``)."""
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.structs import OffsetAndMetadata

    client = KafkaAdminClient(client_id="lakehouse-offsets", request_timeout_ms=5000, **python_config(s, "spark"))
    try:
        client.alter_group_offsets(
            group,
            {
                TopicPartition(topic, int(p)): OffsetAndMetadata(int(o), "", -1)
                for topic, parts in offsets.items()
                for p, o in parts.items()
            },
        )
    finally:
        client.close()


def as_json(obj: Any) -> Any:
    """Dataclasses of this module as plain JSON values (for ``--json``)."""
    if isinstance(obj, list):
        return [as_json(o) for o in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    if hasattr(obj, "__dataclass_fields__"):
        d = {k: as_json(getattr(obj, k)) for k in obj.__dataclass_fields__}
        for prop in ("records", "size_bytes", "replication", "total", "retention_bytes"):
            if hasattr(type(obj), prop) and isinstance(getattr(type(obj), prop), property):
                d[prop] = getattr(obj, prop)
        return d
    if isinstance(obj, Mapping):
        return {str(k): as_json(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return [as_json(o) for o in obj]
    return obj
