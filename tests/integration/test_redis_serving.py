"""The serving stream (gold's change feed -> Redis) against the stack's real Redis, Spark and Delta.

It runs on the stack's own lake (the ``stack_lake`` fixture), as a deployment would, and
compares what a service reads (``lakehouse.serving.ServingClient``) with gold read by Spark.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import serving
from lakehouse.generator import GeneratorConfig, generate, produce
from lakehouse.services import streams
from lakehouse.serving import ServingClient
from lakehouse.settings import Settings
from lakehouse.stack import components as stack
from lakehouse.tables import GOLD

RECENT = timedelta(hours=23)  # keys live 24 h from their first write: compare what cannot have expired


def _serve(s: Settings) -> subprocess.CompletedProcess[str]:
    """The serving stream, available-now, in the foreground."""
    cmd = streams.submit_command(s, "serving", available_now=True)
    return subprocess.run(cmd, env=streams.submit_env(s), capture_output=True, text=True, check=False, timeout=900)


def _serve_in_background(s: Settings, available_now: bool, log_path: Path) -> subprocess.Popen[str]:
    with log_path.open("w") as log:
        return subprocess.Popen(
            streams.submit_command(s, "serving", available_now=available_now),
            env=streams.submit_env(s),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _wait_for(text: str, proc: subprocess.Popen[str], log_path: Path, timeout_s: float) -> None:
    """Until the app's log says TEXT; fails if it ends first or takes longer than TIMEOUT_S."""
    deadline = time.monotonic() + timeout_s
    while text not in log_path.read_text():
        assert proc.poll() is None, f"serving ended before saying {text!r}:\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"serving did not say {text!r} within {timeout_s:.0f} s"
        time.sleep(0.5)


def _gold(spark: SparkSession, s: Settings, table: str) -> DataFrame:
    return spark.read.format("delta").load(GOLD[table].path(s.lake_dir))


def _recent(df: DataFrame) -> DataFrame:
    since = (datetime.now(UTC) - RECENT).replace(tzinfo=None)
    return df.where(F.col("window_start") >= F.lit(since))


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC)


def _dump(r: redis.Redis) -> dict[str, Any]:
    """Every serving key with its content, and whether it has a TTL (its value ticks down by itself)."""
    out: dict[str, Any] = {}
    for pattern, exact in serving.SERVING_KEY_PATTERNS:
        for key in r.scan_iter(match=pattern, count=1000):
            if not exact.fullmatch(key):
                continue
            kind = r.type(key)
            if kind == "hash":
                value: Any = r.hgetall(key)
            elif kind == "zset":
                value = r.zrange(key, 0, -1, withscores=True)
            elif kind == "stream":
                value = r.xrange(key)
            else:
                value = (kind, r.dump(key))
            out[key] = (value, r.ttl(key) > 0)
    return out


@pytest.fixture(scope="module")
def served(stack_lake: Settings) -> Settings:
    """The stack's lake after the serving stream has caught up with gold (available-now)."""
    proc = _serve(stack_lake)
    assert proc.returncode == 0, f"serving failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return stack_lake


def test_redis_equals_gold_for_a_sample_of_every_key_family(served: Settings, spark: SparkSession) -> None:
    assert_redis_equals_gold(served, spark)


