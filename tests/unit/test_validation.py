"""lakehouse.validation: the Spark validator compiled from the JSON Schemas, checked against the generator's
ground truth and, case by case, against the jsonschema library.

Spark is slow per job, so every test module batches its cases into a few DataFrames, collects once
(module-scoped fixtures) and parametrizes over the collected result.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.contracts import TOPICS, schema
from lakehouse.delta.validator import CompiledSchema, compile_schema
from lakehouse.generator import GeneratedRun, GeneratorConfig, generate
from lakehouse.validation import fields

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

TOPIC_NAMES = [t.name for t in TOPICS]
COMPILED: dict[str, CompiledSchema] = {t: compile_schema(schema(t)) for t in TOPIC_NAMES}


def ts_col(dt: datetime) -> Column:
    """A timestamp literal that does not depend on the Python process' local time zone."""
    return F.lit(dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")).cast("timestamp")


def micros(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def first_field(error: str) -> str:
    return error.split(":", 1)[0]


def named_fields(error: str) -> set[str]:
    return {first_field(part) for part in error.split("; ")}


# --------------------------------------------------------------------------- a strict RFC 3339 format check

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|([+-])(\d{2}):(\d{2}))$",
)
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time")  # type: ignore[untyped-decorator]
def is_rfc3339_date_time(value: object) -> bool:
    """RFC 3339 §5.6 'date-time', read literally (jsonschema's own check is a no-op without rfc3339-validator).

    Lower-case 't'/'z' (the §5.6 note), any number of fraction digits, a leap second :60 and any
    offset hour 00-23 are RFC 3339.
    """
    if not isinstance(value, str):
        return True  # format only constrains strings
    m = _RFC3339.match(value)
    if m is None or value.endswith("\n"):
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not 1 <= month <= 12:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    if not (1 <= day <= days and hour <= 23 and minute <= 59 and second <= 60):
        return False
    if m.group(9):
        return int(m.group(10)) <= 23 and int(m.group(11)) <= 59
    return True


VALIDATORS = {t: jsonschema.Draft202012Validator(schema(t), format_checker=FORMATS) for t in TOPIC_NAMES}


def jsonschema_valid(topic: str, value: str) -> bool:
    return bool(VALIDATORS[topic].is_valid(json.loads(value)))


def test_the_rfc3339_check_itself() -> None:
    good = ["2026-11-26T10:00:00Z", "2026-11-26t10:00:00z", "2028-02-29T00:00:00.1+23:59", "2016-12-31T23:59:60Z"]
    bad = ["2026-11-26T10:00:00", "2026-02-29T00:00:00Z", "2026-11-26T24:00:00Z", "2026-11-26 10:00:00Z", "x"]
    assert all(is_rfc3339_date_time(v) for v in good)
    assert not any(is_rfc3339_date_time(v) for v in bad)


# --------------------------------------------------------------------------- the generator's ground truth

GEN_START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
KIND_WORDS = {
    "not_json": "not valid JSON",
    "not_object": "not a JSON object",
    "missing_required": "required field missing",
    "wrong_type": "expected (number|integer), got string",
    "out_of_range": "is (below the minimum|above the maximum)",
    "bad_enum": "is not one of",
    "bad_pattern": "does not match",
    "bad_datetime": "is not an ISO-8601 date-time",
    "future_time": "more than 1 day in the future",
    "too_long": "longer than 64 characters",
    "not_utf8": r"not UTF-8 text \(byte 0xe9 at offset \d+\)",
    "too_deep": r"beyond the JSON parser's limits \(Document nesting depth \(1001\) exceeds",
}


def generator_config(topic: str) -> GeneratorConfig:
    return GeneratorConfig(
        seed=20261126,
        count=300,
        topics=(topic,),
        start_time=GEN_START,
        invalid=40,
        duplicates=20,
        out_of_order=0.2,
        late=6,
        anomalies=4 if topic == "iot" else 0,
        fraud_card_testing=1 if topic == "payments" else 0,
        fraud_impossible_travel=1 if topic == "payments" else 0,
    )


@dataclass(frozen=True)
class Judged:
    run: GeneratedRun
    errors: list[str | None]  # per record, in run.records order
    extras: list[str | None]


_judged: dict[str, Judged] = {}


def judged(spark: SparkSession, topic: str) -> Judged:
    """One Spark job per topic: error and _extra of every generated record."""
    if topic not in _judged:
        run = generate(generator_config(topic))
        # The bytes as produced, cast to string as bronze stores them (the cast keeps them unchecked).
        rows = [(i, bytearray(r.value)) for i, r in enumerate(run.records)]
        df = spark.createDataFrame(rows, "i int, value binary").select("i", F.col("value").cast("string"))
        c = COMPILED[topic]
        out = df.select("i", c.error(F.col("value"), ts_col(run.end_time)).alias("error"), c.extra(F.col("value")))  # noqa: S610 - not Django
        got = sorted((r[0], r[1], r[2]) for r in out.collect())
        assert [g[0] for g in got] == list(range(len(rows)))
        _judged[topic] = Judged(run, [g[1] for g in got], [g[2] for g in got])
    return _judged[topic]


