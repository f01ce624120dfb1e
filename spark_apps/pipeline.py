"""pipeline: bronze and refine (silver and gold) in one Spark driver.

    spark-submit spark_apps/pipeline.py [--available-now | --continuous]
    lakehouse stream run all [--available-now | --continuous]

``--available-now`` runs the layers one after the other (bronze catches up, then refine
over everything bronze now holds), so one call brings gold up to date with Kafka.
``--continuous`` runs all six queries side by side in one driver, which costs one JVM
instead of two on a small machine.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lakehouse.settings import Settings, get_settings
from spark_apps import bronze, refine
from spark_apps._metrics import exported
from spark_apps._pipes import Reporter, reporter
from spark_apps._runtime import (
    ALREADY_RUNNING,
    AlreadyRunningError,
    GracefulStop,
    ProgressReporter,
    RunOptions,
    check_tables,
    exclusive,
    exit_on_failure,
    parse_args,
    prepare_tables,
    register_in_trino,
    run_queries,
    session,
)

LAYERS = {"bronze": bronze.STARTERS, "refine": refine.STARTERS}


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args("pipeline", argv)
    stop = GracefulStop()
    stop.install()
    s = get_settings()
    with reporter() as r:
        try:
            with exclusive(s, list(LAYERS)):
                check_tables(s, *LAYERS)
                _run(opts, s, stop, r)
        except AlreadyRunningError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return ALREADY_RUNNING
        except Exception as e:
            if (code := exit_on_failure(s, e, r.log, reads_kafka=True)) is not None:
                return code
            raise
    return 0


def _run(opts: RunOptions, s: Settings, stop: GracefulStop, r: Reporter) -> None:
    spark, s = session("pipeline", opts, s)
    try:
        with exported("pipeline", s, r.log) as metrics:
            progress = ProgressReporter("pipeline", r, metrics)
            prepare_tables(spark, s, *LAYERS)
            if opts.available_now:
                for layer, starters in LAYERS.items():
                    if stop.requested.is_set():
                        break
                    r.log(f"pipeline: {layer} catching up")
                    queries = [start(spark, s, True) for start in starters.values()]
                    register_in_trino(s, r.log)
                    run_queries(queries, stop, progress=progress)
            else:
                queries = [start(spark, s, False) for starters in LAYERS.values() for start in starters.values()]
                r.log(f"pipeline: {len(queries)} queries started (continuous)")
                register_in_trino(s, r.log)
                run_queries(queries, stop, progress=progress)
    finally:
        for q in spark.streams.active:
            q.stop()
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
