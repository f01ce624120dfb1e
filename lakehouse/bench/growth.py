"""`lakehouse bench growth`: does a micro-batch cost more when the tables and the state are bigger?

Two lakes, each built by the pipeline itself (`all --available-now`) from a seeded history:

- **1x** (the baseline, same run): ``--history`` events spread over 1 day of event time;
- **10x**: ten times the events, spread over 7 days (ten times the silver and gold rows, seven
  times the days of fraud history).

Then the same increment (``--increment`` events, just after the history, so on time) goes through
both, and the refine micro-batches that process it are timed from their progress. The result is
the ratio of those batches' total and median durations, 10x over 1x. With work proportional to
the batch (appends, MERGEs bounded by the batch's windows, state looked up by key), it should be
close to 1. The state sizes (rows in Spark's state store) are reported beside it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lakehouse.bench.apps import run_app
from lakehouse.bench.load import BenchError, send_run
from lakehouse.generator import GeneratorConfig, generate
from lakehouse.services.kafka import end_offsets_json
from lakehouse.settings import Settings


@dataclass(frozen=True)
class Scenario:
    name: str
    history_events: int
    history_days: int
    history_build_s: float
    increment_records: int
    refine_batches: int
    refine_total_s: float
    refine_median_s: float
    bronze_total_s: float
    state_rows: int | None


def _send(s: Settings, cfg: GeneratorConfig) -> int:
    return send_run(s, generate(cfg)).records


def _state_rows(log: Path) -> int | None:
    """Rows in the refine queries' state stores after their last batch (from the app log), when printed."""
    total = None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("progress {") and '"state_rows"' in line:
            p = json.loads(line[9:])
            if str(p.get("query", "")).startswith("refine_"):
                total = (total or 0) + int(p["state_rows"])
    return total


def scenario(
    base: Settings, name: str, events: int, days: int, increment: int, seed: int, work: Path, log: Callable[[str], None]
) -> Scenario:
    s = base.model_copy(update={"lake_root": work / "lake", "kafka_starting_offsets": end_offsets_json(base)})
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    start = end - timedelta(days=days)
    history = GeneratorConfig(
        seed=seed, count=events, rate=events / (days * 86_400), start_time=start, duplicates=events // 500
    )
    _send(s, history)
    built = run_app(s, "all", ["--available-now"], work / "history.log")
    log(f"  {name}: history of {events:,} events over {days} day(s) built in {built.seconds:.0f}s")
    n = _send(
        s, GeneratorConfig(seed=seed + 1, count=increment, rate=200.0, start_time=end, duplicates=increment // 500)
    )
    inc = run_app(s, "all", ["--available-now"], work / "increment.log")
    refine = [b for b in inc.batches if b.query.startswith("refine_") and b.rows > 0]
    bronze = [b for b in inc.batches if b.query.startswith("bronze_") and b.rows > 0]
    if not refine:
        raise BenchError(f"{name}: no refine batch processed the increment; see {inc.log}")
    durations = sorted(b.duration_s for b in refine)
    return Scenario(
        name,
        events,
        days,
        round(built.seconds, 1),
        n,
        len(refine),
        round(sum(durations), 2),
        round(durations[len(durations) // 2], 2),
        round(sum(b.duration_s for b in bronze), 2),
        _state_rows(inc.log),
    )


def main(
    s: Settings, history: int, increment: int, seed: int, out: Path, log: Callable[[str], None] = print
) -> list[Scenario]:
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name, events, days in (("1x", history, 1), ("10x", history * 10, 7)):
        work = s.state_dir / "bench" / f"growth-{name}"
        shutil.rmtree(work, ignore_errors=True)
        results.append(scenario(s, name, events, days, increment, seed, work, log))
        shutil.rmtree(work, ignore_errors=True)
    small, big = results
    ratio = {
        "refine_total": round(big.refine_total_s / small.refine_total_s, 2) if small.refine_total_s else None,
        "refine_median": round(big.refine_median_s / small.refine_median_s, 2) if small.refine_median_s else None,
    }
    payload = {
        "benchmark": "growth",
        "master": s.spark_master,
        "scenarios": [asdict(r) for r in results],
        "ratio": ratio,
    }
    (out / "growth.json").write_text(json.dumps(payload, indent=2))
    return results


def table(results: list[Scenario]) -> str:
    lines = [
        "| lake | history | refine batches | refine total s | refine median s | vs 1x | bronze total s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    base = results[0]
    for r in results:
        ratio = round(r.refine_total_s / base.refine_total_s, 2) if base.refine_total_s else None
        lines.append(
            f"| {r.name} | {r.history_events:,} events over {r.history_days} d | {r.refine_batches} | "
            f"{r.refine_total_s} | {r.refine_median_s} | {ratio}x | {r.bronze_total_s} |"
        )
    return "\n".join(lines)
