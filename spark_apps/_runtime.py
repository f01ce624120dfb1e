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
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from lakehouse.delta import log_check
from lakehouse.services import checkpoints, streams
from lakehouse.services.streams import AlreadyRunningError, exclusive
from lakehouse.settings import Settings, get_settings
from lakehouse.storage import is_s3, lake_path
from lakehouse.tables import ALL_TABLES, BRONZE, GOLD, QUARANTINE, SILVER, TableSpec
from spark_apps._metrics import StreamMetrics, exported, observed_latency, take_latency
from spark_apps._pipes import Reporter, reporter

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
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
    """The query's checkpoint location, checked and, where that is provably safe, repaired
    (``lakehouse.services.checkpoints.prepare``); raises ``CheckpointDamagedError`` where it is not.
    Called under the app's lock, just before the query starts."""
    root = s.checkpoint_dir / app / query
    done = checkpoints.prepare(root)
    for line in done.repairs:
        print(f"{app}/{query}: checkpoint repaired: {line}", file=sys.stderr, flush=True)
    for line in done.warnings:
        print(f"warning: {app}/{query}: checkpoint: {line}", file=sys.stderr, flush=True)
    return str(root)


def checkpoint_epoch(s: Settings, app: str, query: str) -> str:
    """An id that lives and dies with the query's checkpoint.

    Idempotent Delta writes use (app id, batch id); batch ids start again at 0 in a new
    checkpoint, and Delta would silently skip those writes as already done. Putting this
    epoch in the app id makes a new checkpoint a new writer.
    """
    marker = s.checkpoint_dir / app / query / "_lakehouse_epoch"
    if not marker.exists() and is_s3(marker):  # one put: whole or not at all
        marker.write_text(uuid.uuid4().hex[:12])
    if not marker.exists():  # written whole or not at all: a full disk must not leave an empty epoch
        marker.parent.mkdir(parents=True, exist_ok=True)
        partial_marker = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
        try:
            partial_marker.write_text(uuid.uuid4().hex[:12])
            os.replace(partial_marker, marker)
        finally:
            partial_marker.unlink(missing_ok=True)
    return marker.read_text().strip()


_BRONZE = frozenset(t.full_name for t in BRONZE.values())
_REFINED = frozenset(t.full_name for t in (*SILVER.values(), QUARANTINE, *GOLD.values()))
_GOLD = frozenset(t.full_name for t in GOLD.values())
#: What each app writes, and what it only reads: bronze writes bronze; refine reads bronze and writes
#: silver, the quarantine and gold; replay reads bronze and rewrites silver and gold; serving reads gold.
_WRITES = {"bronze": _BRONZE, "refine": _REFINED, "replay": _REFINED, "serving": frozenset()}
_READS = {"bronze": frozenset(), "refine": _BRONZE, "replay": _BRONZE, "serving": _GOLD}


def tables_of(*apps: str) -> list[TableSpec]:
    """The tables APPS read or write (``_WRITES``, ``_READS``)."""
    uses = frozenset().union(*(_WRITES[app] | _READS[app] for app in apps))
    return [t for t in ALL_TABLES if t.full_name in uses]


def _written_by(*apps: str) -> frozenset[str]:
    """The tables APPS write (the others of ``tables_of`` they only read)."""
    return frozenset().union(*(_WRITES[app] for app in apps))


def prepare_tables(spark: SparkSession, s: Settings, *apps: str) -> None:
    """Create the missing tables APPS use, each once, before any of their queries starts.

    Done per query instead (each refine query ensures silver, the quarantine and all five gold tables)
    it took 50 s of a restart under load: the checks' small Spark jobs queued for task slots behind
    the micro-batches of the queries already started (a restarted pipeline's refine queries began
    work 50 s after its bronze queries, seen in the fault suite's driver logs)."""
    from lakehouse.delta.tables import ensure_table

    writes = _written_by(*apps)
    for t in tables_of(*apps):
        ensure_table(spark, t, s.lake_dir, writer=t.full_name in writes)


