"""lakehouse.serving against a real redis-server started by this module (never the stack's port 6379)."""

from __future__ import annotations

import itertools
import time
import typing
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis

from lakehouse import serving
from lakehouse.serving import (
    DeviceLatest,
    FraudAlert,
    MerchantMinute,
    PageTop,
    PageViews,
    ServingClient,
    UserFraud,
    connect,
    flush_serving_keys,
    retract_fraud_alerts,
    write_device_minutes,
    write_fraud_alerts,
    write_merchant_minutes,
    write_page_minutes,
)
from lakehouse.settings import Settings
from tests.unit.conftest import free_port

T0 = datetime(2026, 11, 26, 10, 15)  # naive UTC, as Row.asDict() hands it out
T0_EPOCH = int(T0.replace(tzinfo=UTC).timestamp())
DAY = 24 * 3600
WEEK = 7 * DAY


@pytest.fixture(scope="module")
def settings(redis_settings: Settings) -> Settings:
    return redis_settings


@pytest.fixture
def r(settings: Settings) -> Iterator[redis.Redis]:
    """A raw (bytes) client on an empty database."""
    client = connect(settings, role="admin", decode_responses=False)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def client(settings: Settings, r: redis.Redis) -> Iterator[ServingClient]:
    decoded = connect(settings)
    yield ServingClient(decoded)
    decoded.close()


# -- rows as gold hands them out ---------------------------------------------------------------
def merchant_row(merchant_id: str, minute: int, tx: int = 3, **over: Any) -> dict[str, Any]:
    row = {
        "merchant_id": merchant_id,
        "window_start": T0 + timedelta(minutes=minute),
        "tx_count": tx,
        "amount_sum": 30.5 * tx,
        "amount_avg": 30.5,
        "amount_max": 99.99,
        "flagged_count": 1,
        "updated_at": datetime.now(UTC).replace(tzinfo=None),
    }
    return {**row, **over}


def device_row(device_id: str, sensor: str, minute: int, readings: int = 6, **over: Any) -> dict[str, Any]:
    row = {
        "device_id": device_id,
        "sensor_type": sensor,
        "window_start": T0 + timedelta(minutes=minute),
        "readings": readings,
        "value_sum": 21.5 * readings,
        "value_avg": 21.5,
        "value_min": 20.1,
        "value_max": 61.0,
        "anomalies": 1,
        "updated_at": datetime.now(UTC).replace(tzinfo=None),
    }
    return {**row, **over}


def page_row(page: str, minute: int, views: int | None, **over: Any) -> dict[str, Any]:
    row = {
        "page": page,
        "window_start": T0 + timedelta(minutes=minute),
        "views": views,
        "clicks": 2,
        "purchases": 0,
        "sessions": 3,
        "sessions_sketch": b"\x00\x01binary",
        "updated_at": datetime.now(UTC).replace(tzinfo=None),
    }
    return {**row, **over}


def alert_row(
    event_id: str, user_id: str | None, second: int, score: float | None = 0.5, **over: Any
) -> dict[str, Any]:
    row = {
        "event_id": event_id,
        "event_time": T0 + timedelta(seconds=second, microseconds=123_000),
        "user_id": user_id,
        "card_token": f"tok-{user_id}",
        "merchant_id": "m-1",
        "amount": 1.99,
        "rules": ["card_testing", "velocity"],
        "score": score,
        "detected_at": T0 + timedelta(seconds=second + 30),
    }
    return {**row, **over}


MERCHANTS = [merchant_row("m-1", 0), merchant_row("m-1", 1, tx=5), merchant_row("m:2", 0, amount_avg=None)]
DEVICES = [device_row("d-1", "temperature", 0), device_row("d-1", "temperature", 1), device_row("d-1", "humidity", 0)]
PAGES = [page_row("/home", 0, 10), page_row("/cart", 0, 4), page_row("/home", 1, 7)]
ALERTS = [
    alert_row("e1", "u1", 1, 0.4),
    alert_row("e2", "u1", 5, 0.9),
    alert_row("e3", "u1", 3, 0.7),
    alert_row("e4", "u2", 2),
    alert_row("e5", None, 4, score=None),
]


