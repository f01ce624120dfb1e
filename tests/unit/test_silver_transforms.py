"""spark_apps.silver's pure transforms: HMAC masking, parse -> silver / quarantine, first copies (local Spark only)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pyspark.sql import functions as F

from lakehouse.contracts import schema
from lakehouse.delta.tables import spark_schema
from lakehouse.delta.validator import compile_schema
from lakehouse.tables import BRONZE, QUARANTINE, SILVER
from spark_apps.silver import card_token, first_copies, parse, to_quarantine, to_silver

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

HMAC_KEY = b"unit-test-pii-key"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
INGESTED = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)


def now_col() -> Any:
    return F.lit(NOW.strftime("%Y-%m-%dT%H:%M:%SZ")).cast("timestamp")


def reference_hmac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- card_token

KEYS = {
    "short": b"k",
    "63-bytes": bytes(range(1, 64)),
    "exactly-64-bytes": bytes(range(64)),
    "65-bytes": b"x" * 65,
    "longer-than-64": b"a much longer secret key than one SHA-256 block of sixty-four bytes, 100 bytes.".ljust(
        100, b"!"
    ),
    "high-bytes": bytes([0xFF, 0x80, 0x36, 0x5C]) * 8,
    "unicode-key": "schlüssel-🔑".encode(),
}
MESSAGES = [
    "4000000000000001",
    "",
    "Grüße, 😀 ✓ 東京",
    "x" * 200,  # longer than a block
    "0" * 55,  # padding boundaries of SHA-256 (55/56/64 bytes with the 64-byte inner key)
    "0" * 56,
    "0" * 64,
]


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each key in a file of its own, as the secrets directory holds the PII key (the plan names the file)."""
    d = tmp_path_factory.mktemp("keys")
    files = {name: d / f"{name}.key" for name in KEYS}
    for name, key in KEYS.items():
        files[name].write_bytes(key)
    (d / "unit.key").write_bytes(HMAC_KEY + b"\n")  # a trailing newline is not part of the key
    files["unit"] = d / "unit.key"
    return files


@pytest.fixture(scope="module")
def hmacs(spark: SparkSession, key_files: dict[str, Path]) -> list[dict[str, Any]]:
    df = spark.createDataFrame([(i, m) for i, m in enumerate(MESSAGES)] + [(len(MESSAGES), None)], "i int, m string")
    out = df.select("i", "m", *[card_token(F.col("m"), key_files[name]).alias(name) for name in KEYS])
    return sorted((r.asDict() for r in out.collect()), key=lambda r: r["i"])


def test_the_plan_names_the_key_file_never_the_key(spark: SparkSession, key_files: dict[str, Path]) -> None:
    df = spark.createDataFrame([("4000000000000001",)], "m string").select(card_token(F.col("m"), key_files["unit"]))
    plan = df._jdf.queryExecution().toString()
    assert HMAC_KEY.decode() not in plan
    assert bytes(b ^ 0x36 for b in HMAC_KEY.ljust(64, b"\0")).hex() not in plan.lower()  # no HMAC pad either
    assert df.first()[0] == reference_hmac(HMAC_KEY, "4000000000000001")


@pytest.mark.parametrize("key_name", list(KEYS))
def test_hmac_equals_pythons_hmac(hmacs: list[dict[str, Any]], key_name: str) -> None:
    key = KEYS[key_name]
    for row in hmacs[: len(MESSAGES)]:
        assert row[key_name] == reference_hmac(key, row["m"]), (key_name, row["m"])


def test_hmac_of_null_is_null(hmacs: list[dict[str, Any]]) -> None:
    assert hmacs[-1]["m"] is None
    assert all(hmacs[-1][name] is None for name in KEYS)


def test_hmac_depends_on_the_key(hmacs: list[dict[str, Any]]) -> None:
    tokens = {hmacs[0][name] for name in KEYS}
    assert len(tokens) == len(KEYS)
    # ... and is not a plain hash of the card number
    assert hmacs[0]["short"] != hashlib.sha256(b"4000000000000001").hexdigest()


# --------------------------------------------------------------------------- parse -> silver / quarantine