def check_tables(s: Settings, *apps: str) -> None:
    """Stop before touching a table whose Delta log is damaged (``lakehouse.delta.log_check``): raises
    ``DeltaLogDamagedError`` naming the commit. Called under the app's lock, before its session starts."""
    log_check.check((t.full_name, lake_path(s, t.path(s.lake_dir))) for t in tables_of(*apps))


ALREADY_RUNNING = streams.ALREADY_RUNNING  # another process holds the stream's checkpoints
DISK_FULL = streams.DISK_FULL  # a write found no space


def with_trigger(writer: DataStreamWriter, s: Settings, available_now: bool) -> DataStreamWriter:
    if available_now:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=s.stream_trigger_interval)


def retrying(write_batch: Callable[..., None], name: str) -> Callable[[DataFrame, int], None]:
    """Retry a micro-batch that lost a Delta concurrency conflict (e.g. to a concurrent OPTIMIZE).

    Safe because every write of a batch is idempotent: appends and gold MERGEs carry Delta
    transaction ids (txnAppId, batch id), and silver's MERGE only inserts missing event_ids,
    so a retry re-does exactly the writes that did not commit.
    """

    def run(batch: DataFrame, batch_id: int) -> None:
        from lakehouse.delta.guards import retry_on_conflict

        retry_on_conflict(lambda: write_batch(batch, batch_id), what=f"{name} batch {batch_id}")

    return run


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
    source = (
        spark.readStream.format("delta")
        .option("maxFilesPerTrigger", s.max_files_per_trigger)
        # Commits that rewrite rows (a replay's replaceWhere) are not new events: the replay
        # rebuilt everything downstream of them itself. OPTIMIZE commits carry no data change.
        .option("skipChangeCommits", "true")
        .load(source_path)
    )
    writer = (
        source.writeStream.queryName(f"{app}_{query}")
        .option("checkpointLocation", checkpoint(s, app, query))
        .foreachBatch(retrying(partial(write_batch, epoch=checkpoint_epoch(s, app, query)), f"{app}_{query}"))
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


# What each foreachBatch sink wrote, by (query name, batch id): a sink's own count is
# the only honest "rows out" (Spark reports -1 for foreachBatch sinks), plus the facts it
# found (late rows, quarantined records, ...). The batch function runs in this driver
# process, so a plain dict is shared with the poller.
_ROWS_OUT: dict[tuple[str, int], int] = {}
_BATCH_FACTS: dict[tuple[str, int], dict[str, object]] = {}


def merge_metric(metrics: DataFrame | None, name: str) -> int:
    """One count from the metrics row a Delta MERGE returns (``num_inserted_rows`` ...); 0 if it returned none."""
    row = metrics.first() if metrics is not None else None
    return int(row.asDict().get(name) or 0) if row is not None else 0


def record_rows_out(query: str, batch_id: int, rows: int) -> None:
    _ROWS_OUT[(query, batch_id)] = rows


def record_batch(query: str, batch_id: int, rows_out: int, **facts: object) -> None:
    """A sink's rows out and what else it counted (reported with the batch's progress)."""
    _ROWS_OUT[(query, batch_id)] = rows_out
    _BATCH_FACTS[(query, batch_id)] = facts


def _offsets(value: object) -> dict[str, dict[str, int]]:
    """A Kafka source offset as {topic: {partition: offset}}; anything else (Delta) as {}."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, dict):
        return {}
    out: dict[str, dict[str, int]] = {}
    for topic, parts in value.items():
        if isinstance(parts, dict) and all(isinstance(v, int) for v in parts.values()):
            out[str(topic)] = {str(p): int(o) for p, o in parts.items()}
    return out


def kafka_lag(progress: dict[str, object]) -> int | None:
    """Records behind the broker: the latest offsets minus the offsets this batch ended at.

    None when no source of the query is Kafka (silver and gold read Delta tables).
    """
    lag, kafka = 0, False
    for src in progress.get("sources") or []:  # type: ignore[attr-defined]
        latest, end = _offsets(src.get("latestOffset")), _offsets(src.get("endOffset"))
        if not latest:
            continue
        kafka = True
        for topic, parts in latest.items():
            for part, offset in parts.items():
                lag += max(0, offset - end.get(topic, {}).get(part, 0))
    return lag if kafka else None


def progress_summary(progress: dict[str, object], rows_out: int | None = None) -> dict[str, object]:
    """One micro-batch in the terms a person watching a stream cares about (JSON-safe)."""
    sources: list[dict[str, object]] = progress.get("sources") or []  # type: ignore[assignment]
    sink: dict[str, object] = progress.get("sink") or {}  # type: ignore[assignment]
    durations: dict[str, object] = progress.get("durationMs") or {}  # type: ignore[assignment]
    if rows_out is None:
        sink_rows = sink.get("numOutputRows")
        rows_out = int(sink_rows) if isinstance(sink_rows, int) and sink_rows >= 0 else None  # type: ignore[arg-type]
    backlog_files = sum(
        int(m.get("numFilesOutstanding", 0))  # type: ignore[union-attr, call-overload]
        for m in (src.get("metrics") or {} for src in sources)
    )
    summary: dict[str, object] = {
        "query": progress.get("name"),
        "batch_id": progress.get("batchId"),
        "timestamp": progress.get("timestamp"),
        "rows_in": progress.get("numInputRows"),
        "rows_out": rows_out,
        "batch_duration_ms": durations.get("triggerExecution"),
        "input_rows_per_second": round(float(progress.get("inputRowsPerSecond") or 0.0), 2),  # type: ignore[arg-type]
        "processed_rows_per_second": round(float(progress.get("processedRowsPerSecond") or 0.0), 2),  # type: ignore[arg-type]
        "kafka_lag": kafka_lag(progress),
    }
    # Where the batch's time went (Spark's own phases): addBatch is the sink, the rest is overhead.
    summary["phases_ms"] = {k: v for k, v in durations.items() if k != "triggerExecution" and v}
    if not summary["kafka_lag"] and backlog_files:
        summary["delta_files_behind"] = backlog_files
    operators: list[dict[str, object]] = progress.get("stateOperators") or []  # type: ignore[assignment]
    if operators:  # rows held in Spark's state store (dedup ids, fraud context)
        summary["state_rows"] = sum(int(op.get("numRowsTotal") or 0) for op in operators)  # type: ignore[call-overload]
    watermark = (progress.get("eventTime") or {}).get("watermark")  # type: ignore[attr-defined]
    if watermark and not str(watermark).startswith("1970-"):
        summary["watermark"] = watermark
    if progress.get("idle"):
        summary["idle"] = True
    return summary


def _as_dict(progress: object) -> dict[str, object]:
    raw = getattr(progress, "json", None)  # a property in PySpark 4 (a str), a method before
    if raw is None:
        return dict(progress)  # type: ignore[call-overload]
    return json.loads(raw() if callable(raw) else raw)  # type: ignore[no-any-return]


class ProgressReporter:
    """Sends every micro-batch each query ran through Pipes (and to stdout), once.

    Spark also records "idle" progress while a query waits for data, with the number of the
    batch it has not run yet; those become a heartbeat at most every HEARTBEAT_S per query,
    so a quiet stream still shows it is alive and how far behind it is.
    """

    HEARTBEAT_S = 60.0

    def __init__(self, app: str, r: Reporter, metrics: StreamMetrics | None = None) -> None:
        self.app, self.r, self.metrics = app, r, metrics
        self._last_ts: dict[str, str] = {}
        self._last_sent: dict[str, float] = {}

    def _send(
        self, name: str, progress: dict[str, object], rows_out: int | None, facts: dict[str, object] | None = None
    ) -> None:
        summary = {"app": self.app, **progress_summary(progress, rows_out), **(facts or {})}
        if self.metrics is not None:
            batch = progress.get("batchId")
            latency = take_latency(name, int(batch)) if isinstance(batch, int) and not progress.get("idle") else {}
            latency.update(observed_latency(progress))
            self.metrics.batch(summary, latency)
            if not progress.get("idle"):
                self.metrics.kafka_progress(progress)
        self.r.message(summary)
        self._last_sent[name] = time.monotonic()
        print("progress " + json.dumps(summary, default=str), flush=True)

    def poll(self, queries: list[StreamingQuery]) -> None:
        if self.metrics is not None:
            self.metrics.alive()
        for q in queries:
            recent = getattr(q, "recentProgress", None)
            updates = [_as_dict(p) for p in recent] if recent is not None else []
            if not updates and q.lastProgress is not None:
                updates = [_as_dict(q.lastProgress)]
            for progress in updates:
                name, ts = str(progress.get("name") or q.name), str(progress.get("timestamp") or "")
                if ts <= self._last_ts.get(name, ""):
                    continue
                self._last_ts[name] = ts
                durations = progress.get("durationMs") or {}
                ran = "addBatch" in durations or int(progress.get("numInputRows") or 0) > 0  # type: ignore[operator, call-overload]
                if ran:
                    batch = int(progress.get("batchId", -1))  # type: ignore[call-overload]
                    rows_out = _ROWS_OUT.pop((name, batch), None)
                    if rows_out is None and name.startswith("bronze_"):
                        rows_out = progress.get("numInputRows")  # type: ignore[assignment]  # bronze appends all it reads
                    self._send(name, progress, rows_out, _BATCH_FACTS.pop((name, batch), None))
                elif time.monotonic() - self._last_sent.get(name, 0.0) >= self.HEARTBEAT_S:
                    self._send(name, {**progress, "idle": True}, 0)


def run_queries(
    queries: list[StreamingQuery],
    stop: GracefulStop,
    poll_s: float = 0.5,
    progress: ProgressReporter | None = None,
) -> None:
    """Wait until every query ends; on a stop request, stop each one when it is between batches.

    A query that fails re-raises its exception here, so the process exits non-zero and
    whoever supervises it (Dagster, a shell) sees a failure, never a success.
    """
    pending = list(queries)
    while pending:
        if progress is not None:
            progress.poll(queries)
        for q in list(pending):
            if not q.isActive:
                pending.remove(q)
                q.awaitTermination()  # raises StreamingQueryException if it failed
                continue
            if stop.requested.is_set() and not q.status["isTriggerActive"]:
                q.stop()
        time.sleep(poll_s)
    if progress is not None:
        progress.poll(queries)


def session(app: str, opts: RunOptions, s: Settings | None = None) -> tuple[SparkSession, Settings]:
    from lakehouse.delta.session import build_spark_session

    s = s or get_settings()
    return build_spark_session(f"lakehouse-{app}", s, master=opts.master), s


def register_in_trino(s: Settings, log: Callable[[str], None]) -> None:
    """Register the tables this app has just created in Trino's catalog; best effort, never fatal.

    Runs once the queries have started (so every table the app writes exists); a Trino that
    is down costs one warning line and a two-second timeout, and `lakehouse trino sync` (or
    the next app start, or `lakehouse up`) registers them later.
    """
    try:
        from lakehouse.services.trino import try_sync_tables

        try_sync_tables(s, log=log)
    except Exception as e:  # an import or settings problem must not stop a stream either
        log(f"warning: registering the tables in Trino failed: {e}")


def _failure_text(e: BaseException) -> str:
    """E's message, its JVM stack trace (a Spark error's causes are there) and its causes' messages."""
    parts: list[str] = []
    seen: BaseException | None = e
    while seen is not None and len(parts) < 10:
        parts += [str(seen), str(getattr(seen, "_stackTrace", "") or "")]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