@pytest.mark.parametrize("topic", TOPIC_NAMES)
def test_generated_run_covers_every_kind(spark: SparkSession, topic: str) -> None:
    run = judged(spark, topic).run
    kinds = {r.kind for r in run.records}
    assert kinds == {"valid", "duplicate", "invalid", "late"}
    invalid_kinds = {r.invalid_kind for r in run.records if r.kind == "invalid"}
    assert invalid_kinds == set(KIND_WORDS) - ({"bad_pattern"} if topic == "iot" else set())
    assert any("extra_field" in r.flags for r in run.records)
    assert any("out_of_order" in r.flags for r in run.records)


@pytest.mark.parametrize("topic", TOPIC_NAMES)
def test_error_is_null_exactly_for_the_records_the_generator_calls_valid(spark: SparkSession, topic: str) -> None:
    j = judged(spark, topic)
    wrong = [
        (r.kind, r.invalid_kind, err, r.value[:120])
        for r, err in zip(j.run.records, j.errors, strict=True)
        if (err is None) != (r.kind in ("valid", "duplicate", "late"))
    ]
    assert wrong == []


@pytest.mark.parametrize("topic", TOPIC_NAMES)
def test_the_reason_names_the_field_the_generator_broke(spark: SparkSession, topic: str) -> None:
    j = judged(spark, topic)
    checked = 0
    for r, err in zip(j.run.records, j.errors, strict=True):
        if r.kind != "invalid":
            continue
        assert err is not None
        expected = r.field or "value"
        assert first_field(err) == expected, (r.invalid_kind, err, r.value[:120])
        assert named_fields(err) == {expected}, (r.invalid_kind, err)  # the generator breaks exactly one field
        assert re.search(KIND_WORDS[r.invalid_kind or ""], err), (r.invalid_kind, err)
        checked += 1
    assert checked == 40


@pytest.mark.parametrize("topic", TOPIC_NAMES)
def test_extra_holds_exactly_the_unknown_fields_of_generated_records(spark: SparkSession, topic: str) -> None:
    j = judged(spark, topic)
    known = set(schema(topic)["properties"])
    with_extra = 0
    for r, extra in zip(j.run.records, j.extras, strict=True):
        try:
            doc = json.loads(r.value)
        except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested past any parser's limit
            assert extra is None
            continue
        unknown = {k: v for k, v in doc.items() if k not in known} if isinstance(doc, dict) else {}
        if unknown:
            with_extra += 1
            assert extra is not None
            assert json.loads(extra) == unknown
        else:
            assert extra is None, (r.value, extra)
    assert with_extra > 0


# --------------------------------------------------------------------------- hand-made edge cases

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MISSING = object()
BASE: dict[str, dict[str, Any]] = {
    "payments": {
        "event_id": "p-1",
        "event_time": "2026-11-26T10:00:00.123Z",
        "user_id": "u-1",
        "card_number": "4000000000000001",
        "merchant_id": "m-1",
        "amount": 12.5,
        "currency": "EUR",
        "country": "DE",
    },
    "clickstream": {
        "event_id": "c-1",
        "event_time": "2026-11-26T10:00:00.123Z",
        "session_id": "s-1",
        "event_type": "page_view",
        "page": "/",
    },
    "iot": {
        "event_id": "i-1",
        "event_time": "2026-11-26T10:00:00.123Z",
        "device_id": "d-1",
        "sensor_type": "temperature",
        "value": 21.5,
    },
}


def rec(topic: str, *, ascii_only: bool = False, **changes: Any) -> str:
    body = dict(BASE[topic])
    for k, v in changes.items():
        if v is MISSING:
            del body[k]
        else:
            body[k] = v
    return json.dumps(body, ensure_ascii=ascii_only)


def at(delta: timedelta) -> str:
    return (NOW + delta).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Case:
    id: str
    topic: str
    value: str | None
    field: str | None  # None: valid; else the field the (first) reason must name
    judge: bool = True  # the jsonschema library can judge it (JSON, and not the contract's future rule)


