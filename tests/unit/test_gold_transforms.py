"""spark_apps.gold's and spark_apps.bronze's pure parts on small local frames (no Kafka, no Delta tables)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from pyspark.sql import functions as F

from lakehouse.contracts import NORMAL_RANGES
from lakehouse.delta.tables import spark_schema
from lakehouse.tables import BRONZE, DEVICE_MINUTE, MERCHANT_MINUTE, PAGE_MINUTE
from spark_apps.bronze import starting_offsets, to_bronze
from spark_apps.gold import (
    HLL_LG_K,
    device_partials,
    is_anomaly,
    late_condition,
    merchant_partials,
    page_partials,
    with_window,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
W0 = "2026-11-26 10:00:00"
W1 = "2026-11-26 10:01:00"


def at(seconds: float) -> datetime:
    return T0 + timedelta(milliseconds=round(seconds * 1000))


def window_text(col: str = "window_start", alias: str = "window_start") -> Any:
    """The timestamp as UTC text: independent of the Python process' local time zone."""
    return F.date_format(col, "yyyy-MM-dd HH:mm:ss").alias(alias)


# --------------------------------------------------------------------------- windows and lateness


def ms(t: datetime) -> int:
    """A watermark as Spark keeps it: epoch milliseconds."""
    return int(t.timestamp() * 1000)


WATERMARKS: dict[str, int | None] = {
    "none": None,
    "wm_10_01": ms(T0 + timedelta(minutes=1)),  # exactly the end of the 10:00 window
    "wm_10_01_plus_1ms": ms(T0 + timedelta(minutes=1, milliseconds=1)),
    "wm_10_01_minus_1ms": ms(T0 + timedelta(minutes=1, milliseconds=-1)),
    "wm_10_02": ms(T0 + timedelta(minutes=2)),
}
EVENT_SECONDS = {"a": 0.0, "b": 59.999, "c": 60.0, "d": 119.999, "e": 120.0}


@pytest.fixture(scope="module")
def lateness(spark: SparkSession) -> dict[str, dict[str, Any]]:
    df = spark.createDataFrame([(k, at(s)) for k, s in EVENT_SECONDS.items()], "id string, event_time timestamp")
    w = with_window(df)
    out = w.select("id", window_text(), *[late_condition(wm).alias(name) for name, wm in WATERMARKS.items()])
    return {r["id"]: r.asDict() for r in out.collect()}


def test_with_window_truncates_event_time_to_the_minute(lateness: dict[str, dict[str, Any]]) -> None:
    assert {k: r["window_start"] for k, r in lateness.items()} == {
        "a": W0,
        "b": W0,
        "c": W1,
        "d": W1,
        "e": "2026-11-26 10:02:00",
    }


def test_no_watermark_means_nothing_is_late(lateness: dict[str, dict[str, Any]]) -> None:
    assert not any(r["none"] for r in lateness.values())


def test_a_window_ending_exactly_at_the_watermark_is_late(lateness: dict[str, dict[str, Any]]) -> None:
    assert {k for k, r in lateness.items() if r["wm_10_01"]} == {"a", "b"}  # the 10:00 window ends at 10:01
    assert {k for k, r in lateness.items() if r["wm_10_01_plus_1ms"]} == {"a", "b"}


def test_a_window_ending_after_the_watermark_is_not_late(lateness: dict[str, dict[str, Any]]) -> None:
    assert {k for k, r in lateness.items() if r["wm_10_01_minus_1ms"]} == set()
    assert {k for k, r in lateness.items() if r["wm_10_02"]} == {"a", "b", "c", "d"}


# --------------------------------------------------------------------------- merchant_minute


def test_merchant_partials(spark: SparkSession) -> None:
    rows = [
        ("m-1", at(0), 10.0),
        ("m-1", at(30), 2.5),
        ("m-1", at(59.999), 100.0),
        ("m-1", at(60), 7.0),  # next window
        ("m-2", at(10), 1.25),
    ]
    df = with_window(spark.createDataFrame(rows, "merchant_id string, event_time timestamp, amount double"))
    out = merchant_partials(df)
    assert set(out.columns) <= set(MERCHANT_MINUTE.column_names)
    got = {(r["merchant_id"], r["w"]): r.asDict() for r in out.select("*", window_text(alias="w")).collect()}
    assert set(got) == {("m-1", W0), ("m-1", W1), ("m-2", W0)}
    assert (got["m-1", W0]["tx_count"], got["m-1", W0]["amount_sum"], got["m-1", W0]["amount_max"]) == (3, 112.5, 100.0)
    assert (got["m-1", W1]["tx_count"], got["m-1", W1]["amount_sum"], got["m-1", W1]["amount_max"]) == (1, 7.0, 7.0)
    assert (got["m-2", W0]["tx_count"], got["m-2", W0]["amount_sum"], got["m-2", W0]["amount_max"]) == (1, 1.25, 1.25)


# --------------------------------------------------------------------------- page_minute

SESSIONS = 2000


