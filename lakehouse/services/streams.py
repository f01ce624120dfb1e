"""Launching the Spark apps with spark-submit, the same way locally and against a cluster."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import psutil

from lakehouse.delta.session import secret_conf_dir, spark_conf, standalone
from lakehouse.settings import PROJECT_ROOT, Settings, child_env

if TYPE_CHECKING:
    from lakehouse.settings import LakePath

#: The streams: each is one Spark app (``spark_apps/<name>.py``), one Dagster asset and job, one supervisor.
STREAMS = ("bronze", "refine", "serving")
#: The fraud fast path: a Flink job (``lakehouse.services.fastpath``), run and supervised like a stream.
FAST_PATH = "fastpath"
#: What ``lakehouse stream run`` can start: the streams, and ``all`` (bronze and refine in one driver).
APPS = {**{name: f"{name}.py" for name in STREAMS}, "all": "pipeline.py"}
#: Exit code of an app whose checkpoints another process holds (EX_TEMPFAIL): "already running".
ALREADY_RUNNING = 75
#: Exit code of an app that stopped because a disk under its lake or checkpoints is full (EX_IOERR).
DISK_FULL = 74
# Batch apps: launched the same way (spark-submit, Pipes), but they end by themselves.
BATCH_APPS = {"quality": "quality.py", "maintenance": "maintenance.py", "replay": "replay.py"}
# The benchmarks' baselines (`lakehouse bench`).
BENCH_APPS = {"bench_floor": "bench_floor.py", "bench_rtm": "bench_rtm.py"}


def app_path(name: str) -> Path:
    script = APPS.get(name) or BATCH_APPS.get(name) or BENCH_APPS.get(name)
    if script is None:
        raise ValueError(f"unknown stream {name!r}; choose one of {', '.join(APPS)}")
    return PROJECT_ROOT / "spark_apps" / script


def spark_submit(
    s: Settings,
    name: str,
    args: Sequence[str],
    master: str | None = None,
    java_options: Sequence[str] | None = None,
) -> list[str]:
    """The spark-submit command line for app NAME with ARGS, with the platform's jars and configuration.

    JAVA_OPTIONS are the driver's class-archive options (:func:`lakehouse.delta.cds.recording`);
    by default the archive is mapped when there is one.
    """
    from lakehouse.delta import cds as spark_cds

    s = spark_cds.with_options(s, spark_cds.driver_options(s) if java_options is None else list(java_options))
    conf = spark_conf(s, f"lakehouse-{name}", master)
    # The driver's own scratch directory is named after its own process, set by its session (not this one's).
    conf.pop("spark.local.dir")
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


def submit_command(
    s: Settings,
    name: str,
    available_now: bool,
    master: str | None = None,
    java_options: Sequence[str] | None = None,
) -> list[str]:
    """The spark-submit command line for one stream."""
    if name not in APPS:
        raise ValueError(f"unknown stream {name!r}; choose one of {', '.join(APPS)}")
    return spark_submit(s, name, ["--available-now" if available_now else "--continuous"], master, java_options)


def submit_env(s: Settings) -> dict[str, str]:
    """The driver runs this interpreter (the project's venv) on Java 17, bound to loopback. Secrets are
    read from the secrets directory by the app; only a PII key set in the settings (a secret manager's
    injection, which no file holds) is handed down, as the apps that tokenise need it."""
    injected = {"LAKEHOUSE_PII_HMAC_KEY": s.pii_hmac_key.get_secret_value()} if s.pii_hmac_key else {}
    return child_env(
        **s.to_env(),
        **injected,
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        JAVA_HOME=str(s.java17()),
        SPARK_LOCAL_IP=s.host,
        PYTHONPATH=str(PROJECT_ROOT),
        # A standalone master's shared secret, read by spark-submit from there (never an argument).
        **({"SPARK_CONF_DIR": str(secret_conf_dir(s))} if standalone(s.spark_master) else {}),
    )


# What stops a foreground run: a supervisor or service manager (TERM), Ctrl-C (INT), a closed terminal (HUP).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run(
    s: Settings, name: str, available_now: bool, master: str | None = None, on_line: Callable[[str], None] | None = None
) -> int:
    """Run an app in the foreground; return its exit code.

    The app runs in its own session, so a terminal's Ctrl-C does not reach its JVM (which
    would kill the queries mid-batch). Instead SIGTERM, SIGINT or SIGHUP to this process is
    forwarded as a graceful stop (:func:`stop_gracefully`), and the exit code is the app's:
    0 when it stopped cleanly. A second signal kills it at once. Either way nothing is left
    running to hold the checkpoint locks. Signals this process ignores (``nohup``) stay ignored.
    """
    from lakehouse.delta import cds as spark_cds

    with spark_cds.recording(s, ends_by_itself=available_now) as archive:
        cmd = submit_command(s, name, available_now, master, archive.options)
        code = run_process(s, cmd, name, app_preexec(s), on_line=on_line)
        archive.succeeded = code == 0
    return code


def run_process(
    s: Settings,
    cmd: list[str],
    name: str,
    preexec: Callable[[], None] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> int:
    """Run CMD (an app's process) in the foreground with the stop handling of :func:`run`; its exit code.

    PREEXEC runs in the child before it starts (default :func:`die_with_parent`); ON_LINE receives
    its stdout line by line (else the child writes to this process's stdout)."""
    env = submit_env(s)
    reader: threading.Thread | None = None
    with _StopSignals().installed() as stops:
        proc = subprocess.Popen(
            cmd,
            env=env,
            start_new_session=True,
            preexec_fn=preexec or die_with_parent,  # even a SIGKILL of this process stops the app (fork-safe)
            stdout=subprocess.PIPE if on_line is not None else None,
            text=True,
            errors="replace",
        )
        stops.proc = proc
        if on_line is not None:
            reader = threading.Thread(target=_pump, args=(proc, on_line), name=f"{name}-stdout", daemon=True)
            reader.start()
        try:
            while proc.poll() is None and not stops.received:
                time.sleep(0.1)
            if stops.received and proc.poll() is None:
                what = signal.Signals(stops.received[0]).name
                print(
                    f"received {what}: stopping {name} after its current micro-batch (signal again to kill it now)",
                    file=sys.stderr,
                    flush=True,
                )
                if len(stops.received) > 1:  # both arrived before the handler knew the process
                    stops.kill()
                stop_gracefully(proc)
                if len(stops.received) > 1:
                    again = signal.Signals(stops.received[-1]).name
                    print(f"received {again} while stopping: killed {name}", file=sys.stderr, flush=True)
        finally:
            if proc.poll() is None:  # leaving on an exception (a test's timeout, say): do not leave it behind
                stop_gracefully(proc)
            if reader is not None:
                reader.join(timeout=10)
    return proc.returncode


def _pump(proc: subprocess.Popen[str], on_line: Callable[[str], None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        on_line(line.rstrip("\n"))


class _StopSignals:
    """The stop signals received while an app runs in the foreground.

    The handler only records them: ``stop_gracefully`` blocks, so ``run``'s wait loop calls
    it, from the main thread, once it sees a signal. The one exception is a second signal,
    which kills the app's process group here and now, even while that stop is waiting.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.proc: subprocess.Popen[Any] | None = None

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if len(self.received) > 1:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    @contextlib.contextmanager
    def installed(self) -> Iterator[_StopSignals]:
        """Handle STOP_SIGNALS for the duration, then restore the previous handlers.

        Python handles signals in the main thread only; from another thread this does nothing.
        """
        previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                if signal.getsignal(sig) != signal.SIG_IGN:
                    previous[sig] = signal.signal(sig, self.handle)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                # None: a handler not installed from Python, which cannot be put back; the default is closest.
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def lock_path(s: Settings, app: str) -> LakePath:
    """The file a running app holds an ``flock`` on: one writer per checkpoint (spark_apps._runtime.exclusive)."""
    return s.checkpoint_dir / app / "_lock"


class AlreadyRunningError(RuntimeError):
    pass


@contextlib.contextmanager
def exclusive(s: Settings, apps: Sequence[str]) -> Iterator[None]:
    """Hold each app's checkpoint lock for the life of the process: one writer per checkpoint.

    Two drivers on one checkpoint (a catch-up launched while the stream runs, a second
    supervisor launch) would both commit the same batch ids. ``flock`` is released by the
    kernel when the process dies, even by SIGKILL, so a crash never leaves a stale lock.
    """
    from lakehouse.storage import is_s3

    if is_s3(s.checkpoint_dir):
        with _leased(s, apps):
            yield
        return
    handles = []
    try:
        for app in apps:
            path = lock_path(s, app)
            assert isinstance(path, Path), "checkpoints on the object store take a lease (_leased)"
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(path, "a+")  # noqa: SIM115 - held until the context exits
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                f.close()
                raise AlreadyRunningError(
                    f"stream {app} is already running (pid {holder}); its checkpoints under "
                    f"{path.parent} admit one writer. Stop it first: lakehouse stream stop {app}"
                ) from None
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            handles.append(f)
        yield
    finally:
        for f in handles:
            f.close()


@contextlib.contextmanager
def _leased(s: Settings, apps: Sequence[str]) -> Iterator[None]:
    """``exclusive`` for checkpoints on the object store: each app's lease (``lakehouse.services.lease``)."""
    from lakehouse.services.lease import LeaseTakenError, S3Lease

    held: list[S3Lease] = []
    try:
        for app in apps:
            lease = S3Lease(s, str(s.checkpoint_dir / app))
            try:
                lease.acquire()
            except LeaseTakenError as exc:
                raise AlreadyRunningError(
                    f"stream {app} is already running ({exc}); its checkpoints under {s.checkpoint_dir / app} admit "
                    f"one writer. Stop it first: lakehouse stream stop {app}"
                ) from None
            held.append(lease)
        yield
    finally:
        for lease in held:
            lease.release()


def held_locks(s: Settings) -> list[str]:
    """The apps whose checkpoint lock (or lease) exists, held or not."""
    from lakehouse.services.lease import LEASE_DIR
    from lakehouse.storage import is_s3

    pattern = f"*/{LEASE_DIR}" if is_s3(s.checkpoint_dir) else "*/_lock"
    return sorted({p.parent.name for p in s.checkpoint_dir.glob(pattern)})


#: The pushgateway job every streaming driver pushes its metrics under (``spark_apps._metrics``), one
#: group per app (``app=<name>``); and the checkpoint locks each app's driver holds while it runs.
METRICS_PUSH_JOB = "lakehouse_stream"
METRICS_APPS = {"bronze": ("bronze",), "refine": ("refine",), "serving": ("serving",), "pipeline": ("bronze", "refine")}


def forget_metrics(s: Settings, app: str) -> int:
    """Delete APP's metrics from the pushgateway and return how many series it held.

    A driver that ends cleanly deletes its own; a killed one leaves them (its heartbeat ages and
    LakehouseStreamDown pages) until a new driver of the app replaces them. For a stream that will not
    run again, this is how that page ends. Refused while a driver of APP runs."""
    import requests

    running = {lock: pid for lock in METRICS_APPS[app] if (pid := lock_holder(s, lock))}
    if running:
        raise RuntimeError(f"{app} is running ({running}): stop it first; a running driver pushes again anyway")
    base = f"{s.pushgateway_url}/metrics"
    text = requests.get(base, timeout=10, auth=s.http_auth(), verify=str(s.ca_file)).text
    held = sum(
        1
        for line in text.splitlines()
        if not line.startswith(("#", "push_"))  # push_time_seconds & co.: the pushgateway's own, per group
        and f'job="{METRICS_PUSH_JOB}"' in line
        and f'app="{app}"' in line
    )
    requests.delete(
        f"{base}/job/{METRICS_PUSH_JOB}/app/{app}", timeout=10, auth=s.http_auth("pusher"), verify=str(s.ca_file)
    ).raise_for_status()
    return held


def lock_holder(s: Settings, app: str) -> int | None:
    """The pid holding APP's checkpoint lock (a driver inside Dagster or not), or None when it is free.
    (With checkpoints on the object store: the lease holder's pid, which may be on another machine.)"""
    from lakehouse.storage import is_s3

    if is_s3(s.checkpoint_dir):
        from lakehouse.services.lease import S3Lease

        holder = S3Lease(s, str(s.checkpoint_dir / app)).holder()
        return None if holder is None else holder.pid
    path = lock_path(s, app)
    assert isinstance(path, Path)
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


def app_preexec(s: Settings) -> Callable[[], None]:
    """``preexec_fn`` of a Spark app: :func:`die_with_parent`, then the app's CPU niceness (``spark_nice``,
    inherited by its JVM and Python workers), so that under contention the micro-batch chain yields the CPU
    to the fraud fast path and the services. Both are system calls only: safe in the forked child."""
    nice = s.spark_nice

    def preexec() -> None:
        die_with_parent()
        if nice:
            os.nice(nice)

    return preexec


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


def stop_gracefully(proc: subprocess.Popen[Any], timeout: float = 120.0) -> int:
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
