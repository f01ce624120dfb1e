"""Every Delta table of the platform, declared once (contracts §2).

DDL, MERGE conditions, Trino registration, Dagster asset metadata and docs are all
generated from these specs. Silver columns come from the JSON Schemas themselves
(``lakehouse.validation.fields``), so a contract change flows through without re-typing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.contracts import TOPICS, schema
from lakehouse.validation import fields as schema_fields

if TYPE_CHECKING:
    from lakehouse.settings import LakePath


@dataclass(frozen=True)
class Col:
    name: str
    type: str  # Spark SQL type
    comment: str = ""
    nullable: bool = True


@dataclass(frozen=True)
class TableProperty:
    value: str
    reason: str


# -- Delta table properties, each set on purpose --------------------------------------
_COMMON = {
    "delta.checkpointInterval": TableProperty(
        "100",
        "the streams commit several times a second and a checkpoint stalls the commit that writes it for seconds "
        "(7 Spark jobs, measured: 35 small appends took 38-59 s with one every 10 commits, 17-21 s with none): "
        "one every 100 commits; `lakehouse maintain --checkpoint` writes one at any time",
    ),
    "delta.logRetentionDuration": TableProperty(
        "interval 30 days", "30 days of history for time travel, audits and replaying a stream from an old version"
    ),
    "delta.deletedFileRetentionDuration": TableProperty(
        "interval 7 days", "VACUUM keeps removed files a week, longer than any reader or paused stream may lag"
    ),
}
BRONZE_PROPERTIES = {
    **_COMMON,
    "delta.appendOnly": TableProperty(
        "true", "bronze is the raw record of what Kafka delivered: Delta itself refuses updates and deletes"
    ),
    "delta.enableDeletionVectors": TableProperty("false", "append-only: there is never a row to mark deleted"),
    "delta.dataSkippingStatsColumns": TableProperty(
        "topic,partition,offset,kafka_timestamp,ingested_at",
        "statistics only where a reader filters (coordinates, times): min/max of the raw JSON text cost a third of "
        "the write and never skip a file",
    ),
}
SILVER_PROPERTIES = {
    **_COMMON,
    "delta.enableDeletionVectors": TableProperty(
        "false",
        "silver is appended to (a replay replaces whole dates); plain files keep every reader on the simplest protocol",
    ),
}
GOLD_PROPERTIES = {
    **_COMMON,
    "delta.enableDeletionVectors": TableProperty(
        "true",
        "gold is MERGE-upserted every micro-batch: deletion vectors mark changed rows instead of rewriting files",
    ),
    "delta.enableChangeDataFeed": TableProperty(
        "true", "downstream serving (Redis) reads gold's upserts incrementally from the change feed"
    ),
}


@dataclass(frozen=True)
class TableSpec:
    layer: str
    name: str
    columns: tuple[Col, ...]
    keys: tuple[str, ...]
    description: str
    partition_by: tuple[str, ...] = ()
    properties: dict[str, TableProperty] = field(default_factory=dict)
    #: Gold only: the topics whose silver tables it is computed from (its lineage in Dagster).
    inputs: tuple[str, ...] = ()
    #: Columns that may hold a card number in clear: Parquet-encrypted at rest (AES-GCM, 256-bit keys;
    #: ``lakehouse.spark.PiiCryptoFactory``) and never in Delta's statistics.
    encrypted: tuple[str, ...] = ()

    @property
    def full_name(self) -> str:
        return f"{self.layer}.{self.name}"

    @property
    def relative_path(self) -> str:
        return f"{self.layer}/{self.name}"

    def path(self, lake_dir: LakePath) -> str:
        return str(lake_dir / self.layer / self.name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def ddl(self) -> str:
        return ", ".join(f"`{c.name}` {c.type}" + ("" if c.nullable else " NOT NULL") for c in self.columns)

    def merge_condition(self, target: str = "t", source: str = "s") -> str:
        return " AND ".join(f"{target}.`{k}` <=> {source}.`{k}`" for k in self.keys)

    def metadata(self) -> dict[str, Any]:
        return {
            "table": self.full_name,
            "keys": list(self.keys),
            "partitioned_by": list(self.partition_by),
            "properties": {k: f"{v.value}  ({v.reason})" for k, v in self.properties.items()},
        }


# -- bronze ---------------------------------------------------------------------------
def _bronze(topic: str) -> TableSpec:
    return TableSpec(
        layer="bronze",
        name=topic,
        columns=(
            Col("key", "STRING", "Kafka record key (UTF-8)"),
            Col("value", "STRING", "Kafka record value, exactly as received (JSON text, never parsed here)"),
            Col("topic", "STRING", "Kafka topic", nullable=False),
            Col("partition", "INT", "Kafka partition", nullable=False),
            Col("offset", "BIGINT", "Kafka offset within the partition", nullable=False),
            Col("kafka_timestamp", "TIMESTAMP", "Kafka record timestamp"),
            Col("ingested_at", "TIMESTAMP", "when the bronze stream wrote the record", nullable=False),
            Col("ingest_date", "DATE", "partition: date of ingested_at (UTC)", nullable=False),
        ),
        keys=("topic", "partition", "offset"),
        partition_by=("ingest_date",),
        description=f"Raw `{topic}` records from Kafka with their coordinates, exactly once. Rows never change.",
        properties=BRONZE_PROPERTIES,
        encrypted=("value",),
    )


# -- silver ---------------------------------------------------------------------------
_SILVER_TRAILER = (
    Col("_extra", "STRING", "unknown fields of the event, as a JSON object (schema evolution)"),
    Col("_source_partition", "INT", "Kafka partition of the first copy of the event"),
    Col("_source_offset", "BIGINT", "Kafka offset of the first copy of the event"),
    Col("ingested_at", "TIMESTAMP", "when the record landed in bronze"),
    Col("event_date", "DATE", "partition: date of event_time (UTC)", nullable=False),
)


def _silver(topic: str) -> TableSpec:
    cols: list[Col] = []
    for f in schema_fields(schema(topic)):
        comment = f.spec.get("description", "") or _describe(f.spec)
        if topic == "payments" and f.name == "card_number":
            cols.append(Col("card_token", "STRING", "HMAC-SHA256 of card_number (keyed; stable per card)"))
            cols.append(Col("card_last4", "STRING", "last four digits of card_number"))
            continue
        cols.append(Col(f.name, f.spark_type.upper(), comment, nullable=not f.required))
    return TableSpec(
        layer="silver",
        name=topic,
        columns=(*cols, *_SILVER_TRAILER),
        keys=("event_id",),
        partition_by=("event_date",),
        description=(
            f"Valid `{topic}` events, typed from {topic}.schema.json, deduplicated on event_id"
            + (", card numbers tokenised." if topic == "payments" else ".")
        ),
        properties=SILVER_PROPERTIES,
    )


def _describe(spec: dict[str, Any]) -> str:
    parts = []
    if "enum" in spec:
        parts.append("one of " + ", ".join(str(v) for v in spec["enum"]))
    if "minimum" in spec or "maximum" in spec:
        parts.append(f"range {spec.get('minimum', '')}..{spec.get('maximum', '')}")
    if "pattern" in spec:
        parts.append(f"pattern {spec['pattern']}")
    if spec.get("format") == "date-time":
        parts.append("UTC")
    return "; ".join(parts)


QUARANTINE = TableSpec(
    layer="silver",
    name="quarantine",
    columns=(
        Col("topic", "STRING", "Kafka topic", nullable=False),
        Col("partition", "INT", "Kafka partition", nullable=False),
        Col("offset", "BIGINT", "Kafka offset", nullable=False),
        Col("raw_value", "STRING", "the record value as received"),
        Col("error", "STRING", "why it is invalid, naming the field", nullable=False),
        Col("quarantined_at", "TIMESTAMP", "when silver quarantined it", nullable=False),
    ),
    keys=("topic", "partition", "offset"),
    description="Invalid records (contracts §1), exactly once each, with a reason that names the field.",
    properties={
        **SILVER_PROPERTIES,
        "delta.dataSkippingStatsColumns": TableProperty(
            "topic,partition,offset,quarantined_at",
            "the raw value may hold a card number in clear: no min/max of it in the Delta log (its Parquet column "
            "is encrypted)",
        ),
    },
    encrypted=("raw_value",),
)

# -- gold -----------------------------------------------------------------------------
_UPDATED = Col("updated_at", "TIMESTAMP", "when this row last changed")

MERCHANT_MINUTE = TableSpec(
    inputs=("payments",),
    layer="gold",
    name="merchant_minute",
    columns=(
        Col("merchant_id", "STRING", nullable=False),
        Col("window_start", "TIMESTAMP", "1-minute tumbling window on event_time", nullable=False),
        Col("tx_count", "BIGINT", "payments in the window"),
        Col("amount_sum", "DOUBLE"),
        Col("amount_avg", "DOUBLE"),
        Col("amount_max", "DOUBLE"),
        Col("flagged_count", "BIGINT", "payments of the window in gold.fraud_alerts"),
        _UPDATED,
    ),
    keys=("merchant_id", "window_start"),
    description="Payments per merchant and minute (event time, 10-minute watermark), MERGE-upserted.",
    properties=GOLD_PROPERTIES,
)
PAGE_MINUTE = TableSpec(
    inputs=("clickstream",),
    layer="gold",
    name="page_minute",
    columns=(
        Col("page", "STRING", nullable=False),
        Col("window_start", "TIMESTAMP", "1-minute tumbling window on event_time", nullable=False),
        Col("views", "BIGINT", "page_view events"),
        Col("clicks", "BIGINT", "click events"),
        Col("purchases", "BIGINT", "purchase events"),
        Col("sessions", "BIGINT", "approximate distinct session_id (HLL, relative error well under 5 %)"),
        Col("sessions_sketch", "BINARY", "HLL sketch of session_id, so later events merge into the estimate"),
        _UPDATED,
    ),
    keys=("page", "window_start"),
    description="Clickstream per page and minute (event time, 10-minute watermark), MERGE-upserted.",
    properties=GOLD_PROPERTIES,
)
DEVICE_MINUTE = TableSpec(
    inputs=("iot",),
    layer="gold",
    name="device_minute",
    columns=(
        Col("device_id", "STRING", nullable=False),
        Col("sensor_type", "STRING", nullable=False),
        Col("window_start", "TIMESTAMP", "1-minute tumbling window on event_time", nullable=False),
        Col("readings", "BIGINT"),
        Col("value_sum", "DOUBLE", "sum of values, so later readings merge into value_avg"),
        Col("value_avg", "DOUBLE"),
        Col("value_min", "DOUBLE"),
        Col("value_max", "DOUBLE"),
        Col("anomalies", "BIGINT", "readings outside the sensor type's normal range (contracts §2)"),
        _UPDATED,
    ),
    keys=("device_id", "sensor_type", "window_start"),
    description="IoT readings per device, sensor and minute (event time, 10-minute watermark), MERGE-upserted.",
    properties=GOLD_PROPERTIES,
)
FRAUD_ALERTS = TableSpec(
    inputs=("payments",),
    layer="gold",
    name="fraud_alerts",
    columns=(
        Col("event_id", "STRING", nullable=False),
        Col("event_time", "TIMESTAMP", nullable=False),
        Col("user_id", "STRING"),
        Col("card_token", "STRING"),
        Col("merchant_id", "STRING"),
        Col("amount", "DOUBLE"),
        Col("rules", "ARRAY<STRING>", "every rule that fired (contracts §3)"),
        Col("score", "DOUBLE", "0..1: 1 - product of (1 - rule weight)"),
        Col("detected_at", "TIMESTAMP", "when the payment was first flagged"),
    ),
    keys=("event_id",),
    description="Flagged payments: card_testing, velocity, amount_spike, impossible_travel (contracts §3).",
    properties=GOLD_PROPERTIES,
)
LATE_EVENTS = TableSpec(
    inputs=tuple(t.name for t in TOPICS),
    layer="gold",
    name="late_events",
    columns=(
        Col("source", "STRING", "silver table the event came from", nullable=False),
        Col("event_id", "STRING", nullable=False),
        Col("event_time", "TIMESTAMP", nullable=False),
        Col("window_start", "TIMESTAMP", "the window that was already final"),
        Col("watermark", "TIMESTAMP", "the watermark when the event reached gold"),
        Col("batch_id", "BIGINT"),
        Col("detected_at", "TIMESTAMP"),
    ),
    keys=("source", "event_id"),
    description="Events that reached gold after their window was final (older than the 10-minute watermark): "
    "kept in silver, counted here, not added to gold.",
    properties={**_COMMON},
)
BRONZE = {t.name: _bronze(t.name) for t in TOPICS}
SILVER = {t.name: _silver(t.name) for t in TOPICS}
GOLD = {s.name: s for s in (MERCHANT_MINUTE, PAGE_MINUTE, DEVICE_MINUTE, FRAUD_ALERTS, LATE_EVENTS)}

ALL_TABLES: tuple[TableSpec, ...] = (
    *BRONZE.values(),
    *SILVER.values(),
    QUARANTINE,
    *GOLD.values(),
)


def encrypted_columns() -> str:
    """``lakehouse.parquet.encrypted.columns`` for ``PiiCryptoFactory``: ``<table directory>:<column>`` pairs."""
    return ",".join(f"{t.relative_path}:{c}" for t in ALL_TABLES for c in t.encrypted)


def spec(full_name: str) -> TableSpec:
    for s in ALL_TABLES:
        if s.full_name == full_name:
            return s
    raise KeyError(f"no table {full_name!r}; known: {', '.join(s.full_name for s in ALL_TABLES)}")
