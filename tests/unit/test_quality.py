"""lakehouse.delta.quality: the declared checks, and run_checks with Great Expectations over small Delta tables.

Two lakes are written once per module and checked once each (Spark jobs are the cost here):
a clean one, where every check must pass, and a dirty one with one defect per check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lakehouse.checks import CHECKS, CheckOutcome
from lakehouse.delta import quality
from lakehouse.delta.quality import run_checks
from lakehouse.delta.tables import spark_schema
from lakehouse.settings import Settings, get_settings
from lakehouse.tables import BRONZE, GOLD, QUARANTINE, SILVER, TableSpec

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

NOW = datetime.now(UTC).replace(microsecond=0)
T1, T2, T3, T4 = (NOW - timedelta(minutes=m) for m in (40, 30, 20, 10))
EVENT_TIME = NOW - timedelta(hours=1)
WINDOW = EVENT_TIME.replace(second=0)


# -- building tables ------------------------------------------------------------------
def write(spark: SparkSession, lake: Path, spec: TableSpec, rows: list[dict[str, Any]]) -> None:
    """Rows (dicts; missing columns NULL) as the spec's table, every column nullable so defects can be written."""
    from pyspark.sql import types as T

    struct = T.StructType([T.StructField(f.name, f.dataType, True) for f in spark_schema(spec).fields])
    data = [tuple(r.get(f.name) for f in struct.fields) for r in rows]
    spark.createDataFrame(data, struct).coalesce(1).write.format("delta").save(spec.path(lake))


def bronze_row(topic: str, p: int, o: int, ingested: datetime, value: dict[str, Any] | str) -> dict[str, Any]:
    text = value if isinstance(value, str) else json.dumps(value)
    return {"value": text, "topic": topic, "partition": p, "offset": o, "ingested_at": ingested, "ingest_date": NOW}


def silver_row(event: dict[str, Any], p: int, o: int, ingested: datetime) -> dict[str, Any]:
    return {
        **event,
        "event_time": EVENT_TIME,
        "event_date": EVENT_TIME.date(),
        "_source_partition": p,
        "_source_offset": o,
        "ingested_at": ingested,
    }


def quarantine_row(topic: str, p: int, o: int) -> dict[str, Any]:
    return {"topic": topic, "partition": p, "offset": o, "raw_value": "{", "error": "not JSON", "quarantined_at": NOW}


def pay(event_id: str | None, **kw: Any) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": "u1", "merchant_id": "m1", "amount": 12.5, "channel": "web", **kw}


def click(event_id: str, **kw: Any) -> dict[str, Any]:
    return {"event_id": event_id, "session_id": "s1", "event_type": "click", "page": "/", "device": "mobile", **kw}


def reading(event_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "device_id": "d1", "sensor_type": "humidity", "value": 40.0, "battery_pct": 80.0}


def gold_rows(updated: datetime, tx_count: int = 3) -> dict[str, list[dict[str, Any]]]:
    return {
        "merchant_minute": [
            {"merchant_id": m, "window_start": WINDOW, "tx_count": tx_count, "amount_sum": 30.0, "amount_avg": 10.0}
            | {"amount_max": 20.0, "flagged_count": 1, "updated_at": updated}
            for m in ("m1", "m2")
        ],
        "page_minute": [
            {"page": "/", "window_start": WINDOW, "views": 5, "clicks": 2, "purchases": 0, "sessions": 2}
            | {"updated_at": updated}
        ],
        "device_minute": [
            {"device_id": "d1", "sensor_type": "humidity", "window_start": WINDOW, "readings": 4, "value_sum": 160.0}
            | {"value_avg": 40.0, "value_min": 35.0, "value_max": 45.0, "anomalies": 0, "updated_at": updated}
        ],
        "fraud_alerts": [
            {"event_id": "p-1", "event_time": EVENT_TIME, "user_id": "u1", "card_token": "t", "merchant_id": "m1"}
            | {"amount": 1.5, "rules": ["card_testing"], "score": 0.75, "detected_at": updated}
        ],
        "late_events": [
            {"source": "silver.iot", "event_id": "i-0", "event_time": EVENT_TIME, "window_start": WINDOW}
            | {"watermark": EVENT_TIME, "batch_id": 3, "detected_at": updated}
        ],
    }


def settings_for(lake: Path) -> Settings:
    return get_settings().model_copy(update={"lake_root": lake})


def by_key(outcomes: list[CheckOutcome]) -> dict[tuple[str, str], CheckOutcome]:
    return {(o.asset, o.name): o for o in outcomes}


@pytest.fixture(scope="module", autouse=True)
def _no_recheck_delay() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(quality, "_settle", lambda: None)
        yield


