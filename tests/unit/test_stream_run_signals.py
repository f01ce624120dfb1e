"""`lakehouse stream run` stopped by a signal: forwarded to the driver, nothing left running.

`streams.run` runs in a subprocess (it installs signal handlers for its process) on a fake
spark-submit: a parent process (the JVM) that starts a Python "driver" under ``spark_apps/``,
so `streams.driver_processes` finds it as it finds the real one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import psutil
import pytest

from lakehouse.services import streams
from lakehouse.settings import Settings

ROOT = Path(streams.__file__).resolve().parents[2]

# Like spark_apps._runtime.GracefulStop: SIGTERM ends the current micro-batch (DELAY s), then exit 0.
# "stuck" ignores SIGTERM: a batch that never ends.
DRIVER = """
import os, signal, sys, time
ready, mode = sys.argv[1], sys.argv[2]
def stop(signum, frame):
    time.sleep(0.5)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop if mode == "graceful" else signal.SIG_IGN)
with open(ready, "w") as f:
    f.write(str(os.getpid()))
time.sleep(60)
sys.exit(3)
"""
# The JVM: exits with the driver's code; a SIGTERM to it kills it (the real one kills the queries mid-batch).
SPARK_SUBMIT = """
import subprocess, sys
sys.exit(subprocess.call([sys.executable, *sys.argv[1:]]))
"""
# The CLI: streams.run on the fake spark-submit, with the signal dispositions of a foreground shell command.
RUNNER = """
import os, signal, sys
from lakehouse.services import streams
from lakehouse.settings import Settings
fake, driver, ready, mode, sighup = sys.argv[1:]
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGHUP, signal.SIG_IGN if sighup == "nohup" else signal.SIG_DFL)
streams.submit_command = lambda *a, **k: [sys.executable, fake, driver, ready, mode]
streams.submit_env = lambda s: dict(os.environ)
print(streams.run(Settings(), "bronze", available_now=False), flush=True)
"""


class Run:
    def __init__(self, proc: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.proc = proc
        self.out, self.err = out, err  # files, not pipes: an orphan holding a pipe would hang the test
        self.tree: list[psutil.Process] = []  # the fake spark-submit and its driver

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 10) -> tuple[int, str]:
        """The exit code `streams.run` returned, and what it printed on stderr."""
        self.proc.wait(timeout=timeout)
        err = self.err.read_text()
        assert self.proc.returncode == 0, f"the CLI process died (exit {self.proc.returncode}): {err}"
        return int(self.out.read_text().strip()), err

    def left_running(self) -> list[psutil.Process]:
        return [p for p in self.tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    (tmp_path / "spark_apps").mkdir()
    driver = tmp_path / "spark_apps" / "fake_app.py"
    driver.write_text(DRIVER)
    fake = tmp_path / "fake_spark_submit.py"
    fake.write_text(SPARK_SUBMIT)
    runs: list[Run] = []

    def _start(mode: str = "graceful", sighup: str = "default") -> Run:
        n = len(runs)
        ready, out, err = (tmp_path / f"{what}-{n}" for what in ("ready", "out", "err"))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-c", RUNNER, str(fake), str(driver), str(ready), mode, sighup],
                cwd=tmp_path,
                env=env,
                stdout=stdout,
                stderr=stderr,
            )
        run = Run(proc, out, err)
        runs.append(run)
        deadline = time.monotonic() + 20
        while not ready.exists() or not ready.read_text():
            assert proc.poll() is None, f"the runner exited early: {err.read_text()}"
            assert time.monotonic() < deadline, "the fake driver never started"
            time.sleep(0.05)
        (submit,) = psutil.Process(proc.pid).children()
        run.tree = [submit, *streams.driver_processes(submit.pid)]
        assert [p.pid for p in run.tree[1:]] == [int(ready.read_text())]
        return run

    yield _start
    for run in runs:  # a failed test must not leave its fakes behind either
        if run.proc.poll() is None:
            run.proc.kill()
        for p in run.left_running():
            with suppress(psutil.NoSuchProcess):
                p.kill()
        run.proc.wait(timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_is_forwarded_as_a_graceful_stop_and_nothing_is_left(
    start: Callable[..., Run], sig: signal.Signals
) -> None:
    run = start()
    run.signal(sig)
    code, err = run.finish()
    assert code == 0, err  # the driver's exit code: a supervisor sees a clean stop
    assert f"received {sig.name}: stopping bronze" in err
    assert run.left_running() == []


def test_a_second_signal_kills_a_driver_that_does_not_stop(start: Callable[..., Run]) -> None:
    run = start(mode="stuck")
    run.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert run.proc.poll() is None, "gave up on the graceful stop without being asked"
    assert len(run.left_running()) == 2
    run.signal(signal.SIGINT)
    code, err = run.finish()
    assert code == -signal.SIGKILL
    assert "received SIGINT while stopping: killed bronze" in err
    assert run.left_running() == []


def test_an_ignored_sighup_stays_ignored(start: Callable[..., Run]) -> None:
    """`nohup lakehouse stream run ...` survives the terminal closing."""
    run = start(sighup="nohup")
    run.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert run.proc.poll() is None
    assert len(run.left_running()) == 2
    run.signal(signal.SIGTERM)
    assert run.finish()[0] == 0
    assert run.left_running() == []


def test_run_returns_the_exit_code_and_restores_the_signal_handlers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = {sig: signal.getsignal(sig) for sig in streams.STOP_SIGNALS}
    monkeypatch.setattr(streams, "submit_env", lambda s: dict(os.environ))
    for code in (0, 3):
        monkeypatch.setattr(streams, "submit_command", lambda *a, c=code, **k: [sys.executable, "-c", f"exit({c})"])
        assert streams.run(Settings(state_dir=tmp_path), "bronze", available_now=True) == code
        assert {sig: signal.getsignal(sig) for sig in streams.STOP_SIGNALS} == before


@pytest.mark.parametrize("nice", [0, 10])
def test_a_spark_app_runs_at_its_niceness_and_the_fast_path_does_not(nice: int) -> None:
    """The micro-batch apps yield the CPU to the fast path and the services: their processes start
    ``spark_nice`` steps nicer than the launcher; run_process's default (the fast path's) keeps its own."""
    s = Settings(spark_nice=nice)
    probe = [sys.executable, "-c", "import os; print(os.nice(0))"]
    base = os.nice(0)

    def niceness(preexec: Callable[[], None]) -> int:
        return int(subprocess.run(probe, capture_output=True, text=True, check=True, preexec_fn=preexec).stdout)

    assert niceness(streams.app_preexec(s)) == min(base + nice, 19)
    assert niceness(streams.die_with_parent) == base