#: A filesystem with less room than this for the app (``statvfs``' f_bavail) counts as full.
FULL_BELOW_BYTES = 1 << 20


def _full(place: Path) -> bool:
    """Whether the filesystem holding PLACE (or its nearest existing parent) has no room left."""
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        st = os.statvfs(place)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < FULL_BELOW_BYTES


#: What a stream that stopped on a full disk loses and does next (``exit_on_disk_full``'s default).
STREAM_ON_FULL_DISK = (
    "a write of this stream failed. Nothing is lost: the failed batch was not committed, and Kafka and the "
    "upstream tables still hold what it had not read. Free space or grow the filesystem, then start the stream "
    "again: it resumes from its last committed batch"
)


def exit_on_disk_full(s: Settings, e: BaseException, said: str = STREAM_ON_FULL_DISK) -> int | None:
    """DISK_FULL, said plainly (SAID: what failed, what is safe and what to do), when E is a write that
    found no space (deep in a Spark job's error), or any failure while the filesystem under the lake or
    the checkpoints is full: not every error a full disk causes says so (a table created while the disk
    filled fails as DELTA_TABLE_NOT_FOUND). None for any other failure."""
    places = sorted({str(s.lake_dir), str(s.checkpoint_dir)})
    local = [Path(p) for p in places if not is_s3(p)]
    if "No space left on device" not in _failure_text(e) and not any(_full(p) for p in local):
        return None
    print(
        f"error: no space left on the disk under {' or '.join(places)}: {said} "
        "(docs/runbook.md, LakehouseDiskFilling).",
        file=sys.stderr,
        flush=True,
    )
    return DISK_FULL