def write_all(r: redis.Redis, **over: Any) -> None:
    write_merchant_minutes(r, MERCHANTS)
    write_device_minutes(r, DEVICES)
    write_page_minutes(r, PAGES)
    write_fraud_alerts(r, ALERTS, **over)


def dump(r: redis.Redis) -> dict[bytes, tuple[bytes, bytes | None, int]]:
    """Every key: (type, DUMP serialisation, PTTL ms)."""
    out = {}
    for key in sorted(r.scan_iter(count=1000)):
        out[key] = (r.type(key), r.dump(key), r.pttl(key))
    return out


def assert_unchanged(before: Mapping[bytes, tuple[bytes, bytes | None, int]], after: Mapping[Any, Any]) -> None:
    assert sorted(after) == sorted(before)
    for key, (kind, payload, ttl) in before.items():
        kind2, payload2, ttl2 = after[key]
        assert (kind2, payload2) == (kind, payload), key
        if ttl < 0:
            assert ttl2 == ttl, key
        else:  # still counting down from the first write: not extended, only elapsed
            assert 0 <= ttl - ttl2 < 2_000, (key, ttl, ttl2)


# -- contract: keys, types, TTLs ------------------------------------------------------------
def test_keys_types_and_ttls_follow_the_contract(r: redis.Redis) -> None:
    write_all(r)
    m = T0_EPOCH
    expected = {
        f"merchant:m-1:minute:{m}": "hash",
        f"merchant:m-1:minute:{m + 60}": "hash",
        f"merchant:m:2:minute:{m}": "hash",
        "device:d-1:temperature:latest": "hash",
        "device:d-1:humidity:latest": "hash",
        f"page:top:{m}": "zset",
        f"page:top:{m + 60}": "zset",
        "fraud:alerts": "stream",
        "fraud:user:u1": "hash",
        "fraud:user:u2": "hash",
        # bookkeeping of the idempotent fraud writes
        **{f"fraud:alert:e{i}": "hash" for i in range(1, 6)},
        "fraud:user-alerts:u1": "hash",
        "fraud:user-alerts:u2": "hash",
    }
    assert {k.decode(): r.type(k).decode() for k in r.scan_iter()} == expected
    ttls = {key: r.ttl(key) for key in expected}
    for key, ttl in ttls.items():
        if key.startswith(("merchant:", "device:", "page:")):
            assert DAY - 5 <= ttl <= DAY, key
        elif key == "fraud:alerts":
            assert ttl == -1
        else:
            assert WEEK - 5 <= ttl <= WEEK, key
    assert serving.MERCHANT_MINUTE_TTL_S == serving.DEVICE_LATEST_TTL_S == serving.PAGE_TOP_TTL_S == DAY
    assert serving.FRAUD_USER_TTL_S == WEEK
    assert serving.FRAUD_ALERTS_TTL_S is None
    assert serving.FRAUD_ALERTS_MAXLEN == 100_000

    merchant = r.hgetall(f"merchant:m-1:minute:{m + 60}")
    assert merchant == {
        b"merchant_id": b"m-1",
        b"window_start": b"2026-11-26T10:16:00.000000Z",
        b"tx_count": b"5",
        b"amount_sum": b"152.5",
        b"amount_avg": b"30.5",
        b"amount_max": b"99.99",
        b"flagged_count": b"1",
    }
    assert b"amount_avg" not in r.hgetall(f"merchant:m:2:minute:{m}")  # NULL = absent field
    assert r.hgetall("device:d-1:temperature:latest")[b"window_start"] == b"2026-11-26T10:16:00.000000Z"
    assert r.zrange(f"page:top:{m}", 0, -1, withscores=True) == [(b"/cart", 4.0), (b"/home", 10.0)]
    assert r.hgetall("fraud:user:u1") == {b"last_alert_event_id": b"e2", b"last_score": b"0.9", b"alert_count": b"3"}
    entries = r.xrange("fraud:alerts")
    assert [f[b"event_id"] for _, f in entries] == [b"e1", b"e4", b"e3", b"e5", b"e2"]  # detection order
    assert entries[0][1] == {
        b"event_id": b"e1",
        b"event_time": b"2026-11-26T10:15:01.123000Z",
        b"user_id": b"u1",
        b"card_token": b"tok-u1",
        b"merchant_id": b"m-1",
        b"amount": b"1.99",
        b"rules": b'["card_testing","velocity"]',
        b"score": b"0.4",
        b"detected_at": b"2026-11-26T10:15:31.000000Z",
        b"path": b"gold",  # which path wrote it: the serving stream, from gold
    }