def bronze(spark: SparkSession, topic: str, rows: list[tuple[int, int, str | None, str | None]]) -> DataFrame:
    """Bronze rows (partition, offset, key, value) of a topic, with the bronze table's exact schema."""
    data = [
        (key, value, topic, partition, offset, INGESTED, INGESTED, INGESTED.date())
        for partition, offset, key, value in rows
    ]
    return spark.createDataFrame(data, spark_schema(BRONZE[topic]))


def payment(event_id: str, **changes: Any) -> str:
    body: dict[str, Any] = {
        "event_id": event_id,
        "event_time": "2026-11-26T10:00:00.123Z",
        "user_id": "u-1",
        "card_number": "4000000000001234",
        "merchant_id": "m-1",
        "amount": 12.5,
        "currency": "EUR",
        "country": "DE",
    }
    body.update(changes)
    return json.dumps(body)


PAYMENT_ROWS: list[tuple[int, int, str | None, str | None]] = [
    (0, 10, "u-1", payment("p-1")),
    (1, 11, "u-1", payment("p-2", card_number="5500000000000004", experiment="b", meta={"n": [1, None]})),
    # 23:30 at -02:00 is 01:30 UTC the next day: event_date is the UTC date
    (2, 12, "u-2", payment("p-3", event_time="2026-11-26T23:30:00-02:00", card_number="4" * 19)),
    (3, 13, "u-3", payment("p-bad", amount="12.5")),
    (4, 14, None, "not json"),
    (5, 15, "u-4", None),
]


@pytest.fixture(scope="module")
def payments_out(spark: SparkSession, key_files: dict[str, Path]) -> dict[str, Any]:
    parsed = parse(bronze(spark, "payments", PAYMENT_ROWS), compile_schema(schema("payments")), now_col()).persist()
    silver = to_silver(parsed, SILVER["payments"], key_files["unit"])
    quarantine = to_quarantine(parsed)
    result = {
        "silver_schema": silver.schema,
        "quarantine_schema": quarantine.schema,
        "silver": {r["event_id"]: r.asDict() for r in silver.collect()},
        "quarantine": {r["offset"]: r.asDict() for r in quarantine.collect()},
    }
    parsed.unpersist()
    return result


def test_silver_columns_are_the_specs(payments_out: dict[str, Any]) -> None:
    spec = SILVER["payments"]
    assert payments_out["silver_schema"].names == spec.column_names
    got = {f.name: f.dataType for f in payments_out["silver_schema"].fields}
    want = {f.name: f.dataType for f in spark_schema(spec).fields}
    assert got == want


def test_silver_masks_the_card_number(payments_out: dict[str, Any]) -> None:
    rows = payments_out["silver"]
    assert "card_number" not in payments_out["silver_schema"].names
    assert rows["p-1"]["card_last4"] == "1234"
    assert rows["p-2"]["card_last4"] == "0004"
    assert rows["p-3"]["card_last4"] == "4444"
    for eid, card in [("p-1", "4000000000001234"), ("p-2", "5500000000000004"), ("p-3", "4" * 19)]:
        token = rows[eid]["card_token"]
        assert re.fullmatch(r"[0-9a-f]{64}", token)
        assert token == reference_hmac(HMAC_KEY, card)
        assert card not in json.dumps(rows[eid], default=str)  # the clear number is nowhere in the row


def test_silver_keeps_extra_coordinates_and_event_date(payments_out: dict[str, Any]) -> None:
    rows = payments_out["silver"]
    assert set(rows) == {"p-1", "p-2", "p-3"}  # the invalid ones are not in silver
    assert rows["p-1"]["_extra"] is None
    assert json.loads(rows["p-2"]["_extra"]) == {"experiment": "b", "meta": {"n": [1, None]}}
    assert (rows["p-1"]["_source_partition"], rows["p-1"]["_source_offset"]) == (0, 10)
    assert (rows["p-3"]["_source_partition"], rows["p-3"]["_source_offset"]) == (2, 12)
    assert rows["p-1"]["event_date"] == date(2026, 11, 26)
    assert rows["p-3"]["event_date"] == date(2026, 11, 27)
    assert rows["p-1"]["amount"] == 12.5
    assert rows["p-1"]["ingested_at"] is not None


