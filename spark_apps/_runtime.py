"""What every streaming app shares: arguments, the session, checkpoints, and a graceful stop.

A stream runs in one of two modes:

- ``--available-now``: process everything available when it starts, in as many
  micro-batches as the rate limits need, then exit (catch-up / periodic batch).
- ``--continuous``: a processing-time trigger (``LAKEHOUSE_STREAM_TRIGGER_INTERVAL``)
  until stopped. SIGTERM or SIGINT stops every query between two micro-batches.

Each query has its own checkpoint under ``<checkpoint_dir>/<app>/<query>``, so a
restart resumes exactly where it stopped.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from types import FrameType
from typing import TYPE_CHECKING

from lakehouse.settings import Settings, get_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import DataStreamWriter, StreamingQuery


@dataclass(frozen=True)
class RunOptions:
    available_now: bool
    master: str | None


def parse_args(app: str, argv: Sequence[str] | None = None) -> RunOptions:
    ap = argparse.ArgumentParser(prog=f"spark-submit spark_apps/{app}.py", description=sys.modules["__main__"].__doc__)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--available-now", action="store_true", help="catch up with what is available, then exit")
    mode.add_argument("--continuous", action="store_true", help="run until stopped (default)")
    ap.add_argument("--master", help="Spark master URL (default: LAKEHOUSE_SPARK_MASTER)")
    args = ap.parse_args(argv)
    return RunOptions(available_now=bool(args.available_now), master=args.master)


def checkpoint(s: Settings, app: str, query: str) -> str:
    return str(s.checkpoint_dir / app / query)


def checkpoint_epoch(s: Settings, app: str, query: str) -> str:
    """An id that lives and dies with the query's checkpoint.

    Idempotent Delta writes use (app id, batch id); batch ids start again at 0 in a new
    checkpoint, and Delta would silently skip those writes as already done. Putting this
    epoch in the app id makes a new checkpoint a new writer.
    """
    marker = s.checkpoint_dir / app / query / "_lakehouse_epoch"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(uuid.uuid4().hex[:12])
    return marker.read_text().strip()


def with_trigger(writer: DataStreamWriter, s: Settings, available_now: bool) -> DataStreamWriter:
    if available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=s.stream_trigger_interval)


def delta_foreach_batch(
    spark: SparkSession,
    s: Settings,
    *,
    app: str,
    query: str,
    source_path: str,
    write_batch: Callable[..., None],
    available_now: bool,
) -> StreamingQuery:
    """Stream a Delta table through ``write_batch(df, batch_id, epoch=...)``, checkpointed per query."""
    source = spark.readStream.format("delta").option("maxFilesPerTrigger", s.max_files_per_trigger).load(source_path)
    writer = (
        source.writeStream.queryName(f"{app}_{query}")
        .option("checkpointLocation", checkpoint(s, app, query))
        .foreachBatch(partial(write_batch, epoch=checkpoint_epoch(s, app, query)))
    )
    return with_trigger(writer, s, available_now).start()


class GracefulStop:
    """Turns SIGTERM/SIGINT into stopping the queries between micro-batches."""

    def __init__(self) -> None:
        self.requested = threading.Event()

    def install(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            print(f"received signal {signum}: stopping after the current micro-batch", flush=True)
            self.requested.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def run_queries(queries: list[StreamingQuery], stop: GracefulStop, poll_s: float = 0.5) -> None:
    """Wait until every query ends; on a stop request, stop each one when it is between batches.

    A query that fails re-raises its exception here, so the process exits non-zero and
    whoever supervises it (Dagster, a shell) sees a failure, never a success.
    """
    pending = list(queries)
    while pending:
        for q in list(pending):
            if not q.isActive:
                pending.remove(q)
                q.awaitTermination()  # raises StreamingQueryException if it failed
                continue
            if stop.requested.is_set() and not q.status["isTriggerActive"]:
                q.stop()
        time.sleep(poll_s)


def session(app: str, opts: RunOptions, s: Settings | None = None) -> tuple[SparkSession, Settings]:
    from lakehouse.spark import build_spark_session

    s = s or get_settings()
    return build_spark_session(f"lakehouse-{app}", s, master=opts.master), s


StartQuery = Callable[["SparkSession", Settings, bool], "StreamingQuery"]


def main_for(app: str, starters: dict[str, StartQuery], argv: Sequence[str] | None = None) -> int:
    """Run one app: start its queries (one per topic) and wait for them."""
    opts = parse_args(app, argv)
    spark, s = session(app, opts)
    stop = GracefulStop()
    stop.install()
    try:
        queries = [start(spark, s, opts.available_now) for start in starters.values()]
        run_queries(queries, stop)
    finally:
        for q in spark.streams.active:
            q.stop()
        spark.stop()
    return 0
