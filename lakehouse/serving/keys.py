"""What gold looks like in Redis (contracts §4): key layout, TTLs, served columns, value encoding.

Pure Python: no Spark, no Dagster. The writers take plain row dicts (``Row.asDict()``: timestamps
are naive ``datetime`` in UTC) and write through non-transactional pipelines, ``CHUNK_SIZE``
commands per round trip. The lake is the system of record: every key below can be dropped
(``flush_serving_keys``) and rebuilt by writing gold again.

Key layout
----------

Contract keys (contracts §4):

=================================================  ===========  =========================================  =====
key                                                type         content                                    TTL
=================================================  ===========  =========================================  =====
``merchant:{merchant_id}:minute:{epoch_s}``        hash         the ``gold.merchant_minute`` row            24 h
``device:{device_id}:{sensor_type}:latest``        hash         the newest ``gold.device_minute`` row       24 h
``page:top:{epoch_s}``                             sorted set   member ``page``, score ``views``            24 h
``fraud:alerts``                                   stream       one entry per alert, capped near 100 000   none
``fraud:user:{user_id}``                           hash         ``last_alert_event_id``, ``last_score``,   7 d
                                                                ``alert_count``
=================================================  ===========  =========================================  =====

``{epoch_s}`` is ``window_start`` in whole seconds since 1970-01-01 UTC.

Bookkeeping keys (not in the contract; they exist only to make the fraud writes idempotent and are
dropped by ``flush_serving_keys`` with the rest):

=================================  ====  ====================================================  ====
``fraud:alert:{event_id}``         hash  ``entry_id`` (its entry in the stream), ``digest``     7 d
                                         (of the entry's fields), ``user_id``
``fraud:user-alerts:{user_id}``    hash  ``event_id`` -> ``"{event_time_us} {score}"``, one     7 d
                                         field per alert of the user: the distinct alerts
                                         ``fraud:user:{user_id}`` is computed from
``fraud:fast:{event_id}``          hash  the fast path's own verdict (``event_time``,           7 d
                                         ``rules``, ``score``, ``detected_at``), whoever's entry
                                         is in the stream: what ``fastpath_agrees_with_gold``
                                         compares with gold
=================================  ====  ====================================================  ====

Which path wrote an alert: each ``fraud:alerts`` entry has, beside the gold columns, a ``path``
field (``fast``: the fast path, ``lakehouse/services/fastpath.py``; ``gold``: the serving stream
from ``gold.fraud_alerts``) and ``detected_at`` is when that path judged it. Whichever path writes
an alert first appends it; the other path's identical verdict is a no-op (the idempotency digest
covers the alert's content, not ``detected_at`` or ``path``), a different verdict replaces it.

Values
------

Hash fields and stream entry fields are the gold columns by name, except ``updated_at`` (when gold
last touched the row: bookkeeping, and it would make a replay that recomputes a row look like a
change) and ``page_minute``'s binary HLL sketch. Encoding: strings as is, integers in decimal,
doubles as Python's shortest round-trip ``repr``, timestamps as fixed-width ISO-8601 UTC
(``2026-11-26T10:15:00.000000Z``: fixed width so they also sort as strings), arrays (``rules``)
as compact JSON. A NULL column is an absent field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    pass

# -- TTLs and limits (contracts §4) ---------------------------------------------------
MERCHANT_MINUTE_TTL_S: Final = 24 * 3600
DEVICE_LATEST_TTL_S: Final = 24 * 3600
PAGE_TOP_TTL_S: Final = 24 * 3600
FRAUD_USER_TTL_S: Final = 7 * 24 * 3600
FRAUD_ALERTS_TTL_S: Final[None] = None  # the stream never expires: it is capped instead
FRAUD_ALERT_MARKER_TTL_S: Final = FRAUD_USER_TTL_S  # idempotency horizon of the stream
FRAUD_ALERTS_MAXLEN: Final = 100_000  # approximate (XADD MAXLEN ~): "capped near 100 000"
CHUNK_SIZE: Final = 500  # commands per pipeline round trip

FRAUD_ALERTS_STREAM: Final = "fraud:alerts"

# -- served columns: the gold columns (lakehouse/tables.py) minus updated_at / the sketch -----------
# Spark SQL types, so encoding and decoding follow the table specs (a unit test checks they agree).
MERCHANT_MINUTE_COLUMNS: Final[dict[str, str]] = {
    "merchant_id": "STRING",
    "window_start": "TIMESTAMP",
    "tx_count": "BIGINT",
    "amount_sum": "DOUBLE",
    "amount_avg": "DOUBLE",
    "amount_max": "DOUBLE",
    "flagged_count": "BIGINT",
}
DEVICE_MINUTE_COLUMNS: Final[dict[str, str]] = {
    "device_id": "STRING",
    "sensor_type": "STRING",
    "window_start": "TIMESTAMP",
    "readings": "BIGINT",
    "value_sum": "DOUBLE",
    "value_avg": "DOUBLE",
    "value_min": "DOUBLE",
    "value_max": "DOUBLE",
    "anomalies": "BIGINT",
}
FRAUD_ALERT_COLUMNS: Final[dict[str, str]] = {
    "event_id": "STRING",
    "event_time": "TIMESTAMP",
    "user_id": "STRING",
    "card_token": "STRING",
    "merchant_id": "STRING",
    "amount": "DOUBLE",
    "rules": "ARRAY<STRING>",
    "score": "DOUBLE",
    "detected_at": "TIMESTAMP",
}
#: The columns whose values make an alert's identity for idempotency: its content, not when or by
#: which path it was detected (so the fast path's alert and gold's equal one are one entry).
ALERT_DIGEST_COLUMNS: Final = tuple(c for c in FRAUD_ALERT_COLUMNS if c != "detected_at")
#: The stream entry field naming the path that wrote the alert, and its values.
ALERT_PATH_FIELD: Final = "path"
GOLD_PATH: Final = "gold"
FAST_PATH: Final = "fast"
#: The fast path's verdicts (``fraud_fast_alert_key``) and what they hold.
FRAUD_FAST_TTL_S: Final = FRAUD_USER_TTL_S
#: Columns not served: bookkeeping (``updated_at``) and binary sketches.
NOT_SERVED: Final = frozenset({"updated_at", "sessions_sketch"})

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


# -- key builders ---------------------------------------------------------------------
def epoch_s(ts: datetime | int) -> int:
    """``ts`` in whole seconds since the epoch; a naive datetime is UTC (as Spark hands it out)."""
    if isinstance(ts, int):
        return ts
    return (as_utc(ts) - EPOCH) // timedelta(seconds=1)


def merchant_minute_key(merchant_id: str, window_start: datetime | int) -> str:
    return f"merchant:{merchant_id}:minute:{epoch_s(window_start)}"


def device_latest_key(device_id: str, sensor_type: str) -> str:
    return f"device:{device_id}:{sensor_type}:latest"


def page_top_key(window_start: datetime | int) -> str:
    return f"page:top:{epoch_s(window_start)}"


def fraud_user_key(user_id: str) -> str:
    return f"fraud:user:{user_id}"


def fraud_alert_marker_key(event_id: str) -> str:
    """Bookkeeping: the alert's stream entry id and digest (idempotent XADD, retraction)."""
    return f"fraud:alert:{event_id}"


