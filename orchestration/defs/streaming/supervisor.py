"""The supervisor: one sensor per stream keeps a switched-on continuous stream running.

Switch a stream on or off with ``lakehouse stream enable|disable NAME`` or the sensor's
toggle in the UI (Automation → ``supervise_<layer>``). On every tick the sensor:

- does nothing while a run of the stream (or a catch-up of the same layer, which holds
  the same checkpoints) is queued or running: two copies never run (the run queue also
  limits the ``lakehouse/stream`` tag to one run per value, and the app itself holds a
  lock on its checkpoints);
- launches a run when there is none, or when the last one ended;
- after a failure (a crashed or killed driver, or a run worker that vanished, which
  Dagster's run monitoring marks failed) waits ``supervisor_backoff_s`` doubling per
  consecutive failure, up to ``supervisor_max_backoff_s``, and gives up after
  ``supervisor_max_restarts`` consecutive quick failures;
- reports every (re)start in the sensor log and on the run's tags;
- restarts with the last run's configuration, so settings overrides survive a restart.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg
from dagster_prometheus import PrometheusResource

from lakehouse.delta.log_check import DELTA_LOG_DAMAGED
from lakehouse.services import fastpath
from lakehouse.services.checkpoints import CHECKPOINT_DAMAGED
from lakehouse.services.retention import DATA_LOST
from lakehouse.settings import Settings, get_settings
from orchestration.defs.streaming.fastpath import stream_fastpath
from orchestration.defs.streaming.streams import IN_PROGRESS, LAYERS, STREAM_TAG, stream_jobs
from orchestration.lib.metrics import push_gave_up, push_restart
from orchestration.lib.spark import EXIT_CODE_TAG

if TYPE_CHECKING:  # what define_asset_job returns; `dagster` does not export the name
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


@dataclass(frozen=True)
class PastRun:
    run_id: str
    status: dg.DagsterRunStatus
    start_time: float | None
    end_time: float | None
    exit_code: int | None = None  # the app's, for a failed run (run tag lakehouse/exit_code)


@dataclass(frozen=True)
class Decision:
    launch: bool
    reason: str
    restart: int = 0  # consecutive failures this launch follows (0: not a recovery)
    gave_up: bool = False


def decide(layer: str, runs: Sequence[PastRun], busy: Sequence[PastRun], now: float, s: Settings) -> Decision:
    """What the supervisor does for LAYER, from its stream runs (newest first) and any run in progress."""
    if busy:
        return Decision(False, f"{layer} is running (run {busy[0].run_id[:8]}, {busy[0].status.value})")
    if not runs:
        return Decision(True, f"starting {layer}: no run yet")
    last = runs[0]
    failures = 0
    for r in runs:
        if r.status != dg.DagsterRunStatus.FAILURE:
            break
        failures += 1
        if r.start_time and r.end_time and r.end_time - r.start_time >= s.supervisor_stable_s:
            break  # it ran long enough: what failed before it is history
    if last.status == dg.DagsterRunStatus.FAILURE and last.exit_code == DATA_LOST:
        return Decision(
            False,
            f"{layer} stopped because Kafka deleted records it had not read (run {last.run_id[:8]}): a restart "
            "would stop the same way; `lakehouse stream skip-lost` (docs/runbook.md, LakehouseKafkaRecordsLost)",
        )
    damaged = {
        CHECKPOINT_DAMAGED: "a checkpoint file it needs is damaged",
        DELTA_LOG_DAMAGED: "a commit in the Delta log of a table it reads or writes is damaged",
    }
    if last.status == dg.DagsterRunStatus.FAILURE and last.exit_code in damaged:
        section = "A damaged checkpoint" if last.exit_code == CHECKPOINT_DAMAGED else "A damaged Delta commit"
        return Decision(  # a restart would stop the same way; the page says a person is needed
            False,
            f"gave up on {layer}: {damaged[last.exit_code]} (run {last.run_id[:8]}; its log names the "
            f"file); docs/runbook.md, '{section}'",
            restart=failures,
            gave_up=True,
        )
    if failures == 0:
        return Decision(True, f"restarting {layer}: its last run {last.run_id[:8]} ended ({last.status.value})")
    if failures > s.supervisor_max_restarts:
        return Decision(
            False,
            f"gave up on {layer} after {failures} consecutive failures (last: run {last.run_id[:8]}); "
            f"fix the cause, then start it once (`lakehouse stream start {layer}`)",
            restart=failures,
            gave_up=True,
        )
    backoff = min(s.supervisor_max_backoff_s, s.supervisor_backoff_s * 2 ** (failures - 1))
    waited = now - (last.end_time or now)
    if waited < backoff:
        return Decision(
            False, f"{layer} failed (run {last.run_id[:8]}): restart #{failures} in {backoff - waited:.0f}s"
        )
    return Decision(True, f"restarting {layer} after failure #{failures} (run {last.run_id[:8]})", restart=failures)


def _past(records: Sequence[dg.RunRecord]) -> list[PastRun]:
    return [
        PastRun(r.dagster_run.run_id, r.dagster_run.status, r.start_time, r.end_time, _exit_code(r.dagster_run.tags))
        for r in records
    ]


def _exit_code(tags: Mapping[str, str]) -> int | None:
    code = tags.get(EXIT_CODE_TAG, "")
    return int(code) if code.lstrip("-").isdigit() else None


def _supervisor(layer: str, job: dg.JobDefinition | UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"supervise_{layer}",
        job=job,
        minimum_interval_seconds=10,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Keeps the continuous {layer} stream running while switched on, restarting it with backoff.",
    )
    def _sensor(context: dg.SensorEvaluationContext, prometheus: PrometheusResource) -> dg.SensorResult | dg.SkipReason:
        s = get_settings()
        instance = context.instance
        busy = _past(
            instance.get_run_records(
                filters=dg.RunsFilter(tags={STREAM_TAG: layer}, statuses=list(IN_PROGRESS)), limit=1
            )
        )
        recent = instance.get_run_records(filters=dg.RunsFilter(job_name=job.name), limit=s.supervisor_max_restarts + 2)
        runs = _past(recent)
        d = decide(layer, runs, busy, time.time(), s)
        if d.gave_up:  # the page: LakehouseSupervisorGaveUp (once per tick: the pushgateway keeps it)
            push_gave_up(prometheus, layer, d.restart, context.log)
        elif busy or d.launch:  # running again, whoever started it
            push_gave_up(prometheus, layer, None, context.log)
        if not d.launch:
            return dg.SkipReason(d.reason)
        context.log.info(d.reason)
        push_restart(prometheus, layer, d.restart, context.log)
        # A restart keeps the last run's configuration (a user's settings overrides, master URL).
        run_config = recent[0].dagster_run.run_config if recent else None
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_config=run_config or None,
                    tags={
                        "lakehouse/supervisor": f"supervise_{layer}",
                        "lakehouse/restart": str(d.restart),
                        "lakehouse/reason": d.reason[:200],
                    },
                )
            ]
        )

    return _sensor


supervisors = [
    *(_supervisor(layer, stream_jobs[layer]) for layer in LAYERS),
    _supervisor(fastpath.NAME, stream_fastpath),
]