P, C, IOT = "payments", "clickstream", "iot"
DIGITS = "123456789"
CASES: list[Case] = [
    Case("payments-base", P, rec(P), None),
    Case("clickstream-base", C, rec(C), None),
    Case("iot-base", IOT, rec(IOT), None),
    Case(
        "all-optional-fields", P, rec(P, merchant_category="x", channel="web", lat=1.5, lon=-2, schema_version=1), None
    ),
    Case("unknown-fields-allowed", C, rec(C, experiment={"arm": "b", "n": [1, None]}, z=None), None),
    # integer / number / boolean
    Case("integer-given-as-12.0", C, rec(C, duration_ms=12.0), None),
    Case("integer-given-as-1e2", C, rec(C).replace("}", ', "duration_ms": 1e2}'), None),
    Case("integer-given-as-12.5", C, rec(C, duration_ms=12.5), "duration_ms"),
    Case("integer-given-as-string", C, rec(C, duration_ms="12"), "duration_ms"),
    Case("boolean-for-integer", C, rec(C, duration_ms=True), "duration_ms"),
    Case("number-given-as-string", P, rec(P, amount="12.5"), "amount"),
    Case("boolean-for-number", P, rec(P, amount=True), "amount"),
    Case("boolean-for-iot-value", IOT, rec(IOT, value=False), "value"),
    Case("object-for-number", P, rec(P, amount={"v": 1}), "amount"),
    Case("array-for-number", P, rec(P, amount=[1]), "amount"),
    Case("number-for-string", P, rec(P, user_id=42), "user_id"),
    Case("integer-amount", P, rec(P, amount=12), None),
    # null
    Case("null-for-nullable-user_id", C, rec(C, user_id=None), None),
    Case("null-for-nullable-referrer", C, rec(C, referrer=None), None),
    Case("null-for-required-user_id", P, rec(P, user_id=None), "user_id"),
    Case("null-for-required-page", C, rec(C, page=None), "page"),
    Case("null-for-optional-enum", C, rec(C, device=None), "device"),
    Case("null-for-optional-string", IOT, rec(IOT, unit=None), "unit"),
    Case("null-for-optional-number", IOT, rec(IOT, battery_pct=None), "battery_pct"),
    Case("required-missing", P, rec(P, amount=MISSING), "amount"),
    Case("required-missing-iot-value", IOT, rec(IOT, value=MISSING), "value"),
    # bounds, exactly on the boundary and just beyond
    Case("amount-0", P, rec(P, amount=0), None),
    Case("amount-minus-0.0", P, rec(P, amount=-0.0), None),
    Case("amount-minus-0.01", P, rec(P, amount=-0.01), "amount"),
    Case("amount-1000000", P, rec(P, amount=1000000), None),
    Case("amount-1000000.0", P, rec(P, amount=1000000.0), None),
    Case("amount-1000000.01", P, rec(P, amount=1000000.01), "amount"),
    Case("battery-100", IOT, rec(IOT, battery_pct=100), None),
    Case("battery-100.0001", IOT, rec(IOT, battery_pct=100.0001), "battery_pct"),
    Case("battery-0", IOT, rec(IOT, battery_pct=0), None),
    Case("battery-minus-0.0001", IOT, rec(IOT, battery_pct=-0.0001), "battery_pct"),
    Case("lat-minus-90", P, rec(P, lat=-90), None),
    Case("lat-minus-90.0001", P, rec(P, lat=-90.0001), "lat"),
    Case("lon-180", P, rec(P, lon=180.0), None),
    Case("duration-0", C, rec(C, duration_ms=0), None),
    Case("duration-minus-1", C, rec(C, duration_ms=-1), "duration_ms"),
    Case("schema_version-0", C, rec(C, schema_version=0), "schema_version"),
    Case("iot-value-unbounded", IOT, rec(IOT, value=-1e300), None),
    # lengths: characters, not bytes (nor UTF-16 units)
    Case("event_id-64-ascii", P, rec(P, event_id="x" * 64), None),
    Case("event_id-65-ascii", P, rec(P, event_id="x" * 65), "event_id"),
    Case("event_id-empty", P, rec(P, event_id=""), "event_id"),
    Case("event_id-64-two-byte", P, rec(P, event_id="é" * 64), None),
    Case("event_id-64-three-byte", P, rec(P, event_id="€" * 64), None),
    Case("event_id-64-four-byte", P, rec(P, event_id="😀" * 64), None),
    Case("event_id-64-four-byte-escaped", P, rec(P, ascii_only=True, event_id="😀" * 64), None),
    Case("event_id-65-two-byte", P, rec(P, event_id="é" * 65), "event_id"),
    Case("event_id-65-four-byte", P, rec(P, event_id="😀" * 65), "event_id"),
    Case("unit-16", IOT, rec(IOT, unit="°" * 16), None),
    Case("unit-17", IOT, rec(IOT, unit="°" * 17), "unit"),
    Case("user_id-empty-no-minLength", C, rec(C, user_id=""), None),
    Case("session_id-empty", C, rec(C, session_id=""), "session_id"),
    # pattern
    Case("country-lowercase", P, rec(P, country="de"), "country"),
    Case("country-three-letters", P, rec(P, country="DEU"), "country"),
    Case("country-digit", C, rec(C, country="D1"), "country"),
    Case("currency-lowercase", P, rec(P, currency="eur"), "currency"),
    Case("card-12-digits", P, rec(P, card_number="4" * 12), None),
    Case("card-11-digits", P, rec(P, card_number="4" * 11), "card_number"),
    Case("card-19-digits", P, rec(P, card_number="4" * 19), None),
    Case("card-20-digits", P, rec(P, card_number="4" * 20), "card_number"),
    Case("card-with-spaces", P, rec(P, card_number="4000 0000 0000 0001"), "card_number"),
    Case("datetime-lowercase-t", P, rec(P, event_time="2026-11-26t10:00:00Z"), None),
    Case("datetime-lowercase-z", P, rec(P, event_time="2026-11-26T10:00:00z"), None),
    # enum
    Case("enum-click", C, rec(C, event_type="click"), None),
    Case("enum-wrong-case", C, rec(C, event_type="PAGE_VIEW"), "event_type"),
    Case("enum-unknown", P, rec(P, channel="fax"), "channel"),
    Case("enum-number", C, rec(C, device=1), "device"),
    Case("enum-empty-string", IOT, rec(IOT, sensor_type=""), "sensor_type"),
    # date-time
    Case("datetime-offset-plus-02", P, rec(P, event_time="2026-11-26T12:00:00+02:00"), None),
    Case("datetime-offset-minus-05-30", P, rec(P, event_time="2026-11-26T04:30:00-05:30"), None),
    Case("datetime-offset-plus-18", P, rec(P, event_time="2026-11-27T04:00:00+18:00"), None),
    Case("datetime-no-zone", P, rec(P, event_time="2026-11-26T10:00:00"), "event_time"),
    Case("datetime-no-zone-fraction", C, rec(C, event_time="2026-11-26T10:00:00.123"), "event_time"),
    Case("datetime-space-separator", P, rec(P, event_time="2026-11-26 10:00:00Z"), "event_time"),
    Case("datetime-date-only", IOT, rec(IOT, event_time="2026-11-26"), "event_time"),
    Case("datetime-offset-without-colon", P, rec(P, event_time="2026-11-26T10:00:00+0200"), "event_time"),
    Case("datetime-month-13", P, rec(P, event_time="2026-13-01T10:00:00Z"), "event_time"),
    Case("datetime-feb-29-leap-year", P, rec(P, event_time="2024-02-29T10:00:00Z"), None),
    Case("datetime-feb-29-common-year", P, rec(P, event_time="2025-02-29T10:00:00Z"), "event_time"),
    Case("datetime-hour-24", P, rec(P, event_time="2026-11-26T24:00:00Z"), "event_time"),
    Case("datetime-empty-fraction", P, rec(P, event_time="2026-11-26T10:00:00.Z"), "event_time"),
    Case("datetime-as-number", P, rec(P, event_time=1795000000000), "event_time"),
    Case("datetime-words", IOT, rec(IOT, event_time="yesterday"), "event_time"),
    *[
        Case(f"datetime-fraction-{n}-digits", P, rec(P, event_time=f"2026-11-26T10:00:00.{DIGITS[:n]}Z"), None)
        for n in range(1, 10)
    ],
    # the contract's own rule: not more than one day in the future (now pinned to NOW)
    Case("future-23h", P, rec(P, event_time=at(timedelta(hours=23))), None, judge=False),
    Case("future-exactly-24h", P, rec(P, event_time=at(timedelta(hours=24))), None, judge=False),
    Case("future-24h-plus-1ms", C, rec(C, event_time=at(timedelta(hours=24, milliseconds=1))), "event_time", False),
    Case("future-25h", IOT, rec(IOT, event_time=at(timedelta(hours=25))), "event_time", judge=False),
    # the rule compares instants: 13:00+02:00 is 11:00Z (23 h ahead), 11:00-02:00 is 13:00Z (25 h ahead)
    Case("future-23h-with-offset", P, rec(P, event_time="2026-11-27T13:00:00+02:00"), None, judge=False),
    Case("future-25h-with-offset", P, rec(P, event_time="2026-11-27T11:00:00-02:00"), "event_time", judge=False),
    Case("past-far", P, rec(P, event_time="1970-01-01T00:00:00Z"), None),
    # the record as a whole
    Case("empty-object", P, "{}", "event_id"),
    Case("json-array", P, json.dumps([BASE[P]]), "value"),
    Case("json-string", C, '"hello"', "value"),
    Case("json-number", IOT, "42", "value"),
    Case("json-null", IOT, "null", "value"),
    Case("leading-whitespace", IOT, "  \n" + rec(IOT), None),
    Case("empty-value", P, "", "value", judge=False),
    Case("null-value", C, None, "value", judge=False),
    Case("whitespace-value", IOT, "   ", "value", judge=False),
    Case("truncated-json", P, rec(P)[:-5], "value", judge=False),
    Case("single-quotes", C, "{'event_id': 'x'}", "value", judge=False),
    Case("nan-literal", IOT, rec(IOT).replace("21.5", "NaN"), "value", judge=False),
]