def test_key_builders() -> None:
    aware = T0.replace(tzinfo=UTC)
    assert (
        serving.merchant_minute_key("m", T0)
        == serving.merchant_minute_key("m", aware)
        == f"merchant:m:minute:{T0_EPOCH}"
    )
    assert (
        serving.merchant_minute_key("m", aware.astimezone(timezone(timedelta(hours=2))))
        == f"merchant:m:minute:{T0_EPOCH}"
    )
    assert serving.page_top_key(T0_EPOCH) == f"page:top:{T0_EPOCH}"
    assert serving.device_latest_key("d", "pressure") == "device:d:pressure:latest"
    assert serving.fraud_user_key("u") == "fraud:user:u"
    assert serving.FRAUD_ALERTS_STREAM == "fraud:alerts"
    # the bookkeeping keys cannot collide with a contract key, whatever the id
    assert not serving.fraud_user_alerts_key("u").startswith("fraud:user:")
    assert not serving.fraud_alert_marker_key("x").startswith("fraud:alerts")


# -- idempotency ------------------------------------------------------------------------
def test_replaying_a_batch_leaves_redis_byte_identical(r: redis.Redis) -> None:
    write_all(r)
    before = dump(r)
    time.sleep(1.1)  # a replay that re-set a TTL would show up as a longer one
    # the same rows again, shuffled, and recomputed by gold (a new updated_at)
    fresh = datetime.now(UTC).replace(tzinfo=None)
    again = [[{**row, "updated_at": fresh} for row in reversed(rows)] for rows in (MERCHANTS, DEVICES, PAGES)]
    assert write_merchant_minutes(r, again[0]) == len(MERCHANTS)
    assert write_device_minutes(r, again[1]) == 0
    assert write_page_minutes(r, again[2]) == len(PAGES)
    assert write_fraud_alerts(r, list(reversed(ALERTS))) == 0
    assert_unchanged(before, dump(r))
    assert retract_fraud_alerts(r, ["e1"]) == 1
    after_retraction = dump(r)
    assert retract_fraud_alerts(r, ["e1", "nope"]) == 0
    assert_unchanged(after_retraction, dump(r))


def test_device_latest_never_regresses_whatever_the_order(r: redis.Redis, client: ServingClient) -> None:
    versions = [
        device_row("d", "vibration", 0, readings=4),
        device_row("d", "vibration", 1, readings=2, value_max=9.0),
        device_row("d", "vibration", 1, readings=5, value_max=12.0),  # the same window, later readings
        device_row("d", "vibration", 2, readings=1, value_avg=None),
    ]
    finals = set()
    for order in itertools.permutations(versions):
        r.flushall()
        for row in order:  # one row per call: each its own micro-batch
            write_device_minutes(r, [row])
        got = client.device_latest("d", "vibration")
        assert got is not None
        finals.add(got)
    assert len(finals) == 1
    (final,) = finals
    assert (final.window_start, final.readings, final.value_avg) == (
        T0.replace(tzinfo=UTC) + timedelta(minutes=2),
        1,
        None,
    )

    r.flushall()
    write_device_minutes(r, versions[1:3])
    assert write_device_minutes(r, [versions[1]]) == 0  # fewer readings of the same window: older
    assert write_device_minutes(r, [versions[0]]) == 0  # an older window
    latest = client.device_latest("d", "vibration")
    assert latest is not None
    assert (latest.readings, latest.value_max) == (5, 12.0)


def test_page_top_scores_only_grow_within_a_window(r: redis.Redis, client: ServingClient) -> None:
    write_page_minutes(r, [page_row("/a", 0, 9), page_row("/b", 0, 3)])
    write_page_minutes(r, [page_row("/a", 0, 5), page_row("/b", 0, 4), page_row("/c", 0, None)])
    assert client.top_pages(T0) == PageTop(T0.replace(tzinfo=UTC), (PageViews("/a", 9), PageViews("/b", 4)))


