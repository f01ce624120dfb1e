"""The fraud fast path in Dagster: its asset (whose run is the Flink job), job, supervisor and check.

Materializing ``fastpath_stream`` runs ``lakehouse stream run fastpath`` (one Flink JVM, see
``lakehouse/services/fastpath.py``) until the run is terminated: the run is the job's life, as
for the Spark streams, so ``lakehouse stream start|stop|status fastpath``, the run queue (one run
per ``lakehouse/stream`` value) and the supervisor ``supervise_fastpath`` work the same way. While
it runs, the op observes the job's consumer-group lag every ``OBSERVE_S`` seconds.

``fastpath_agrees_with_gold`` compares the fast path's verdicts (``fraud:fast:*`` in Redis) with
``gold.fraud_alerts`` (through Trino) over the last day of settled event time, and names every
difference. The job ``check_fastpath`` runs it; its schedule is off until switched on.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from lakehouse.services import fastpath, kafka, streams
from orchestration.defs.streaming.streams import STREAM_TAG
from orchestration.lib.config import SettingsRunConfig
from orchestration.lib.jobs import asset_job, schedule

FASTPATH_KEY = dg.AssetKey(["serving", "fraud_fast_path"])
OBSERVE_S = 15.0
STOP_TIMEOUT_S = 60.0


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _lag_metadata(s: Any) -> dict[str, Any]:
    try:
        lag = kafka.group_lag(s, fastpath.GROUP, fastpath.TOPIC)
    except Exception as e:  # Kafka unreachable: say so, never fail the run for an observation
        return {"lag_error": str(e)[:200]}
    return {k: v for k, v in lag.items() if v is not None} | {"group": fastpath.GROUP}


@dg.multi_asset(
    name=f"{fastpath.NAME}_stream",
    specs=[
        dg.AssetSpec(
            key=FASTPATH_KEY,
            deps=[dg.AssetKey(["kafka", fastpath.TOPIC])],
            group_name="serving",
            kinds={"flink", "redis"},
            owners=["team:data-platform"],
            description=(
                "The fraud fast path: Kafka `payments` -> fraud rules (contracts §3, the rules code gold runs) -> "
                "Redis `fraud:alerts` (entries with `path = fast`) and `fraud:user:*`, in one Flink job, within a "
                "second. Gold stays the system of record; `fastpath_agrees_with_gold` compares them."
            ),
        )
    ],
    op_tags={STREAM_TAG: fastpath.NAME},
    description="lakehouse stream run fastpath: one Flink JVM; a run is the job's life (until terminated).",
)
def fastpath_stream(context: dg.AssetExecutionContext, config: SettingsRunConfig) -> Iterator[Any]:
    s = config.resolve()
    log_dir = s.logs_dir / "runs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{context.run_id}-{fastpath.NAME}.log"
    cmd = [str(Path(sys.executable).parent / "lakehouse"), "stream", "run", fastpath.NAME]
    context.log.info(f"launching the fast path (log {log_path})")
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            env=streams.submit_env(s),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=streams.die_with_parent,
        )
    materialized = False
    last = 0.0
    try:
        while proc.poll() is None:
            time.sleep(0.5)
            if time.monotonic() - last < OBSERVE_S:
                continue
            last = time.monotonic()
            meta = _lag_metadata(s)
            if not materialized and "committed" in meta:  # its first checkpoint: it is up and writing
                materialized = True
                yield dg.MaterializeResult(asset_key=FASTPATH_KEY, metadata={**meta, "log": str(log_path)})
            else:
                context.log_event(dg.AssetObservation(asset_key=FASTPATH_KEY, metadata=meta))
    except BaseException:
        context.log.info("stop requested: stopping the fast path (its last checkpoint is kept)")
        _stop(proc)
        raise
    finally:
        if proc.poll() is None:
            _stop(proc)
    raise dg.Failure(
        description=f"the fast path ended without being asked to stop (exit {proc.returncode})",
        metadata={
            "exit_code": proc.returncode,
            "log": str(log_path),
            "log_tail": dg.MetadataValue.md("```\n" + _tail(log_path) + "\n```"),
        },
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the launcher (it stops the JVM and forgets its metrics); kill the group if it hangs."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dg.asset_check(
    asset=FASTPATH_KEY,
    name="fastpath_agrees_with_gold",
    description=(
        "The fast path's verdicts (Redis `fraud:fast:*`) equal gold.fraud_alerts, alert by alert (event, rules, "
        "score), over the last day of event time up to 5 minutes before gold's newest payment: names every "
        "alert missed, extra or different."
    ),
)
def fastpath_agrees_with_gold() -> dg.AssetCheckResult:
    from lakehouse.serving import connect
    from lakehouse.settings import get_settings

    s = get_settings()
    r = connect(s)
    try:
        result = fastpath.agreement(s, r)
    finally:
        r.close()
    if isinstance(result, str):
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, description=result)
    return dg.AssetCheckResult(
        passed=result.ok,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.message(),
        metadata={
            "agree": result.both,
            "gold_only": len(result.gold_only),
            "fast_only": len(result.fast_only),
            "different": len(result.different),
            "since": result.since.isoformat(),
            "until": result.until.isoformat(),
        },
    )


stream_fastpath = asset_job(
    f"stream_{fastpath.NAME}",
    dg.AssetSelection.assets(FASTPATH_KEY).without_checks(),
    "The fraud fast path (Flink), continuous: runs until stopped (`lakehouse stream stop fastpath`).",
    tags={STREAM_TAG: fastpath.NAME, "lakehouse/mode": "continuous"},
)
check_fastpath = asset_job(
    "check_fastpath",
    dg.AssetSelection.checks(fastpath_agrees_with_gold),
    "Compare the fast path's alerts with gold.fraud_alerts (fastpath_agrees_with_gold).",
    kind="quality",
)
check_fastpath_schedule = schedule(
    check_fastpath, "*/15 * * * *", "Every 15 minutes: does the fast path agree with gold?"
)