@pytest.fixture(scope="module")
def clean(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], CheckOutcome]:
    lake = tmp_path_factory.mktemp("clean") / "lake"
    write_clean_lake(spark, lake)
    return by_key(run_checks(spark, settings_for(lake)))


def write_clean_lake(spark: SparkSession, lake: Path) -> None:
    """Every table, valid; payments with an invalid record, a resent event and records silver has not reached yet."""
    e1, e2, e4, e5 = pay("p-1"), pay("p-2", channel="pos"), pay("p-4", lat=48.1, lon=11.6), pay("p-5")
    write(
        spark,
        lake,
        BRONZE["payments"],
        [
            bronze_row("payments", 0, 0, T1, e1),
            bronze_row("payments", 0, 1, T1, e2),
            bronze_row("payments", 1, 0, T1, "{"),  # invalid: quarantined
            bronze_row("payments", 1, 1, T2, e1),  # the producer resent p-1: a duplicate
            bronze_row("payments", 0, 2, T2, e4),
            bronze_row("payments", 0, 3, T3, e5),  # the newest batch silver has seen
            bronze_row("payments", 2, 0, T4, pay("p-3")),  # not reached by silver yet
        ],
    )
    write(
        spark,
        lake,
        SILVER["payments"],
        [silver_row(e1, 0, 0, T1), silver_row(e2, 0, 1, T1), silver_row(e4, 0, 2, T2), silver_row(e5, 0, 3, T3)],
    )
    write(spark, lake, BRONZE["clickstream"], [bronze_row("clickstream", 0, o, T1, click(f"c-{o}")) for o in (0, 1)])
    write(spark, lake, SILVER["clickstream"], [silver_row(click(f"c-{o}"), 0, o, T1) for o in (0, 1)])
    write(spark, lake, BRONZE["iot"], [bronze_row("iot", 0, 0, T1, reading("i-0")), bronze_row("iot", 0, 1, T2, "x")])
    write(spark, lake, SILVER["iot"], [silver_row(reading("i-0"), 0, 0, T1)])
    write(spark, lake, QUARANTINE, [quarantine_row("payments", 1, 0), quarantine_row("iot", 0, 1)])
    for name, rows in gold_rows(NOW - timedelta(minutes=5)).items():
        write(spark, lake, GOLD[name], rows)


DIRTY_ASSETS = ["silver/payments", "gold/merchant_minute", "gold/page_minute"]


@pytest.fixture(scope="module")
def dirty(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], CheckOutcome]:
    lake = tmp_path_factory.mktemp("dirty") / "lake"
    write_dirty_lake(spark, lake)
    return by_key(run_checks(spark, settings_for(lake), DIRTY_ASSETS))


def write_dirty_lake(spark: SparkSession, lake: Path) -> None:
    """One defect per check; gold.page_minute missing."""
    events = {
        (0, 0): pay("p-1"),
        (0, 5): pay("p-1", amount=3.0),  # the same event_id twice in silver
        (0, 6): pay(None),  # a null key
        (0, 7): pay("p-7", channel="bitcoin"),  # outside the enum
        (0, 8): pay("p-8", amount=-5.0),  # below the minimum
        (0, 9): pay("p-9", amount=2_000_000.0),  # above the maximum
    }
    silver = [silver_row(e, p, o, T1) for (p, o), e in events.items()]
    silver += [silver_row(pay("p-10"), 0, 10, T2), silver_row(pay("p-11"), 4, 9, T1)]  # p-11: bronze never had 4/9
    bronze = [bronze_row("payments", p, o, T1, e) for (p, o), e in events.items()]
    bronze += [bronze_row("payments", 0, 10, T2, pay("p-10")), bronze_row("payments", 1, 3, T1, pay("p-lost"))]
    write(spark, lake, BRONZE["payments"], bronze)
    write(spark, lake, SILVER["payments"], silver)
    write(spark, lake, QUARANTINE, [quarantine_row("iot", 0, 0)])
    minutes = gold_rows(NOW - timedelta(hours=3), tx_count=-1)["merchant_minute"]  # stale, a negative count
    minutes[1]["merchant_id"] = "m1"  # the key (m1, WINDOW) twice
    write(spark, lake, GOLD["merchant_minute"], minutes)


def examples(o: CheckOutcome) -> list[dict[str, Any]]:
    ex: list[dict[str, Any]] = o.metadata["failing_examples"]
    return ex