# Cases where silver deliberately or knowingly disagrees with RFC 3339 / Python's json module.
# Each is pinned to silver's current verdict (the Case) and to the other side's verdict here.
DIVERGENCES: dict[str, tuple[Case, bool, str]] = {
    c.id: (c, other_valid, why)
    for c, other_valid, why in [
        (
            Case(
                "datetime-fraction-10-digits",
                P,
                rec(P, event_time="2026-11-26T10:00:00.1234567891Z"),
                "event_time",
                judge=False,
            ),
            True,
            "RFC 3339 allows any number of fraction digits; silver stops at nanoseconds (documented in validation.py)",
        ),
        (
            Case("datetime-leap-second", P, rec(P, event_time="2016-12-31T23:59:60Z"), "event_time", judge=False),
            True,
            "RFC 3339 allows second 60 (leap second); java.time rejects it",
        ),
        (
            Case(
                "datetime-offset-plus-19", P, rec(P, event_time="2026-11-26T10:00:00+19:00"), "event_time", judge=False
            ),
            True,
            "RFC 3339 offsets go to +-23:59; java.time.ZoneOffset stops at +-18:00",
        ),
        (
            Case("country-trailing-newline", P, rec(P, country="DE\n"), "country", judge=False),
            True,
            "JSON Schema patterns are ECMA-262, whose final $ matches only at the end: silver rejects 'DE\\n'; "
            "Python's re (and so the jsonschema library) lets $ match before a final newline",
        ),
        (
            Case("duplicate-key", P, rec(P)[:-1] + ', "amount": 12.5}', "value", judge=False),
            True,
            "Python's json (and so jsonschema) keeps the last of duplicate keys; Spark's parse_json refuses the record",
        ),
    ]
}
ALL_CASES = [*CASES, *(c for c, _, _ in DIVERGENCES.values())]
BY_ID = {c.id: c for c in ALL_CASES}
assert len(BY_ID) == len(ALL_CASES), "duplicate case ids"