def exit_on_data_loss(s: Settings, e: BaseException, log: Callable[[str], None]) -> int | None:
    """DATA_LOST, said plainly and pushed (the page ``LakehouseKafkaRecordsLost``), when E is, or a query
    failure is explained by, records Kafka deleted before bronze read them; None for any other failure."""
    from lakehouse.services import retention

    try:  # every topic: a start stops at the first topic found short, the others may be too
        lost = retention.find_lost(s)
    except Exception:  # Kafka unreachable: what the error itself knows, or the original failure
        lost = e.lost if isinstance(e, retention.DataLostError) else []
    if not lost:
        return None
    print(f"error: {retention.DataLostError(lost)}", file=sys.stderr, flush=True)
    retention.push_lost(s, lost, log)
    return retention.DATA_LOST


def exit_on_damage(e: BaseException) -> int | None:
    """The exit code of a file the app needs found damaged (a checkpoint's, a Delta log's), said plainly;
    None for any other failure."""
    for error, code in ((checkpoints.CheckpointDamagedError, checkpoints.CHECKPOINT_DAMAGED),
                        (log_check.DeltaLogDamagedError, log_check.DELTA_LOG_DAMAGED)):  # fmt: skip
        if isinstance(e, error):
            print(f"error: {e}", file=sys.stderr, flush=True)
            return code
    return None


