"""JSON Schema -> the silver layer's validator, compiled from the contracts.

The contract files are the only source of the rules: ``fields`` reads a schema's ``required``
list and ``properties``, and ``program`` turns them (type, enum, minLength/maxLength, pattern,
minimum/maximum and their exclusive forms, ``format: date-time``) into what to check, in order,
with each reason's words. ``lakehouse.spark.Validator`` (Java, ``spark_apps/jvm``) runs that program on every record
inside Spark's JVM: the record is parsed once (Jackson, strict) and each check reads the tree.

Types are checked on the JSON token itself, so ``"amount": "12.5"`` is a string and fails
``type: number`` exactly as jsonschema says, where a typed ``from_json`` would silently coerce it.
Numbers are compared as doubles, as the jsonschema library compares them (``1e-400`` is 0).

Beyond JSON Schema, the contract adds one rule: an ``event_time`` more than one day in
the future is invalid (``now`` is a column, so tests can pin it).

``lakehouse.delta.validator.compile_schema`` turns the program into Spark columns; this module
is the model half and imports no Spark.

The validator used to be Spark expressions over VARIANT (git history, before 2026-12-01): a plan
of thousands of nodes whose code Spark generated again for each query and micro-batch, at about
10 us per field and record. See docs/benchmarks.md for the measurements.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

#: RFC 3339 date-time with a zone ('Z' or +hh:mm; 't' and 'z' may be lower case); fractions up to nanoseconds.
#: The validator then reads it strictly (java.time): no hour 24, no Feb 29 in a common year, offsets up to 18 h.
DATE_TIME_RE = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\z"
FUTURE_TOLERANCE = timedelta(days=1)

_SPARK_TYPE = {"string": "string", "number": "double", "integer": "bigint", "boolean": "boolean"}


@dataclass(frozen=True)
class Field:
    """One property of a schema, as silver stores it."""

    name: str
    json_types: tuple[str, ...]  # e.g. ("string", "null")
    spark_type: str  # string | double | bigint | boolean | timestamp
    required: bool
    spec: dict[str, Any]

    @property
    def nullable_in_json(self) -> bool:
        return "null" in self.json_types


def _json_types(spec: dict[str, Any]) -> tuple[str, ...]:
    if "type" in spec:
        t = spec["type"]
        return tuple(t) if isinstance(t, list) else (t,)
    if "enum" in spec:
        kinds = set()
        for v in spec["enum"]:
            if v is None:
                kinds.add("null")
            elif isinstance(v, bool):
                kinds.add("boolean")
            elif isinstance(v, int | float):
                kinds.add("number")
            else:
                kinds.add("string")
        return tuple(sorted(kinds))
    raise ValueError(f"property without type or enum: {spec}")


def fields(schema: dict[str, Any]) -> list[Field]:
    """The schema's properties in declaration order, with the Spark type silver stores."""
    required = set(schema.get("required", []))
    out = []
    for name, spec in schema["properties"].items():
        types = _json_types(spec)
        non_null = [t for t in types if t != "null"]
        if len(non_null) != 1:
            raise ValueError(f"{name}: silver needs exactly one non-null type, schema allows {types}")
        spark_type = "timestamp" if spec.get("format") == "date-time" else _SPARK_TYPE[non_null[0]]
        out.append(Field(name, types, spark_type, name in required, spec))
    return out


def ecma_pattern(pattern: str) -> str:
    """A JSON Schema (ECMA-262) pattern for Java's regex engine.

    In ECMA-262 a final ``$`` (no multiline flag) matches only at the very end; Java's (and
    Python's) ``$`` also matches before a final line break, so "DE\\n" would pass ``^[A-Z]{2}$``.
    ``\\z`` is Java's end of input.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + "\\z"
    return pattern


def _lit_list(values: list[Any]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _num(x: float) -> str:
    return f"{x:g}"


_BOUNDS = {
    "minimum": "is below the minimum",
    "exclusiveMinimum": "is not above the exclusive minimum",
    "maximum": "is above the maximum",
    "exclusiveMaximum": "is not below the exclusive maximum",
}


#: Fields whose values a quarantine reason never quotes (it is stored in clear; the raw value is encrypted).
WITHHELD_FIELDS = frozenset({"card_number"})


def _field_program(f: Field) -> dict[str, Any]:
    """One property's checks, in the order the validator tries them, with their reason texts."""
    spec = f.spec
    enum = None
    if "enum" in spec:
        members = [v for v in spec["enum"] if v is not None]
        enum = {
            "strings": [v for v in members if isinstance(v, str)],
            "numbers": [float(v) for v in members if isinstance(v, int | float) and not isinstance(v, bool)],
            "booleans": [v for v in members if isinstance(v, bool)],
            "words": f"is not one of {_lit_list(spec['enum'])}",
        }
    return {
        "name": f.name,
        "json_types": list(f.json_types),
        "spark_type": f.spark_type,
        "required": f.required,
        "enum": enum,
        "min_length": spec.get("minLength"),
        "max_length": spec.get("maxLength"),
        "pattern": ecma_pattern(spec["pattern"]) if "pattern" in spec else None,
        "pattern_words": f"does not match {spec['pattern']}" if "pattern" in spec else None,
        # A near-miss card number is still a card number: its reason says what is wrong, not what it was.
        "withhold_value": f.name in WITHHELD_FIELDS,
        "bounds": [
            {"kind": k, "value": float(spec[k]), "words": f"{words} {_num(spec[k])}"}
            for k, words in _BOUNDS.items()
            if k in spec
        ],
        "date_time": spec.get("format") == "date-time",
    }


def program(schema_fields: list[Field]) -> str:
    """A schema's fields compiled for ``lakehouse.spark.Validator`` (JSON): what to check, in order, and the words."""
    return json.dumps(
        {
            "date_time_re": DATE_TIME_RE,
            "future_tolerance_us": int(FUTURE_TOLERANCE / timedelta(microseconds=1)),
            "future_words": "more than 1 day in the future",
            "fields": [_field_program(f) for f in schema_fields],
        },
        sort_keys=True,
    )