def errors_of(spark: SparkSession, cases: list[Case], now: datetime) -> dict[str, str | None]:
    """The error of every case, in one Spark job (a union of one select per topic)."""
    df = spark.createDataFrame([(c.id, c.topic, c.value) for c in cases], "id string, topic string, value string")
    parts: list[DataFrame] = [
        COMPILED[t]
        .annotate(df.where(F.col("topic") == t).withColumnRenamed("value", "raw"), "raw", ts_col(now))
        .select("id", COMPILED[t].error(F.col("raw"), ts_col(now)).alias("error"), "_error")
        for t in TOPIC_NAMES
    ]
    union = parts[0].unionByName(parts[1]).unionByName(parts[2])
    rows = union.collect()
    got = {r["id"]: r["error"] for r in rows}
    assert set(got) == {c.id for c in cases}
    # The staged form silver runs (annotate) and the single expression must say the same.
    assert {r["id"]: r["_error"] for r in rows} == got
    return got


@pytest.fixture(scope="module")
def edge_errors(spark: SparkSession) -> dict[str, str | None]:
    return errors_of(spark, ALL_CASES, NOW)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_edge_case_verdict_and_reason(edge_errors: dict[str, str | None], case: Case) -> None:
    err = edge_errors[case.id]
    if case.field is None:
        assert err is None
    else:
        assert err is not None
        assert first_field(err) == case.field, err


JUDGEABLE = [c for c in CASES if c.judge]


@pytest.mark.parametrize("case", JUDGEABLE, ids=[c.id for c in JUDGEABLE])
def test_edge_case_agrees_with_jsonschema(edge_errors: dict[str, str | None], case: Case) -> None:
    assert case.value is not None
    assert (edge_errors[case.id] is None) == jsonschema_valid(case.topic, case.value), edge_errors[case.id]


def test_every_named_case_kind_is_covered() -> None:
    assert {c.topic for c in JUDGEABLE} == set(TOPIC_NAMES)
    assert sum(c.field is None for c in JUDGEABLE) > 20
    assert sum(c.field is not None for c in JUDGEABLE) > 20


@pytest.mark.parametrize("case_id", list(DIVERGENCES))
def test_documented_divergences(edge_errors: dict[str, str | None], case_id: str) -> None:
    """What happens today where silver and RFC 3339 / Python's json disagree (see DIVERGENCES)."""
    case, other_valid, _why = DIVERGENCES[case_id]
    assert case.value is not None
    err = edge_errors[case_id]
    assert (err is None) == (case.field is None), err
    if err is not None:
        assert first_field(err) == case.field
    assert jsonschema_valid(case.topic, case.value) is other_valid
    assert (err is None) != other_valid


