"""Redis serving of gold (contracts §4): key builders, idempotent writers and a typed reader.

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
=================================  ====  ====================================================  ====

Values
------

Hash fields and stream entry fields are the gold columns by name, except ``updated_at`` (when gold
last touched the row: bookkeeping, and it would make a replay that recomputes a row look like a
change) and ``page_minute``'s binary HLL sketch. Encoding: strings as is, integers in decimal,
doubles as Python's shortest round-trip ``repr``, timestamps as fixed-width ISO-8601 UTC
(``2026-11-26T10:15:00.000000Z``: fixed width so they also sort as strings), arrays (``rules``)
as compact JSON. A NULL column is an absent field.

Idempotency (a replayed micro-batch leaves Redis unchanged, key by key)
----------------------------------------------------------------------

- ``merchant:…:minute:…``: HSET of the row's fields, HDEL of its NULL fields, ``EXPIRE … NX``.
  The content is a function of the row; the TTL is set once, when the window is first written,
  so a replay does not extend it either. Two *different* versions of one window: the last write wins
  (batches are written in order).
- ``device:…:latest``: a Lua script replaces the hash only with a newer version, ordered by
  (``window_start``, ``readings``): readings of a window only grow in gold. An older window that
  arrives after a newer one changes nothing, whatever the order of writes; an identical row is a
  no-op (TTL untouched); a replaced row gets a fresh 24 h TTL.
- ``page:top:…``: ``ZADD … GT`` (views of a window only grow, so an older version cannot lower a
  score) and ``EXPIRE … NX``.
- ``fraud:alerts`` + ``fraud:user:…``: one Lua script per alert. It compares the alert's
  digest with its marker ``fraud:alert:{event_id}``: equal -> a replay, nothing is touched. New ->
  XADD with ``MAXLEN ~ maxlen``. Changed (gold updated ``rules``/``score``) -> the old entry is
  XDELed and the new version appended, so the stream keeps one entry per alert, in the order of
  its last change. The user's alerts live in ``fraud:user-alerts:{user_id}`` (one field per
  ``event_id``, so a replay cannot count twice); ``fraud:user:{user_id}`` is recomputed from it:
  ``alert_count`` = distinct alerts, ``last_*`` = the alert with the latest ``event_time`` (then
  the greatest ``event_id``), which does not depend on the order of writes. The idempotency
  horizon is the markers' TTL (7 d): an alert written again more than 7 days after its last write
  is appended again.

Retraction (gold deletes an alert row)
--------------------------------------

``retract_fraud_alerts`` XDELs the alert's stream entry, drops its marker and removes it from
the user's alerts (recomputing ``fraud:user:…``, deleted when no alert is left). It is best
effort, and the stream cannot take back what it already delivered: readers that read the entry
(XREAD, consumer groups, whose pending lists may still name the id) are not told; the stream's
``entries-added`` counter keeps counting it. An alert whose marker has expired (> 7 d) cannot be
found any more and is left alone. Batches must be applied in order: re-applying an *older* batch
after a retraction brings the alert back (a rebuild from gold fixes it).

Everything here targets one Redis server (not Cluster: the fraud scripts touch keys of different
hash slots) of version 7.0 or later (``EXPIRE … NX``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

import redis
from redis.commands.core import Script

if TYPE_CHECKING:
    from lakehouse.settings import Settings

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
#: Columns not served: bookkeeping (``updated_at``) and binary sketches.
NOT_SERVED: Final = frozenset({"updated_at", "sessions_sketch"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


# -- key builders ---------------------------------------------------------------------
def epoch_s(ts: datetime | int) -> int:
    """``ts`` in whole seconds since the epoch; a naive datetime is UTC (as Spark hands it out)."""
    if isinstance(ts, int):
        return ts
    return (_utc(ts) - _EPOCH) // timedelta(seconds=1)


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
)


def is_serving_key(key: str) -> bool:
    return any(rx.fullmatch(key) for _, rx in SERVING_KEY_PATTERNS)


# -- typed read model -----------------------------------------------------------------
@dataclass(frozen=True)
class MerchantMinute:
    merchant_id: str
    window_start: datetime
    tx_count: int | None
    amount_sum: float | None
    amount_avg: float | None
    amount_max: float | None
    flagged_count: int | None


@dataclass(frozen=True)
class DeviceLatest:
    device_id: str
    sensor_type: str
    window_start: datetime
    readings: int | None
    value_sum: float | None
    value_avg: float | None
    value_min: float | None
    value_max: float | None
    anomalies: int | None


@dataclass(frozen=True)
class PageViews:
    page: str
    views: int


@dataclass(frozen=True)
class PageTop:
    window_start: datetime
    entries: tuple[PageViews, ...]  # most viewed first


@dataclass(frozen=True)
class FraudAlert:
    event_id: str
    event_time: datetime
    user_id: str | None
    card_token: str | None
    merchant_id: str | None
    amount: float | None
    rules: tuple[str, ...] | None
    score: float | None
    detected_at: datetime | None


@dataclass(frozen=True)
class UserFraud:
    user_id: str
    last_alert_event_id: str
    last_score: float | None
    alert_count: int


# -- encoding -------------------------------------------------------------------------
def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def encode_ts(ts: datetime) -> str:
    """Fixed-width ISO-8601 UTC, microseconds always present (so encoded timestamps sort as strings)."""
    return _utc(ts).strftime(_TS_FORMAT)


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


def _fields(row: Mapping[str, Any], columns: Mapping[str, str], table: str) -> tuple[dict[str, str], list[str]]:
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


def _required(row: Mapping[str, Any], name: str, table: str) -> Any:
    value = row.get(name)
    if value is None:
        raise ValueError(f"{table} row with NULL key column {name!r}: {dict(row)!r}")
    return value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decoded_map(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


def _row_of(fields: Mapping[str, str], columns: Mapping[str, str]) -> dict[str, Any]:
    return {name: _decode(fields[name], t) if name in fields else None for name, t in columns.items()}


# -- Lua ------------------------------------------------------------------------------
# Lua 5.1 in Redis: HMGET yields false for a missing field; unpack(t, i) spreads t[i..].
_DEVICE_LATEST_LUA = """
-- KEYS[1] device:{id}:{sensor}:latest
-- ARGV[1] ttl s, ARGV[2] window_start (fixed-width ISO), ARGV[3] readings ('' = NULL), ARGV[4..] field, value
local cur = redis.call('HMGET', KEYS[1], 'window_start', 'readings')
if cur[1] then
  if ARGV[2] < cur[1] then return 0 end
  if ARGV[2] == cur[1] then
    local new_n, cur_n = tonumber(ARGV[3]) or -1, tonumber(cur[2]) or -1
    if new_n < cur_n then return 0 end
    local have = redis.call('HGETALL', KEYS[1])
    if #have == #ARGV - 3 then
      local m = {}
      for i = 1, #have, 2 do m[have[i]] = have[i + 1] end
      local same = true
      for i = 4, #ARGV, 2 do
        if m[ARGV[i]] ~= ARGV[i + 1] then same = false; break end
      end
      if same then return 0 end
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