def test_merchant_minute_null_columns_are_absent_and_cleared(r: redis.Redis, client: ServingClient) -> None:
    write_merchant_minutes(r, [merchant_row("m", 0, amount_avg=None)])
    got = client.merchant_minute("m", T0)
    assert got is not None
    assert got.amount_avg is None
    write_merchant_minutes(r, [merchant_row("m", 0, tx=4)])
    assert r.hget(f"merchant:m:minute:{T0_EPOCH}", "amount_avg") == b"30.5"
    write_merchant_minutes(r, [merchant_row("m", 0, tx=4, amount_max=None)])
    assert r.hget(f"merchant:m:minute:{T0_EPOCH}", "amount_max") is None


def test_fraud_stream_one_entry_per_alert_and_distinct_counts(r: redis.Redis, client: ServingClient) -> None:
    assert write_fraud_alerts(r, ALERTS[:3]) == 3
    assert write_fraud_alerts(r, ALERTS) == 2  # overlapping batch: only e4, e5 are new
    assert write_fraud_alerts(r, ALERTS[1:4]) == 0
    assert r.xlen("fraud:alerts") == 5
    assert client.user_fraud("u1") == UserFraud("u1", last_alert_event_id="e2", last_score=0.9, alert_count=3)
    assert client.user_fraud("u2") == UserFraud("u2", last_alert_event_id="e4", last_score=0.5, alert_count=1)
    assert client.user_fraud("nobody") is None

    # gold updates an alert (more rules fired, higher score): the entry is replaced, not added
    updated = alert_row("e3", "u1", 3, 0.95, rules=["card_testing", "velocity", "impossible_travel"])
    assert write_fraud_alerts(r, [updated]) == 1
    assert write_fraud_alerts(r, [updated]) == 0
    assert r.xlen("fraud:alerts") == 5
    newest = client.recent_fraud_alerts(1)[0]
    assert (newest.event_id, newest.score, newest.rules) == ("e3", 0.95, tuple(updated["rules"]))
    assert [a.event_id for a in client.recent_fraud_alerts(10)].count("e3") == 1
    # e2 is still u1's latest alert by event time; the count is unchanged
    assert client.user_fraud("u1") == UserFraud("u1", last_alert_event_id="e2", last_score=0.9, alert_count=3)

    # an alert later in event time, written in an earlier call order, still becomes the user's last
    write_fraud_alerts(r, [alert_row("e0", "u1", 0, 0.1)])
    assert client.user_fraud("u1") == UserFraud("u1", last_alert_event_id="e2", last_score=0.9, alert_count=4)


def test_retraction_is_best_effort_and_recomputes_the_user(r: redis.Redis, client: ServingClient) -> None:
    write_fraud_alerts(r, ALERTS)
    assert retract_fraud_alerts(r, ["e2", "e4", "e5", "never-written"]) == 3
    assert r.xlen("fraud:alerts") == 2
    assert {a.event_id for a in client.recent_fraud_alerts(10)} == {"e1", "e3"}
    assert client.user_fraud("u1") == UserFraud("u1", last_alert_event_id="e3", last_score=0.7, alert_count=2)
    assert client.user_fraud("u2") is None  # no alert left
    assert not r.exists("fraud:user-alerts:u2", "fraud:alert:e2", "fraud:alert:e4", "fraud:alert:e5")
    # re-flagged later (gold inserts the row again): a new entry
    assert write_fraud_alerts(r, [ALERTS[1]]) == 1
    assert client.user_fraud("u1") == UserFraud("u1", last_alert_event_id="e2", last_score=0.9, alert_count=3)