def assert_redis_equals_gold(s: Settings, spark: SparkSession) -> None:
    """Every key family, against gold read by Spark (what a service reads = the lake)."""
    client = ServingClient(serving.connect(s))

    merchants = _recent(_gold(spark, s, "merchant_minute")).orderBy(F.rand(7)).limit(200).collect()
    assert merchants, "gold.merchant_minute has no recent rows to compare"
    for row in merchants:
        got = client.merchant_minute(row["merchant_id"], row["window_start"])
        expected = {c: row[c] for c in serving.MERCHANT_MINUTE_COLUMNS}
        assert got == serving.MerchantMinute(**{**expected, "window_start": _utc(row["window_start"])}), (
            f"merchant {row['merchant_id']} {row['window_start']}"
        )

    # device:{id}:{sensor}:latest holds the newest window of each device and sensor.
    devices = _gold(spark, s, "device_minute")
    newest = devices.groupBy("device_id", "sensor_type").agg(F.max("window_start").alias("window_start"))
    latest = _recent(devices.join(newest, ["device_id", "sensor_type", "window_start"])).collect()
    assert latest, "gold.device_minute has no recent rows"
    for row in latest:
        got = client.device_latest(row["device_id"], row["sensor_type"])
        assert got is not None, f"no device:{row['device_id']}:{row['sensor_type']}:latest"
        assert got.window_start == _utc(row["window_start"])
        assert (got.readings, got.value_avg, got.value_min, got.value_max, got.anomalies) == (
            row["readings"],
            row["value_avg"],
            row["value_min"],
            row["value_max"],
            row["anomalies"],
        ), f"{row['device_id']} {row['sensor_type']}"

    # page:top:{window}: every page of the window with its views, most viewed first.
    pages = _recent(_gold(spark, s, "page_minute")).where("views IS NOT NULL").collect()
    by_window: dict[datetime, dict[str, int]] = defaultdict(dict)
    for row in pages:
        by_window[row["window_start"]][row["page"]] = row["views"]
    assert by_window, "gold.page_minute has no recent rows"
    for window, views in list(by_window.items())[:30]:
        top = client.top_pages(window, n=1000)
        assert {e.page: e.views for e in top.entries} == views, f"page:top at {window}"

    # fraud:alerts holds each gold alert exactly once; fraud:user:{id} summarises the user's alerts.
    alerts = _gold(spark, s, "fraud_alerts").collect()
    assert alerts, "gold.fraud_alerts is empty: the fixture injects every fraud pattern"
    stream = client.recent_fraud_alerts(n=serving.FRAUD_ALERTS_MAXLEN)
    in_redis = defaultdict(list)
    for a in stream:
        in_redis[a.event_id].append(a)
    per_user: dict[str, list[Any]] = defaultdict(list)
    for row in alerts:
        copies = in_redis.get(row["event_id"], [])
        assert len(copies) == 1, f"alert {row['event_id']} is in fraud:alerts {len(copies)} times"
        a = copies[0]
        assert (a.user_id, a.merchant_id, a.amount, a.score, a.rules, a.event_time) == (
            row["user_id"],
            row["merchant_id"],
            row["amount"],
            row["score"],
            tuple(row["rules"]),
            _utc(row["event_time"]),
        )
        per_user[row["user_id"]].append(row)
    for user, rows in per_user.items():
        summary = client.user_fraud(user)
        assert summary is not None, f"no fraud:user:{user}"
        last = max(rows, key=lambda r: (r["event_time"], r["event_id"]))
        assert (summary.alert_count, summary.last_alert_event_id, summary.last_score) == (
            len(rows),
            last["event_id"],
            last["score"],
        ), f"fraud:user:{user}"


def test_a_replayed_batch_leaves_redis_unchanged(served: Settings) -> None:
    """Drop the last commit of every serving query: Spark runs those batches again on restart."""
    s = served
    r = serving.connect(s, role="admin")
    before = _dump(r)
    assert before, "Redis holds no serving keys after the serving stream ran"
    replayed = {}
    for table in serving.SERVED_KEYS:
        commits = Path(s.checkpoint_dir) / "serving" / table / "commits"
        last = max(int(p.name) for p in commits.iterdir() if p.name.isdigit())
        (commits / str(last)).unlink()
        (commits / f".{last}.crc").unlink(missing_ok=True)  # Hadoop's checksum, or the rerun cannot commit
        replayed[table] = last
    proc = _serve(s)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for table, batch in replayed.items():
        assert f'"query": "serving_{table}", "batch_id": {batch},' in proc.stdout + proc.stderr, (
            f"serving_{table} did not run batch {batch} again"
        )
    after = _dump(r)
    assert after.keys() == before.keys()
    changed = [k for k in before if after[k] != before[k]]
    assert changed == [], f"{len(changed)} keys changed by a replayed batch, e.g. {changed[:5]}"


