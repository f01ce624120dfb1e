"""Benchmark: silver validation throughput, two ways, on the same records in one Spark session.

    .venv/bin/python -m tests.bench.validation [--events 60000] [--repeat 3]

Records come from the generator (every topic, with duplicates, out-of-order and invalid
records of every kind), cached in memory, so only validation is timed:

- validator: ``CompiledSchema.annotate`` (what silver runs): ``lakehouse.spark.Validator``,
             the reason, the typed fields and ``_extra`` of every record;
- baseline:  the jsonschema library in a Python UDF, what one writes first (verdict only).

Each counts the valid records, so all do the full work; mean of --repeat runs after a
warm-up, whose own time (planning, code generation, the first records) is reported too.
Reports numbers only; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType

from lakehouse.contracts import TOPICS, schema
from lakehouse.delta.session import build_spark_session
from lakehouse.delta.validator import compile_schema
from lakehouse.generator import GeneratorConfig, generate
from lakehouse.settings import get_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    run = generate(GeneratorConfig(seed=3, count=args.events, rate=100, duplicates=500, invalid=500))
    rows = [(r.topic, r.value.decode("utf-8", "replace")) for r in run.records]
    spark = build_spark_session("bench-validation", get_settings())
    try:
        df = spark.createDataFrame(rows, "topic STRING, value STRING").repartition(4).cache()
        by_topic = {t.name: df.where(F.col("topic") == t.name).cache() for t in TOPICS}
        total = sum(d.count() for d in by_topic.values())
        compiled = {t.name: compile_schema(schema(t.name)) for t in TOPICS}

        def validator() -> int:
            return sum(
                compiled[t].annotate(d, "value").where(F.col("_error").isNull()).count() for t, d in by_topic.items()
            )

        def baseline() -> int:
            n = 0
            for t, d in by_topic.items():
                sch = schema(t)

                def ok(value: str | None, _schema: dict = sch) -> bool:  # type: ignore[type-arg]
                    import jsonschema

                    try:
                        doc = json.loads(value or "")
                    except ValueError:
                        return False
                    return bool(jsonschema.Draft202012Validator(_schema).is_valid(doc))

                n += d.where(F.udf(ok, BooleanType())(F.col("value"))).count()
            return n

        results: dict[str, float] = {}
        ways: list[tuple[str, Callable[[], int]]] = [
            ("validator (what silver runs)", validator),
            ("jsonschema in a Python UDF", baseline),
        ]
        print(
            f"{total:,} records ({args.events:,} events + injections), Spark {spark.version}, "
            f"master {spark.sparkContext.master}"
        )
        for name, fn in ways:
            t0 = time.perf_counter()
            valid = fn()  # warm-up (and code generation)
            warm = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                valid = fn()
            dt = (time.perf_counter() - t0) / args.repeat
            results[name] = total / dt
            print(f"  {name:<28} {total / dt:>10,.0f} records/s   ({valid:,} valid; first run {warm:.1f} s)")
        base = results["jsonschema in a Python UDF"]
        for name, rate in results.items():
            print(f"  {name:<28} {rate / base:>9.1f}x the baseline")
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