def test_stream_is_capped_approximately_and_stays_idempotent(r: redis.Redis) -> None:
    node = int(r.config_get("stream-node-max-entries")["stream-node-max-entries"])
    rows = [alert_row(f"cap-{i:04d}", f"u{i % 7}", i) for i in range(3 * node)]
    assert write_fraud_alerts(r, rows, maxlen=10) == len(rows)
    length = r.xlen("fraud:alerts")
    assert 10 <= length <= 10 + node  # MAXLEN ~ trims whole nodes only
    # the markers outlive the trimmed entries: replaying everything appends nothing
    assert write_fraud_alerts(r, rows, maxlen=10) == 0
    assert r.xlen("fraud:alerts") == length
    with pytest.raises(ValueError, match="maxlen"):
        write_fraud_alerts(r, rows, maxlen=0)


# -- reading --------------------------------------------------------------------------
def _utc(row: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    out = {}
    for name, kind in columns.items():
        value = row[name]
        if kind == "TIMESTAMP" and value is not None:
            value = value.replace(tzinfo=UTC)
        if kind == "ARRAY<STRING>" and value is not None:
            value = tuple(value)
        out[name] = value
    return out


def test_client_reads_back_what_was_written(r: redis.Redis, client: ServingClient) -> None:
    write_all(r)
    for row in MERCHANTS:
        got = client.merchant_minute(row["merchant_id"], row["window_start"])
        assert got == MerchantMinute(**_utc(row, serving.MERCHANT_MINUTE_COLUMNS))
    assert client.merchant_minute("m-1", T0 + timedelta(minutes=9)) is None
    assert client.merchant_minutes("m-1", T0 - timedelta(seconds=30), T0 + timedelta(minutes=5)) == [
        MerchantMinute(**_utc(row, serving.MERCHANT_MINUTE_COLUMNS)) for row in MERCHANTS[:2]
    ]
    assert [
        m.window_start for m in client.merchant_minutes("m-1", T0 + timedelta(seconds=1), T0 + timedelta(minutes=1))
    ] == []
    with pytest.raises(ValueError, match="range"):
        client.merchant_minutes("m-1", T0, T0 + timedelta(days=30))

    assert client.device_latest("d-1", "temperature") == DeviceLatest(**_utc(DEVICES[1], serving.DEVICE_MINUTE_COLUMNS))
    assert client.device_latest("d-1", "humidity") == DeviceLatest(**_utc(DEVICES[2], serving.DEVICE_MINUTE_COLUMNS))
    assert client.device_latest("d-1", "pressure") is None

    assert client.top_pages(T0, 1) == PageTop(T0.replace(tzinfo=UTC), (PageViews("/home", 10),))
    assert client.top_pages(T0 + timedelta(hours=1)).entries == ()

    alerts = client.recent_fraud_alerts(10)
    by_detection = sorted(ALERTS, key=lambda a: a["detected_at"], reverse=True)
    assert alerts == [FraudAlert(**_utc(row, serving.FRAUD_ALERT_COLUMNS), path="gold") for row in by_detection]
    assert client.recent_fraud_alerts(2) == alerts[:2]
    assert alerts[1].event_id == "e5"
    assert alerts[1].score is None
    assert alerts[1].user_id is None
    assert client.user_fraud("u1") == UserFraud("u1", "e2", 0.9, 3)


def test_served_columns_and_models_follow_the_gold_specs() -> None:
    from lakehouse.tables import DEVICE_MINUTE, FRAUD_ALERTS, MERCHANT_MINUTE, PAGE_MINUTE

    python_type = {
        "STRING": str,
        "BIGINT": int,
        "DOUBLE": float,
        "TIMESTAMP": datetime,
        "ARRAY<STRING>": tuple[str, ...],
    }
    for spec, columns, model in (
        (MERCHANT_MINUTE, serving.MERCHANT_MINUTE_COLUMNS, MerchantMinute),
        (DEVICE_MINUTE, serving.DEVICE_MINUTE_COLUMNS, DeviceLatest),
        (FRAUD_ALERTS, serving.FRAUD_ALERT_COLUMNS, FraudAlert),
    ):
        served = [c for c in spec.columns if c.name not in serving.NOT_SERVED]
        assert columns == {c.name: c.type for c in served}, spec.name
        hints = typing.get_type_hints(model)
        if model is FraudAlert:  # beside gold's columns: which path wrote the alert
            assert hints.pop("path") == str | None
        expected = {c.name: python_type[c.type] | None if c.nullable else python_type[c.type] for c in served}
        assert hints == expected, spec.name
    assert {"page", "window_start", "views"} <= set(PAGE_MINUTE.column_names)


# -- rebuild ------------------------------------------------------------------------
def test_flush_removes_only_serving_keys(r: redis.Redis) -> None:
    write_all(r)
    decoys = {
        "merchant:m-1": "string",
        "merchant:m-1:minute:soon": "string",
        "device:d-1:temperature": "string",
        "page:top:": "string",
        "page:topx:1": "string",
        "fraud:alerts:archive": "string",
        "fraud:users": "string",
        "session:abc": "string",
    }
    for key in decoys:
        r.set(key, "keep me")
    serving_keys = {k for k in r.scan_iter() if k.decode() not in decoys}
    assert all(serving.is_serving_key(k.decode()) for k in serving_keys)
    assert flush_serving_keys(r, batch=3) == len(serving_keys)
    assert {k.decode() for k in r.scan_iter()} == set(decoys)
    # a rebuild from gold brings the same state back
    write_all(r)
    assert {k for k in r.scan_iter() if k.decode() not in decoys} == serving_keys


def test_connect_logs_in_as_the_role_over_tls(settings: Settings) -> None:
    for role in ("reader", "writer", "admin"):
        r = connect(settings, role=role)
        assert r.ping()  # the server has no default user: connect logged in
        assert r.acl_whoami() == role
        kwargs = r.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["ssl_ca_certs"]) == (
            "127.0.0.1",
            settings.redis_port,
            str(settings.ca_file),
        )
        assert kwargs["ssl_check_hostname"] is True
        r.close()
    with pytest.raises(ValueError, match="unknown Redis role 'root'"):
        connect(settings, role="root")