def test_redis_stopped_mid_stream_fails_the_batch_and_a_restart_on_a_full_redis_converges_with_nothing_lost(
    served: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    # A continuous serving stream that gives Redis 5 s per batch before failing.
    s = served.model_copy(update={"serving_retry_s": 5.0, "stream_trigger_interval": "2 seconds"})
    log_path = tmp_path / "serving.log"
    proc = _serve_in_background(s, False, log_path)
    try:
        _wait_for("4 queries started", proc, log_path, 180)
        stack.down(s, ["redis"], log=print)
        try:
            # Gold moves on while Redis is down: the lake does not depend on it.
            start = datetime.now(UTC).replace(microsecond=0, second=0) - timedelta(minutes=15)
            new = generate(GeneratorConfig(seed=72, count=300, rate=2, start_time=start, fraud_velocity=1))
            assert produce(new, s).failed == 0
            assert streams.run(s, "all", available_now=True) == 0
            code = proc.wait(timeout=300)
            output = log_path.read_text()
            assert code != 0, "the serving stream kept going without Redis"
            assert f"Redis at {s.host}:{s.redis_port} unreachable" in output
            assert "batch is replayed when the stream restarts" in output
        finally:
            stack.up(s, ["redis"], log=print)
    finally:
        if proc.poll() is None:
            streams.stop_gracefully(proc, 60)

    # What supervise_serving does after a failed run; and Redis full when it comes back: every write
    # refused with OOM (noeviction, so no key vanishes to make room). The restarted stream retries the
    # batch until an operator gives Redis room (LakehouseRedisFull's runbook), then converges.
    admin = serving.connect(s, role="admin")
    limit = admin.config_get("maxmemory")["maxmemory"]
    admin.config_set("maxmemory", max(1, int(admin.info("memory")["used_memory"]) - (1 << 20)))
    full_log = tmp_path / "serving-full.log"
    restarted: subprocess.Popen[str] | None = None
    try:
        patient = s.model_copy(update={"serving_retry_s": 300.0})
        restarted = _serve_in_background(patient, True, full_log)
        try:
            _wait_for("full (maxmemory", restarted, full_log, 240)
            assert "retrying" in full_log.read_text()
        finally:
            admin.config_set("maxmemory", limit)  # room again
        code = restarted.wait(timeout=600)
        assert code == 0, full_log.read_text()[-3000:]
    finally:
        admin.config_set("maxmemory", limit)
        if restarted is not None and restarted.poll() is None:
            streams.stop_gracefully(restarted, 60)

    client = ServingClient(serving.connect(s))
    rows = (
        _gold(spark, s, "merchant_minute").where(F.col("window_start") >= F.lit(start.replace(tzinfo=None))).collect()
    )
    assert rows, "the new events produced no gold rows"
    for row in rows:
        got = client.merchant_minute(row["merchant_id"], row["window_start"])
        assert got is not None, f"merchant {row['merchant_id']} {row['window_start']} missing after Redis came back"
        assert (got.tx_count, got.amount_sum, got.flagged_count) == (
            row["tx_count"],
            row["amount_sum"],
            row["flagged_count"],
        ), f"merchant {row['merchant_id']} {row['window_start']}"
    alerts = {a.event_id for a in client.recent_fraud_alerts(n=serving.FRAUD_ALERTS_MAXLEN)}
    gold_alerts = {r["event_id"] for r in _gold(spark, s, "fraud_alerts").select("event_id").collect()}
    assert gold_alerts <= alerts, f"alerts missing from Redis: {sorted(gold_alerts - alerts)[:5]}"


def test_rebuild_refills_redis_from_gold_after_it_lost_its_content(served: Settings, spark: SparkSession) -> None:
    s = served
    r = serving.connect(s, role="admin")
    r.set("not-a-serving-key", "kept")
    assert serving.flush_serving_keys(r) > 0  # Redis lost its content (a flush, a crash without AOF)
    r.hset(serving.merchant_minute_key("m-bogus", 0), mapping={"tx_count": "1"})  # and holds something stale
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "lakehouse"), "redis", "rebuild"],
        env=streams.submit_env(s),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Redis rebuilt from gold" in proc.stdout
    steps = [line for line in proc.stdout.splitlines() if line.startswith("[serving-rebuild] step ")]
    assert steps[0] == "[serving-rebuild] step 1/5: dropping the serving keys", steps  # its progress, in words
    assert steps[-1].startswith("[serving-rebuild] step 5/5: gold."), steps
    assert not r.exists(serving.merchant_minute_key("m-bogus", 0)), "the rebuild kept a key gold does not have"
    assert r.get("not-a-serving-key") == "kept", "the rebuild dropped a key that is not a serving key"
    assert_redis_equals_gold(s, spark)
