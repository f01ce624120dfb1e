from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lakehouse.cli import main

COMMANDS = ["setup", "up", "down", "status", "logs", "config", "sql", "smoke", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage: main" in result.output or "Usage: lakehouse" in result.output
    assert len(result.output.splitlines()) > 3


def test_status_of_a_stopped_stack_exits_non_zero(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Ports nobody listens on, so nothing can be mistaken for a running service.
    for i, var in enumerate(["KAFKA", "KAFKA_CONTROLLER", "REDIS", "TRINO", "DAGSTER", "PROMETHEUS", "PUSHGATEWAY"]):
        monkeypatch.setenv(f"LAKEHOUSE_{var}_PORT", str(1 + i))
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path))
    from lakehouse.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["status"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "down" in result.output
    assert "kafka" in result.output


def test_logs_of_an_unknown_component_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["logs", "zookeeper"])
    assert result.exit_code == 2
    assert "unknown component(s) zookeeper" in result.output