def test_the_whole_record_reasons(edge_errors: dict[str, str | None]) -> None:
    assert edge_errors["empty-value"] == "value: not valid JSON"
    assert edge_errors["null-value"] == "value: empty record"
    assert edge_errors["json-array"] == "value: not a JSON object (got array)"
    assert edge_errors["json-string"] == "value: not a JSON object (got string)"
    assert edge_errors["json-number"] == "value: not a JSON object (got number)"
    assert edge_errors["json-null"] == "value: not a JSON object (got null)"
    assert edge_errors["duplicate-key"] == "value: not valid JSON"
    assert edge_errors["nan-literal"] == "value: not valid JSON"
    # the empty object names every required field, in declaration order
    assert edge_errors["empty-object"] == "; ".join(f"{f}: required field missing" for f in schema(P)["required"])


def test_reason_texts(edge_errors: dict[str, str | None]) -> None:
    assert edge_errors["number-given-as-string"] == "amount: expected number, got string"
    assert edge_errors["null-for-required-user_id"] == "user_id: expected string, got null"
    assert edge_errors["integer-given-as-12.5"] == "duration_ms: expected integer, got number"
    assert edge_errors["amount-minus-0.01"] == "amount: -0.01 is below the minimum 0"
    assert edge_errors["battery-100.0001"] == "battery_pct: 100.0001 is above the maximum 100"
    assert edge_errors["event_id-65-four-byte"] == "event_id: longer than 64 characters (65)"
    assert edge_errors["enum-unknown"] == "channel: 'fax' is not one of [web, pos, mobile]"
    assert edge_errors["country-lowercase"] == "country: 'de' does not match ^[A-Z]{2}$"
    # A near-miss card number is not copied into the reason (stored in clear, unlike the raw value).
    assert edge_errors["card-with-spaces"] == "card_number: the value (withheld) does not match ^[0-9]{12,19}$"
    assert edge_errors["card-20-digits"] == "card_number: the value (withheld) does not match ^[0-9]{12,19}$"
    assert edge_errors["future-25h"] == "event_time: more than 1 day in the future"
    assert edge_errors["datetime-no-zone"] == (
        "event_time: '2026-11-26T10:00:00' is not an ISO-8601 date-time with a zone"
    )


def test_several_broken_fields_are_all_named(spark: SparkSession) -> None:
    case = Case("multi", P, rec(P, amount="1", country="de", channel="fax"), "amount")
    err = errors_of(spark, [case], NOW)["multi"]
    assert err is not None
    assert err.split("; ") == [
        "amount: expected number, got string",
        "country: 'de' does not match ^[A-Z]{2}$",
        "channel: 'fax' is not one of [web, pos, mobile]",
    ]


# --------------------------------------------------------------------------- trailing content and big integers

TRAILING = [
    Case("trailing-garbage", P, rec(P) + " x", "value", judge=False),
    Case("trailing-second-object", P, rec(P) + ' {"a": 1}', "value", judge=False),
    Case("trailing-brace", P, rec(P) + "}", "value", judge=False),
]


def test_trailing_content_after_the_object_is_not_json(spark: SparkSession) -> None:
    got = errors_of(spark, TRAILING, NOW)
    for case in TRAILING:
        assert case.value is not None
        with pytest.raises(json.JSONDecodeError):
            json.loads(case.value)
    assert got == dict.fromkeys((c.id for c in TRAILING), "value: not valid JSON")


def test_integers_beyond_64_bits_are_quarantined_not_truncated(spark: SparkSession) -> None:
    """A deliberate, documented divergence from JSON Schema: silver stores BIGINT, so an integer it
    cannot hold is invalid (with a reason naming the field) rather than typed to NULL and lost."""
    cases = [
        Case("int-1e19-literal", C, rec(C).replace("}", ', "duration_ms": 10000000000000000000}'), "duration_ms"),
        Case("int-1e19-float", C, rec(C).replace("}", ', "duration_ms": 1e19}'), "duration_ms"),
        Case("int-2^63", C, rec(C).replace("}", ', "duration_ms": 9223372036854775808}'), "duration_ms"),
        Case("int-2^63-1", C, rec(C).replace("}", ', "duration_ms": 9223372036854775807}'), None),
    ]
    got = errors_of(spark, cases, NOW)
    for case in cases:
        assert case.value is not None
        assert jsonschema_valid(case.topic, case.value)
        err = got[case.id]
        if case.field is None:
            assert err is None, err
        else:
            assert err is not None
            assert first_field(err) == case.field
            assert "does not fit a 64-bit integer" in err


def test_a_valid_integer_field_is_never_typed_to_null(spark: SparkSession) -> None:
    value = rec(C).replace("}", ', "duration_ms": 9223372036854775808}')
    df = spark.createDataFrame([(value,)], "value string")
    c = COMPILED[C]
    row = df.select(c.error(F.col("value"), ts_col(NOW)).alias("error"), *c.typed(F.col("value"))).first()
    assert row is not None
    assert row["error"] is not None or row["duration_ms"] is not None


