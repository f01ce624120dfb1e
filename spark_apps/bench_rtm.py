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

from lakehouse.settings import get_settings
from spark_apps._runtime import GracefulStop, RunOptions, session


class _ProbeWriter:
    """The foreach writer: one Redis connection per partition task, one XADD per probe."""

    def __init__(self, host: str, port: int, password: str | None, stream: str) -> None:
        self.host, self.port, self.password, self.stream = host, port, password, stream
        self.client: Any = None

    def open(self, partition_id: int, epoch_id: int) -> bool:
        import redis

        self.client = redis.Redis(host=self.host, port=self.port, password=self.password)
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
    password = s.redis_password.get_secret_value() if s.redis_password else None
    try:
        source = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", s.bootstrap_servers)
            .option("subscribe", args.topic)
            .option("startingOffsets", "latest")
            .load()
            .select(F.get_json_object(F.col("value").cast("string"), "$.probe").alias("probe"))
        )
        query = (
            source.writeStream.queryName("bench_rtm")
            .outputMode("update")
            .foreach(_ProbeWriter(s.host, s.redis_port, password or None, args.out))
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
