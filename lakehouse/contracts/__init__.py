"""The data contracts (topics and JSON Schemas), shipped with the package.

The ``*.schema.json`` files here are byte-for-byte copies of ``shared/contracts/``;
``tests/unit/test_contracts.py`` fails if they drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Topic:
    name: str
    key_field: str
    schema_file: str


#: contracts §1: topic, the field used as the record key, and its schema.
TOPICS: tuple[Topic, ...] = (
    Topic("payments", "user_id", "payments.schema.json"),
    Topic("clickstream", "session_id", "clickstream.schema.json"),
    Topic("iot", "device_id", "iot.schema.json"),
)


#: contracts §2: normal range of each sensor type (inclusive); a reading outside is an anomaly.
NORMAL_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (-30.0, 60.0),
    "humidity": (0.0, 100.0),
    "pressure": (870.0, 1085.0),
    "vibration": (0.0, 50.0),
}

#: contracts §2: events later than this behind the newest event time are late for gold.
WATERMARK_MINUTES = 10

#: The medallion layers (contracts §2): a Trino schema and a directory under the lake each.
LAYERS = ("bronze", "silver", "gold")


def topic(name: str) -> Topic:
    for t in TOPICS:
        if t.name == name:
            return t
    raise KeyError(f"unknown topic {name!r}; the contract defines {', '.join(t.name for t in TOPICS)}")


@cache
def schema(topic_name: str) -> dict[str, Any]:
    """The JSON Schema of a topic's value, parsed from the contract file."""
    text = resources.files(__name__).joinpath(topic(topic_name).schema_file).read_text("utf-8")
    parsed: dict[str, Any] = json.loads(text)
    return parsed
