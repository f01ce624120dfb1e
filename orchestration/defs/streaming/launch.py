"""Launching a Spark app from Dagster through Pipes: spark-submit in a subprocess.

The same command runs against ``local[*]`` or a cluster master, so the run worker only
supervises: it streams the app's progress messages into the run as AssetObservations
while the app runs, stops it gracefully when the run is terminated, and turns every
non-zero exit (a crash, an out-of-memory kill, SIGKILL) into a failed run.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from lakehouse import spark_cds, streams
from lakehouse.settings import Settings

# Query names (``<app>_<source>``) to the asset each one's progress is about.
Observe = Callable[[Mapping[str, Any]], Sequence[dg.AssetKey]]


def _metadata(message: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in message.items():
        if key == "asset" or value is None:
            continue
        if isinstance(value, bool | int | float | str):
            out[key] = value
        else:
            out[key] = dg.MetadataValue.json(value)
    return out


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_spark_app(
    context: dg.OpExecutionContext,
    s: Settings,
    app: str,
    args: Sequence[str],
    *,
    observe: Observe,
    continuous: bool = False,
    extras: Mapping[str, Any] | None = None,
    master: str | None = None,
    stop_timeout_s: float = 180.0,
    materialize: Sequence[dg.AssetKey] = (),
    on_message: Callable[[Mapping[str, Any]], None] | None = None,
    rematerialize_s: float | None = None,
) -> Iterator[dg.PipesExecutionResult | dg.MaterializeResult[Any]]:
    """Run ``spark_apps/<app>`` with Pipes; yield what it reported (checks, materializations).

    Every custom message is logged at once as an AssetObservation on ``observe(message)``,
    so the UI shows each micro-batch while the run is still going. Each asset in
    MATERIALIZE is materialized when the first micro-batch that wrote to it commits (a
    stream never "finishes"), and the rest when the app ends. With REMATERIALIZE_S, an asset already
    materialized is materialized again (an AssetMaterialization event) on a progress message at most
    that often, idle heartbeats included: its freshness then says how far it trails its inputs.
    Failures raise ``dg.Failure``.
    """
    pending = list(materialize)
    last_materialized: dict[dg.AssetKey, float] = {}
    log_dir = s.logs_dir / "runs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{context.run_id}-{app}.log"
    stopped_by_request = False
    with (
        spark_cds.recording(s, ends_by_itself=not continuous) as archive,
        dg.open_pipes_session(
            context=context,
            context_injector=dg.PipesTempFileContextInjector(),
            message_reader=dg.PipesTempFileMessageReader(),
            extras=dict(extras or {}),
        ) as session,
    ):
        cmd = streams.spark_submit(s, app, args, master, archive.options)
        env = {**streams.submit_env(s), **session.get_bootstrap_env_vars()}
        context.log.info(f"launching {app}: {' '.join(cmd[-2:])} (driver log {log_path})")
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=streams.die_with_parent,  # only a prctl: safe in the forked child
            )
        seen = 0
        try:
            while True:
                done = proc.poll() is not None
                messages = session.get_custom_messages()
                for message in messages[seen:]:
                    if not isinstance(message, Mapping):
                        continue
                    if on_message is not None:
                        on_message(message)
                    for key in observe(message):
                        context.log_event(dg.AssetObservation(asset_key=key, metadata=_metadata(message)))
                        if key in pending and (message.get("rows_out") or 0) > 0:
                            pending.remove(key)
                            last_materialized[key] = time.monotonic()
                            yield dg.MaterializeResult(asset_key=key, metadata=_metadata(message))
                        elif (
                            rematerialize_s is not None
                            and key in last_materialized
                            and time.monotonic() - last_materialized[key] >= rematerialize_s
                        ):
                            last_materialized[key] = time.monotonic()
                            context.log_event(dg.AssetMaterialization(asset_key=key, metadata=_metadata(message)))
                seen = len(messages)
                if done:
                    break
                time.sleep(0.5)
        except BaseException:
            # The run was terminated (UI, `lakehouse stream stop`): stop between two micro-batches.
            context.log.info(f"stop requested: asking {app} to stop after its current micro-batch")
            code = streams.stop_gracefully(proc, stop_timeout_s)
            context.log.info(f"{app} exited with code {code}")
            stopped_by_request = True
            raise
        finally:
            if proc.poll() is None:
                streams.stop_gracefully(proc, stop_timeout_s)
        code = proc.returncode
        archive.succeeded = code == 0
        if code != 0:
            raise dg.Failure(
                description=f"{app} exited with code {code}"
                + (" (killed by a signal)" if code < 0 or code >= 128 else "")
                + (" : already running elsewhere" if code == streams.ALREADY_RUNNING else ""),
                metadata={
                    "exit_code": code,
                    "driver_log": str(log_path),
                    "log_tail": dg.MetadataValue.md("```\n" + _tail(log_path) + "\n```"),
                },
            )
        if continuous and not stopped_by_request:
            raise dg.Failure(
                description=f"{app} was started as a continuous stream but ended without being asked to stop",
                metadata={"driver_log": str(log_path)},
            )
        for key in pending:
            yield dg.MaterializeResult(asset_key=key, metadata={"progress_messages": seen, "driver_log": str(log_path)})
        yield from session.get_results(implicit_materializations=False)
