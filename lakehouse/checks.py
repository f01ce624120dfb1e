"""The data-quality checks of silver and gold, declared from the table specs and contracts.

``CHECKS`` is a static, declarative list (no Spark, no Great Expectations) of every check, so the
orchestrator declares its asset checks from it; each is derived from ``lakehouse.tables`` and the
JSON Schemas, never typed by hand per table. ``lakehouse.delta.quality.run_checks`` runs them.

The checks, per asset (``"layer/name"``, the orchestrator's asset key):

``keys_not_null`` / ``keys_unique`` (ERROR, blocking)
    the spec's keys: ``expect_column_values_to_not_be_null`` per key column and
    ``expect_column_values_to_be_unique`` (one key column) or
    ``expect_compound_columns_to_be_unique`` (several).
``ranges_and_enums`` (ERROR, blocking)
    silver: every ``enum`` (``expect_column_values_to_be_in_set``) and numeric
    ``minimum``/``maximum`` (``expect_column_values_to_be_between``) of the topic's JSON Schema.
    gold, from the spec's columns (``_gold_rules``): a BIGINT column is a count or a batch id,
    so it is >= 0; a column named after a bounded field of the source topic's schema
    (``amount``, or a statistic of it ``amount_avg``/``_min``/``_max``) keeps that field's
    range, and ``<field>_sum`` keeps its lower bound when it is >= 0 (a sum of non-negative
    values is non-negative; its upper bound grows with the count); a STRING column named
    after an enum field of the source schema (``device_minute.sensor_type``) keeps the enum;
    a range written as ``lo..hi`` at the start of the column's comment (``fraud_alerts.score``)
    is enforced; ``late_events.source`` names a silver table.
``freshness`` (WARN, not blocking)
    the newest row's processing time (``updated_at``, else ``detected_at``, else
    ``ingested_at``) is at most ``freshness_max_age(s)`` old:
    ``expect_column_min_to_be_between`` on the row age in seconds, computed in Spark (no time
    zone conversions in Python). For sparse tables (``fraud_alerts``, ``late_events``) an old
    newest row can also mean "nothing to report lately", hence a warning.
``reconciliation`` (silver only; ERROR, blocking)
    every bronze record of the topic is accounted for: bronze = silver first copies +
    quarantined + duplicates, exactly; see ``_reconcile`` for how this stays correct while
    the streams write. Computed directly in Spark: it is a cross-table invariant, not an
    expectation about one batch of data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from lakehouse.contracts import schema
from lakehouse.settings import Settings
from lakehouse.tables import BRONZE, GOLD, QUARANTINE, SILVER, TableSpec
from lakehouse.validation import fields as schema_fields

Severity = Literal["ERROR", "WARN"]


@dataclass(frozen=True)
class CheckDef:
    asset: str  # "layer/name", the orchestrator's asset key
    name: str
    description: str
    severity: Severity
    blocking: bool


@dataclass(frozen=True)
class CheckOutcome:
    asset: str
    name: str
    passed: bool
    severity: Severity
    metadata: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable


@dataclass(frozen=True)
class Expect:
    """One expectation, declared without importing Great Expectations."""

    kind: Literal["not_null", "unique", "compound_unique", "between", "in_set", "max_age"]
    columns: tuple[str, ...]
    min_value: float | None = None
    max_value: float | None = None
    value_set: tuple[Any, ...] = ()
    why: str = ""

    def describe(self) -> str:
        cols = ", ".join(self.columns)
        if self.kind == "not_null":
            return f"{cols} not null"
        if self.kind == "unique":
            return f"{cols} unique"
        if self.kind == "compound_unique":
            return f"({cols}) unique"
        if self.kind == "in_set":
            return f"{cols} in {{{', '.join(str(v) for v in self.value_set)}}}"
        if self.kind == "max_age":
            return f"newest {cols} at most {fmt_num(self.max_value)} s old"
        lo = "" if self.min_value is None else fmt_num(self.min_value)
        hi = "" if self.max_value is None else fmt_num(self.max_value)
        return f"{cols} in [{lo}..{hi}]"


def fmt_num(v: float | None) -> str:
    return "" if v is None else (str(int(v)) if float(v).is_integer() else str(v))


# Which silver topic feeds each gold table (bounded fields and enums are inherited from it).
_GOLD_SOURCE: dict[str, str | None] = {
    "merchant_minute": "payments",
    "page_minute": "clickstream",
    "device_minute": "iot",
    "fraud_alerts": "payments",
    "late_events": None,
}
_STATS = ("", "_avg", "_min", "_max")
_COMMENT_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\.\.(-?\d+(?:\.\d+)?)\b")


def _bounds(spec: Mapping[str, Any]) -> tuple[float | None, float | None]:
    lo, hi = spec.get("minimum"), spec.get("maximum")
    return (None if lo is None else float(lo), None if hi is None else float(hi))


def _silver_rules(topic: str) -> tuple[Expect, ...]:
    """Every enum and numeric minimum/maximum of the topic's JSON Schema that silver stores as a column."""
    table = SILVER[topic]
    out: list[Expect] = []
    for f in schema_fields(schema(topic)):
        if f.name not in table.column_names:
            continue  # card_number: masked into card_token / card_last4
        src = f"{topic}.schema.json {f.name}"
        if "enum" in f.spec:
            out.append(Expect("in_set", (f.name,), value_set=tuple(f.spec["enum"]), why=f"{src}: enum"))
        lo, hi = _bounds(f.spec)
        if (lo is not None or hi is not None) and f.spark_type in ("double", "bigint"):
            out.append(Expect("between", (f.name,), lo, hi, why=f"{src}: minimum/maximum"))
    return tuple(out)


