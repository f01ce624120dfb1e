"""Reading what services read: typed dataclasses and :class:`ServingClient` over the serving keys.

The key layout and encoding are in ``lakehouse.serving.keys``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

import redis

from lakehouse.serving.keys import (
    ALERT_PATH_FIELD,
    CHUNK_SIZE,
    DEVICE_MINUTE_COLUMNS,
    FRAUD_ALERT_COLUMNS,
    FRAUD_ALERTS_STREAM,
    MERCHANT_MINUTE_COLUMNS,
    as_utc,
    decoded_map,
    device_latest_key,
    fraud_user_key,
    merchant_minute_key,
    page_top_key,
    row_of,
    to_text,
)
from lakehouse.settings import REDIS_ROLES

if TYPE_CHECKING:
    from lakehouse.settings import Settings


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
    path: str | None = None  # which path wrote it: "fast" or "gold" (None: written before paths existed)


@dataclass(frozen=True)
class UserFraud:
    user_id: str
    last_alert_event_id: str
    last_score: float | None
    alert_count: int


# -- reading --------------------------------------------------------------------------
def _minute_starts(since: datetime, until: datetime) -> Iterator[datetime]:
    start = as_utc(since)
    first = start.replace(second=0, microsecond=0)
    if first < start:
        first += timedelta(minutes=1)
    t, end = first, as_utc(until)
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
        return MerchantMinute(**row_of(decoded_map(raw), MERCHANT_MINUTE_COLUMNS)) if raw else None

    def merchant_minutes(self, merchant_id: str, since: datetime, until: datetime) -> list[MerchantMinute]:
        """The merchant's minutes with ``since <= window_start < until``, oldest first (missing ones skipped)."""
        if as_utc(until) - as_utc(since) > self.MAX_RANGE:
            raise ValueError(f"range longer than {self.MAX_RANGE}: {since} .. {until}")
        starts = list(_minute_starts(since, until))
        pipe = self.r.pipeline(transaction=False)
        replies: list[Any] = []
        for i in range(0, len(starts), CHUNK_SIZE):
            for ws in starts[i : i + CHUNK_SIZE]:
                pipe.hgetall(merchant_minute_key(merchant_id, ws))
            replies.extend(pipe.execute())
        return [MerchantMinute(**row_of(decoded_map(raw), MERCHANT_MINUTE_COLUMNS)) for raw in replies if raw]

    def device_latest(self, device_id: str, sensor_type: str) -> DeviceLatest | None:
        raw = self.r.hgetall(device_latest_key(device_id, sensor_type))
        return DeviceLatest(**row_of(decoded_map(raw), DEVICE_MINUTE_COLUMNS)) if raw else None

    def top_pages(self, window_start: datetime, n: int = 10) -> PageTop:
        """The ``n`` most viewed pages of the minute (empty when the window is unknown or expired)."""
        if n < 1:
            return PageTop(as_utc(window_start), ())
        raw = self.r.zrevrange(page_top_key(window_start), 0, n - 1, withscores=True)
        scored = cast("list[tuple[bytes | str, float]]", raw)
        entries = tuple(PageViews(to_text(member), int(score)) for member, score in scored)
        return PageTop(as_utc(window_start), entries)

    def recent_fraud_alerts(self, n: int = 10) -> list[FraudAlert]:
        """The ``n`` latest entries of ``fraud:alerts``, newest first."""
        if n < 1:
            return []
        raw = self.r.xrevrange(FRAUD_ALERTS_STREAM, count=n) or []
        out = []
        for _, fields in raw:
            m = decoded_map(fields or {})
            out.append(FraudAlert(**row_of(m, FRAUD_ALERT_COLUMNS), path=m.get(ALERT_PATH_FIELD)))
        return out

    def user_fraud(self, user_id: str) -> UserFraud | None:
        raw = decoded_map(self.r.hgetall(fraud_user_key(user_id)))
        if not raw:
            return None
        score = raw.get("last_score")
        return UserFraud(
            user_id=user_id,
            last_alert_event_id=raw["last_alert_event_id"],
            last_score=float(score) if score is not None else None,
            alert_count=int(raw["alert_count"]),
        )


def connect(
    s: Settings,
    *,
    role: str = "reader",
    decode_responses: bool = True,
    socket_timeout: float = 5.0,
) -> redis.Redis:
    """A client for the serving Redis at ``s.redis_address`` over TLS (verified against the local CA,
    host name included), logged in as ROLE's ACL user: ``reader`` (services: read the serving keys),
    ``writer`` (the serving stream and the fast path) or ``admin`` (the stack, tests, benchmarks)."""
    if role not in REDIS_ROLES:
        raise ValueError(f"unknown Redis role {role!r}; known: {', '.join(REDIS_ROLES)}")
    return redis.Redis(
        host=s.redis_address[0],
        port=s.redis_address[1],
        username=role,
        password=s.secret(f"redis_{role}").get_secret_value(),
        ssl=True,
        ssl_ca_certs=str(s.ca_file),
        ssl_check_hostname=True,
        decode_responses=decode_responses,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
    )
