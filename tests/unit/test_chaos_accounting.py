"""The fault suite's Redis = gold check (``lakehouse.chaos.accounting.redis_equals_gold``) against a real
redis-server of this module's and gold tables written by Spark: exact when Redis holds what serving
writes, and it names each kind of difference (a value changed, a key missing, a key gold does not
hold, an alert served twice) rather than passing whatever Redis holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest
import redis

from lakehouse.chaos.accounting import Accounting, redis_equals_gold
from lakehouse.generator import GroundTruth
from lakehouse.serving import connect, fraud_user_key, merchant_minute_key, page_top_key
from lakehouse.settings import Settings
from lakehouse.tables import GOLD
from tests.unit.test_serving import ALERTS, DEVICES, MERCHANTS, PAGES, T0, write_all

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

NO_TRUTH = cast(GroundTruth, None)  # the Redis check compares Redis with gold only


@pytest.fixture(scope="module")
def lake(redis_settings: Settings, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Gold's four served tables, holding the rows test_serving writes to Redis."""
    s = redis_settings.model_copy(update={"lake_root": tmp_path_factory.mktemp("lake")})
    rows: dict[str, list[dict[str, Any]]] = {
        "merchant_minute": MERCHANTS,
        "device_minute": DEVICES,
        "page_minute": PAGES,
        "fraud_alerts": ALERTS,
    }
    for table, data in rows.items():
        spec = GOLD[table]
        frame = spark.createDataFrame([{c: row.get(c) for c in spec.column_names} for row in data], spec.ddl())
        frame.write.format("delta").save(spec.path(s.lake_dir))
    return s


@pytest.fixture
def r(lake: Settings) -> Iterator[redis.Redis]:
    """Redis as the serving stream leaves it after serving those gold rows."""
    client = connect(lake, role="admin", decode_responses=False)
    client.flushall()
    write_all(client)
    yield client
    client.close()


def check(spark: SparkSession, s: Settings) -> tuple[list[str], Accounting]:
    acc = Accounting()
    return redis_equals_gold(spark, s, NO_TRUTH, acc), acc


def test_redis_as_serving_wrote_it_equals_gold_and_every_family_is_counted(
    lake: Settings, spark: SparkSession, r: redis.Redis
) -> None:
    problems, acc = check(spark, lake)
    assert problems == []
    assert acc.counts["redis"] == {
        "merchant minutes": 3,
        "device latest": 2,  # the newest window of each device and sensor
        "top pages": 2,  # one sorted set per minute
        "fraud alerts": 5,
        "user fraud summaries": 2,  # the alert without a user has none
    }


def test_each_kind_of_difference_is_named(lake: Settings, spark: SparkSession, r: redis.Redis) -> None:
    r.hset(merchant_minute_key("m-1", T0), "tx_count", 4)  # a value changed
    r.delete("device:d-1:humidity:latest")  # a key missing
    r.zadd(page_top_key(T0.replace(hour=3)), {"/home": 1})  # a window gold does not hold
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], r.xrange("fraud:alerts"))
    first = next(fields for _, fields in entries if fields[b"event_id"] == b"e1")
    r.xadd("fraud:alerts", first)  # type: ignore[arg-type]  # an alert served twice
    r.hset(fraud_user_key("u2"), "alert_count", 9)
    problems, _ = check(spark, lake)
    assert len(problems) == 6, problems
    text = "\n".join(problems)
    assert "redis merchant minutes: 1 of 3 keys differ from gold (first: ('m-1'" in text
    assert "redis device latest: 1 of 2 keys differ from gold" in text
    assert "redis device latest: 1 keys, gold has 2 rows to serve" in text
    assert "redis top pages: 3 keys, gold has 2 rows to serve" in text
    assert "redis fraud:alerts: 1 alerts more than once (first: e1)" in text
    assert "redis user fraud summaries: 1 of 2 keys differ from gold (first: u2)" in text


def test_an_empty_redis_is_wrong_in_every_family(lake: Settings, spark: SparkSession, r: redis.Redis) -> None:
    r.flushall()
    problems, acc = check(spark, lake)
    families = {p.split(":")[0] for p in problems}
    assert families == {
        "redis merchant minutes",
        "redis device latest",
        "redis top pages",
        "redis fraud",
        "redis user fraud summaries",
    }, problems
    assert set(acc.counts["redis"].values()) == {0}
