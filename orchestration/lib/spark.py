"""Launching a Spark app from Dagster through Pipes: spark-submit in a subprocess, as a resource.

The same command runs against ``local[*]`` or a cluster master, so the run worker only
supervises: it streams the app's progress messages into the run as AssetObservations
while the app runs, stops it gracefully when the run is terminated, and turns every
non-zero exit (a crash, an out-of-memory kill, SIGKILL) into a failed run.

An op says *what* to run as a :class:`SparkApp` and asks the ``spark`` resource
(:class:`SparkPipes`, bound in ``orchestration/definitions.py``) to run it::

    def my_op(context, config: SparkRunConfig, spark: SparkPipes):
        yield from spark.run(context, config.resolve(), SparkApp("quality", ["--assets", "gold/x"]), config.master)

Why not ``dagster-pyspark``: its ``PySparkResource`` builds a SparkSession *inside* the run
worker, so a stream would live and die with the run worker's process and share its memory,
and a terminated run could not stop it between two micro-batches. The apps here are
spark-submit processes with their own JVM, driven through Pipes (docs/architecture.md).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from lakehouse.delta import cds as spark_cds
from lakehouse.delta.log_check import DELTA_LOG_DAMAGED
from lakehouse.services import streams
from lakehouse.services.checkpoints import CHECKPOINT_DAMAGED
from lakehouse.services.retention import DATA_LOST
from lakehouse.settings import Settings

#: Run tag: the exit code of the app of a failed run.
EXIT_CODE_TAG = "lakehouse/exit_code"
#: What a driver's exit code means, where the platform knows (added to the run's failure).
_EXIT_MEANS = {
    streams.ALREADY_RUNNING: " : already running elsewhere",
    DATA_LOST: " : Kafka deleted records it had not read (its log says which; `lakehouse stream skip-lost`)",
    CHECKPOINT_DAMAGED: " : a checkpoint file is damaged (its log names it; docs/runbook.md)",
    DELTA_LOG_DAMAGED: " : a Delta commit of a table it uses is damaged (its log names it; docs/runbook.md)",
}

#: Which assets a progress message is about (messages name their query: ``<app>_<source>``).
Observe = Callable[[Mapping[str, Any]], Sequence[dg.AssetKey]]


def no_assets(message: Mapping[str, Any]) -> Sequence[dg.AssetKey]:
    """For an app whose messages are about no asset (its results come as Pipes results instead)."""
    return ()


@dataclass(frozen=True)
class SparkApp:
    """One launch of ``spark_apps/<name>.py`` and what its progress means for Dagster.

    ``observe`` maps each progress message to the assets it is about: each becomes an
    AssetObservation at once, so the UI shows each micro-batch while the run is still going.
    Each asset in ``materialize`` is materialized when the first micro-batch that wrote to it
    commits (a stream never "finishes"), and the rest when the app ends. With
    ``rematerialize_s``, an asset already materialized is materialized again (an
    AssetMaterialization event) on a progress message at most that often, idle heartbeats
    included: its freshness then says how far it trails its inputs. ``continuous``: the app
    runs until the run is terminated, and ending by itself is a failure. ``on_message`` sees
    every message (metrics).
    """

    name: str
    args: Sequence[str] = ()
    observe: Observe = no_assets
    continuous: bool = False
    materialize: Sequence[dg.AssetKey] = ()
    rematerialize_s: float | None = None
    on_message: Callable[[Mapping[str, Any]], None] | None = None


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


class SparkPipes(dg.ConfigurableResource):  # type: ignore[type-arg]  # the resource is its own value
    """Runs the Spark apps (``spark_apps/``) with spark-submit in a subprocess, talking Pipes with them."""

    stop_timeout_s: float = Field(
        default=180.0,
        description="How long a terminated run waits for its app to stop after the current micro-batch "
        "before the driver is killed.",
    )

    def run(
        self,
        context: dg.OpExecutionContext | dg.AssetExecutionContext,
        s: Settings,
        app: SparkApp,
        master: str | None = None,
    ) -> Iterator[dg.PipesExecutionResult | dg.MaterializeResult[Any]]:
        """Run APP with the settings S (on MASTER, default the settings'); yield what it reported.

        Failures raise ``dg.Failure`` with the exit code and the end of the driver log.
        """
        pending = list(app.materialize)
        last_materialized: dict[dg.AssetKey, float] = {}
        log_dir = s.logs_dir / "runs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{context.run_id}-{app.name}.log"
        stopped_by_request = False
        with (
            spark_cds.recording(s, ends_by_itself=not app.continuous) as archive,
            dg.open_pipes_session(
                context=context,
                context_injector=dg.PipesTempFileContextInjector(),
                message_reader=dg.PipesTempFileMessageReader(),
            ) as session,
        ):
            cmd = streams.spark_submit(s, app.name, app.args, master, archive.options)
            env = {**streams.submit_env(s), **session.get_bootstrap_env_vars()}
            context.log.info(f"launching {app.name}: {' '.join(cmd[-2:])} (driver log {log_path})")
            with log_path.open("ab") as log:
                proc = subprocess.Popen(
                    cmd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=streams.app_preexec(s),  # a prctl and a nice: safe in the forked child
                )
            seen = 0
            try:
                while True:
                    done = proc.poll() is not None
                    messages = session.get_custom_messages()
                    for message in messages[seen:]:
                        if not isinstance(message, Mapping):
                            continue
                        if app.on_message is not None:
                            app.on_message(message)
                        for key in app.observe(message):
                            context.log_event(dg.AssetObservation(asset_key=key, metadata=_metadata(message)))
                            if key in pending and (message.get("rows_out") or 0) > 0:
                                pending.remove(key)
                                last_materialized[key] = time.monotonic()
                                yield dg.MaterializeResult(asset_key=key, metadata=_metadata(message))
                            elif (
                                app.rematerialize_s is not None
                                and key in last_materialized
                                and time.monotonic() - last_materialized[key] >= app.rematerialize_s
                            ):
                                last_materialized[key] = time.monotonic()
                                context.log_event(dg.AssetMaterialization(asset_key=key, metadata=_metadata(message)))
                    seen = len(messages)
                    if done:
                        break
                    time.sleep(0.5)
            except BaseException:
                # The run was terminated (UI, `lakehouse stream stop`): stop between two micro-batches.
                context.log.info(f"stop requested: asking {app.name} to stop after its current micro-batch")
                code = streams.stop_gracefully(proc, self.stop_timeout_s)
                context.log.info(f"{app.name} exited with code {code}")
                stopped_by_request = True
                raise
            finally:
                if proc.poll() is None:
                    streams.stop_gracefully(proc, self.stop_timeout_s)
            code = proc.returncode
            archive.succeeded = code == 0
            if code != 0:
                # The supervisor reads it: a stream that lost Kafka records is not restarted in a loop.
                context.instance.add_run_tags(context.run_id, {EXIT_CODE_TAG: str(code)})
                raise dg.Failure(
                    description=f"{app.name} exited with code {code}"
                    + (" (killed by a signal)" if code < 0 or code >= 128 else "")
                    + _EXIT_MEANS.get(code, ""),
                    metadata={
                        "exit_code": code,
                        "driver_log": str(log_path),
                        "log_tail": dg.MetadataValue.md("```\n" + _tail(log_path) + "\n```"),
                    },
                )
            if app.continuous and not stopped_by_request:
                raise dg.Failure(
                    description=f"{app.name} was started as a continuous stream but ended without being asked to stop",
                    metadata={"driver_log": str(log_path)},
                )
            for key in pending:
                yield dg.MaterializeResult(
                    asset_key=key, metadata={"progress_messages": seen, "driver_log": str(log_path)}
                )
            yield from session.get_results(implicit_materializations=False)
