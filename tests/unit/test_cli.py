from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lakehouse.cli.app import main

COMMANDS = ["setup", "up", "down", "status", "logs", "config", "sql", "smoke", "demo", "replay", "maintain", "check"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage: main" in result.output or "Usage: lakehouse" in result.output
    assert len(result.output.splitlines()) > 3


def test_python_m_lakehouse_cli_has_every_command() -> None:
    """`python -m lakehouse.cli` is the same command as the script (it once lost the groups
    registered by the modules cli.py imported at its bottom)."""
    out = subprocess.run(
        [sys.executable, "-m", "lakehouse.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    listed = {line.split()[0] for line in out.split("Commands:", 1)[1].splitlines() if line.strip()}
    assert listed == set(main.commands)
    assert {"stream", "redis", "serve", "trino", "bench", "generate", *COMMANDS} <= listed


def test_command_modules_never_import_the_app() -> None:
    """Only app.py assembles the command: a module it imports that imported it back would be a loop."""
    package = Path(__file__).parents[2] / "lakehouse" / "cli"
    for module in package.glob("*.py"):
        if module.name in ("app.py", "__main__.py"):
            continue
        imported = {
            node.module
            for node in ast.walk(ast.parse(module.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module is not None
        }
        assert "lakehouse.cli.app" not in imported, module.name


def _status_of_a_stopped_stack(monkeypatch: pytest.MonkeyPatch, state_dir: Path) -> Result:
    """`lakehouse status` on a stack in STATE_DIR that is not running."""
    # Ports nobody listens on, so nothing can be mistaken for a running service.
    for i, var in enumerate(["KAFKA", "KAFKA_CONTROLLER", "REDIS", "TRINO", "DAGSTER", "PROMETHEUS", "PUSHGATEWAY"]):
        monkeypatch.setenv(f"LAKEHOUSE_{var}_PORT", str(1 + i))
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(state_dir))
    from lakehouse.settings import get_settings

    get_settings.cache_clear()
    try:
        return CliRunner().invoke(main, ["status"])
    finally:
        get_settings.cache_clear()


def test_status_of_a_stopped_stack_exits_non_zero(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = _status_of_a_stopped_stack(monkeypatch, tmp_path)
    assert result.exit_code == 1
    assert "down" in result.output
    assert "kafka" in result.output


def test_status_says_a_component_stopped_on_a_full_disk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "kafka.log").write_text(
        "\n=== 2026-12-01 10:00:00 starting: java kafka.Kafka\n[..] ERROR No space left on device\n"
        "\n=== 2026-12-03 10:00:00 starting: java kafka.Kafka\n"
        "[..] ERROR Error while appending records to payments-3 in dir data\n"
        "java.io.IOException: No space left on device\n"
        "[..] ERROR Shutdown broker because all log dirs in data have failed\n"
    )
    (tmp_path / "logs" / "redis.log").write_text(  # an earlier run's full disk, not the last one's
        "\n=== 2026-12-01 10:00:00 starting: redis-server\nNo space left on device\n"
        "\n=== 2026-12-03 10:00:00 starting: redis-server\nReady to accept connections\n"
    )
    result = _status_of_a_stopped_stack(monkeypatch, tmp_path)
    assert result.exit_code == 1
    text = " ".join(result.output.split())  # the console wraps long lines
    assert text.count("stopped on a full disk") == 1, result.output
    assert "kafka: its last run stopped on a full disk (No space left on device" in text
    assert "then `lakehouse up kafka`" in text


def test_logs_of_an_unknown_component_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["logs", "zookeeper"])
    assert result.exit_code == 2
    assert "unknown component(s) zookeeper" in result.output


def test_maintain_and_check_pass_the_chosen_operations_to_the_spark_apps(monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.cli import streams as cli_stream

    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(cli_stream, "_foreground", lambda s, app, args, what: calls.append((app, args)))
    runner = CliRunner()
    assert (
        runner.invoke(main, ["maintain", "--optimize", "--checkpoint", "--tables", "gold/page_minute"]).exit_code == 0
    )
    assert runner.invoke(main, ["maintain", "--vacuum", "--retention-hours", "200"]).exit_code == 0
    assert runner.invoke(main, ["check", "--assets", "silver/iot"]).exit_code == 0
    assert calls == [
        ("maintenance", ["--optimize", "--checkpoint", "--tables", "gold/page_minute"]),
        ("maintenance", ["--vacuum", "--retention-hours", "200.0"]),
        ("quality", ["--assets", "silver/iot"]),
    ]


def test_replay_names_a_bad_date() -> None:
    result = CliRunner().invoke(main, ["replay", "--from", "2026-02-30", "--to", "2026-03-01"])
    assert result.exit_code == 2
    assert "'2026-02-30' is not a date" in result.output


def test_replay_backfill_launches_one_partition_per_date_and_says_where_to_watch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lakehouse.services import dagster_api as api

    launched: list[tuple[str, list[str], dict[str, object]]] = []

    def launch(s: object, job: str, dates: list[str], config: dict[str, object], *rest: object) -> str:
        launched.append((job, dates, config))
        return "abcdefgh"

    monkeypatch.setattr(api, "launch_backfill", launch)
    runner = CliRunner()
    result = runner.invoke(
        main, ["replay", "--from", "2026-02-27", "--to", "2026-03-02", "--backfill", "--layers", "gold"]
    )
    assert result.exit_code == 0, result.output
    assert launched == [
        (
            "replay_by_date",
            ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"],
            {"ops": {"replay_date": {"config": {"layers": ["gold"]}}}},
        )
    ]
    assert "4 date(s)" in result.output
    assert "/runs/b/abcdefgh" in result.output
    backwards = runner.invoke(main, ["replay", "--from", "2026-03-02", "--to", "2026-03-01", "--backfill"])
    assert backwards.exit_code == 2
    assert "--to 2026-03-01 is before --from 2026-03-02" in backwards.output
    both = runner.invoke(main, ["replay", "--from", "2026-03-01", "--to", "2026-03-01", "--backfill", "--dagster"])
    assert both.exit_code == 2
    assert "choose one of --dagster and --backfill" in both.output


def test_stream_commands_say_when_dagster_is_not_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_DAGSTER_PORT", "1")  # nothing listens there
    from lakehouse.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["stream", "enable", "refine"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "the Dagster webserver is not reachable: start the stack with `lakehouse up`" in result.output


def test_status_lists_each_running_stream_once_with_its_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A process holding several checkpoint locks (`all` holds bronze, silver and gold) is one stream row,
    with the resident memory of its process tree."""
    for i, var in enumerate(["KAFKA", "KAFKA_CONTROLLER", "REDIS", "TRINO", "DAGSTER", "PROMETHEUS", "PUSHGATEWAY"]):
        monkeypatch.setenv(f"LAKEHOUSE_{var}_PORT", str(1 + i))
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path))
    code = (
        "import time; from lakehouse.settings import Settings; from lakehouse.services.streams import exclusive\n"
        f"s = Settings(state_dir={str(tmp_path)!r})\n"
        "with exclusive(s, ['bronze', 'silver']):\n    print('locked', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    from lakehouse.settings import get_settings
    from lakehouse.stack.components import stream_memory

    get_settings.cache_clear()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        (held,) = stream_memory(get_settings())
        result = CliRunner().invoke(main, ["status", "--json"])
    finally:
        proc.kill()
        proc.wait()
        get_settings.cache_clear()
    assert (held.name, held.pid) == ("bronze, silver", proc.pid)
    assert held.rss_bytes > 1_000_000  # a Python interpreter is several MB resident
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["bronze, silver"]["state"] == "stream"
    assert rows["bronze, silver"]["pid"] == proc.pid
    assert rows["kafka"]["state"] == "down"
