"""Writing gold to Redis: idempotent writers, retraction and the change-feed applier.

The key layout and encoding are in ``lakehouse.serving.keys``.

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
  digest (of its content: not ``detected_at``, not ``path``) with its marker
  ``fraud:alert:{event_id}``: equal -> a replay, or the other path's identical verdict (the fast
  path writes with the same script), nothing is touched. New ->
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

import redis
from redis.commands.core import Script

from lakehouse.serving.keys import (
    ALERT_DIGEST_COLUMNS,
    ALERT_PATH_FIELD,
    CHUNK_SIZE,
    DEVICE_LATEST_TTL_S,
    DEVICE_MINUTE_COLUMNS,
    EPOCH,
    FRAUD_ALERT_COLUMNS,
    FRAUD_ALERT_MARKER_TTL_S,
    FRAUD_ALERTS_MAXLEN,
    FRAUD_ALERTS_STREAM,
    FRAUD_USER_TTL_S,
    GOLD_PATH,
    MERCHANT_MINUTE_COLUMNS,
    MERCHANT_MINUTE_TTL_S,
    PAGE_TOP_TTL_S,
    SERVED_KEYS,
    SERVING_KEY_PATTERNS,
    as_utc,
    device_latest_key,
    encode_ts,
    fraud_alert_marker_key,
    fraud_user_alerts_key,
    fraud_user_key,
    merchant_minute_key,
    page_top_key,
    required,
    row_fields,
    to_text,
)

if TYPE_CHECKING:
    pass

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

UPSERT_ALERT_LUA = (
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

RETRACT_ALERT_LUA = (
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
            str(required(row, "merchant_id", "merchant_minute")), required(row, "window_start", "merchant_minute")
        )
        present, nulls = row_fields(row, MERCHANT_MINUTE_COLUMNS, "merchant_minute")
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
        page = str(required(row, "page", "page_minute"))
        key = page_top_key(required(row, "window_start", "page_minute"))
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
            str(required(row, "device_id", "device_minute")), str(required(row, "sensor_type", "device_minute"))
        )
        required(row, "window_start", "device_minute")
        present, _ = row_fields(row, DEVICE_MINUTE_COLUMNS, "device_minute")
        pairs = [x for kv in present.items() for x in kv]
        args: list[str | int] = [DEVICE_LATEST_TTL_S, present["window_start"], present.get("readings", ""), *pairs]
        script(keys=[key], args=args, client=out.pipe)
        out.queued_one()
    out.flush()
    return sum(int(x) for x in out.replies)


def _alert_digest(pairs: Sequence[str]) -> str:
    return hashlib.sha256("\x1f".join(pairs).encode()).hexdigest()[:32]


def alert_digest(present: Mapping[str, str]) -> str:
    """The idempotency digest of an alert's encoded fields: its content (``ALERT_DIGEST_COLUMNS``),
    not ``detected_at`` or ``path``. The fast path computes the same (``lakehouse.core.Encoding``)."""
    return _alert_digest([x for c in ALERT_DIGEST_COLUMNS if c in present for x in (c, present[c])])


def write_fraud_alerts(
    r: redis.Redis,
    rows: Iterable[Mapping[str, Any]],
    *,
    maxlen: int = FRAUD_ALERTS_MAXLEN,
    chunk_size: int = CHUNK_SIZE,
    path: str = GOLD_PATH,
) -> int:
    """``gold.fraud_alerts`` rows (inserted or updated) -> ``fraud:alerts`` and ``fraud:user:{id}``.

    Each entry says which PATH wrote it (``path`` field). New alerts are appended in
    (``detected_at``, ``event_time``, ``event_id``) order, so a rebuild
    writes the stream in detection order. Returns the stream entries appended (new or changed alerts).
    """
    if maxlen < 1:
        raise ValueError(f"maxlen must be >= 1, got {maxlen}")
    script = Script(r, UPSERT_ALERT_LUA)
    out = _Chunked(r, chunk_size)
    far_past = datetime.min.replace(tzinfo=UTC)

    def order(row: Mapping[str, Any]) -> tuple[datetime, datetime, str]:
        detected = row.get("detected_at")
        return (
            as_utc(detected) if detected is not None else far_past,
            as_utc(required(row, "event_time", "fraud_alerts")),
            str(required(row, "event_id", "fraud_alerts")),
        )

    for row in sorted(rows, key=order):
        event_id = str(row["event_id"])
        present, _ = row_fields(row, FRAUD_ALERT_COLUMNS, "fraud_alerts")
        pairs = [*(x for kv in present.items() for x in kv), ALERT_PATH_FIELD, path]
        user_id = present.get("user_id", "")
        event_time_us = (as_utc(row["event_time"]) - EPOCH) // timedelta(microseconds=1)
        script(
            keys=[
                FRAUD_ALERTS_STREAM,
                fraud_alert_marker_key(event_id),
                fraud_user_key(user_id),
                fraud_user_alerts_key(user_id),
            ],
            args=[
                event_id,
                alert_digest(present),
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
    users = [to_text(u) if u is not None else "" for u in lookup.replies]
    script = Script(r, RETRACT_ALERT_LUA)
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
            key = to_text(raw)
            if exact.fullmatch(key):
                doomed.append(key)
            if len(doomed) >= batch:
                removed += int(r.unlink(*doomed))
                doomed.clear()
        if doomed:
            removed += int(r.unlink(*doomed))
    return removed


# -- applying gold's change feed -------------------------------------------------------
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
        return retract_fraud_alerts(r, (str(required(row, "event_id", table)) for row in rows), chunk_size=chunk_size)
    out = _Chunked(r, chunk_size)
    script = Script(r, _DEVICE_FORGET_LUA) if table == "device_minute" else None
    for row in rows:
        window_start = required(row, "window_start", table)
        if table == "merchant_minute":
            out.pipe.delete(merchant_minute_key(str(required(row, "merchant_id", table)), window_start))
        elif table == "page_minute":
            out.pipe.zrem(page_top_key(window_start), str(required(row, "page", table)))
        elif script is not None:
            key = device_latest_key(str(required(row, "device_id", table)), str(required(row, "sensor_type", table)))
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
        key = tuple(required(row, k, table) for k in keys)
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
