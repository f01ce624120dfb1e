"""Running the Spark apps for a benchmark: the platform's spark-submit command, output kept in a log."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lakehouse.bench.load import Batch, BenchError, parse_progress
from lakehouse.services import streams
from lakehouse.settings import Settings


@dataclass(frozen=True)
class AppRun:
    name: str
    seconds: float  # wall time of the whole spark-submit, JVM start included
    batches: list[Batch]
    log: Path


def run_app(s: Settings, name: str, args: Sequence[str], log: Path) -> AppRun:
    """Run app NAME to completion (stdout and stderr to LOG); fail with the log's tail if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = streams.spark_submit(s, name, list(args))
    t0 = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(
            cmd,
            env=streams.submit_env(s),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            preexec_fn=streams.app_preexec(s),
        ).returncode
    seconds = time.perf_counter() - t0
    lines = log.read_text(errors="replace").splitlines()
    if code != 0:
        tail = "\n".join(line for line in lines[-40:] if not line.startswith("\tat "))[-3000:]
        raise BenchError(f"{name} {' '.join(args)} failed (exit {code}); log {log}:\n{tail}")
    return AppRun(name, seconds, parse_progress(lines), log)


def start_app(s: Settings, name: str, args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """Start app NAME in the background (its own session, output to LOG); stop it with streams.stop_gracefully."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "w")  # noqa: SIM115 - owned by the child for its life
    return subprocess.Popen(
        streams.spark_submit(s, name, list(args)),
        env=streams.submit_env(s),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=streams.app_preexec(s),
    )