# -- applying a change feed batch ------------------------------------------------------------
def change(row: Mapping[str, Any], kind: str, version: int) -> dict[str, Any]:
    return {**row, "_change_type": kind, "_commit_version": version}


def test_latest_changes_keeps_the_newest_change_per_key_and_drops_preimages() -> None:
    old = merchant_row("m-1", 0, tx=3)
    new = merchant_row("m-1", 0, tx=9)
    other = merchant_row("m-2", 0)
    rows = [
        change(new, "update_postimage", 7),
        change(old, "insert", 5),
        change(old, "update_preimage", 7),
        change(other, "insert", 5),
        change(other, "delete", 8),
    ]
    latest = {(r["merchant_id"], r["_change_type"]): r for r in serving.latest_changes("merchant_minute", rows)}
    assert set(latest) == {("m-1", "update_postimage"), ("m-2", "delete")}
    assert latest[("m-1", "update_postimage")]["tx_count"] == 9
    # rows without change columns (a rebuild from gold) are upserts
    assert serving.latest_changes("page_minute", [page_row("/a", 0, 1)])[0]["page"] == "/a"
    with pytest.raises(ValueError, match="late_events is not served"):
        serving.latest_changes("late_events", [])


def test_apply_changes_upserts_and_deletes_and_is_idempotent(r: redis.Redis, client: ServingClient) -> None:
    batch1 = [
        *(change(row, "insert", 1) for row in MERCHANTS),
        *(change(row, "insert", 1) for row in PAGES),
    ]
    for table in ("merchant_minute", "page_minute"):
        serving.apply_changes(r, table, [row for row in batch1 if set(serving.SERVED_KEYS[table]) <= set(row)])
    for table, rows in (("device_minute", DEVICES), ("fraud_alerts", ALERTS)):
        done = serving.apply_changes(r, table, [change(row, "insert", 1) for row in rows])
        assert (done.upserts, done.deletes) == (len(rows), 0), done.message()
    # batch 2: gold updated one minute, and a replay deleted a window, a page, a device window and an alert
    updated = merchant_row("m-1", 1, tx=8)
    batch2 = {
        "merchant_minute": [
            change(merchant_row("m-1", 1, tx=5), "update_preimage", 2),
            change(updated, "update_postimage", 2),
            change(MERCHANTS[0], "delete", 2),
        ],
        "page_minute": [change(PAGES[1], "delete", 2)],
        "device_minute": [change(DEVICES[0], "delete", 2), change(DEVICES[2], "delete", 2)],
        "fraud_alerts": [change(ALERTS[3], "delete", 2)],
    }
    for table, rows in batch2.items():
        serving.apply_changes(r, table, rows)
    before = dump(r)
    for table, rows in batch2.items():  # the same batch replayed
        serving.apply_changes(r, table, rows)
    assert_unchanged(before, dump(r))

    assert client.merchant_minute("m-1", T0) is None
    minute1 = client.merchant_minute("m-1", T0 + timedelta(minutes=1))
    assert minute1 is not None
    assert minute1.tx_count == 8
    assert [e.page for e in client.top_pages(T0).entries] == ["/home"]
    # deleting an older window leaves the device's latest (minute 1) alone; deleting the latest drops it
    temperature = client.device_latest("d-1", "temperature")
    assert temperature is not None
    assert temperature.window_start == T0.replace(tzinfo=UTC) + timedelta(minutes=1)
    assert client.device_latest("d-1", "humidity") is None
    assert "e4" not in {a.event_id for a in client.recent_fraud_alerts(100)}
    assert client.user_fraud("u2") is None


