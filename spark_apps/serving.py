"""serving: gold -> Redis (contracts §4), from each gold table's Delta change feed.

    spark-submit spark_apps/serving.py [--available-now | --continuous]
    spark-submit spark_apps/serving.py --rebuild [--all]
    lakehouse stream run serving ... / lakehouse redis rebuild

One query per served gold table (``serving_merchant_minute``, ``serving_page_minute``,
``serving_device_minute``, ``serving_fraud_alerts``), each reading the table's change feed
(``delta.enableChangeDataFeed`` is set on every gold table). A new checkpoint first reads the
table's current snapshot as inserts, then every later commit's changes. Each micro-batch keeps
the newest change per row key (pre-images dropped) and writes it through
``lakehouse.serving.apply_changes``: pipelined, idempotent (a replayed batch leaves Redis as it
was), TTLs from the contract, ``fraud:alerts`` capped. Rows gold deleted (a replay dropping a
window, a retracted alert) are removed from Redis.

Redis unreachable or full (OOM: it never evicts): the batch is retried with backoff for
``serving_retry_s`` (a restart of Redis, a failover, keys expiring), then the query fails, the app
exits non-zero and whoever supervises it (Dagster's ``supervise_serving``) restarts it from the same
checkpoint: the failed batch is replayed, nothing is skipped, and Redis converges once it is back.
Gold is never touched.

``--rebuild`` refills Redis from gold's current snapshot: it refuses while the serving stream
runs (one writer), drops every serving key, then writes the tables. Minute windows older than
the key TTL (24 h) would expire at once and are skipped unless ``--all``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from lakehouse import serving
from lakehouse.delta.log_check import DeltaLogDamagedError
from lakehouse.settings import Settings, get_settings
from lakehouse.tables import GOLD
from spark_apps._pipes import Reporter, reporter
from spark_apps._runtime import (
    ALREADY_RUNNING,
    AlreadyRunningError,
    check_tables,
    checkpoint,
    exclusive,
    exit_on_damage,
    main_for,
    parse_args,
    record_rows_out,
    session,
    with_trigger,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

APP = "serving"
CHUNK_ROWS = 5_000  # rows pulled to the driver and written per round of pipelines
T = TypeVar("T")


def log(text: str) -> None:
    print(f"[serving] {text}", file=sys.stderr, flush=True)


def where_redis_writes(s: Settings) -> str:
    """Where Redis keeps its files, as a remedy names it: the local stack's directory, or its own host's."""
    return f"under {s.state_dir / 'redis'}" if s.redis_endpoint is None else f"of the Redis host ({s.redis_where})"


def with_redis(s: Settings, what: str, write: Callable[[Any], T]) -> T:
    """Run ``write(redis_client)``; retry an unreachable or full Redis with backoff for ``s.serving_retry_s``.

    Safe to retry because every write is idempotent. Redis never evicts (``noeviction``): when it is
    full a write fails with OOM, and keys expiring (every serving key has a TTL) or a larger
    ``maxmemory`` let the retry through. When Redis cannot write its append-only file or snapshot (its
    disk is full) it refuses writes with MISCONF, keeping what it had acknowledged, and takes them again
    by itself once its disk has room. After the deadline the error is raised with what was not
    written and why, so the failing run says what to do.
    """
    import redis

    deadline = time.monotonic() + s.serving_retry_s
    delay = 1.0
    attempt = 0
    while True:
        attempt += 1
        client = serving.connect(s, role="writer")
        try:
            return write(client)
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.ResponseError) as e:
            full = isinstance(e, redis.OutOfMemoryError)
            # In a pipeline the reply comes wrapped ("Command # 1 (...) of pipeline caused error: MISCONF ...").
            unpersisted = isinstance(e, redis.ResponseError) and "MISCONF " in str(e)
            if isinstance(e, redis.ResponseError) and not (full or unpersisted):
                raise  # a command Redis refused for what it is: a retry would get the same answer
            problem = (
                f"full (maxmemory {s.redis_maxmemory} reached)"
                if full
                else "unable to write to its disk (MISCONF)"
                if unpersisted
                else "unreachable"
            )
            left = deadline - time.monotonic()
            if left <= 0:
                remedy = (
                    "Raise LAKEHOUSE_REDIS_MAXMEMORY (then `lakehouse down redis && lakehouse up`) or free keys; "
                    "nothing was evicted. "
                    if full
                    else f"Free space on the disk {where_redis_writes(s)} (Redis' append-only file and snapshots); "
                    "Redis takes writes again by itself once it can write there, keeping what it had acknowledged. "
                    if unpersisted
                    else ""
                )
                raise RuntimeError(
                    f"Redis at {s.redis_where} {problem} for {s.serving_retry_s:g}s "
                    f"({attempt} attempts; last: {e}); {what} not written. {remedy}Gold is unchanged: the batch "
                    "is replayed when the stream restarts."
                ) from e
            log(f"Redis at {s.redis_where} {problem} ({e}); retrying {what} in {min(delay, left):.0f}s")
            time.sleep(min(delay, left))
            delay = min(delay * 2, 30.0)
        finally:
            client.close()


def _chunks(rows: Iterator[Any], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row.asDict(recursive=True))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def newest_changes(batch: DataFrame, table: str) -> DataFrame:
    """One row per row key: its newest change in the batch (pre-images dropped), served columns only."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = serving.SERVED_KEYS[table]
    newest = Window.partitionBy(*keys).orderBy(F.col("_commit_version").desc())
    return (
        batch.where(F.col("_change_type") != "update_preimage")
        .withColumn("_rank", F.row_number().over(newest))
        .where("_rank = 1")
        .select(*serving.SERVED_COLUMNS[table], "_change_type", "_commit_version")
    )