@pytest.fixture(scope="module")
def pages(spark: SparkSession) -> dict[str, Any]:
    rows: list[tuple[str, datetime, str, str]] = []
    # /home at 10:00: 2000 distinct sessions, each seen three times
    for i in range(SESSIONS):
        for j, kind in enumerate(("page_view", "click", "search")):
            rows.append(("/home", at((i * 3 + j) % 60), f"s-{i:05d}", kind))
    # /cart at 10:00 and 10:01: a few typed events
    rows += [
        ("/cart", at(1), "s-a", "page_view"),
        ("/cart", at(2), "s-a", "add_to_cart"),
        ("/cart", at(3), "s-b", "purchase"),
        ("/cart", at(4), "s-b", "purchase"),
        ("/cart", at(61), "s-c", "click"),
    ]
    # two partial batches of /p at 10:00: sessions 0..1199 and 800..1999 (2000 distinct in all)
    rows += [("/p", at(5), f"s-{i:05d}", "page_view") for i in range(0, 1200)]
    rows += [("/p", at(6), f"s-{i:05d}", "click") for i in range(800, 2000)]
    df = with_window(
        spark.createDataFrame(rows, "page string, event_time timestamp, session_id string, event_type string")
    )
    partials = page_partials(df)
    first = page_partials(df.where((F.col("page") == "/p") & (F.col("event_type") == "page_view"))).alias("t")
    second = page_partials(df.where((F.col("page") == "/p") & (F.col("event_type") == "click"))).alias("s")
    merged = first.join(second, ["page", "window_start"]).select(
        F.expr("hll_sketch_estimate(t.sessions_sketch)").alias("first"),
        F.expr("hll_sketch_estimate(s.sessions_sketch)").alias("second"),
        F.expr("hll_sketch_estimate(hll_union(t.sessions_sketch, s.sessions_sketch))").alias("union"),
    )
    whole = partials.select(
        "page", window_text(), "views", "clicks", "purchases", F.expr("hll_sketch_estimate(sessions_sketch)").alias("n")
    )
    return {
        "columns": partials.columns,
        "rows": {(r["page"], r["window_start"]): r.asDict() for r in whole.collect()},
        "merged": merged.collect(),
    }


def test_page_partials_counts(pages: dict[str, Any]) -> None:
    assert set(pages["columns"]) <= set(PAGE_MINUTE.column_names)
    rows = pages["rows"]
    assert set(rows) == {("/home", W0), ("/cart", W0), ("/cart", W1), ("/p", W0)}
    home = rows["/home", W0]
    assert (home["views"], home["clicks"], home["purchases"]) == (SESSIONS, SESSIONS, 0)  # 'search' counts nowhere
    cart = rows["/cart", W0]
    assert (cart["views"], cart["clicks"], cart["purchases"]) == (1, 0, 2)  # 'add_to_cart' counts nowhere
    assert (rows["/cart", W1]["views"], rows["/cart", W1]["clicks"]) == (0, 1)
    assert (cart["n"], rows["/cart", W1]["n"]) == (2, 1)  # tiny sets are exact


def test_hll_estimate_is_within_5_percent_for_2000_sessions(pages: dict[str, Any]) -> None:
    assert HLL_LG_K == 14
    n = pages["rows"]["/home", W0]["n"]
    assert abs(n - SESSIONS) <= 0.05 * SESSIONS, n


def test_hll_union_of_two_partial_sketches_estimates_the_union(pages: dict[str, Any]) -> None:
    (row,) = pages["merged"]
    assert abs(row["first"] - 1200) <= 0.05 * 1200
    assert abs(row["second"] - 1200) <= 0.05 * 1200
    assert abs(row["union"] - SESSIONS) <= 0.05 * SESSIONS, row["union"]  # not 2400: the overlap counts once
    assert abs(pages["rows"]["/p", W0]["n"] - row["union"]) <= 0.01 * SESSIONS


# --------------------------------------------------------------------------- device_minute

BOUNDARY_READINGS: list[tuple[str, float, bool]] = []
for _sensor, (_lo, _hi) in NORMAL_RANGES.items():
    BOUNDARY_READINGS += [
        (_sensor, _lo, False),
        (_sensor, _hi, False),
        (_sensor, round(_lo - 0.01, 2), True),
        (_sensor, round(_hi + 0.01, 2), True),
        (_sensor, (_lo + _hi) / 2, False),
    ]


@pytest.fixture(scope="module")
def devices(spark: SparkSession) -> dict[str, Any]:
    rows = [(f"d-{s}", s, at(i), v) for i, (s, v, _) in enumerate(BOUNDARY_READINGS)]
    rows += [("d-x", "smell", at(1), 1e9)]  # a sensor type without a normal range is never an anomaly
    rows += [("d-temperature", "temperature", at(61), 99.0)]  # next window
    df = with_window(
        spark.createDataFrame(rows, "device_id string, sensor_type string, event_time timestamp, value double")
    )
    flags = df.select("sensor_type", "value", is_anomaly().alias("anomaly")).collect()
    out = device_partials(df)
    got = out.select("*", window_text(alias="w")).collect()
    return {
        "columns": out.columns,
        "flags": [(r["sensor_type"], r["value"], r["anomaly"]) for r in flags],
        "rows": {(r["device_id"], r["sensor_type"], r["w"]): r.asDict() for r in got},
    }


