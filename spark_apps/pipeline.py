"""pipeline: bronze, silver and gold in one Spark driver.

    spark-submit spark_apps/pipeline.py [--available-now | --continuous]
    lakehouse stream run all [--available-now | --continuous]

``--available-now`` runs the layers one after the other (bronze catches up, then silver
over everything bronze now holds, then gold), so one call brings gold up to date with
Kafka. ``--continuous`` runs all nine queries side by side in one driver, which costs one
JVM instead of three on a small machine.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from spark_apps import bronze, gold, silver
from spark_apps._runtime import GracefulStop, parse_args, run_queries, session

LAYERS = {"bronze": bronze.STARTERS, "silver": silver.STARTERS, "gold": gold.STARTERS}


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args("pipeline", argv)
    spark, s = session("pipeline", opts)
    stop = GracefulStop()
    stop.install()
    try:
        if opts.available_now:
            for layer, starters in LAYERS.items():
                if stop.requested.is_set():
                    break
                print(f"pipeline: {layer} catching up", flush=True)
                run_queries([start(spark, s, True) for start in starters.values()], stop)
        else:
            run_queries([start(spark, s, False) for starters in LAYERS.values() for start in starters.values()], stop)
    finally:
        for q in spark.streams.active:
            q.stop()
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
