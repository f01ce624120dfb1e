"""Benchmark: catch-up throughput of the pipeline, layer by layer, on this machine.

    .venv/bin/python -m tests.bench.catchup [--events 20000] [--seed 5]

Needs Kafka running (`lakehouse up kafka`). Produces a seeded mix (every fraud pattern,
anomalies, duplicates, out-of-order and invalid records), then runs each layer with
`lakehouse stream run NAME --available-now` into a fresh lake (its own checkpoints,
starting at the offsets the topics had before producing), timing each: records per
second of the layer's input, including the ~10-20 s of starting Spark for each layer.

Baseline, in the same run: a second `all` run with nothing new to read, which is the fixed
cost (Spark start, table checks, empty batches) that every figure above includes. The
validation step alone, against a jsonschema-UDF baseline: tests/bench/validation.py.

Reports numbers only; it asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lakehouse import streams
from lakehouse.generator import GeneratorConfig, generate, produce
from lakehouse.kafka import end_offsets_json
from lakehouse.settings import get_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000, help="normal events (injections come on top)")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    base = get_settings()
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-") as tmp:
        s = base.model_copy(update={"lake_root": Path(tmp) / "lake", "kafka_starting_offsets": end_offsets_json(base)})
        run = generate(
            GeneratorConfig(
                seed=args.seed,
                count=args.events,
                rate=50,
                fraud_card_testing=3,
                fraud_velocity=3,
                fraud_amount_spike=3,
                fraud_impossible_travel=3,
                anomalies=50,
                duplicates=200,
                out_of_order=0.03,
                invalid=100,
            )
        )
        sent = produce(run, s)
        print(f"produced {sent.sent:,} records in {sent.elapsed_s:.1f}s ({sent.rate:,.0f} records/s, kafka-python)")
        print(f"\npipeline catch-up, --available-now, master {s.spark_master}, each layer its own spark-submit:")
        inputs = {"bronze": sent.sent}
        total_t = 0.0
        for layer in ("bronze", "silver", "gold"):
            t0 = time.perf_counter()
            code = streams.run(s, layer, available_now=True)
            dt = time.perf_counter() - t0
            total_t += dt
            if code:
                raise SystemExit(f"{layer} failed with exit code {code}")
            n = inputs.get(layer, sent.sent)
            print(f"  {layer:<8} {dt:6.1f}s  {n / dt:>8,.0f} records/s")
        print(f"  {'total':<8} {total_t:6.1f}s  {sent.sent / total_t:>8,.0f} records/s end to end")
        t0 = time.perf_counter()
        code = streams.run(s, "all", available_now=True)
        print(f"  (a second `all` run with nothing new: {time.perf_counter() - t0:.1f}s, the fixed cost)")


if __name__ == "__main__":
    main()