def exit_on_failure(s: Settings, e: BaseException, log: Callable[[str], None], reads_kafka: bool) -> int | None:
    """The exit code of a failure the platform knows, said plainly (a damaged checkpoint, a full disk; for
    an app that reads Kafka, records deleted before bronze read them); None for any other failure, to be
    raised."""
    code = exit_on_damage(e)
    if code is None:
        code = exit_on_disk_full(s, e)
    if code is None and reads_kafka:
        code = exit_on_data_loss(s, e, log)
    return code


StartQuery = Callable[["SparkSession", Settings, bool], "StreamingQuery"]


def main_for(app: str, starters: dict[str, StartQuery], argv: Sequence[str] | None = None) -> int:
    """Run one app: start its queries (one per topic) and wait for them.

    Launched by Dagster (Pipes), every completed micro-batch is reported back as it happens.
    """
    opts = parse_args(app, argv)
    stop = GracefulStop()
    stop.install()
    s = get_settings()
    with reporter() as r:
        try:
            with exclusive(s, [app]):
                check_tables(s, app)
                spark, s = session(app, opts, s)
                try:
                    prepare_tables(spark, s, app)
                    queries = [start(spark, s, opts.available_now) for start in starters.values()]
                    mode = "available-now" if opts.available_now else "continuous"
                    r.log(f"{app}: {len(queries)} queries started ({mode})")
                    register_in_trino(s, r.log)
                    with exported(app, s, r.log) as metrics:
                        run_queries(queries, stop, progress=ProgressReporter(app, r, metrics))
                finally:
                    for q in spark.streams.active:
                        q.stop()
                    spark.stop()
        except AlreadyRunningError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return ALREADY_RUNNING
        except Exception as e:
            if (code := exit_on_failure(s, e, r.log, reads_kafka=app == "bronze")) is not None:
                return code
            raise
        r.log(f"{app}: stopped" + (" on request" if stop.requested.is_set() else ""))
    return 0