_REFRESH_USER_LUA = """
-- fraud:user:{id} from fraud:user-alerts:{id} (event_id -> '{event_time_us} {score}')
local function refresh_user(user_key, alerts_key, ttl)
  local all = redis.call('HGETALL', alerts_key)
  if #all == 0 then
    redis.call('DEL', user_key, alerts_key)
    return
  end
  local best_id, best_t, best_s = nil, nil, nil
  for i = 1, #all, 2 do
    local v = all[i + 1]
    local sep = string.find(v, ' ', 1, true)
    local t = tonumber(string.sub(v, 1, sep - 1))
    if best_id == nil or t > best_t or (t == best_t and all[i] > best_id) then
      best_id, best_t, best_s = all[i], t, string.sub(v, sep + 1)
    end
  end
  redis.call('HSET', user_key, 'last_alert_event_id', best_id, 'alert_count', tostring(math.floor(#all / 2)))
  if best_s == '' then
    redis.call('HDEL', user_key, 'last_score')
  else
    redis.call('HSET', user_key, 'last_score', best_s)
  end
  redis.call('EXPIRE', user_key, ttl)
  redis.call('EXPIRE', alerts_key, ttl)
end
"""

_UPSERT_ALERT_LUA = (
    _REFRESH_USER_LUA
    + """
-- KEYS[1] fraud:alerts, KEYS[2] fraud:alert:{event_id}, KEYS[3] fraud:user:{user_id},
-- KEYS[4] fraud:user-alerts:{user_id} (KEYS[3..4] unused without a user)
-- ARGV[1] event_id, ARGV[2] digest, ARGV[3] maxlen, ARGV[4] marker ttl, ARGV[5] user ttl,
-- ARGV[6] user_id ('' = NULL), ARGV[7] event_time us, ARGV[8] score ('' = NULL), ARGV[9..] field, value
local cur = redis.call('HMGET', KEYS[2], 'digest', 'entry_id')
if cur[1] == ARGV[2] then return 0 end
if cur[2] then redis.call('XDEL', KEYS[1], cur[2]) end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 9))
redis.call('DEL', KEYS[2])
if ARGV[6] == '' then
  redis.call('HSET', KEYS[2], 'entry_id', id, 'digest', ARGV[2])
else
  redis.call('HSET', KEYS[2], 'entry_id', id, 'digest', ARGV[2], 'user_id', ARGV[6])
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[7] .. ' ' .. ARGV[8])
  refresh_user(KEYS[3], KEYS[4], ARGV[5])
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""
)

_RETRACT_ALERT_LUA = (
    _REFRESH_USER_LUA
    + """
-- KEYS as for the upsert; ARGV[1] event_id, ARGV[2] user ttl, ARGV[3] user_id ('' = unknown)
local changed = 0
local entry = redis.call('HGET', KEYS[2], 'entry_id')
if entry then
  redis.call('XDEL', KEYS[1], entry)
  redis.call('DEL', KEYS[2])
  changed = 1
end
if ARGV[3] ~= '' and redis.call('HDEL', KEYS[4], ARGV[1]) == 1 then
  refresh_user(KEYS[3], KEYS[4], ARGV[2])
  changed = 1
end
return changed
"""
)


# -- writing --------------------------------------------------------------------------
class _Chunked:
    """A non-transactional pipeline executed every ``size`` queued commands; collects the replies."""

    def __init__(self, r: redis.Redis, size: int) -> None:
        if size < 1:
            raise ValueError(f"chunk size must be >= 1, got {size}")
        self.pipe = r.pipeline(transaction=False)
        self.size = size
        self.queued = 0
        self.replies: list[Any] = []

    def queued_one(self) -> None:
        self.queued += 1
        if self.queued >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.queued:
            self.replies.extend(self.pipe.execute())
            self.queued = 0


def write_merchant_minutes(r: redis.Redis, rows: Iterable[Mapping[str, Any]], *, chunk_size: int = CHUNK_SIZE) -> int:
    """``gold.merchant_minute`` rows -> ``merchant:{id}:minute:{epoch}`` hashes. Returns the rows written."""
    out = _Chunked(r, chunk_size)
    n = 0
    for row in rows:
        key = merchant_minute_key(
            str(_required(row, "merchant_id", "merchant_minute")), _required(row, "window_start", "merchant_minute")
        )
        present, nulls = _fields(row, MERCHANT_MINUTE_COLUMNS, "merchant_minute")
        out.pipe.hset(key, mapping=cast("Mapping[Any, Any]", present))
        out.queued_one()
        if nulls:
            out.pipe.hdel(key, *nulls)
            out.queued_one()
        out.pipe.expire(key, MERCHANT_MINUTE_TTL_S, nx=True)
        out.queued_one()
        n += 1
    out.flush()
    return n


def write_page_minutes(r: redis.Redis, rows: Iterable[Mapping[str, Any]], *, chunk_size: int = CHUNK_SIZE) -> int:
    """``gold.page_minute`` rows -> ``page:top:{epoch}`` (member page, score views). Rows without views are
    skipped. Returns the rows written."""
    out = _Chunked(r, chunk_size)
    n = 0
    for row in rows:
        page = str(_required(row, "page", "page_minute"))
        key = page_top_key(_required(row, "window_start", "page_minute"))
        views = row.get("views")
        if views is None:
            continue
        out.pipe.zadd(key, {page: int(views)}, gt=True)
        out.queued_one()
        out.pipe.expire(key, PAGE_TOP_TTL_S, nx=True)
        out.queued_one()
        n += 1
    out.flush()
    return n


def write_device_minutes(r: redis.Redis, rows: Iterable[Mapping[str, Any]], *, chunk_size: int = CHUNK_SIZE) -> int:
    """``gold.device_minute`` rows -> ``device:{id}:{sensor}:latest``, only where newer (see the module doc).
    Returns the keys that changed."""
    script = Script(r, _DEVICE_LATEST_LUA)
    out = _Chunked(r, chunk_size)
    for row in rows:
        key = device_latest_key(
            str(_required(row, "device_id", "device_minute")), str(_required(row, "sensor_type", "device_minute"))
        )
        _required(row, "window_start", "device_minute")
        present, _ = _fields(row, DEVICE_MINUTE_COLUMNS, "device_minute")
        pairs = [x for kv in present.items() for x in kv]
        args: list[str | int] = [DEVICE_LATEST_TTL_S, present["window_start"], present.get("readings", ""), *pairs]
        script(keys=[key], args=args, client=out.pipe)
        out.queued_one()
    out.flush()
    return sum(int(x) for x in out.replies)


def _alert_digest(pairs: Sequence[str]) -> str:
    return hashlib.sha256("\x1f".join(pairs).encode()).hexdigest()[:32]


def write_fraud_alerts(
    r: redis.Redis,
    rows: Iterable[Mapping[str, Any]],
    *,
    maxlen: int = FRAUD_ALERTS_MAXLEN,
    chunk_size: int = CHUNK_SIZE,
) -> int:
    """``gold.fraud_alerts`` rows (inserted or updated) -> ``fraud:alerts`` and ``fraud:user:{id}``.

    New alerts are appended in (``detected_at``, ``event_time``, ``event_id``) order, so a rebuild
    writes the stream in detection order. Returns the stream entries appended (new or changed alerts).
    """
    if maxlen < 1:
        raise ValueError(f"maxlen must be >= 1, got {maxlen}")
    script = Script(r, _UPSERT_ALERT_LUA)
    out = _Chunked(r, chunk_size)
    far_past = datetime.min.replace(tzinfo=UTC)

    def order(row: Mapping[str, Any]) -> tuple[datetime, datetime, str]:
        detected = row.get("detected_at")
        return (
            _utc(detected) if detected is not None else far_past,
            _utc(_required(row, "event_time", "fraud_alerts")),
            str(_required(row, "event_id", "fraud_alerts")),
        )

    for row in sorted(rows, key=order):
        event_id = str(row["event_id"])
        present, _ = _fields(row, FRAUD_ALERT_COLUMNS, "fraud_alerts")
        pairs = [x for kv in present.items() for x in kv]
        user_id = present.get("user_id", "")
        event_time_us = (_utc(row["event_time"]) - _EPOCH) // timedelta(microseconds=1)
        script(
            keys=[
                FRAUD_ALERTS_STREAM,
                fraud_alert_marker_key(event_id),
                fraud_user_key(user_id),
                fraud_user_alerts_key(user_id),
            ],
            args=[
                event_id,
                _alert_digest(pairs),
                maxlen,
                FRAUD_ALERT_MARKER_TTL_S,
                FRAUD_USER_TTL_S,
                user_id,
                event_time_us,
                present.get("score", ""),
                *pairs,
            ],
            client=out.pipe,
        )
        out.queued_one()
    out.flush()
    return sum(int(x) for x in out.replies)


def retract_fraud_alerts(r: redis.Redis, event_ids: Iterable[str], *, chunk_size: int = CHUNK_SIZE) -> int:
    """Best-effort removal of alerts gold deleted (see the module doc). Returns the alerts that were found."""
    ids = list(dict.fromkeys(str(e) for e in event_ids))
    lookup = _Chunked(r, chunk_size)
    for event_id in ids:
        lookup.pipe.hget(fraud_alert_marker_key(event_id), "user_id")
        lookup.queued_one()
    lookup.flush()
    users = [_text(u) if u is not None else "" for u in lookup.replies]
    script = Script(r, _RETRACT_ALERT_LUA)
    out = _Chunked(r, chunk_size)
    for event_id, user_id in zip(ids, users, strict=True):
        script(
            keys=[
                FRAUD_ALERTS_STREAM,
                fraud_alert_marker_key(event_id),
                fraud_user_key(user_id),
                fraud_user_alerts_key(user_id),
            ],
            args=[event_id, FRAUD_USER_TTL_S, user_id],
            client=out.pipe,
        )
        out.queued_one()
    out.flush()
    return sum(int(x) for x in out.replies)


def flush_serving_keys(r: redis.Redis, *, batch: int = 1000) -> int:
    """UNLINK every key this module writes (contract keys and their bookkeeping), nothing else: the first
    step of a rebuild from gold. Stop the writers first. Returns the keys removed."""
    removed = 0
    for pattern, exact in SERVING_KEY_PATTERNS:
        doomed: list[str] = []
        for raw in r.scan_iter(match=pattern, count=batch):
            key = _text(raw)
            if exact.fullmatch(key):
                doomed.append(key)
            if len(doomed) >= batch:
                removed += int(r.unlink(*doomed))
                doomed.clear()
        if doomed:
            removed += int(r.unlink(*doomed))
    return removed


# -- reading --------------------------------------------------------------------------
def _minute_starts(since: datetime, until: datetime) -> Iterator[datetime]:
    start = _utc(since)
    first = start.replace(second=0, microsecond=0)
    if first < start:
        first += timedelta(minutes=1)
    t, end = first, _utc(until)
    while t < end:
        yield t
        t += timedelta(minutes=1)


class ServingClient:
    """Typed reads of the serving keys. Works with clients that decode responses or not."""

    #: Longest range ``merchant_minutes`` reads (keys live 24 h; this only stops a runaway loop).
    MAX_RANGE: Final = timedelta(days=7)

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def merchant_minute(self, merchant_id: str, window_start: datetime) -> MerchantMinute | None:
        raw = self.r.hgetall(merchant_minute_key(merchant_id, window_start))
        return MerchantMinute(**_row_of(_decoded_map(raw), MERCHANT_MINUTE_COLUMNS)) if raw else None

    def merchant_minutes(self, merchant_id: str, since: datetime, until: datetime) -> list[MerchantMinute]:
        """The merchant's minutes with ``since <= window_start < until``, oldest first (missing ones skipped)."""
        if _utc(until) - _utc(since) > self.MAX_RANGE:
            raise ValueError(f"range longer than {self.MAX_RANGE}: {since} .. {until}")
        starts = list(_minute_starts(since, until))
        pipe = self.r.pipeline(transaction=False)
        replies: list[Any] = []
        for i in range(0, len(starts), CHUNK_SIZE):
            for ws in starts[i : i + CHUNK_SIZE]:
                pipe.hgetall(merchant_minute_key(merchant_id, ws))
            replies.extend(pipe.execute())
        return [MerchantMinute(**_row_of(_decoded_map(raw), MERCHANT_MINUTE_COLUMNS)) for raw in replies if raw]

    def device_latest(self, device_id: str, sensor_type: str) -> DeviceLatest | None:
        raw = self.r.hgetall(device_latest_key(device_id, sensor_type))
        return DeviceLatest(**_row_of(_decoded_map(raw), DEVICE_MINUTE_COLUMNS)) if raw else None

    def top_pages(self, window_start: datetime, n: int = 10) -> PageTop:
        """The ``n`` most viewed pages of the minute (empty when the window is unknown or expired)."""
        if n < 1:
            return PageTop(_utc(window_start), ())
        raw = self.r.zrevrange(page_top_key(window_start), 0, n - 1, withscores=True)
        scored = cast("list[tuple[bytes | str, float]]", raw)
        entries = tuple(PageViews(_text(member), int(score)) for member, score in scored)
        return PageTop(_utc(window_start), entries)

    def recent_fraud_alerts(self, n: int = 10) -> list[FraudAlert]:
        """The ``n`` latest entries of ``fraud:alerts``, newest first."""
        if n < 1:
            return []
        raw = self.r.xrevrange(FRAUD_ALERTS_STREAM, count=n) or []
        return [FraudAlert(**_row_of(_decoded_map(fields or {}), FRAUD_ALERT_COLUMNS)) for _, fields in raw]

    def user_fraud(self, user_id: str) -> UserFraud | None:
        raw = _decoded_map(self.r.hgetall(fraud_user_key(user_id)))
        if not raw:
            return None
        score = raw.get("last_score")
        return UserFraud(
            user_id=user_id,
            last_alert_event_id=raw["last_alert_event_id"],
            last_score=float(score) if score is not None else None,
            alert_count=int(raw["alert_count"]),
        )


def connect(s: Settings, *, decode_responses: bool = True, socket_timeout: float = 5.0) -> redis.Redis:
    """A client for the serving Redis at ``s.host:s.redis_port`` (with ``s.redis_password`` when set)."""
    password = s.redis_password.get_secret_value() if s.redis_password else None
    return redis.Redis(
        host=s.host,
        port=s.redis_port,
        password=password or None,
        decode_responses=decode_responses,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
    )


# -- applying gold's change feed -------------------------------------------------------
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
#: Delta change feed ``_change_type`` values: what a row of a change batch means for Redis.
UPSERT_CHANGES: Final = frozenset({"insert", "update_postimage"})
DELETE_CHANGE: Final = "delete"

_DEVICE_FORGET_LUA = """
-- KEYS[1] device:{id}:{sensor}:latest; ARGV[1] window_start (fixed-width ISO) gold deleted
if redis.call('HGET', KEYS[1], 'window_start') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Applied:
    """What one change batch did to Redis."""

    table: str
    upserts: int
    deletes: int
    changed: int  # keys or entries that changed (writers' own counts; merchant/page: rows written)

    def message(self) -> str:
        return f"{self.table}: {self.upserts} upserts, {self.deletes} deletes, {self.changed} changed"


def delete_rows(r: redis.Redis, table: str, rows: Iterable[Mapping[str, Any]], *, chunk_size: int = CHUNK_SIZE) -> int:
    """Remove what gold deleted (a replay dropping a window or retracting an alert). Returns keys touched."""
    if table == "fraud_alerts":
        return retract_fraud_alerts(r, (str(_required(row, "event_id", table)) for row in rows), chunk_size=chunk_size)
    out = _Chunked(r, chunk_size)
    script = Script(r, _DEVICE_FORGET_LUA) if table == "device_minute" else None
    for row in rows:
        window_start = _required(row, "window_start", table)
        if table == "merchant_minute":
            out.pipe.delete(merchant_minute_key(str(_required(row, "merchant_id", table)), window_start))
        elif table == "page_minute":
            out.pipe.zrem(page_top_key(window_start), str(_required(row, "page", table)))
        elif script is not None:
            key = device_latest_key(str(_required(row, "device_id", table)), str(_required(row, "sensor_type", table)))
            script(keys=[key], args=[encode_ts(window_start)], client=out.pipe)
        else:
            raise ValueError(f"{table} is not served; served tables: {', '.join(SERVED_KEYS)}")
        out.queued_one()
    out.flush()
    return sum(int(x) for x in out.replies)


_WRITERS: Final = {
    "merchant_minute": write_merchant_minutes,
    "page_minute": write_page_minutes,
    "device_minute": write_device_minutes,
}


def upsert_rows(r: redis.Redis, table: str, rows: Iterable[Mapping[str, Any]], *, chunk_size: int = CHUNK_SIZE) -> int:
    if table == "fraud_alerts":
        return write_fraud_alerts(r, rows, chunk_size=chunk_size)
    writer = _WRITERS.get(table)
    if writer is None:
        raise ValueError(f"{table} is not served; served tables: {', '.join(SERVED_KEYS)}")
    return writer(r, rows, chunk_size=chunk_size)


def latest_changes(table: str, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The last change of each row key in a change batch (``_commit_version`` order; pre-images dropped).

    A batch can hold several commits that touched one window; only the newest state matters, and
    writing older ones first would briefly regress Redis (and for ``page:top`` ZADD GT, never recover
    from a lowered count). Rows without ``_change_type`` are plain gold rows (a rebuild): upserts.
    """
    keys = SERVED_KEYS.get(table)
    if keys is None:
        raise ValueError(f"{table} is not served; served tables: {', '.join(SERVED_KEYS)}")
    newest: dict[tuple[Any, ...], tuple[int, dict[str, Any]]] = {}
    for raw in rows:
        row = dict(raw)
        change = row.get("_change_type", "insert")
        if change not in UPSERT_CHANGES and change != DELETE_CHANGE:
            continue  # update_preimage
        key = tuple(_required(row, k, table) for k in keys)
        version = int(row.get("_commit_version") or 0)
        held = newest.get(key)
        if held is None or version >= held[0]:
            newest[key] = (version, row)
    return [row for _, row in newest.values()]


def apply_changes(
    r: redis.Redis, table: str, rows: Iterable[Mapping[str, Any]], *, chunk_size: int = CHUNK_SIZE
) -> Applied:
    """Apply one batch of gold changes (Delta change feed rows, or plain gold rows) to Redis, idempotently.

    Applying the same batch twice leaves Redis as the first application left it, key by key.
    """
    latest = latest_changes(table, rows)
    deletes = [row for row in latest if row.get("_change_type") == DELETE_CHANGE]
    upserts = [row for row in latest if row.get("_change_type") != DELETE_CHANGE]
    changed = delete_rows(r, table, deletes, chunk_size=chunk_size) if deletes else 0
    changed += upsert_rows(r, table, upserts, chunk_size=chunk_size) if upserts else 0
    return Applied(table, len(upserts), len(deletes), changed)
