"""bench_rtm: the Spark candidate of `lakehouse bench engines` — Spark 4.2's real-time mode.

    spark-submit --master 'local[8]' spark_apps/bench_rtm.py --topic T --out STREAM

One query: Kafka source (from the end of T), the probe field of each payment's JSON, and a
``foreach`` writer that XADDs each probe to the Redis stream STREAM, with
``trigger(realTime=...)``. Real-time mode keeps one long-running task per Kafka partition and
processes records as they arrive instead of in micro-batches; in 4.2 it takes stateless queries
only (no deduplication, no keyed state), so the fast path's rules could not run inside it.
Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from lakehouse.clients import spark_options
from lakehouse.settings import Settings, get_settings
from spark_apps._runtime import GracefulStop, RunOptions, session


class _ProbeWriter:
    """The foreach writer: one Redis connection per partition task, one XADD per probe."""

    def __init__(self, s: Settings, stream: str) -> None:
        self.s, self.stream = s, stream
        self.client: Any = None

    def open(self, partition_id: int, epoch_id: int) -> bool:
        from lakehouse.serving import connect

        self.client = connect(self.s, role="admin")  # bench:* keys are no serving keys
        return True

    def process(self, row: Any) -> None:
        if row.probe is not None:
            self.client.xadd(self.stream, {"probe": row.probe})

    def close(self, error: BaseException | None) -> None:
        if self.client is not None:
            self.client.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="spark-submit spark_apps/bench_rtm.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--topic", required=True)
    ap.add_argument("--out", required=True, help="Redis stream the probes are added to")
    ap.add_argument("--batch", default="5 seconds", help="real-time mode's batch (checkpoint) duration")
    args = ap.parse_args(argv)
    from pyspark.sql import functions as F

    s = get_settings()
    stop = GracefulStop()
    stop.install()
    spark, s = session("bench-rtm", RunOptions(available_now=False, master=None), s)
    try:
        source = (
            spark.readStream.format("kafka")
            .options(**spark_options(s, "admin"))  # benchmark topics: admin
            .option("subscribe", args.topic)
            .option("startingOffsets", "latest")
            .load()
            .select(F.get_json_object(F.col("value").cast("string"), "$.probe").alias("probe"))
        )
        query = (
            source.writeStream.queryName("bench_rtm")
            .outputMode("update")
            .foreach(_ProbeWriter(s, args.out))
            .option("checkpointLocation", str(s.state_dir / "bench" / "rtm" / args.topic))
            .trigger(realTime=args.batch)
            .start()
        )
        print("bench_rtm started", flush=True)
        while query.isActive and not stop.requested.is_set():
            time.sleep(0.2)
        if query.exception() is not None:
            print(f"bench_rtm failed: {query.exception()}", flush=True)
            return 1
    finally:
        for q in spark.streams.active:
            q.stop()
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