def test_quarantine_keeps_the_raw_value_and_coordinates(payments_out: dict[str, Any]) -> None:
    q = payments_out["quarantine"]
    assert payments_out["quarantine_schema"].names == QUARANTINE.column_names
    assert set(q) == {13, 14, 15}
    assert q[13]["raw_value"] == payment("p-bad", amount="12.5")
    assert q[13]["error"] == "amount: expected number, got string"
    assert (q[13]["topic"], q[13]["partition"]) == ("payments", 3)
    assert (q[14]["raw_value"], q[14]["error"]) == ("not json", "value: not valid JSON")
    assert (q[15]["raw_value"], q[15]["error"]) == (None, "value: empty record")
    assert all(r["quarantined_at"] is not None for r in q.values())


# --------------------------------------------------------------------------- first_copies


def test_first_copies_keeps_the_lowest_partition_then_offset(spark: SparkSession) -> None:
    rows = [
        ("e-1", 3, 1, "a"),
        ("e-1", 0, 9, "b"),
        ("e-1", 0, 3, "c"),  # lowest (partition, offset)
        ("e-1", 1, 0, "d"),
        ("e-2", 5, 100, "e"),  # a single copy
        ("e-3", 2, 7, "f"),
        ("e-3", 2, 6, "g"),  # same partition: lower offset wins
        ("e-4", 10, 1, "h"),
        ("e-4", 9, 1000, "i"),  # partition 9 < 10, numerically (not as text)
    ]
    df = spark.createDataFrame(rows, "event_id string, _source_partition int, _source_offset bigint, tag string")
    out = first_copies(df)
    got = {r["event_id"]: r["tag"] for r in out.collect()}
    assert got == {"e-1": "c", "e-2": "e", "e-3": "g", "e-4": "i"}
    assert out.columns == df.columns  # the helper column is dropped


# --------------------------------------------------------------------------- iot and clickstream


def iot(event_id: str, **changes: Any) -> str:
    body: dict[str, Any] = {
        "event_id": event_id,
        "event_time": "2026-11-26T10:00:00Z",
        "device_id": "d-1",
        "sensor_type": "temperature",
        "value": 21.5,
    }
    body.update(changes)
    return json.dumps(body)


def test_iot_field_named_value_does_not_clash_with_the_raw_record(spark: SparkSession) -> None:
    rows: list[tuple[int, int, str | None, str | None]] = [
        (0, 1, "d-1", iot("i-1")),
        (0, 2, "d-1", iot("i-2", value=-30, battery_pct=100)),
        (1, 3, "d-2", iot("i-3", value="21.5")),
        (1, 4, "d-2", iot("i-4", value=None)),
    ]
    parsed = parse(bronze(spark, "iot", rows), compile_schema(schema("iot")), now_col())
    assert "_raw_value" in parsed.columns
    assert parsed.columns.count("value") == 1
    silver = to_silver(parsed, SILVER["iot"], "no-key-needed")  # iot has no card numbers
    assert silver.columns == SILVER["iot"].column_names
    assert "card_token" not in silver.columns
    by_id = {r["event_id"]: r.asDict() for r in silver.collect()}
    assert set(by_id) == {"i-1", "i-2"}
    assert by_id["i-1"]["value"] == 21.5
    assert (by_id["i-2"]["value"], by_id["i-2"]["battery_pct"]) == (-30.0, 100.0)
    errors = {r["offset"]: (r["raw_value"], r["error"]) for r in to_quarantine(parsed).collect()}
    assert errors == {
        3: (iot("i-3", value="21.5"), "value: expected number, got string"),
        4: (iot("i-4", value=None), "value: expected number, got null"),
    }


def test_clickstream_silver_has_no_card_columns(spark: SparkSession) -> None:
    click = json.dumps(
        {
            "event_id": "c-1",
            "event_time": "2026-11-26T10:00:00Z",
            "session_id": "s-1",
            "user_id": None,
            "event_type": "click",
            "page": "/",
            "duration_ms": 12.0,
        }
    )
    parsed = parse(bronze(spark, "clickstream", [(0, 0, "s-1", click)]), compile_schema(schema("clickstream")))
    silver = to_silver(parsed, SILVER["clickstream"], "no-key-needed")
    assert silver.columns == SILVER["clickstream"].column_names
    (row,) = silver.collect()
    assert (row["user_id"], row["duration_ms"], row["event_date"]) == (None, 12, date(2026, 11, 26))