def test_with_redis_retries_until_redis_is_back_then_fails_after_the_deadline(settings: Settings) -> None:
    from spark_apps.serving import with_redis

    calls: list[int] = []

    def flaky(client: redis.Redis) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise redis.ConnectionError("connection refused")
        return str(client.ping())

    patient = settings.model_copy(update={"serving_retry_s": 30.0})
    assert with_redis(patient, "batch 1", flaky) == "True"
    assert len(calls) == 3

    down = settings.model_copy(update={"redis_port": free_port(), "serving_retry_s": 1.0})
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"unreachable for 1s .*batch 7 of serving_x not written"):
        with_redis(down, "batch 7 of serving_x", lambda c: c.ping())
    assert time.monotonic() - t0 < 10


def test_the_documented_key_layout_is_the_one_the_key_functions_write() -> None:
    """CONTRACT_KEYS (shown on the Dagster asset) and the functions that build keys cannot drift apart."""
    window = datetime(2026, 11, 26, 10, 15, tzinfo=UTC)
    written = {
        "merchant": serving.merchant_minute_key("m-1", window),
        "device": serving.device_latest_key("dev-1", "temperature"),
        "page": serving.page_top_key(window),
        "alerts": serving.FRAUD_ALERTS_STREAM,
        "user": serving.fraud_user_key("u-1"),
    }
    values = {
        "merchant_id": "m-1",
        "window_start_epoch_s": serving.epoch_s(window),
        "device_id": "dev-1",
        "sensor_type": "temperature",
        "user_id": "u-1",
    }
    documented = [pattern.format(**values) for pattern, _, _ in serving.CONTRACT_KEYS]
    assert documented == list(written.values())
    assert all(serving.is_serving_key(key) for key in documented)
    ttls = {pattern: ttl for pattern, _, ttl in serving.CONTRACT_KEYS}
    assert ttls["fraud:user:{user_id}"] == serving.FRAUD_USER_TTL_S == 7 * 86400
    assert "| `fraud:alerts` | stream, capped near 100 000 | none |" in serving.key_layout_markdown()


def _alerts_until_refused(
    r: redis.Redis, prefix: str, refusal: type[redis.RedisError], at_most: int
) -> tuple[int, redis.RedisError | None]:
    """Write one fraud alert at a time until Redis refuses one with REFUSAL (at most AT_MOST): how many it
    took, and the refusal (None: it never refused)."""
    for i in range(at_most):
        try:
            write_fraud_alerts(r, [alert_row(f"{prefix}-{i:06d}", f"u{i % 50}", i % 60)], maxlen=100_000)
        except refusal as e:
            return i, e
    return at_most, None