def fraud_fast_alert_key(event_id: str) -> str:
    """The fast path's own verdict on a payment (``event_time``, ``rules``, ``score``, ``detected_at``), kept 7 d."""
    return f"fraud:fast:{event_id}"


def fraud_user_alerts_key(user_id: str) -> str:
    """Bookkeeping: the user's distinct alerts, from which ``fraud_user_key`` is computed."""
    return f"fraud:user-alerts:{user_id}"


#: The contract keys (contracts §4) as documented: pattern, Redis type, TTL in seconds (None: never expires).
#: The Dagster asset shows it (``key_layout_markdown``); a unit test checks the patterns against the key functions.
CONTRACT_KEYS: Final[tuple[tuple[str, str, int | None], ...]] = (
    ("merchant:{merchant_id}:minute:{window_start_epoch_s}", "hash", MERCHANT_MINUTE_TTL_S),
    ("device:{device_id}:{sensor_type}:latest", "hash", DEVICE_LATEST_TTL_S),
    ("page:top:{window_start_epoch_s}", "sorted set", PAGE_TOP_TTL_S),
    (FRAUD_ALERTS_STREAM, f"stream, capped near {FRAUD_ALERTS_MAXLEN:_}".replace("_", " "), FRAUD_ALERTS_TTL_S),
    ("fraud:user:{user_id}", "hash", FRAUD_USER_TTL_S),
)


def _ttl_words(seconds: int | None) -> str:
    if seconds is None:
        return "none"
    days, rest = divmod(seconds, 86400)
    return f"{days} d" if days > 1 and rest == 0 else f"{seconds // 3600} h"


def key_layout_markdown() -> str:
    """The contract keys as a Markdown table: key, type, TTL."""
    rows = [f"| `{key}` | {kind} | {_ttl_words(ttl)} |" for key, kind, ttl in CONTRACT_KEYS]
    return "\n".join(["| key | type | TTL |", "|---|---|---|", *rows])


