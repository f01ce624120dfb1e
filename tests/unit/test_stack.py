"""The stack manager's process handling, exercised on a small real process (python -m http.server)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lakehouse.settings import Settings
from lakehouse.stack import components as stack
from lakehouse.stack.components import (
    Component,
    PidFile,
    StackError,
    free_port,
    port_open,
    render,
    start_ticks,
)


class HttpServer(Component):
    """A stand-in service for the process machinery: a real child process with a real port."""

    def __init__(self, s: Settings, port: int) -> None:
        super().__init__(s, name="http", timeout_s=20)
        self._port = port

    def port(self) -> int:
        return self._port

    def command(self) -> list[str]:
        return [sys.executable, "-m", "http.server", str(self._port), "--bind", "127.0.0.1"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path)


def test_start_status_stop_leaves_no_process(settings: Settings) -> None:
    svc = HttpServer(settings, free_port())
    assert svc.start(print) == "started"
    proc = svc.process()
    assert proc is not None
    assert proc.is_running()
    assert svc.healthy()
    assert svc.rss_bytes() > 0
    assert svc.start(print) == "running", "a second start must be harmless"
    assert svc.stop() == "stopped"
    assert not psutil.pid_exists(proc.pid) or proc.status() == psutil.STATUS_ZOMBIE
    assert not port_open("127.0.0.1", svc.port())
    assert not svc.pidfile.path.exists()
    assert svc.stop() == "not running"


def test_stale_pid_file_of_a_dead_process_is_cleaned(settings: Settings) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pf = PidFile(settings.run_dir / "x.pid")
    pf.path.parent.mkdir(parents=True)
    pf.path.write_text(f'{{"pid": {dead.pid}, "create_time": 1.0}}')
    assert pf.process() is None
    assert not pf.path.exists()


def test_pid_reused_by_another_program_is_not_ours(settings: Settings) -> None:
    pf = PidFile(settings.run_dir / "x.pid")
    pf.path.parent.mkdir(parents=True)
    me = psutil.Process(os.getpid())
    pf.path.write_text(f'{{"pid": {me.pid}, "create_time": {me.create_time() - 3600}}}')
    assert pf.process() is None, "a pid whose start time differs belongs to someone else"
    pf.write(me)
    assert pf.process() is not None
    assert pf.process().pid == me.pid


def test_a_pid_file_survives_a_wall_clock_step(settings: Settings) -> None:
    """The wall clock is stepped or slewed under a running stack (create times move with it): the pid's start
    in ticks since boot decides, so a live service is not taken for a reused pid and its file kept."""
    me = psutil.Process(os.getpid())
    pf = PidFile(settings.run_dir / "x.pid")
    pf.write(me)
    data = json.loads(pf.path.read_text())
    assert data["start_ticks"] == start_ticks(me.pid)
    pf.path.write_text(json.dumps({**data, "create_time": data["create_time"] - 7.5}))  # the clock moved 7.5 s
    assert pf.process() is not None
    assert pf.path.exists()
    pf.path.write_text(json.dumps({**data, "start_ticks": data["start_ticks"] - 1}))  # another start: a reused pid
    assert pf.process() is None
    assert not pf.path.exists()


def test_garbage_pid_file_is_stale(settings: Settings) -> None:
    pf = PidFile(settings.run_dir / "x.pid")
    pf.path.parent.mkdir(parents=True)
    pf.path.write_text("not json")
    assert pf.process() is None
    assert not pf.path.exists()


def test_port_taken_by_a_stranger_is_reported(settings: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]

        class Picky(HttpServer):
            def healthy(self) -> bool:  # the stranger is not an HTTP server
                return False

        with pytest.raises(StackError, match=f"port {port} .* taken by a program this stack did not start"):
            Picky(settings, port).start(print)


def test_a_service_that_dies_at_start_reports_its_log(settings: Settings) -> None:
    class Crashes(HttpServer):
        def command(self) -> list[str]:
            return [sys.executable, "-c", "import sys; print('bad config: foo'); sys.exit(3)"]

    t0 = time.monotonic()
    with pytest.raises(StackError, match="bad config: foo"):
        Crashes(settings, free_port()).start(print)
    assert time.monotonic() - t0 < 15, "a dead process must be noticed without waiting out the timeout"


def test_a_start_rotates_a_large_log_and_says_why_the_last_run_stopped(settings: Settings) -> None:
    class Crashes(HttpServer):
        def command(self) -> list[str]:
            return [sys.executable, "-c", "import sys; print('write: No space left on device'); sys.exit(3)"]

    svc = Crashes(settings, free_port())
    settings.logs_dir.mkdir(parents=True)
    svc.logfile.write_bytes(b"old run\n" * 200)
    svc.rotate_log(max_bytes=1000)  # as start() does, here with a small limit
    assert (settings.logs_dir / "http.log.1").read_bytes() == b"old run\n" * 200
    assert not svc.logfile.exists()
    with pytest.raises(StackError, match="No space left on device"):
        svc.start(print)
    assert "stopped on a full disk" in svc.why_down()
    assert (settings.logs_dir / "http.log.1").read_bytes() == b"old run\n" * 200  # a small log is not rotated
    svc.logfile.write_text(svc.logfile.read_text() + "\n=== 2026-12-03 10:00:00 starting: x\nserving\n")
    assert svc.why_down() == ""  # only the last run counts


def test_render_fills_placeholders_and_rejects_missing_ones(tmp_path: Path) -> None:
    tpl = tmp_path / "t.conf"
    tpl.write_text("port=${port}\nhost=${host}\n")
    out = render(tpl, tmp_path / "out" / "t.conf", port=1, host="127.0.0.1")
    assert out.read_text() == "port=1\nhost=127.0.0.1\n"
    with pytest.raises(StackError, match="needs a value for 'host'"):
        render(tpl, tmp_path / "x.conf", port=1)


def test_every_infra_template_renders_with_what_the_stack_passes(settings: Settings) -> None:
    from lakehouse.stack import secrets

    settings.lake_dir.mkdir(parents=True)
    secrets.ensure(settings)
    for comp in (stack.Redis(settings), stack.Prometheus(settings)):
        comp.workdir.mkdir(parents=True)
        comp.prepare()
    conf = (settings.state_dir / "redis" / "redis.conf").read_text()
    assert "tls-port 6379" in conf
    assert "\nport 0\n" in conf  # no plaintext port
    acl = (settings.state_dir / "redis" / "users.acl").read_text()
    default = next(line for line in acl.splitlines() if line.startswith("user default "))
    assert " #" in default  # a password hash (of a password nobody has); never nopass
    assert "nopass" not in acl
    for role in ("admin", "writer", "reader"):
        assert settings.secret(f"redis_{role}").get_secret_value() not in acl + conf  # hashes only
    assert "127.0.0.1:9091" in (settings.state_dir / "prometheus" / "prometheus.yml").read_text()


def test_components_start_in_dependency_order(settings: Settings) -> None:
    names = [c.name for c in stack.components(settings)]
    for c in stack.components(settings):
        for dep in c.depends_on:
            assert names.index(dep) < names.index(c.name)
    with pytest.raises(StackError, match="unknown component"):
        stack.select(settings, ["kafak"])


def test_a_process_that_ignores_sigterm_is_killed(settings: Settings) -> None:
    port = free_port()

    class Stubborn(HttpServer):
        def command(self) -> list[str]:
            code = (
                "import signal, http.server, socketserver;"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                f"socketserver.TCPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler).serve_forever()"
            )
            return [sys.executable, "-c", code]

    svc = Stubborn(settings, port)
    assert svc.start(print) == "started"
    proc = svc.process()
    assert proc is not None
    assert svc.stop(grace_s=1.0) == "killed after SIGTERM timed out"
    assert not psutil.pid_exists(proc.pid) or proc.status() == psutil.STATUS_ZOMBIE
