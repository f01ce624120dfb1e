"""A redis-server configured as the stack configures it refuses strangers and keeps each role to its job."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from lakehouse.cli.app import main
from lakehouse.settings import Settings, get_settings
from tests.redis_denial import refuses_strangers, roles_do_their_job_only


def test_redis_refuses_strangers(redis_settings: Settings, tmp_path: Path) -> None:
    refuses_strangers(redis_settings, tmp_path)


def test_redis_roles_do_their_job_only(redis_settings: Settings) -> None:
    roles_do_their_job_only(redis_settings)


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """The CLI's settings are cached per process: read them afresh, and leave no stale copy behind."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("fresh_settings")
def test_lakehouse_connect_says_how_each_role_reaches_redis(
    redis_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lakehouse connect ROLE --json` is enough to connect; without --json no password is printed."""
    s = redis_settings
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(s.state_dir))
    monkeypatch.setenv("LAKEHOUSE_REDIS_PORT", str(s.redis_port))
    for role, user in (("engineer", "admin"), ("analyst", "reader"), ("service", "reader")):
        result = CliRunner().invoke(main, ["connect", role, "--json"])
        assert result.exit_code == 0, result.output
        conf = json.loads(result.output)
        client = redis.Redis(**conf["redis"])
        assert client.acl_whoami() == user
        client.close()
        shown = CliRunner().invoke(main, ["connect", role])
        assert shown.exit_code == 0, shown.output
        assert s.secret(f"redis_{user}").get_secret_value() not in shown.output
        assert f"password_file      {s.secret_file(f'redis_{user}')}\n" in shown.output
    producer = json.loads(CliRunner().invoke(main, ["connect", "producer", "--json"]).output)
    assert "redis" not in producer
    assert set(producer) == {"kafka"}
    assert (producer["kafka"]["security_protocol"], producer["kafka"]["sasl_username"]) == ("SASL_SSL", "producer")
    assert producer["kafka"]["sasl_password"] == s.secret("kafka_producer").get_secret_value()
    assert CliRunner().invoke(main, ["connect", "root"]).exit_code == 2


def test_what_the_writer_wrote_survives_a_restart_from_the_append_only_file(tmp_path: Path) -> None:
    """Lua scripts' writes (every fraud alert) are replayed from the AOF as transactions: with `default`
    off, Redis 7.0 dropped them at EXEC on every restart."""
    import datetime as dt

    from lakehouse.serving import connect, writer
    from tests.unit.conftest import answers, free_port, private_redis_settings, start_private_redis, stop

    s = private_redis_settings(tmp_path, free_port())
    log = s.state_dir / "redis" / "redis.log"

    def start() -> subprocess.Popen[bytes]:
        proc = start_private_redis(s, persistent=True)
        assert answers(s, proc), f"redis-server did not answer; see {log}"
        return proc

    proc = start()
    row = {
        "event_id": "e-aof",
        "event_time": dt.datetime(2026, 12, 2, 3, 0),
        "user_id": "u-aof",
        "card_token": "t",
        "merchant_id": "m",
        "amount": 1.0,
        "rules": ["velocity"],
        "score": 0.5,
        "detected_at": dt.datetime(2026, 12, 2, 3, 0, 1),
    }
    try:
        assert writer.write_fraud_alerts(connect(s, role="writer"), [row]) == 1
        before = connect(s, role="reader").xlen("fraud:alerts")
        assert before == 1
    finally:
        stop(proc)
    proc = start()  # loads the append-only file
    try:
        assert connect(s, role="reader").xlen("fraud:alerts") == before
        assert connect(s, role="reader").hgetall("fraud:user:u-aof")["alert_count"] == "1"
        assert "DB loaded from append only file" in log.read_text()  # it did replay the file
        assert "NOPERM" not in log.read_text()
    finally:
        stop(proc)