#: Every key this module writes: (SCAN pattern, exact regex). The regex keeps a flush to these keys.
SERVING_KEY_PATTERNS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("merchant:*:minute:*", re.compile(r"merchant:.+:minute:-?\d+", re.DOTALL)),
    ("device:*:latest", re.compile(r"device:.+:[^:]+:latest", re.DOTALL)),
    ("page:top:*", re.compile(r"page:top:-?\d+")),
    (FRAUD_ALERTS_STREAM, re.compile(re.escape(FRAUD_ALERTS_STREAM))),
    ("fraud:user:*", re.compile(r"fraud:user:.+", re.DOTALL)),
    ("fraud:alert:*", re.compile(r"fraud:alert:.+", re.DOTALL)),
    ("fraud:user-alerts:*", re.compile(r"fraud:user-alerts:.+", re.DOTALL)),
    ("fraud:fast:*", re.compile(r"fraud:fast:.+", re.DOTALL)),
)


def is_serving_key(key: str) -> bool:
    return any(rx.fullmatch(key) for _, rx in SERVING_KEY_PATTERNS)


# -- encoding -------------------------------------------------------------------------
def as_utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def encode_ts(ts: datetime) -> str:
    """Fixed-width ISO-8601 UTC, microseconds always present (so encoded timestamps sort as strings)."""
    return as_utc(ts).strftime(_TS_FORMAT)


def decode_ts(text: str) -> datetime:
    return datetime.strptime(text, _TS_FORMAT).replace(tzinfo=UTC)


def _encode(value: Any, sql_type: str, column: str) -> str:
    if sql_type == "STRING":
        return str(value)
    if sql_type == "BIGINT":
        if isinstance(value, bool) or int(value) != value:
            raise TypeError(f"{column}: expected an integer, got {value!r}")
        return str(int(value))
    if sql_type == "DOUBLE":
        return repr(float(value))
    if sql_type == "TIMESTAMP":
        if not isinstance(value, datetime):
            raise TypeError(f"{column}: expected a datetime, got {value!r}")
        return encode_ts(value)
    if sql_type == "ARRAY<STRING>":
        return json.dumps([str(v) for v in value], separators=(",", ":"))
    raise ValueError(f"{column}: no encoding for {sql_type}")


def _decode(text: str, sql_type: str) -> Any:
    if sql_type == "STRING":
        return text
    if sql_type == "BIGINT":
        return int(text)
    if sql_type == "DOUBLE":
        return float(text)
    if sql_type == "TIMESTAMP":
        return decode_ts(text)
    if sql_type == "ARRAY<STRING>":
        return tuple(str(v) for v in json.loads(text))
    raise ValueError(f"no decoding for {sql_type}")


def row_fields(row: Mapping[str, Any], columns: Mapping[str, str], table: str) -> tuple[dict[str, str], list[str]]:
    """The row's served columns encoded (NULLs left out), and the names of its NULL columns."""
    present: dict[str, str] = {}
    nulls: list[str] = []
    for name, sql_type in columns.items():
        if name not in row:
            raise KeyError(f"{table} row without column {name!r} (has {sorted(row)})")
        value = row[name]
        if value is None:
            nulls.append(name)
        else:
            present[name] = _encode(value, sql_type, f"{table}.{name}")
    return present, nulls


def required(row: Mapping[str, Any], name: str, table: str) -> Any:
    value = row.get(name)
    if value is None:
        raise ValueError(f"{table} row with NULL key column {name!r}: {dict(row)!r}")
    return value


def to_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decoded_map(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {to_text(k): to_text(v) for k, v in raw.items()}


def row_of(fields: Mapping[str, str], columns: Mapping[str, str]) -> dict[str, Any]:
    return {name: _decode(fields[name], t) if name in fields else None for name, t in columns.items()}


#: The gold tables served, each with the columns that identify a row.
SERVED_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "merchant_minute": ("merchant_id", "window_start"),
    "page_minute": ("page", "window_start"),
    "device_minute": ("device_id", "sensor_type", "window_start"),
    "fraud_alerts": ("event_id",),
}
#: The columns each served table's writer reads (keys included).
SERVED_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "merchant_minute": tuple(MERCHANT_MINUTE_COLUMNS),
    "page_minute": ("page", "window_start", "views"),
    "device_minute": tuple(DEVICE_MINUTE_COLUMNS),
    "fraud_alerts": tuple(FRAUD_ALERT_COLUMNS),
}