# -- the declarations -------------------------------------------------------------------
def test_checks_cover_every_silver_and_gold_table() -> None:
    assets = {s.relative_path for s in SILVER.values()} | {g.relative_path for g in GOLD.values()}
    assert {c.asset for c in CHECKS} == assets
    names = {(c.asset, c.name) for c in CHECKS}
    assert len(names) == len(CHECKS), "a check is declared twice"
    for asset in assets:
        expected = {"keys_not_null", "keys_unique", "ranges_and_enums", "freshness"}
        if asset.startswith("silver/"):
            expected.add("reconciliation")
        assert {n for a, n in names if a == asset} == expected, asset
    for c in CHECKS:
        assert (c.severity, c.blocking) == (("WARN", False) if c.name == "freshness" else ("ERROR", True)), c
        assert c.description


def test_ranges_come_from_the_contracts_and_specs() -> None:
    desc = {(c.asset, c.name): c.description for c in CHECKS}
    assert "amount in [0..1000000]" in desc["silver/payments", "ranges_and_enums"]
    assert "channel in {web, pos, mobile}" in desc["silver/payments", "ranges_and_enums"]
    assert "battery_pct in [0..100]" in desc["silver/iot", "ranges_and_enums"]
    assert "score in [0..1]" in desc["gold/fraud_alerts", "ranges_and_enums"]
    assert "sensor_type in {temperature" in desc["gold/device_minute", "ranges_and_enums"]
    assert "amount_sum in [0..]" in desc["gold/merchant_minute", "ranges_and_enums"]
    assert "(merchant_id, window_start) unique" in desc["gold/merchant_minute", "keys_unique"]