# --------------------------------------------------------------------------- compile_schema beyond the contracts

SYNTHETIC = {
    "type": "object",
    "required": ["x"],
    "properties": {
        "x": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
        "k": {"enum": [1, 2]},
        "s": {"type": ["string", "null"], "minLength": 2},
        "b": {"type": "boolean"},
        "e": {"enum": ["a", None]},
        "i": {"type": "integer", "maximum": 5},
    },
}
SYNTHETIC_CASES = {
    "x-on-exclusive-minimum": ('{"x": 0}', "x"),
    "x-on-exclusive-maximum": ('{"x": 10}', "x"),
    "x-on-exclusive-maximum-as-10.0": ('{"x": 10.0}', "x"),
    "x-just-above-minimum": ('{"x": 0.0001}', None),
    "x-just-below-maximum": ('{"x": 9.9999}', None),
    "x-underflows-to-0": ('{"x": 1e-400}', "x"),
    "x-missing": ('{"k": 1}', "x"),
    "numeric-enum-1": ('{"x": 5, "k": 1}', None),
    "numeric-enum-3": ('{"x": 5, "k": 3}', "k"),
    "numeric-enum-as-string": ('{"x": 5, "k": "1"}', "k"),
    "nullable-string-null": ('{"x": 5, "s": null}', None),
    "nullable-string-too-short": ('{"x": 5, "s": "a"}', "s"),
    "boolean-true": ('{"x": 5, "b": true}', None),
    "boolean-as-1": ('{"x": 5, "b": 1}', "b"),
    "enum-with-null-null": ('{"x": 5, "e": null}', None),
    "enum-with-null-a": ('{"x": 5, "e": "a"}', None),
    "enum-with-null-b": ('{"x": 5, "e": "b"}', "e"),
    "integer-maximum": ('{"x": 5, "i": 5}', None),
    "integer-above-maximum": ('{"x": 5, "i": 6}', "i"),
    "integer-5.0": ('{"x": 5, "i": 5.0}', None),
}
NUMERIC_ENUM_BY_VALUE = {"numeric-enum-1e0": '{"x": 5, "k": 1e0}', "numeric-enum-1.0e0": '{"x": 5, "k": 2.0E0}'}


@pytest.fixture(scope="module")
def synthetic_errors(spark: SparkSession) -> dict[str, str | None]:
    c = compile_schema(SYNTHETIC)
    rows = [(k, v) for k, (v, _) in SYNTHETIC_CASES.items()] + list(NUMERIC_ENUM_BY_VALUE.items())
    df = spark.createDataFrame(rows, "id string, value string")
    return {r["id"]: r["error"] for r in df.select("id", c.error(F.col("value")).alias("error")).collect()}


@pytest.mark.parametrize("case_id", list(SYNTHETIC_CASES))
def test_synthetic_schema_agrees_with_jsonschema(synthetic_errors: dict[str, str | None], case_id: str) -> None:
    value, field = SYNTHETIC_CASES[case_id]
    err = synthetic_errors[case_id]
    assert (err is None) == (field is None), err
    if err is not None:
        assert first_field(err) == field
    assert jsonschema.Draft202012Validator(SYNTHETIC).is_valid(json.loads(value)) == (field is None)


@pytest.mark.parametrize("case_id", list(NUMERIC_ENUM_BY_VALUE))
def test_numeric_enum_compares_numbers_by_value(synthetic_errors: dict[str, str | None], case_id: str) -> None:
    assert jsonschema.Draft202012Validator(SYNTHETIC).is_valid(json.loads(NUMERIC_ENUM_BY_VALUE[case_id]))
    assert synthetic_errors[case_id] is None


def test_fields_reads_types_requiredness_and_nullability() -> None:
    by_name = {f.name: f for f in fields(schema(P))}
    assert list(by_name) == list(schema(P)["properties"])
    assert by_name["event_time"].spark_type == "timestamp"
    assert by_name["amount"].spark_type == "double"
    assert by_name["schema_version"].spark_type == "bigint"
    assert by_name["channel"].spark_type == "string"  # from the enum
    assert by_name["amount"].required
    assert not by_name["lat"].required
    click = {f.name: f for f in fields(schema(C))}
    assert click["user_id"].nullable_in_json
    assert click["user_id"].json_types == ("string", "null")
    assert not click["page"].nullable_in_json
    with pytest.raises(ValueError, match="exactly one non-null type"):
        fields({"properties": {"a": {"type": ["string", "number"]}}})
    with pytest.raises(ValueError, match="without type or enum"):
        fields({"properties": {"a": {"minimum": 1}}})


# --------------------------------------------------------------------------- typed and extra

