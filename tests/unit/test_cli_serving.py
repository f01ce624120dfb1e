"""`lakehouse redis …` and `lakehouse serve get …` against a real redis-server of the test's own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import click
import pytest
import redis
from click.testing import CliRunner

from lakehouse.cli.app import main
from lakehouse.cli.serving import parse_time
from lakehouse.settings import Settings, get_settings
from tests.unit.conftest import free_port
from tests.unit.test_serving import ALERTS, DEVICES, MERCHANTS, T0, T0_EPOCH, write_all
from tests.unit.test_serving import settings as settings


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    monkeypatch.setenv("LAKEHOUSE_REDIS_PORT", str(settings.redis_port))
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(settings.state_dir))  # the private Redis's CA and passwords
    get_settings.cache_clear()
    from lakehouse.serving import connect

    r = connect(settings, role="admin", decode_responses=False)
    r.flushall()
    write_all(r)
    yield r
    r.close()
    get_settings.cache_clear()


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args))


def test_parse_time_takes_iso_naive_utc_and_epoch() -> None:
    assert parse_time("2026-11-26T10:15:00Z") == datetime(2026, 11, 26, 10, 15, tzinfo=UTC)
    assert parse_time("2026-11-26T11:15:00+01:00") == datetime(2026, 11, 26, 10, 15, tzinfo=UTC)
    assert parse_time("2026-11-26 10:15") == datetime(2026, 11, 26, 10, 15, tzinfo=UTC)
    assert parse_time(str(T0_EPOCH)) == T0.replace(tzinfo=UTC)
    with pytest.raises(click.BadParameter, match="expected ISO-8601"):
        parse_time("yesterday")


@pytest.mark.parametrize("command", [["redis", "--help"], ["redis", "rebuild", "--help"], ["serve", "get", "--help"]])
def test_serving_commands_explain_themselves(command: list[str]) -> None:
    result = run(*command)
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) > 3


def test_serve_get_reads_each_key_family(cli_env: redis.Redis) -> None:
    since = str(T0_EPOCH)
    merchant = run(
        "serve", "get", "merchant", "m-1", "--since", since, "--minutes", "5", "--until", str(T0_EPOCH + 300), "--json"
    )
    assert merchant.exit_code == 0, merchant.output
    rows = json.loads(merchant.output)
    assert [(r["window_start"], r["tx_count"]) for r in rows] == [
        ("2026-11-26T10:15:00Z", MERCHANTS[0]["tx_count"]),
        ("2026-11-26T10:16:00Z", MERCHANTS[1]["tx_count"]),
    ]
    device = json.loads(run("serve", "get", "device", "d-1", "temperature", "--json").output)
    assert device[0]["window_start"] == "2026-11-26T10:16:00Z"
    assert device[0]["readings"] == DEVICES[1]["readings"]
    pages = json.loads(run("serve", "get", "pages", "--minute", since, "--json").output)
    assert pages["entries"] == [{"page": "/home", "views": 10}, {"page": "/cart", "views": 4}]
    newest = json.loads(run("serve", "get", "pages", "--json").output)  # default: the newest window in Redis
    assert newest["window_start"] == "2026-11-26T10:16:00Z"
    assert newest["entries"] == [{"page": "/home", "views": 7}]
    alerts = json.loads(run("serve", "get", "alerts", "-n", "2", "--json").output)
    assert len(alerts) == 2
    assert {a["event_id"] for a in alerts} <= {a["event_id"] for a in ALERTS}
    user = json.loads(run("serve", "get", "user", "u1", "--json").output)
    assert user == [{"user_id": "u1", "last_alert_event_id": "e2", "last_score": 0.9, "alert_count": 3}]
    table = run("serve", "get", "merchant", "m-1", "--since", since, "--until", str(T0_EPOCH + 300))
    assert table.exit_code == 0
    assert "merchant m-1" in table.output
    assert "99.99" in table.output


def test_serve_get_says_when_there_is_nothing(cli_env: redis.Redis) -> None:
    result = run("serve", "get", "user", "nobody")
    assert result.exit_code == 0
    assert "no fraud alerts for user nobody" in result.output


def test_redis_keys_counts_each_family(cli_env: redis.Redis) -> None:
    result = run("redis", "keys")
    assert result.exit_code == 0, result.output
    assert "page:top:*" in result.output  # printed literally (not as an emoji)
    assert "fraud:alerts stream length 5" in result.output


def test_an_unreachable_redis_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_REDIS_PORT", str(free_port()))
    get_settings.cache_clear()
    try:
        result = run("serve", "get", "alerts")
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "is not reachable" in result.output
    assert "lakehouse up redis" in result.output
    assert "Traceback" not in result.output