def test_a_full_redis_refuses_writes_evicts_nothing_and_the_stream_says_so(settings: Settings, r: redis.Redis) -> None:
    """noeviction: at maxmemory a write fails with OOM instead of an alert marker silently vanishing (which
    would let the alert be appended twice). The serving stream retries, then stops with the remedy."""
    from spark_apps.serving import with_redis

    assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    before = int(r.config_get("maxmemory")["maxmemory"])
    try:
        r.config_set("maxmemory", int(r.info("memory")["used_memory"]) + 200_000)
        written, refused = _alerts_until_refused(r, "oom", redis.OutOfMemoryError, 100_000)
        assert refused is not None, "Redis never refused a write at its maxmemory"
        assert written > 0
        markers = sum(1 for _ in r.scan_iter(match=b"fraud:alert:*", count=1000))
        assert markers == written == r.xlen("fraud:alerts")  # every alert written is still there: none evicted
        s = settings.model_copy(update={"serving_retry_s": 1.5})
        with pytest.raises(RuntimeError, match=r"full \(maxmemory .* reached\).*Raise LAKEHOUSE_REDIS_MAXMEMORY"):
            with_redis(
                s, "the test batch", lambda w: write_fraud_alerts(w, [alert_row("oom-last", "u1", 1)], maxlen=100_000)
            )
    finally:
        r.config_set("maxmemory", before)
    assert r.exists("fraud:alert:oom-last") == 0  # refused, not half-written


def test_redis_on_a_full_disk_refuses_writes_keeps_what_it_acknowledged_and_the_stream_waits_for_room(
    tmp_path: Path,
) -> None:
    """Redis persisting to a full disk (its append-only file on a tmpfs shrunk under it): it refuses
    writes (MISCONF); the serving stream retries and, past its deadline, says to free space there; once
    the disk has room Redis takes writes again by itself, and after a restart every write it had
    acknowledged is still there (replayed from the append-only file)."""
    import threading

    from lakehouse.chaos.scenarios import SmallDisk
    from spark_apps.serving import with_redis
    from tests.unit.conftest import answers, private_redis_settings, start_private_redis, stop

    if (why := SmallDisk.unavailable()) is not None:
        pytest.skip(why)
    disk = SmallDisk(tmp_path / "disk", size_bytes=64 << 20)
    disk.mount()
    proc = None
    try:
        s = private_redis_settings(disk.path, free_port())
        proc = start_private_redis(s, persistent=True)
        assert answers(s, proc)
        r = connect(s, role="admin", decode_responses=False)
        disk.resize(disk.used() + (256 << 10))
        acknowledged, refused = _alerts_until_refused(r, "disk", redis.ResponseError, 200_000)
        assert refused is not None, "Redis never refused a write on a full disk"
        assert "MISCONF Errors writing to the AOF file: No space left on device" in str(refused), refused
        assert acknowledged > 0

        def last(w: redis.Redis) -> None:
            write_fraud_alerts(w, [alert_row("disk-last", "u1", 1)], maxlen=100_000)

        short = s.model_copy(update={"serving_retry_s": 1.5})
        refusal = r"unable to write to its disk \(MISCONF\).*Free space on the disk under"
        with pytest.raises(RuntimeError, match=refusal):
            with_redis(short, "the test batch", last)
        assert r.exists("fraud:alert:disk-last") == 0  # refused, not half-written

        # The stream's retry meanwhile; the disk grows back under it.
        patient = s.model_copy(update={"serving_retry_s": 60})
        outcome: list[BaseException | None] = []

        def retry() -> None:
            try:
                with_redis(patient, "the test batch", last)
                outcome.append(None)
            except BaseException as e:
                outcome.append(e)

        waiting = threading.Thread(target=retry)
        waiting.start()
        time.sleep(2)
        disk.resize(disk.size)
        waiting.join(timeout=90)
        assert outcome == [None], outcome
        markers = sum(1 for _ in r.scan_iter(match=b"fraud:alert:*", count=1000))
        assert markers == acknowledged + 1 == r.xlen("fraud:alerts")
        r.close()

        stop(proc)  # a clean restart: everything acknowledged comes back from the append-only file
        proc = start_private_redis(s, persistent=True)
        assert answers(s, proc)
        again = connect(s, role="admin", decode_responses=False)
        assert again.xlen("fraud:alerts") == acknowledged + 1
        assert again.exists("fraud:alert:disk-last") == 1
        again.close()
    finally:
        if proc is not None:
            stop(proc)
        disk.unmount()
