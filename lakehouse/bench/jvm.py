"""`lakehouse bench jvm`: a short catch-up run's wall time under several driver JVM option sets.

Most Spark drivers this platform starts are short: a catch-up (`--available-now`), a batch job, a
test. Their wall time is mostly JVM and Spark warm-up (class loading, the JIT, Catalyst, Janino),
so the JVM's own options move it. One seeded scenario (the mix ``tests/integration/test_pipeline.py``
uses: every fraud pattern, anomalies, duplicates, out-of-order and invalid records) is sent to Kafka
once; then ``all --available-now`` runs over exactly those records, each time into a fresh lake, once
per option set and round, the sets alternating so that the machine's drift hits them alike.

The baseline, measured in the same run, is the driver with no extra options (both JIT tiers, a
240 MB code cache). Reported: each set's median wall time and its ratio to the baseline's. The
class archive (``LAKEHOUSE_SPARK_CLASS_ARCHIVE``) is mapped by every run alike when it exists.
"""

from __future__ import annotations

import json
import shutil
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lakehouse.bench.apps import run_app
from lakehouse.bench.load import send_run
from lakehouse.delta import cds as spark_cds
from lakehouse.generator import GeneratorConfig, generate
from lakehouse.services.kafka import end_offsets_json
from lakehouse.settings import Settings

# name -> extra driver options; the first is the baseline.
OPTION_SETS: dict[str, str] = {
    "default": "",
    "c1": "-XX:TieredStopAtLevel=1",
    "c1+cache": "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m",
}


@dataclass(frozen=True)
class OptionResult:
    name: str
    options: str
    runs_s: list[float]
    median_s: float
    ratio: float  # median wall time / the baseline's, same run (below 1: faster)


def scenario(events: int, seed: int) -> GeneratorConfig:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    return GeneratorConfig.every_fault(events, seed=seed, rate=10, start_time=start)


def main(
    s: Settings,
    events: int,
    rounds: int,
    seed: int,
    option_sets: dict[str, str],
    out: Path,
    log: Callable[[str], None] = print,
) -> list[OptionResult]:
    work = s.state_dir / "bench" / "jvm"
    shutil.rmtree(work, ignore_errors=True)
    offsets = end_offsets_json(s)
    sent = send_run(s, generate(scenario(events, seed)))
    log(f"sent {sent.records:,} records; {rounds} round(s) of {len(option_sets)} option sets")
    times: dict[str, list[float]] = {name: [] for name in option_sets}
    for i in range(rounds):
        for name, options in option_sets.items():
            lake = work / f"{name}-{i}"
            r = spark_cds.with_options(
                s.model_copy(update={"lake_root": lake / "lake", "kafka_starting_offsets": offsets}), options.split()
            )
            app = run_app(r, "all", ["--available-now"], lake / "run.log")
            times[name].append(round(app.seconds, 1))
            log(f"  round {i + 1}: {name:<10} {app.seconds:6.1f}s")
            shutil.rmtree(lake / "lake", ignore_errors=True)
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    base = medians[next(iter(option_sets))]
    results = [
        OptionResult(name, options, times[name], medians[name], medians[name] / base)
        for name, options in option_sets.items()
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "jvm.json").write_text(
        json.dumps(
            {"events": events, "records": sent.records, "rounds": rounds, "results": [asdict(x) for x in results]},
            indent=2,
        )
    )
    return results


def table(results: list[OptionResult]) -> str:
    lines = [f"{'options':<10} {'median s':>9} {'vs default':>11}  runs (s)   extra driver options"]
    for x in results:
        runs = ", ".join(f"{t:.0f}" for t in x.runs_s)
        lines.append(f"{x.name:<10} {x.median_s:9.1f} {x.ratio:10.2f}x  {runs:<10} {x.options or '(none)'}")
    return "\n".join(lines)
