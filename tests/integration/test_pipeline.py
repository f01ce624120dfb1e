"""The medallion pipeline against real Kafka, Spark and Delta, checked against the generator's ground truth.

Each test gets its own lake (a temporary LAKEHOUSE_LAKE_ROOT with its own checkpoints)
and starts reading Kafka at the offsets the topics had when it began, so it sees only
the records it produced, whatever else the broker holds.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.chaos.accounting import batch_gold
from lakehouse.contracts import TOPICS
from lakehouse.generator import GeneratorConfig, GroundTruth, generate, merge_ground_truths, produce
from lakehouse.services import streams
from lakehouse.services.kafka import end_offsets_json
from lakehouse.settings import PROJECT_ROOT, Settings, child_env
from lakehouse.storage import lake_path, parse_s3a
from lakehouse.tables import BRONZE, GOLD, LATE_EVENTS, QUARANTINE, SILVER


def _isolated(base: Settings, root: Path) -> Settings:
    """A private lake: under ROOT, or, when the stack's lake is on the object store (the cluster profile),
    under a prefix of its bucket of ROOT's name (checkpoints beside it, as the stack's are)."""
    lake: Path | str = root / "lake"
    if isinstance(base.lake_root, str):
        lake = f"s3a://{parse_s3a(base.lake_root).bucket}/tests/{root.parent.name}-{root.name}/lake"
    return base.model_copy(update={"lake_root": lake, "kafka_starting_offsets": end_offsets_json(base)})


def _run(s: Settings, name: str = "all") -> None:
    code = streams.run(s, name, available_now=True)
    assert code == 0, f"stream {name} failed with exit code {code}"


def _read(spark: SparkSession, s: Settings, spec: Any) -> DataFrame:
    return spark.read.format("delta").load(spec.path(s.lake_dir))


# --------------------------------------------------------------------------- the main scenario
@pytest.fixture(scope="module")
def pipeline_run(lakehouse_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, GroundTruth]:
    """Two phases through bronze, silver and gold (available-now), as a producer would send them:

    1. a seeded mix: every fraud pattern, anomalies, duplicates (some to another partition),
       out-of-order events and one invalid record of each kind;
    2. after the pipeline has caught up, events 20-60 minutes older than phase 1: late.
    """
    s = _isolated(lakehouse_stack, tmp_path_factory.mktemp("pipeline"))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    phase1 = generate(GeneratorConfig.every_fault(2400, seed=11, rate=10, start_time=start))
    summary = produce(phase1, s)
    assert summary.failed == 0
    _run(s)
    phase2 = generate(GeneratorConfig(seed=12, count=0, late=25, start_time=start))
    assert produce(phase2, s).failed == 0
    _run(s)
    return s, merge_ground_truths([phase1.truth, phase2.truth])


def test_bronze_holds_every_record_produced(spark: SparkSession, pipeline_run: tuple[Settings, GroundTruth]) -> None:
    s, truth = pipeline_run
    for t in TOPICS:
        bronze = _read(spark, s, BRONZE[t.name])
        assert bronze.count() == truth.summary[t.name]["sent"], t.name
        assert bronze.select("partition", "offset").distinct().count() == bronze.count(), "a record landed twice"


def test_silver_plus_quarantine_plus_duplicates_equals_bronze(
    spark: SparkSession, pipeline_run: tuple[Settings, GroundTruth]
) -> None:
    s, truth = pipeline_run
    quarantine = _read(spark, s, QUARANTINE)
    for t in TOPICS:
        expected = truth.summary[t.name]
        silver = _read(spark, s, SILVER[t.name])
        silver_n = silver.count()
        quarantined = quarantine.where(F.col("topic") == t.name).count()
        assert silver.select("event_id").distinct().count() == silver_n, f"{t.name}: duplicate event_id in silver"
        assert silver_n == expected["valid_unique"], t.name
        assert quarantined == expected["invalid_total"], t.name
        assert (
            silver_n + quarantined + expected["duplicates"]
            == expected["sent"]
            == _read(spark, s, BRONZE[t.name]).count()
        )
        truth_ids = {r["event_id"] for r in truth.records if r["topic"] == t.name and r["kind"] in ("valid", "late")}
        assert {r[0] for r in silver.select("event_id").collect()} == truth_ids


def test_each_invalid_record_is_quarantined_with_a_reason_naming_its_field(
    spark: SparkSession, pipeline_run: tuple[Settings, GroundTruth]
) -> None:
    s, truth = pipeline_run
    errors = [r[0] for r in _read(spark, s, QUARANTINE).select("error").collect()]
    expected = Counter(r["field"] or "value" for r in truth.records if r["kind"] == "invalid")
    named = Counter(e.split(":", 1)[0] for e in errors)
    assert named == expected


def test_cards_are_tokenised_and_unknown_fields_kept(
    spark: SparkSession, pipeline_run: tuple[Settings, GroundTruth]
) -> None:
    s, truth = pipeline_run
    payments = _read(spark, s, SILVER["payments"])
    assert "card_number" not in payments.columns
    clear = {p["card_number"] for p in truth.payments}
    rows = payments.select("card_token", "card_last4").distinct().collect()
    assert all(len(r["card_token"]) == 64 and r["card_token"] not in clear for r in rows)
    assert {r["card_last4"] for r in rows} == {c[-4:] for c in clear}
    extra = sum(_read(spark, s, SILVER[t.name]).where(F.col("_extra").isNotNull()).count() for t in TOPICS)
    assert extra == truth.summary["total"]["extra_fields"]


def test_late_events_are_kept_in_silver_counted_and_not_in_gold(
    spark: SparkSession, pipeline_run: tuple[Settings, GroundTruth]
) -> None:
    s, truth = pipeline_run
    late_truth = {r["event_id"] for r in truth.records if r["kind"] == "late"}
    assert len(late_truth) == 25
    late = _read(spark, s, LATE_EVENTS)
    assert {r[0] for r in late.select("event_id").collect()} == late_truth
    assert late.where(F.col("window_start") + F.expr("INTERVAL 1 MINUTE") > F.col("watermark")).count() == 0


@pytest.mark.parametrize("table", ["merchant_minute", "page_minute", "device_minute"])
def test_gold_minute_tables_equal_a_batch_recomputation_over_silver(
    spark: SparkSession, pipeline_run: tuple[Settings, GroundTruth], table: str
) -> None:
    s, _ = pipeline_run
    expected = batch_gold(spark, s)[table]
    spec = GOLD[table]
    cols = expected.columns
    got = {tuple(r[k] for k in spec.keys): r.asDict() for r in _read(spark, s, spec).select(*cols).collect()}
    want = {tuple(r[k] for k in spec.keys): r.asDict() for r in expected.collect()}
    assert got.keys() == want.keys()
    assert len(want) > 10
    for key, w in want.items():
        g = got[key]
        for col in cols:
            if col == "sessions":
                assert abs(g[col] - w[col]) <= 0.05 * w[col], (key, col, g[col], w[col])
            elif isinstance(w[col], float):
                assert g[col] == pytest.approx(w[col], rel=1e-9, abs=1e-9), (key, col)
            else:
                assert g[col] == w[col], (key, col, g[col], w[col])


def test_fraud_alerts_equal_the_ground_truth(spark: SparkSession, pipeline_run: tuple[Settings, GroundTruth]) -> None:
    s, truth = pipeline_run
    got = {
        r["event_id"]: {"rules": list(r["rules"]), "score": r["score"]}
        for r in _read(spark, s, GOLD["fraud_alerts"]).collect()
    }
    assert got == truth.expected_fraud_alerts
    fired = {rule for a in got.values() for rule in a["rules"]}
    assert fired == {"card_testing", "velocity", "amount_spike", "impossible_travel"}


def test_device_anomalies_match_the_injected_ones(
    spark: SparkSession, pipeline_run: tuple[Settings, GroundTruth]
) -> None:
    s, truth = pipeline_run
    total = _read(spark, s, GOLD["device_minute"]).agg(F.sum("anomalies")).first()
    assert total is not None
    assert total[0] == truth.summary["iot"]["anomalies"]


# --------------------------------------------------------------------------- crash and restart
def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _mentions(p: psutil.Process, text: str) -> bool:
    """Whether P runs and its command line or environment mentions TEXT (a driver's lake is in LAKEHOUSE_LAKE_ROOT)."""
    try:
        return _alive(p) and (any(text in a for a in p.cmdline()) or any(text in v for v in p.environ().values()))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def test_sigterm_to_stream_run_stops_the_driver_and_leaves_nothing_running(
    lakehouse_stack: Settings, tmp_path: Path
) -> None:
    """A supervisor's SIGTERM to `lakehouse stream run bronze --continuous` (the CLI process only):
    a clean exit, and no orphaned Spark JVM or driver left holding the checkpoint lock."""
    s = _isolated(lakehouse_stack, tmp_path)
    assert produce(generate(GeneratorConfig(seed=31, count=30, rate=10)), s).failed == 0
    fast = s.model_copy(update={"stream_trigger_interval": "1 second"})
    log = tmp_path / "stream-run.log"
    with log.open("wb") as out:
        cli = subprocess.Popen(
            [sys.executable, "-m", "lakehouse.cli", "stream", "run", "bronze", "--continuous"],
            env=child_env(**fast.to_env(), PYTHONPATH=str(PROJECT_ROOT)),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    tree: list[psutil.Process] = []
    try:
        logs = [lake_path(s, BRONZE[t.name].path(s.lake_dir)) / "_delta_log" for t in TOPICS]

        def committed() -> bool:
            return any(next(d.glob("*.json"), None) for d in logs)

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not committed():
            assert cli.poll() is None, f"the stream exited before it was stopped:\n{log.read_text()}"
            time.sleep(0.5)
        assert committed(), "the bronze query never committed a batch"
        tree = psutil.Process(cli.pid).children(recursive=True)
        assert streams.lock_holder(s, "bronze") in {p.pid for p in tree}, "the driver does not hold the lock"

        cli.send_signal(signal.SIGTERM)
        code = cli.wait(timeout=180)
        assert code == 0, f"exit {code}:\n{log.read_text()}"
        assert "received SIGTERM: stopping bronze" in log.read_text()
        _, alive = psutil.wait_procs(tree, timeout=30)
        assert [p for p in alive if _alive(p)] == [], "processes left behind"
        assert [p.pid for p in psutil.process_iter() if _mentions(p, str(tmp_path))] == []
        assert streams.lock_holder(s, "bronze") is None
    finally:  # whatever failed above, leave nothing running
        if cli.poll() is None:
            cli.kill()
        for p in [*tree, *(p for p in psutil.process_iter() if _mentions(p, str(tmp_path)))]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        cli.wait(timeout=30)
