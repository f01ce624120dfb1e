"""`lakehouse bench …`: the platform's benchmarks, each against a baseline measured in the same run."""

from __future__ import annotations

from pathlib import Path

import click

from lakehouse.cli import _settings, console, friendly_errors, main

DEFAULT_OUT = Path("docs") / "bench"


@main.group()
def bench() -> None:
    """Benchmarks: throughput (catch-up), latency (produce -> Redis), growth (batch cost as tables grow).

    Each needs the stack's Kafka (`lakehouse up kafka redis`), works in its own lakes under
    <state_dir>/bench, prints a table, and writes JSON and a PNG chart to --out. Numbers are
    ratios against a baseline measured in the same run: this machine is noisy, ratios travel.
    """


out_option = click.option(
    "--out", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True, help="Where results go."
)


@bench.command("throughput")
@click.option(
    "--events",
    "sizes",
    multiple=True,
    type=int,
    default=(100_000, 1_000_000),
    show_default=True,
    help="Backlog sizes (normal events; injections come on top). Repeat for several.",
)
@click.option("--seed", default=5, show_default=True)
@out_option
@friendly_errors
def bench_throughput(sizes: tuple[int, ...], seed: int, out: Path) -> None:
    """Catch-up of a seeded backlog (the generator's full mix) through bronze and refine, against a
    minimal Kafka -> Delta append query in the same run. Steady state excludes each query's first batch."""
    from lakehouse.bench import throughput

    s = _settings()
    results = throughput.main(s, list(sizes), seed, out, log=console.print)
    console.print(throughput.table(results))
    console.print(f"\nwrote {out / 'throughput.json'} and {out / 'throughput.png'}")


@bench.command("latency")
@click.option(
    "--rate",
    "rates",
    multiple=True,
    type=float,
    default=(1000.0, 5000.0, 20000.0),
    show_default=True,
    help="Events per second (all topics), open loop. Repeat for several.",
)
@click.option("--duration", default=600.0, show_default=True, help="Seconds measured per rate, after the warm-up.")
@click.option("--warmup", default=60.0, show_default=True, help="Seconds of load before measuring.")
@click.option(
    "--baseline-duration",
    default=120.0,
    show_default=True,
    help="Seconds measured per rate for the Kafka -> Redis baseline.",
)
@out_option
@friendly_errors
def bench_latency(
    rates: tuple[float, ...], duration: float, warmup: float, baseline_duration: float, out: Path
) -> None:
    """Produce -> Redis latency of the continuous pipeline (bronze, refine, serving) under an open-loop
    load: p50/p95/p99/max for merchant minutes and fraud alerts, from each probe's scheduled send time.
    Baseline in the same run: a minimal Kafka -> Redis foreachBatch query with a 0 s trigger."""
    from lakehouse.bench import latency

    s = _settings()
    phases = latency.main(s, list(rates), warmup, duration, baseline_duration, out, log=console.print)
    console.print(latency.table(phases))
    console.print(f"\nwrote {out / 'latency.json'} and {out / 'latency.png'}")


@bench.command("growth")
@click.option(
    "--history", default=100_000, show_default=True, help="Events of history in the 1x lake (10x: ten times)."
)
@click.option("--increment", default=20_000, show_default=True, help="Events of the increment timed in both lakes.")
@click.option("--seed", default=9, show_default=True)
@out_option
@friendly_errors
def bench_growth(history: int, increment: int, seed: int, out: Path) -> None:
    """Refine's micro-batches on the same increment, with 1x and 10x the history in the tables (and 1 vs 7
    days of fraud history): the ratio of their durations. Work proportional to the batch keeps it near 1."""
    from lakehouse.bench import growth

    s = _settings()
    results = growth.main(s, history, increment, seed, out, log=console.print)
    console.print(growth.table(results))
    console.print(f"\nwrote {out / 'growth.json'}")
