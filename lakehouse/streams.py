"""Launching the Spark apps with spark-submit, the same way locally and against a cluster."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from lakehouse.settings import PROJECT_ROOT, Settings, child_env
from lakehouse.spark import spark_conf

APPS = {"bronze": "bronze.py", "silver": "silver.py", "gold": "gold.py", "serving": "serving.py", "all": "pipeline.py"}
# Batch apps: launched the same way (spark-submit, Pipes), but they end by themselves.
BATCH_APPS = {"quality": "quality.py", "maintenance": "maintenance.py", "replay": "replay.py"}


def app_path(name: str) -> Path:
    script = APPS.get(name) or BATCH_APPS.get(name)
    if script is None:
        raise ValueError(f"unknown stream {name!r}; choose one of {', '.join(APPS)}")
    return PROJECT_ROOT / "spark_apps" / script


def spark_submit(s: Settings, name: str, args: Sequence[str], master: str | None = None) -> list[str]:
    """The spark-submit command line for app NAME with ARGS, with the platform's jars and configuration."""
    conf = spark_conf(s, f"lakehouse-{name}", master)
    cmd = [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master",
        conf.pop("spark.master"),
        "--jars",
        conf.pop("spark.jars"),
        "--driver-memory",
        conf.pop("spark.driver.memory"),
    ]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    return [*cmd, str(app_path(name)), *args]


def submit_command(s: Settings, name: str, available_now: bool, master: str | None = None) -> list[str]:
    """The spark-submit command line for one stream."""
    if name not in APPS:
        raise ValueError(f"unknown stream {name!r}; choose one of {', '.join(APPS)}")
    return spark_submit(s, name, ["--available-now" if available_now else "--continuous"], master)


def submit_env(s: Settings) -> dict[str, str]:
    """The driver runs this interpreter (the project's venv) on Java 17, bound to loopback."""
    return child_env(
        **s.to_env(),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        JAVA_HOME=str(s.java17()),
        SPARK_LOCAL_IP=s.host,
        PYTHONPATH=str(PROJECT_ROOT),
    )


def run(s: Settings, name: str, available_now: bool, master: str | None = None) -> int:
    """Run an app in the foreground; return its exit code."""
    proc = subprocess.run(submit_command(s, name, available_now, master), env=submit_env(s), check=False)
    return proc.returncode


def lock_path(s: Settings, app: str) -> Path:
    """The file a running app holds an ``flock`` on: one writer per checkpoint (spark_apps._runtime.exclusive)."""
    return s.checkpoint_dir / app / "_lock"


def lock_holder(s: Settings, app: str) -> int | None:
    """The pid holding APP's checkpoint lock (a driver inside Dagster or not), or None when it is free."""
    import fcntl

    path = lock_path(s, app)
    if not path.exists():
        return None
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            text = f.read().strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


def die_with_parent() -> None:
    """``preexec_fn``: the kernel sends SIGTERM to spark-submit if its parent (a Dagster run worker) dies.

    Without it a run worker killed hard would leave an unsupervised driver holding the
    stream's checkpoint lock, and every restart would find the stream "already running".
    """
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def driver_processes(pid: int) -> list[psutil.Process]:
    """The Python driver(s) under a spark-submit process: the ones that handle a graceful stop.

    spark-submit starts a JVM, which starts the app's Python process. SIGTERM to the JVM
    would run its shutdown hooks and kill the queries mid-batch; SIGTERM to the Python
    driver makes it stop each query between two micro-batches (spark_apps._runtime).
    """
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for child in children:
        try:
            cmdline = child.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if any(part.endswith(".py") and "spark_apps" in part for part in cmdline) and "python" in child.name():
            out.append(child)
    return out


def stop_gracefully(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> int:
    """Ask the app to stop between micro-batches; kill its process group if it does not within TIMEOUT.

    Returns the exit code. The process must have been started with ``start_new_session=True``.
    """
    drivers = driver_processes(proc.pid)
    for d in drivers:
        with contextlib.suppress(psutil.NoSuchProcess):
            d.send_signal(signal.SIGTERM)
    if not drivers and proc.poll() is None:  # not started far enough to have a driver: stop the JVM
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()
