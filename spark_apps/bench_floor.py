"""bench_floor: the baselines of `lakehouse bench` — the least Spark can do on this machine.

    spark-submit spark_apps/bench_floor.py delta --out DIR        # Kafka -> Delta append, available-now
    spark-submit spark_apps/bench_floor.py redis --seconds N      # Kafka -> Redis foreachBatch, 0 s trigger

``delta``: one query per topic appending the raw Kafka records (key, value, coordinates) to a
Delta table, nothing else: no parsing, no table properties, default statistics. It runs with the
platform's Spark configuration and ``LAKEHOUSE_MAX_OFFSETS_PER_TRIGGER``, like bronze.

``redis``: one query over the payments topic with a 0 s trigger whose ``foreachBatch`` writes
each probe record's ``event_id`` to Redis (``SET bench:seen:<event_id>``), the least a query must
do to make an event visible to a service. Probe records carry ``"probe"`` in their event_id.

Both print the same ``progress {json}`` lines as the pipeline's apps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lakehouse.clients import spark_options
from lakehouse.contracts import TOPICS
from lakehouse.settings import get_settings
from spark_apps._pipes import reporter
from spark_apps._runtime import GracefulStop, ProgressReporter, RunOptions, run_queries, session

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="spark-submit spark_apps/bench_floor.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("delta", "redis"))
    ap.add_argument("--out", help="delta: directory for the tables and checkpoints")
    ap.add_argument("--seconds", type=float, default=60.0, help="redis: how long to run")
    ap.add_argument("--starting-offsets", default="latest", help="redis: where the Kafka query starts")
    args = ap.parse_args(argv)
    s = get_settings()
    stop = GracefulStop()
    stop.install()
    spark, s = session(f"bench-floor-{args.kind}", RunOptions(available_now=args.kind == "delta", master=None), s)
    with reporter() as r:
        progress = ProgressReporter(f"floor_{args.kind}", r)
        try:
            if args.kind == "delta":
                if not args.out:
                    ap.error("delta needs --out")
                queries = []
                for t in TOPICS:
                    source = (
                        spark.readStream.format("kafka")
                        .options(**spark_options(s))  # SASL_SSL as the Spark principal
                        .option("subscribe", t.name)
                        .option("startingOffsets", _offsets_for(s.kafka_starting_offsets, t.name))
                        .option("maxOffsetsPerTrigger", s.max_offsets_per_trigger)
                        .load()
                    )
                    queries.append(
                        source.writeStream.format("delta")
                        .queryName(f"floor_delta_{t.name}")
                        .option("checkpointLocation", f"{args.out}/_checkpoints/{t.name}")
                        .trigger(availableNow=True)
                        .start(f"{args.out}/{t.name}")
                    )
                run_queries(queries, stop, progress=progress)
            else:
                query = _redis_floor(spark, s, args.starting_offsets)
                r.log("floor_redis started")
                deadline = time.monotonic() + args.seconds
                while time.monotonic() < deadline and not stop.requested.is_set() and query.isActive:
                    progress.poll([query])
                    time.sleep(0.2)
                stop.requested.set()
                run_queries([query], stop, progress=progress)
        finally:
            for q in spark.streams.active:
                q.stop()
            spark.stop()
    return 0


def _offsets_for(setting: str, topic: str) -> str:
    if not setting.lstrip().startswith("{"):
        return setting
    offsets = json.loads(setting)
    return json.dumps({topic: offsets[topic]}) if topic in offsets else "earliest"


def _redis_floor(spark, s, starting_offsets: str):  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    from lakehouse import serving

    def write(batch: DataFrame, _batch_id: int) -> None:
        ids = [r[0] for r in batch.select("event_id").where(F.col("event_id").contains("probe")).collect()]
        if not ids:
            return
        client = serving.connect(s, role="admin")  # bench:* keys are no serving keys
        try:
            pipe = client.pipeline(transaction=False)
            for eid in ids:
                pipe.set(f"bench:seen:{eid}", "1", ex=3600)
            pipe.execute()
        finally:
            client.close()

    source = (
        spark.readStream.format("kafka")
        .options(**spark_options(s))  # SASL_SSL as the Spark principal
        .option("subscribe", "payments")
        .option("startingOffsets", _offsets_for(starting_offsets, "payments"))
        .load()
        .select(F.get_json_object(F.col("value").cast("string"), "$.event_id").alias("event_id"))
    )
    return (
        source.writeStream.queryName("floor_redis")
        .foreachBatch(write)
        .trigger(processingTime="0 seconds")
        .option("checkpointLocation", f"{s.checkpoint_dir}/bench_floor_redis/{int(time.time())}")
        .start()
    )


if __name__ == "__main__":
    sys.exit(main())