def _gold_rules(table: TableSpec) -> tuple[Expect, ...]:
    """Ranges and enums of a gold table, derived from its columns (see the module docstring)."""
    topic = _GOLD_SOURCE.get(table.name)
    source = {f.name: f for f in schema_fields(schema(topic))} if topic else {}
    out: list[Expect] = []
    for c in table.columns:
        if c.type == "BIGINT":
            out.append(Expect("between", (c.name,), 0.0, None, why="BIGINT: a count or a batch id"))
            continue
        m = _COMMENT_RANGE.match(c.comment)
        if m and c.type == "DOUBLE":
            low, high = float(m.group(1)), float(m.group(2))
            out.append(Expect("between", (c.name,), low, high, why=f"spec comment: {c.comment}"))
            continue
        if table.name == "late_events" and c.name == "source":
            names = tuple(s.full_name for s in SILVER.values())
            out.append(Expect("in_set", (c.name,), value_set=names, why="names the silver table"))
            continue
        if c.type == "STRING" and c.name in source and "enum" in source[c.name].spec:
            enum = tuple(source[c.name].spec["enum"])
            out.append(Expect("in_set", (c.name,), value_set=enum, why=f"{topic}.schema.json {c.name}: enum"))
            continue
        if c.type != "DOUBLE":
            continue
        for name, f in source.items():
            lo, hi = _bounds(f.spec)
            if lo is None and hi is None:
                continue
            why = f"{topic}.schema.json {name}: minimum/maximum"
            if c.name in (name + s for s in _STATS):
                out.append(Expect("between", (c.name,), lo, hi, why=why))
            elif c.name == f"{name}_sum" and lo is not None and lo >= 0:
                out.append(Expect("between", (c.name,), lo, None, why=why + " (a sum keeps the lower bound)"))
    return tuple(out)


def _key_rules(table: TableSpec) -> dict[str, tuple[Expect, ...]]:
    not_null = tuple(Expect("not_null", (k,), why="key") for k in table.keys)
    unique = Expect("compound_unique" if len(table.keys) > 1 else "unique", table.keys, why="key")
    return {"keys_not_null": not_null, "keys_unique": (unique,)}


def freshness_column(table: TableSpec) -> str:
    """The column that says when a row was last written by the pipeline."""
    for name in ("updated_at", "detected_at", "ingested_at"):
        if name in table.column_names:
            return name
    raise ValueError(f"{table.full_name} has no processing-time column")


def freshness_max_age(s: Settings) -> timedelta:
    """The freshness limit (``LAKEHOUSE_FRESHNESS_MAX_AGE_MINUTES``, 60 by default)."""
    return timedelta(minutes=s.freshness_max_age_minutes)


SEVERITY: dict[str, tuple[Severity, bool]] = {
    "keys_not_null": ("ERROR", True),
    "keys_unique": ("ERROR", True),
    "ranges_and_enums": ("ERROR", True),
    "freshness": ("WARN", False),
    "reconciliation": ("ERROR", True),
}


def checked_tables() -> dict[str, TableSpec]:
    """Every checked table by asset key: the silver table of each topic, then the public gold tables."""
    return {t.relative_path: t for t in (*SILVER.values(), *GOLD.values())}


def expectations(table: TableSpec) -> dict[str, tuple[Expect, ...]]:
    """The expectation-based checks of a table, by check name (reconciliation is not one)."""
    ranges = _silver_rules(table.name) if table.layer == "silver" else _gold_rules(table)
    ts = freshness_column(table)
    freshness = Expect("max_age", (ts,), why=f"{ts}: newest row")  # max_value filled in at run time
    return {**_key_rules(table), "ranges_and_enums": ranges, "freshness": (freshness,)}


def _describe(name: str, table: TableSpec, rules: tuple[Expect, ...]) -> str:
    if name == "freshness":
        return (
            f"the newest {rules[0].columns[0]} of {table.full_name} is at most the freshness limit old "
            "(LAKEHOUSE_FRESHNESS_MAX_AGE_MINUTES, default 60)"
        )
    return f"{table.full_name}: " + "; ".join(r.describe() for r in rules)


def _build_checks() -> list[CheckDef]:
    out: list[CheckDef] = []
    for asset, table in checked_tables().items():
        for name, rules in expectations(table).items():
            severity, blocking = SEVERITY[name]
            out.append(CheckDef(asset, name, _describe(name, table, rules), severity, blocking))
        if table.layer == "silver":
            severity, blocking = SEVERITY["reconciliation"]
            description = (
                f"every {BRONZE[table.name].full_name} record silver has processed is accounted for: "
                f"bronze = {table.full_name} first copies + {QUARANTINE.full_name} ({table.name}) + duplicates"
            )
            out.append(CheckDef(asset, "reconciliation", description, severity, blocking))
    return out


#: Every check, in a stable order: per asset, keys_not_null, keys_unique, ranges_and_enums, freshness[, reconciliation].
CHECKS: list[CheckDef] = _build_checks()