def test_range_boundaries_are_normal_and_just_beyond_is_an_anomaly(devices: dict[str, Any]) -> None:
    expected = {(s, v): a for s, v, a in BOUNDARY_READINGS}
    got = {(s, v): a for s, v, a in devices["flags"] if s in NORMAL_RANGES and (s, v) in expected}
    assert got == expected
    for reading in [("temperature", -30.0, False), ("temperature", 60.0, False)]:
        assert reading in devices["flags"]
    for reading in [("temperature", -30.01, True), ("temperature", 60.01, True)]:
        assert reading in devices["flags"]
    assert ("smell", 1e9, False) in devices["flags"]


def test_device_partials(devices: dict[str, Any]) -> None:
    assert set(devices["columns"]) <= set(DEVICE_MINUTE.column_names)
    rows = devices["rows"]
    for sensor, (lo, hi) in NORMAL_RANGES.items():
        r = rows[f"d-{sensor}", sensor, W0]
        values = [v for s, v, _ in BOUNDARY_READINGS if s == sensor]
        assert r["readings"] == 5
        assert r["value_sum"] == pytest.approx(sum(values))
        assert (r["value_min"], r["value_max"]) == (round(lo - 0.01, 2), round(hi + 0.01, 2))
        assert r["anomalies"] == 2
    later = rows["d-temperature", "temperature", W1]
    assert (later["readings"], later["value_min"], later["value_max"], later["anomalies"]) == (1, 99.0, 99.0, 1)
    assert rows["d-x", "smell", W0]["anomalies"] == 0


# --------------------------------------------------------------------------- bronze

KAFKA_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset bigint, timestamp timestamp, timestampType int"
)


def test_to_bronze_keeps_key_value_as_text_and_the_coordinates(spark: SparkSession) -> None:
    kafka_ts = datetime(2026, 11, 26, 9, 59, 59, 123000, tzinfo=UTC)
    payload = json.dumps({"event_id": "é-1", "amount": 12.5}, ensure_ascii=False)
    rows = [
        (b"u-1", payload.encode(), "payments", 3, 42, kafka_ts, 0),
        (None, b"", "payments", 0, 0, kafka_ts, 0),  # no key, empty value: kept, never dropped
        (b"u-2", b"\xff\xfe not utf-8 {", "payments", 5, 9_000_000_000, kafka_ts, 0),
    ]
    out = to_bronze(spark.createDataFrame(rows, KAFKA_SCHEMA))
    assert out.columns == BRONZE["payments"].column_names
    got_types = {f.name: f.dataType for f in out.schema.fields}
    assert got_types == {f.name: f.dataType for f in spark_schema(BRONZE["payments"]).fields}
    got = {
        r["offset"]: r.asDict()
        for r in out.select(
            "*",
            F.hex(F.col("value").cast("binary")).alias("value_hex"),
            F.unix_micros("kafka_timestamp").alias("kafka_micros"),
            F.current_date().alias("today"),
        ).collect()
    }
    assert set(got) == {42, 0, 9_000_000_000}
    first = got[42]
    assert (first["key"], first["value"]) == ("u-1", payload)
    assert (first["topic"], first["partition"]) == ("payments", 3)
    assert first["kafka_micros"] == (kafka_ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert first["ingested_at"] is not None
    assert first["ingest_date"] == first["today"]
    assert isinstance(first["ingest_date"], date)
    assert (got[0]["key"], got[0]["value"]) == (None, "")
    # bytes that are not UTF-8 are carried through unchanged (not parsed, not replaced)
    assert got[9_000_000_000]["value_hex"] == b"\xff\xfe not utf-8 {".hex().upper()
    assert got[9_000_000_000]["partition"] == 5


@pytest.mark.parametrize("setting", ["earliest", "latest"])
def test_starting_offsets_passes_earliest_and_latest_through(setting: str) -> None:
    assert starting_offsets(setting, "payments") == setting


def test_starting_offsets_narrows_json_to_one_topic() -> None:
    setting = json.dumps({"payments": {"0": 23, "1": -2}, "iot": {"0": -1}})
    assert json.loads(starting_offsets(setting, "payments")) == {"payments": {"0": 23, "1": -2}}
    assert json.loads(starting_offsets(setting, "iot")) == {"iot": {"0": -1}}
    assert json.loads(starting_offsets("  \n" + setting, "iot")) == {"iot": {"0": -1}}  # leading whitespace


def test_starting_offsets_for_a_topic_missing_from_the_json_is_earliest() -> None:
    assert starting_offsets(json.dumps({"payments": {"0": 5}}), "clickstream") == "earliest"
