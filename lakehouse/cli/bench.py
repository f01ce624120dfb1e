"""`lakehouse bench …`: the platform's benchmarks, each against a baseline measured in the same run."""

from __future__ import annotations

from pathlib import Path

import click

from lakehouse.cli._common import console, friendly_errors, load_settings

DEFAULT_OUT = Path("docs") / "bench"


@click.group()
def bench() -> None:
    """Benchmarks: throughput (catch-up), latency (produce -> Redis), growth (batch cost as tables grow),
    jvm (a short run's wall time under several driver JVM option sets),
    engines (the fast path's stream engine: Flink vs Spark real-time mode vs a minimal consumer),
    security (what TLS, authentication and encryption at rest cost against their plain twins).

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

    s = load_settings()
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
@click.option(
    "--path",
    "path",
    type=click.Choice(["pipeline", "fast"]),
    default="pipeline",
    show_default=True,
    help="pipeline: the micro-batch chain. fast: fraud alerts through the fast path (Flink), with the pipeline "
    "running beside it; --rate is then payments/s (default 5,000 and 20,000).",
)
@click.option(
    "--beside/--alone",
    default=True,
    show_default=True,
    help="With --path fast: run the micro-batch pipeline beside the fast path (the production conditions), "
    "or only the fast path and the floor (where the fast path's own cost shows).",
)
@out_option
@friendly_errors
def bench_latency(
    rates: tuple[float, ...],
    duration: float,
    warmup: float,
    baseline_duration: float,
    path: str,
    beside: bool,
    out: Path,
) -> None:
    """Produce -> Redis latency under an open-loop load, from each probe's scheduled send time: p50/p95/p99/max.

    --path pipeline (default): the continuous pipeline (bronze, refine, serving), for merchant minutes and
    fraud alerts; baseline in the same run: a minimal Kafka -> Redis foreachBatch query with a 0 s trigger.

    --path fast: fraud alerts through the fast path, with the pipeline running beside it; baseline in the
    same run, reading the same payments at the same time: a minimal consumer that reads a payment and
    writes one Redis command."""
    s = load_settings()
    if path == "fast":
        from lakehouse.bench import fast

        chosen = list(rates) if rates != (1000.0, 5000.0, 20000.0) else [5000.0, 20000.0]
        results = fast.main(s, chosen, warmup, duration, out, log=console.print, beside=beside)
        console.print(fast.table(results))
        console.print(
            f"\nwrote {out / 'latency-fast.json'}, {out / 'latency-fast.png'} and {out / 'latency-fast-timeline.png'}"
        )
        return
    from lakehouse.bench import latency

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

    s = load_settings()
    results = growth.main(s, history, increment, seed, out, log=console.print)
    console.print(growth.table(results))
    console.print(f"\nwrote {out / 'growth.json'}")


@bench.command("jvm")
@click.option("--events", default=2400, show_default=True, help="Events in the scenario (injections come on top).")
@click.option("--rounds", default=2, show_default=True, help="Runs per option set (alternating between the sets).")
@click.option("--seed", default=11, show_default=True)
@click.option(
    "--options",
    "extra",
    multiple=True,
    metavar="NAME=OPTIONS",
    help="Another option set to compare, e.g. 'serial=-XX:+UseSerialGC'. Repeat for several.",
)
@out_option
@friendly_errors
def bench_jvm(events: int, rounds: int, seed: int, extra: tuple[str, ...], out: Path) -> None:
    """Wall time of a short `all --available-now` run (a few thousand events, fresh lake each time) under
    several driver JVM option sets, against the driver with no extra options in the same run. The sets
    apply on top of LAKEHOUSE_SPARK_DRIVER_JAVA_OPTIONS."""
    from lakehouse.bench import jvm

    sets = dict(jvm.OPTION_SETS)
    for item in extra:
        name, sep, options = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=OPTIONS, got {item!r}", param_hint="--options")
        sets[name.strip()] = options.strip()
    s = load_settings()
    results = jvm.main(s, events, rounds, seed, sets, out, log=console.print)
    console.print(jvm.table(results))
    console.print(f"\nwrote {out / 'jvm.json'}")


@bench.command("engines")
@click.option(
    "--rate",
    "rates",
    multiple=True,
    type=float,
    default=(5000.0, 20000.0),
    show_default=True,
    help="Payments per second, open loop. Repeat for several.",
)
@click.option(
    "--candidate",
    "candidates",
    multiple=True,
    default=("flink", "spark-rtm"),
    show_default=True,
    help="Engines to measure: flink, spark-rtm (the floor is always measured).",
)
@click.option("--duration", default=120.0, show_default=True, help="Seconds measured per candidate and rate.")
@click.option("--warmup", default=30.0, show_default=True, help="Seconds of load before measuring.")
@click.option("--probe-every", default=10, show_default=True, help="Every Nth payment is a probe.")
@out_option
@friendly_errors
def bench_engines(
    rates: tuple[float, ...], candidates: tuple[str, ...], duration: float, warmup: float, probe_every: int, out: Path
) -> None:
    """The fast path's engine study: Kafka -> engine -> Redis with no rules, per engine, under an open-loop
    payment load; p50/p95/p99/max from each probe's scheduled send time to its entry read from Redis.
    Baseline in the same run: a minimal consumer (librdkafka + redis-py) that writes one Redis command
    per probe. Needs Kafka and Redis (`lakehouse up kafka redis`)."""
    from lakehouse.bench import engines

    s = load_settings()
    engines.main(s, list(rates), list(candidates), warmup, duration, probe_every, out, log=console.print)
    console.print(f"\nwrote {out / 'engines.json'} and {out / 'engines.png'}")


@bench.command("security")
@click.option("--rounds", default=3, show_default=True, help="Rounds per part; each runs plain and secured.")
@click.option("--kafka-records", default=500_000, show_default=True, help="Records of 300 bytes per Kafka round.")
@click.option("--redis-writes", default=50_000, show_default=True, help="Writes per Redis round (a tenth as reads).")
@click.option("--parquet-rows", default=1_000_000, show_default=True, help="Bronze rows written per Parquet round.")
@click.option(
    "--pipeline-events", default=100_000, show_default=True, help="Backlog per pipeline round (the throughput mix)."
)
@click.option(
    "--part",
    "parts",
    multiple=True,
    type=click.Choice(["parquet", "redis", "kafka", "pipeline"]),
    default=("parquet", "redis", "kafka", "pipeline"),
    show_default=True,
    help="Which parts to measure. Repeat for several.",
)
@out_option
@friendly_errors
def bench_security(
    rounds: int,
    kafka_records: int,
    redis_writes: int,
    parquet_rows: int,
    pipeline_events: int,
    parts: tuple[str, ...],
    out: Path,
) -> None:
    """What security costs: Kafka (SASL_SSL + SCRAM + ACLs vs PLAINTEXT, Kafka's own perf tools), Redis
    (TLS + ACL user vs plaintext, redis-py as the serving stream uses it) and Parquet encryption of the raw
    columns (encrypted vs plain Delta writes and reads), and the pipeline's catch-up (the throughput benchmark)
    from a plaintext vs a secured broker, each against its plain twin in the same run.

    Starts its own private brokers and Redis servers on free loopback ports (the stack's are not touched
    and need not run) and stops them at the end."""
    from lakehouse.bench import security

    s = load_settings()
    measures = security.main(
        s,
        rounds=rounds,
        kafka_records=kafka_records,
        redis_writes=redis_writes,
        parquet_rows=parquet_rows,
        pipeline_events=pipeline_events,
        parts=parts,
        out=out,
        log=console.print,
    )
    console.print(security.table(measures), highlight=False)
    console.print(f"\nwrote {out / 'security.json'} and {out / 'security.png'}")