def write_rows(df: DataFrame, table: str, s: Settings, what: str) -> serving.Applied:
    """Pull DF to the driver in chunks and apply each chunk to Redis (retrying an unreachable Redis)."""
    upserts = deletes = changed = 0
    for chunk in _chunks(df.toLocalIterator(prefetchPartitions=True), CHUNK_ROWS):
        done = with_redis(s, what, lambda r, rows=chunk: serving.apply_changes(r, table, rows))  # type: ignore[misc]
        upserts += done.upserts
        deletes += done.deletes
        changed += done.changed
    return serving.Applied(table, upserts, deletes, changed)


def write_batch(batch: DataFrame, batch_id: int, *, table: str, s: Settings) -> None:
    query = f"{APP}_{table}"
    changes = newest_changes(batch, table).persist()
    try:
        done = write_rows(changes, table, s, f"batch {batch_id} of {query}")
    finally:
        changes.unpersist()
    record_rows_out(query, batch_id, done.upserts + done.deletes)


def start(table: str, spark: SparkSession, s: Settings, available_now: bool) -> StreamingQuery:
    spec = GOLD[table]
    source = (
        spark.readStream.format("delta")
        .option("readChangeFeed", "true")
        .option("maxFilesPerTrigger", s.max_files_per_trigger)
        .load(spec.path(s.lake_dir))
    )
    writer = (
        source.writeStream.queryName(f"{APP}_{table}")
        .option("checkpointLocation", checkpoint(s, APP, table))
        .foreachBatch(partial(write_batch, table=table, s=s))
    )
    return with_trigger(writer, s, available_now).start()


STARTERS = {table: partial(start, table) for table in serving.SERVED_KEYS}


# -- rebuild ------------------------------------------------------------------------------
def snapshot(spark: SparkSession, s: Settings, table: str, since: datetime | None) -> DataFrame:
    """Gold's current rows to serve: minute windows since SINCE; devices only their newest window."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = spark.read.format("delta").load(GOLD[table].path(s.lake_dir))
    if table == "device_minute":
        newest = Window.partitionBy("device_id", "sensor_type").orderBy(
            F.col("window_start").desc(), F.col("readings").desc()
        )
        df = df.withColumn("_rank", F.row_number().over(newest)).where("_rank = 1")
    elif table != "fraud_alerts" and since is not None:
        df = df.where(F.col("window_start") >= F.lit(since.replace(tzinfo=None)))
    return df.select(*serving.SERVED_COLUMNS[table])


def rebuild(spark: SparkSession, s: Settings, everything: bool, r: Reporter) -> dict[str, int]:
    since = None if everything else datetime.now(UTC) - timedelta(seconds=serving.MERCHANT_MINUTE_TTL_S)
    n = 1 + len(serving.SERVED_KEYS)
    r.step(f"{APP}-rebuild", 1, n, "dropping the serving keys")
    removed = with_redis(s, "the flush before a rebuild", serving.flush_serving_keys)
    log(f"rebuild: dropped {removed} serving keys")
    written: dict[str, int] = {}
    for i, table in enumerate(serving.SERVED_KEYS, 2):
        r.step(f"{APP}-rebuild", i, n, f"gold.{table} into Redis")
        done = write_rows(snapshot(spark, s, table, since), table, s, f"the rebuild of {table}")
        written[table] = done.upserts
        log(f"rebuild: {table}: {done.upserts} rows written")
    return written


def rebuild_main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="spark-submit spark_apps/serving.py --rebuild")
    ap.add_argument("--rebuild", action="store_true", required=True)
    ap.add_argument("--all", action="store_true", help="also windows older than the keys' 24 h TTL")
    ap.add_argument("--master")
    args = ap.parse_args(argv)
    s = get_settings()
    with reporter() as r:
        try:
            with exclusive(s, [APP]):
                check_tables(s, APP)
                opts = parse_args(APP, ["--available-now", *(["--master", args.master] if args.master else [])])
                spark, s = session(f"{APP}-rebuild", opts, s)
                try:
                    written = rebuild(spark, s, args.all, r)
                finally:
                    spark.stop()
        except AlreadyRunningError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return ALREADY_RUNNING
        except DeltaLogDamagedError as e:
            return exit_on_damage(e) or 1
        r.message({"query": f"{APP}_rebuild", "rebuilt": True, **{f"rows_{t}": n for t, n in written.items()}})
        print("rebuilt Redis from gold: " + ", ".join(f"{t} {n}" for t, n in written.items()), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--rebuild" in args:
        return rebuild_main(args)
    return main_for(APP, STARTERS, args)


if __name__ == "__main__":
    sys.exit(main())
