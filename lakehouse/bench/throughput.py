"""`lakehouse bench throughput`: catch-up of a seeded backlog, against Spark's floor measured in the same run.

For each backlog size: generate the generator's full mix (every fraud pattern, anomalies,
duplicates across partitions, out-of-order, invalid and late records), send it to Kafka with
librdkafka, then, each into a fresh lake and reading exactly that backlog:

1. **baseline**: ``spark_apps/bench_floor.py delta`` — one query per topic appending the raw
   records to Delta, nothing else (the floor Spark sets here);
2. **pipeline**: ``lakehouse stream run all --available-now`` — bronze, then refine (silver
   and gold in one pass), in one driver.

From the queries' progress: **steady state** = rows of every micro-batch after each query's
first, over the wall time those batches span (the layer's queries run side by side); **fixed
cost** = the run's wall time minus what its rows take at the steady rate (JVM start, table
checks, the first batch's warm-up, the last batch's tail). End to end, bronze then refine run
one after the other, so their steady times add up.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lakehouse.bench.apps import run_app
from lakehouse.bench.load import Rates, rates, send_run
from lakehouse.generator import GeneratorConfig, generate
from lakehouse.services.kafka import end_offsets_json
from lakehouse.settings import Settings


@dataclass(frozen=True)
class Stage:
    name: str
    records: int
    wall_s: float
    steady_rate: float  # records/s, first batch of each query excluded
    fixed_s: float  # wall time not explained by the steady rate
    batches: int
    ratio: float | None = None  # steady rate / the baseline's, same run


@dataclass(frozen=True)
class SizeResult:
    events: int
    records: int
    produced_per_s: float
    stages: list[Stage]


def bench_place(base: Settings, work: Path, name: str) -> Path | str:
    """Where a benchmark's lake NAME goes: under WORK, or, when the stack's lake is on the object store (the
    cluster profile), under a prefix of its bucket, so both the floor and the pipeline pay what S3 costs."""
    if isinstance(base.lake_root, str):
        from lakehouse.storage import parse_s3a

        return f"s3a://{parse_s3a(base.lake_root).bucket}/bench/{work.name}-{int(time.time())}/{name}"
    return work / name


def _remove(s: Settings, place: Path | str) -> None:
    import contextlib

    from lakehouse.storage import lake_path, rmtree

    with contextlib.suppress(FileNotFoundError):
        rmtree(lake_path(s, str(place)))


def _stage(name: str, records: int, wall: float, r: Rates) -> Stage:
    steady = r.steady_rate
    fixed = wall - records / steady if steady > 0 else wall
    return Stage(name, records, round(wall, 1), round(steady, 1), round(fixed, 1), r.batches)


def backlog(events: int, seed: int) -> GeneratorConfig:
    """The full mix: every injection the generator knows, scaled with the size."""
    return GeneratorConfig.every_fault(events, seed=seed, rate=2000.0, late=100)


def run_size(base: Settings, events: int, seed: int, work: Path, log: Any = print) -> SizeResult:
    # Enough micro-batches per query for a steady state (the first is excluded): the Kafka limit
    # gives each topic's backlog about 10 batches, and refine reads about one bronze batch (one
    # file per Kafka partition) per micro-batch. Baseline and pipeline run with the same limits.
    per_trigger = max(2_000, events // 25)
    lake, floor_dir = bench_place(base, work, "lake"), bench_place(base, work, "floor")
    s = base.model_copy(
        update={
            "lake_root": lake,
            "kafka_starting_offsets": end_offsets_json(base),
            "max_offsets_per_trigger": per_trigger,
            "max_files_per_trigger": 6,
        }
    )
    log(f"  max_offsets_per_trigger {per_trigger:,} per topic, max_files_per_trigger 6")
    t0 = time.perf_counter()
    run = generate(backlog(events, seed))
    log(f"  generated {len(run.records):,} records in {time.perf_counter() - t0:.0f}s")
    sent = send_run(s, run)
    records = sent.records
    log(f"  sent {records:,} records in {sent.seconds:.1f}s ({sent.rate:,.0f}/s, librdkafka, acks=all)")
    del run

    floor = run_app(s, "bench_floor", ["delta", "--out", str(floor_dir)], work / "floor.log")
    b = _stage("baseline: Kafka -> Delta append", records, floor.seconds, rates(floor.batches, lambda _: True))
    log(f"  baseline  {b.wall_s:6.1f}s  steady {b.steady_rate:>9,.0f} records/s  fixed {b.fixed_s:.1f}s")
    _remove(s, floor_dir)

    pipe = run_app(s, "all", ["--available-now"], work / "pipeline.log")
    bronze = rates(pipe.batches, lambda x: x.query.startswith("bronze_"))
    refine = rates(pipe.batches, lambda x: x.query.startswith("refine_"))
    br_s = records / bronze.steady_rate if bronze.steady_rate else 0.0
    re_s = records / refine.steady_rate if refine.steady_rate else 0.0
    e2e = records / (br_s + re_s) if br_s and re_s else 0.0
    bronze_wall = _span(pipe.batches, "bronze_")
    refine_wall = _span(pipe.batches, "refine_")
    stages = [
        b,
        _stage("bronze", records, bronze_wall, bronze),
        _stage("refine (silver + gold)", records, refine_wall, refine),
        Stage(
            "end to end (bronze, then refine)",
            records,
            round(pipe.seconds, 1),
            round(e2e, 1),
            round(pipe.seconds - (br_s + re_s), 1),
            bronze.batches + refine.batches,
        ),
    ]
    base_rate = b.steady_rate
    stages = [
        Stage(**{**asdict(st), "ratio": round(st.steady_rate / base_rate, 2) if base_rate else None}) for st in stages
    ]
    for st in stages[1:]:
        log(f"  {st.name:<34} {st.wall_s:6.1f}s  steady {st.steady_rate:>9,.0f} records/s  x{st.ratio}")
    _remove(s, lake)
    return SizeResult(events, records, round(sent.rate), stages)


def _span(batches: list[Any], prefix: str) -> float:
    chosen = [b for b in batches if b.query.startswith(prefix)]
    return (max(b.end for b in chosen) - min(b.start for b in chosen)) if chosen else 0.0


def main(s: Settings, sizes: list[int], seed: int, out: Path, log: Any = print) -> list[SizeResult]:
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for n in sizes:
        where = "s3a" if s.lake_on_s3 else "local disk"
        log(f"backlog of {n:,} events (profile {s.profile}, master {s.spark_master}, lake on {where})")
        work = s.state_dir / "bench" / f"throughput-{n}"
        shutil.rmtree(work, ignore_errors=True)
        results.append(run_size(s, n, seed, work, log))
    payload = {
        "benchmark": "throughput",
        "profile": s.profile,
        "master": s.spark_master,
        "lake": "object store (s3a)" if s.lake_on_s3 else "local disk",
        "results": [asdict(r) for r in results],
    }
    (out / "throughput.json").write_text(json.dumps(payload, indent=2))
    chart(results, out / "throughput.png", f"{s.spark_master}, lake on {payload['lake']}")
    return results


def table(results: list[SizeResult]) -> str:
    lines = [
        "| backlog | stage | wall s | steady records/s | vs baseline | fixed cost s |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        for st in r.stages:
            ratio = "1.00x" if st.ratio == 1.0 and st.name.startswith("baseline") else f"{st.ratio}x"
            lines.append(f"| {r.events:,} | {st.name} | {st.wall_s} | {st.steady_rate:,.0f} | {ratio} | {st.fixed_s} |")
    return "\n".join(lines)


def chart(results: list[SizeResult], path: Path, where: str = "local[2]") -> None:
    """Bars of steady records/s per stage; `where` names the master and the lake in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    names = [st.name for st in results[0].stages]
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        xs = [k + i * width for k in range(len(names))]
        bars = ax.bar(xs, [st.steady_rate for st in r.stages], width, label=f"{r.events:,} events")
        for bar, st in zip(bars, r.stages, strict=True):
            ax.annotate(
                f"{st.ratio}x",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.set_xticks([k + width * (len(results) - 1) / 2 for k in range(len(names))])
    ax.set_xticklabels([n.replace(" (", "\n(").replace(": ", ":\n") for n in names], fontsize=8)
    ax.set_ylabel("steady-state records/s")
    ax.set_title(f"Catch-up throughput vs. Spark's floor (same run)\n{where}", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
