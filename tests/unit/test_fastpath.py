"""The fast path's launcher and its contract with the serving writer (no Flink here: see
tests/integration/test_fastpath.py for the job itself, and test_jvm_core.py for its rules)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from lakehouse.services import fastpath
from lakehouse.serving import connect, keys, write_fraud_alerts
from lakehouse.settings import Settings


def alert(event_id: str, rules: list[str], score: float, detected: int) -> dict[str, object]:
    return {
        "event_id": event_id,
        "event_time": datetime(2026, 11, 26, 10, 15, 1, 123000),
        "user_id": "u1",
        "card_token": "tok",
        "merchant_id": "m-1",
        "amount": 1.99,
        "rules": rules,
        "score": score,
        "detected_at": datetime(2026, 11, 26, 10, 15, detected),
    }


@pytest.fixture(scope="module")
def settings(redis_settings: Settings) -> Settings:
    return redis_settings


@pytest.fixture
def r(settings: Settings) -> Iterator[redis.Redis]:
    client = connect(settings, role="admin")
    client.flushall()
    yield client
    client.close()


def test_the_other_paths_equal_verdict_is_one_entry_a_different_one_replaces_it(r: redis.Redis) -> None:
    assert write_fraud_alerts(r, [alert("e1", ["card_testing"], 0.6, 2)], path=keys.FAST_PATH) == 1
    # gold's verdict arrives later (another detected_at): the same alert, nothing appended
    assert write_fraud_alerts(r, [alert("e1", ["card_testing"], 0.6, 40)]) == 0
    [(_, fields)] = r.xrange(keys.FRAUD_ALERTS_STREAM)
    assert (fields["path"], fields["detected_at"]) == ("fast", "2026-11-26T10:15:02.000000Z")
    # gold differs: its verdict replaces the fast path's, one entry still
    assert write_fraud_alerts(r, [alert("e1", ["card_testing", "velocity"], 0.8, 41)]) == 1
    [(_, fields)] = r.xrange(keys.FRAUD_ALERTS_STREAM)
    assert (fields["path"], fields["rules"], fields["score"]) == ("gold", '["card_testing","velocity"]', "0.8")
    assert r.hgetall(keys.fraud_user_key("u1"))["alert_count"] == "1"


def test_the_job_config_holds_no_secret_and_the_key_layout_of_the_writer(settings: Settings) -> None:
    s = settings.model_copy(update={"pii_hmac_key": SecretStr("pii-secret-1234")})
    text = json.dumps(fastpath.job_config(s))
    assert "pii-secret-1234" not in text
    for name in ("redis_writer", "redis_admin", "redis_reader", "pii_hmac_key"):
        secret = settings.secret(name).get_secret_value()
        assert secret not in text, name
    conf = fastpath.job_config(s)
    assert conf["pii_key_file"] == str(s.secret_file("pii_hmac_key"))
    assert (conf["redis"]["user"], conf["redis"]["password_file"], conf["redis"]["ca_file"]) == (
        "writer",
        str(s.secret_file("redis_writer")),
        str(s.ca_file),
    )
    conf = fastpath.job_config(s)["redis"]
    for prefix, key_of in (
        ("marker_prefix", keys.fraud_alert_marker_key),
        ("user_prefix", keys.fraud_user_key),
        ("user_alerts_prefix", keys.fraud_user_alerts_key),
        ("fast_prefix", keys.fraud_fast_alert_key),
    ):
        assert conf[prefix] + "x:1" == key_of("x:1"), prefix
    assert "fraud:fast:*" in [p for p, _ in keys.SERVING_KEY_PATTERNS]  # a rebuild from gold drops them too


def test_the_job_config_file_is_private_and_restores_the_newest_checkpoint(settings: Settings, tmp_path: Path) -> None:
    s = settings.model_copy(update={"state_dir": tmp_path, "checkpoint_root": tmp_path / "ckpt"})
    assert fastpath.latest_checkpoint(s) is None
    root = fastpath.checkpoint_dir(s)
    for job, n, complete in (("a", 3, True), ("b", 7, True), ("b", 8, False)):
        d = root / job / f"chk-{n}"
        d.mkdir(parents=True)
        if complete:
            (d / "_metadata").write_bytes(b"x")
        time.sleep(0.02)  # distinct mtimes
    assert fastpath.latest_checkpoint(s) == root / "b" / "chk-7"  # chk-8 has no _metadata: incomplete
    path = fastpath.write_job_config(s)
    assert os.stat(path).st_mode & 0o777 == 0o600
    flink = json.loads(path.read_text())["flink"]
    assert flink["execution.state-recovery.path"] == (root / "b" / "chk-7").resolve().as_uri()
    assert flink["execution.state-recovery.claim-mode"] == "CLAIM"  # the changelog backend cannot NO_CLAIM
    assert flink["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"


def test_compare_names_every_alert_missed_extra_or_different_inside_the_window() -> None:
    t = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    ct, both = (("card_testing",), 0.6), (("card_testing", "velocity"), 0.8)
    fast = {"same": (t, ct), "extra": (t, ct), "other": (t, ct), "before": (t - timedelta(hours=2), ct)}
    gold = {"same": (t, ct), "missed": (t, both), "other": (t, both), "after": (t + timedelta(hours=2), both)}
    a = fastpath.compare(fast, gold, t - timedelta(hours=1), t + timedelta(hours=1))
    assert (a.both, a.fast_only, a.gold_only, a.different) == (1, ["extra"], ["missed"], {"other": (ct, both)})
    assert not a.ok
    words = a.message()
    assert "1 in gold only (missed by the fast path): missed" in words
    assert "1 from the fast path only (not in gold): extra" in words
    assert "other fast ['card_testing'] 0.6 vs gold ['card_testing', 'velocity'] 0.8" in words
    assert fastpath.compare(fast, fast, t, t + timedelta(hours=1)).ok
