"""Benchmark: what running a catch-up through Dagster (queue, run worker, Pipes) costs on this machine.

    .venv/bin/python -m tests.bench.dagster_overhead [--events 5000] [--seed 8]

Needs the stack up (`lakehouse up`). Produces a seeded batch once, then catches bronze up
on it twice, each into its own fresh lake starting at the same Kafka offsets:

- baseline: `spark-submit spark_apps/bronze.py --available-now` in the foreground
  (`lakehouse stream run bronze --available-now`);
- Dagster: the `catchup_bronze` job launched over GraphQL, from launch to the run's end,
  including the run queue, the run worker's start, Pipes and the per-batch observations.

It also reports how long after a batch committed its observation reached Dagster's event
log (the "live" delay), from the batch timestamps Pipes carried. Numbers only; no asserts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime
from pathlib import Path

from lakehouse.generator import GeneratorConfig, generate, produce
from lakehouse.services import dagster_api as api
from lakehouse.services import streams
from lakehouse.services.kafka import end_offsets_json
from lakehouse.settings import get_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=8)
    args = ap.parse_args()
    base = get_settings()
    offsets = end_offsets_json(base)
    sent = produce(generate(GeneratorConfig(seed=args.seed, count=args.events, rate=50)), base)
    print(f"produced {sent.sent:,} records")
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-") as tmp:
        plain = base.model_copy(update={"lake_root": Path(tmp) / "plain", "kafka_starting_offsets": offsets})
        t0 = time.monotonic()
        assert streams.run(plain, "bronze", available_now=True) == 0
        baseline = time.monotonic() - t0

        overrides = {"lake_root": str(Path(tmp) / "dagster"), "kafka_starting_offsets": offsets}
        config = {"ops": {"bronze_stream": {"config": {"mode": "available_now", "settings": overrides}}}}
        t0 = time.monotonic()
        run_id = api.launch_run(base, "catchup_bronze", config, {"bench": "dagster_overhead"})
        while (run := api.runs(base, run_ids=[run_id])[0])["status"] not in ("SUCCESS", "FAILURE", "CANCELED"):
            time.sleep(0.5)
        through_dagster = time.monotonic() - t0
        assert run["status"] == "SUCCESS", run
    events = api.run_events(base, run_id)
    observations = [e for e in events if e["type"] == "ObservationEvent"]
    print(f"\nbronze catch-up of {sent.sent:,} records, master {base.spark_master}:")
    print(f"  {'spark-submit in the foreground (baseline)':<44} {baseline:6.1f} s")
    print(f"  {'Dagster catchup_bronze, launch to end':<44} {through_dagster:6.1f} s")
    print(f"  {'overhead of queue + run worker + Pipes':<44} {through_dagster - baseline:6.1f} s")
    print(f"  observations logged: {len(observations)} (one per query per micro-batch)")
    delays = _live_delays(base, run_id)
    if delays:
        print(
            f"  batch commit -> observation in Dagster: median {sorted(delays)[len(delays) // 2]:.2f} s, "
            f"max {max(delays):.2f} s over {len(delays)} batches"
        )


def _live_delays(s, run_id: str) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds from a batch's commit (progress timestamp + duration) to its event in Dagster's log."""
    query = """query($r: ID!){ logsForRun(runId:$r){ ... on EventConnection { events {
      __typename ... on ObservationEvent { timestamp metadataEntries { label
        ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue } } } } } } }"""
    events = api.graphql(s, query, {"r": run_id})["logsForRun"]["events"]
    out = []
    for e in events:
        if e["__typename"] != "ObservationEvent":
            continue
        meta = {m["label"]: m.get("text", m.get("intValue")) for m in e["metadataEntries"]}
        if not meta.get("timestamp") or meta.get("batch_duration_ms") is None:
            continue
        # Spark's progress timestamp is the trigger's start: the batch committed a duration later.
        started = datetime.fromisoformat(str(meta["timestamp"]).replace("Z", "+00:00")).timestamp()
        out.append(float(e["timestamp"]) / 1000 - started - int(meta["batch_duration_ms"]) / 1000)
    return out


if __name__ == "__main__":
    main()