def test_an_unknown_asset_is_an_error(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown asset"):
        run_checks(spark, settings_for(tmp_path), ["silver/nope"])


# -- clean data ------------------------------------------------------------------------
def test_clean_data_passes_every_check(clean: dict[tuple[str, str], CheckOutcome]) -> None:
    assert set(clean) == {(c.asset, c.name) for c in CHECKS}
    failed = {k: o.metadata for k, o in clean.items() if not o.passed}
    assert not failed
    json.dumps([o.metadata for o in clean.values()])  # what the UI gets


def test_a_resent_event_reconciles_as_a_duplicate(clean: dict[tuple[str, str], CheckOutcome]) -> None:
    md = clean["silver/payments", "reconciliation"].metadata
    # T1 and T2 rows are below the cutoff (T3, silver's newest): the T3 and T4 records are pending
    assert (md["bronze_rows"], md["silver_first_copies"], md["quarantined"], md["duplicates"]) == (5, 3, 1, 1)
    assert (md["lost"], md["extra"], md["bronze_rows_pending"]) == (0, 0, 2)
    assert md["cutoff"] == T3.isoformat()
    iot = clean["silver/iot", "reconciliation"].metadata  # the newest iot record silver handled was quarantined
    assert (iot["cutoff"], iot["bronze_rows"], iot["silver_first_copies"]) == (T2.isoformat(), 1, 1)


def test_passing_checks_carry_counts(clean: dict[tuple[str, str], CheckOutcome]) -> None:
    md = clean["silver/payments", "keys_unique"].metadata
    assert md["rows"] == 4
    assert md["unexpected_count"] == 0
    assert md["expectations"][0]["expectation"] == "expect_column_values_to_be_unique"
    fresh = clean["gold/merchant_minute", "freshness"].metadata
    assert 290 <= fresh["age_seconds"] < 3600


# -- one defect per check ----------------------------------------------------------------
def test_a_duplicate_key_fails_keys_unique(dirty: dict[tuple[str, str], CheckOutcome]) -> None:
    o = dirty["silver/payments", "keys_unique"]
    assert not o.passed
    assert o.metadata["unexpected_count"] == 2
    assert {e["value"] for e in examples(o)} == {"p-1"}
    assert {(e["row"]["_source_partition"], e["row"]["_source_offset"]) for e in examples(o)} == {(0, 0), (0, 5)}

    gold = dirty["gold/merchant_minute", "keys_unique"]
    assert not gold.passed
    assert {e["value"]["merchant_id"] for e in examples(gold)} == {"m1"}


def test_a_null_key_fails_keys_not_null(dirty: dict[tuple[str, str], CheckOutcome]) -> None:
    o = dirty["silver/payments", "keys_not_null"]
    assert not o.passed
    assert o.metadata["unexpected_count"] == 1
    assert examples(o)[0]["row"]["_source_offset"] == 6
    assert dirty["gold/merchant_minute", "keys_not_null"].passed


def test_values_outside_the_contract_fail_ranges_and_enums(dirty: dict[tuple[str, str], CheckOutcome]) -> None:
    o = dirty["silver/payments", "ranges_and_enums"]
    assert not o.passed
    assert {e["value"] for e in examples(o)} == {"bitcoin", -5.0, 2_000_000.0}
    assert len(o.metadata["failed_expectations"]) == 2  # amount, channel
    gold = dirty["gold/merchant_minute", "ranges_and_enums"]
    assert [e["value"] for e in examples(gold)] == [-1, -1]  # tx_count
    assert examples(gold)[0]["row"]["merchant_id"] == "m1"


def test_a_lost_bronze_record_fails_reconciliation(dirty: dict[tuple[str, str], CheckOutcome]) -> None:
    o = dirty["silver/payments", "reconciliation"]
    assert not o.passed
    md = o.metadata
    assert (md["lost"], md["extra"], md["rechecked"]) == (1, 1, True)
    assert md["extra_by_kind"]["silver_without_bronze"] == 1
    lost, extra = examples(o)
    assert lost == {
        "status": "lost",
        "topic": "payments",
        "partition": 1,
        "offset": 3,
        "ingested_at": T1.isoformat().replace("+00:00", ".000000Z"),
        "event_id": "p-lost",
    }
    assert (extra["status"], extra["partition"], extra["offset"]) == ("silver_without_bronze", 4, 9)


def test_a_record_quarantined_while_the_check_runs_is_not_lost(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Silver's MERGE of a micro-batch landed, its quarantine append lands only during the check."""
    lake = tmp_path / "lake"
    write(
        spark,
        lake,
        BRONZE["iot"],
        [
            bronze_row("iot", 0, 0, T1, reading("i-0")),
            bronze_row("iot", 0, 1, T1, "not json"),  # quarantined by the same micro-batch as i-2
            bronze_row("iot", 0, 2, T2, reading("i-2")),
        ],
    )
    write(spark, lake, SILVER["iot"], [silver_row(reading("i-0"), 0, 0, T1), silver_row(reading("i-2"), 0, 2, T2)])
    write(spark, lake, QUARANTINE, [])

    def quarantine_lands() -> None:
        struct = spark_schema(QUARANTINE)
        row = quarantine_row("iot", 0, 1)
        df = spark.createDataFrame([tuple(row[f.name] for f in struct.fields)], struct)
        df.write.format("delta").mode("append").save(QUARANTINE.path(lake))

    monkeypatch.setattr(quality, "_settle", quarantine_lands)
    md = quality._reconcile(spark, settings_for(lake), "iot").metadata
    assert (md["lost"], md["quarantined"], md["silver_first_copies"], md["rechecked"]) == (0, 1, 1, True)
    assert md["recheck_versions"]["quarantine"] == md["versions"]["quarantine"] + 1


def test_stale_rows_warn(dirty: dict[tuple[str, str], CheckOutcome]) -> None:
    o = dirty["gold/merchant_minute", "freshness"]
    assert (o.passed, o.severity) == (False, "WARN")
    assert o.metadata["age_seconds"] > 3 * 3600 - 60


def test_a_missing_table_fails_with_a_message(dirty: dict[tuple[str, str], CheckOutcome]) -> None:
    missing = [o for (asset, _), o in dirty.items() if asset == "gold/page_minute"]
    assert len(missing) == 4
    for o in missing:
        assert not o.passed
        assert "gold.page_minute does not exist" in o.metadata["error"]
    json.dumps([o.metadata for o in dirty.values()])


# -- the spark app -------------------------------------------------------------------------
def test_app_arguments() -> None:
    from spark_apps.quality import parse_args

    assert parse_args([]).assets is None
    assert parse_args(["--assets", "silver/payments, gold/fraud_alerts"]).assets == [
        "silver/payments",
        "gold/fraud_alerts",
    ]
    with pytest.raises(SystemExit) as exc:
        parse_args(["--assets", "silver/nope"])
    assert exc.value.code == 2


def test_app_reports_every_outcome(
    dirty: dict[tuple[str, str], CheckOutcome], capsys: pytest.CaptureFixture[str]
) -> None:
    from spark_apps._pipes import Reporter
    from spark_apps.quality import pipes_metadata, report

    calls: list[dict[str, Any]] = []

    class Recording(Reporter):
        def check(self, asset_key: str, check_name: str, **kw: Any) -> None:
            calls.append({"asset": asset_key, "name": check_name, **kw})

    report(list(dirty.values()), Recording(None))
    assert {(c["asset"], c["name"]) for c in calls} == set(dirty)
    unique = next(c for c in calls if (c["asset"], c["name"]) == ("silver/payments", "keys_unique"))
    assert (unique["passed"], unique["severity"]) == (False, "ERROR")
    assert unique["metadata"]["failing_examples"]["type"] == "json"
    assert pipes_metadata({"a": 1, "b": None, "c": [1]}) == {
        "a": 1,
        "b": {"raw_value": None, "type": "null"},
        "c": {"raw_value": [1], "type": "json"},
    }
    out = capsys.readouterr().out
    assert re.search(r"silver/payments +keys_unique +ERROR +FAIL +2 unexpected of 8 rows", out), out
    assert f"{len(dirty)} checks:" in out