TYPED_ROWS = {
    "utc": rec(P, event_time="2026-11-26T10:00:00.123Z", amount=12, schema_version=3.0),
    "plus-02": rec(P, event_time="2026-11-26T12:00:00+02:00", amount=0.1),
    "minus-05-30": rec(P, event_time="2026-11-26T04:30:00.5-05:30", amount=1e6),
    "nanos": rec(P, event_time="2026-11-26T10:00:00.123456789Z"),
    "before-epoch": rec(P, event_time="1969-12-31t23:59:59.9999995z"),
    "plus-18": rec(P, event_time="2026-11-27T04:00:00+18:00"),
    "leap-second": rec(P, event_time="2016-12-31T23:59:60Z"),
    "extra-nested": rec(P, experiment="b", meta={"a": [1, {"b": None}], "c": "é"}, schema_version=2),
    "extra-null": rec(P, z=None),
}


@pytest.fixture(scope="module")
def typed_rows(spark: SparkSession) -> tuple[T.StructType, dict[str, dict[str, Any]]]:
    c = COMPILED[P]
    df = spark.createDataFrame(list(TYPED_ROWS.items()), "id string, value string")
    typed = df.select("id", *c.typed(F.col("value")), c.extra(F.col("value")).alias("_extra"))  # noqa: S610 - not Django
    out = typed.select("*", F.unix_micros("event_time").alias("event_micros"))
    return typed.schema, {r["id"]: r.asDict() for r in out.collect()}


def test_typed_columns_have_the_silver_types(typed_rows: tuple[T.StructType, dict[str, dict[str, Any]]]) -> None:
    struct, _ = typed_rows
    types = {f.name: f.dataType for f in struct.fields}
    assert types["event_time"] == T.TimestampType()
    assert types["amount"] == T.DoubleType()
    assert types["lat"] == T.DoubleType()
    assert types["schema_version"] == T.LongType()
    assert types["card_number"] == T.StringType()
    assert types["channel"] == T.StringType()
    assert [f.name for f in struct.fields] == ["id", *[f.name for f in fields(schema(P))], "_extra"]


def test_typed_values(typed_rows: tuple[T.StructType, dict[str, dict[str, Any]]]) -> None:
    _, rows = typed_rows
    assert rows["utc"]["event_micros"] == micros(datetime(2026, 11, 26, 10, 0, 0, 123000, tzinfo=UTC))
    assert rows["plus-02"]["event_micros"] == micros(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))  # converted to UTC
    assert rows["minus-05-30"]["event_micros"] == micros(datetime(2026, 11, 26, 10, 0, 0, 500000, tzinfo=UTC))
    # Spark timestamps hold microseconds: nanosecond digits are truncated (not rounded)
    assert rows["nanos"]["event_micros"] == micros(datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC))
    # ... towards the past, also before 1970; lower-case t and z; the largest offset java.time allows
    assert rows["before-epoch"]["event_micros"] == micros(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    assert rows["plus-18"]["event_micros"] == micros(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    # A leap second (RFC 3339, rare) is left to java.time, which has no :60: no time (the record is quarantined)
    assert rows["leap-second"]["event_micros"] is None
    assert rows["utc"]["amount"] == 12.0
    assert isinstance(rows["utc"]["amount"], float)
    assert rows["utc"]["schema_version"] == 3
    assert isinstance(rows["utc"]["schema_version"], int)
    assert rows["plus-02"]["amount"] == 0.1
    assert rows["minus-05-30"]["amount"] == 1e6
    assert rows["utc"]["card_number"] == "4000000000000001"
    assert rows["utc"]["lat"] is None  # absent optional field


def test_extra_returns_exactly_the_unknown_fields(typed_rows: tuple[T.StructType, dict[str, dict[str, Any]]]) -> None:
    _, rows = typed_rows
    assert rows["utc"]["_extra"] is None
    assert rows["plus-02"]["_extra"] is None
    extra = rows["extra-nested"]["_extra"]
    assert json.loads(extra) == {"experiment": "b", "meta": {"a": [1, {"b": None}], "c": "é"}}
    assert json.loads(rows["extra-null"]["_extra"]) == {"z": None}  # an unknown null is still kept


def test_date_time_typing(spark: SparkSession) -> None:
    texts = {
        "2026-11-26T10:00:00Z": micros(datetime(2026, 11, 26, 10, tzinfo=UTC)),
        "2026-11-26T11:00:00.25+01:00": micros(datetime(2026, 11, 26, 10, 0, 0, 250000, tzinfo=UTC)),
        "2026-11-26T10:00:00": None,
        "2026-11-26T10:00:00+0100": None,
        "2026-02-30T10:00:00Z": None,
        "garbage": None,
        None: None,
    }
    c = compile_schema({"properties": {"t": {"type": ["string", "null"], "format": "date-time"}}})
    df = spark.createDataFrame([(t, json.dumps({"t": t})) for t in texts], "text string, value string")
    typed = df.select("text", *c.typed(F.col("value")))
    got = {r["text"]: r["m"] for r in typed.select("text", F.unix_micros("t").alias("m")).collect()}
    assert got == texts
