"""`lakehouse generate`: send seeded synthetic traffic (with injected faults) to Kafka and write its ground truth.

``lakehouse.cli`` registers this command (``main.add_command(generate)``) at its
bottom, so this module imports ``lakehouse.cli`` only inside functions: either
module can be imported first.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.table import Table

from lakehouse.cli._common import console, err_console, friendly_errors

if TYPE_CHECKING:
    from lakehouse.generator import GeneratedRun, ProduceSummary

F = TypeVar("F", bound=Callable[..., Any])

_TOPICS_DEFAULT = "payments,clickstream,iot"


def _fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    sys.exit(code)


def _parse_topics(value: str) -> tuple[str, ...]:
    from lakehouse.generator import TOPIC_NAMES

    names = tuple(t.strip() for t in value.split(",") if t.strip())
    unknown = [t for t in names if t not in TOPIC_NAMES]
    if unknown or not names:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'nothing'}: choose from {', '.join(TOPIC_NAMES)}", param_hint="--topics"
        )
    return names


def _parse_start(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not ISO-8601 (e.g. 2026-11-26T10:15:00Z)", param_hint="--start-time"
        ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _injected_table(run: GeneratedRun, truth_path: Path) -> Table:
    total = run.truth.summary["total"]
    cfg = run.config
    table = Table(title="generated", title_justify="left", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("count", justify="right")
    table.add_row("event time", f"{run.start_time:%Y-%m-%d %H:%M:%S} .. {run.end_time:%H:%M:%S} UTC")
    for topic, s in run.truth.summary.items():
        if topic != "total" and s["sent"]:
            table.add_row(f"records to {topic}", str(s["sent"]))
    table.add_row("valid, unique (silver rows)", str(total["valid_unique"]))
    for name, instances in run.truth.injected["fraud_patterns"].items():
        if instances:
            table.add_row(f"fraud pattern {name}", str(len(instances)))
    table.add_row("expected fraud alerts", str(len(run.truth.expected_fraud_alerts)))
    table.add_row("anomalies (iot)", str(total["anomalies"]))
    table.add_row("duplicates", str(total["duplicates"]))
    table.add_row(f"out of order ({cfg.out_of_order:.0%})", str(total["out_of_order"]))
    table.add_row("late (20-60 min before start)", str(total["late"]))
    table.add_row("invalid", str(total["invalid_total"]))
    for kind, n in total["invalid"].items():
        if n:
            table.add_row(f"  {kind}", str(n))
    table.add_row("extra unknown field", str(total["extra_fields"]))
    table.add_row("ground truth", str(truth_path))
    return table


def _sent_table(summary: ProduceSummary, bootstrap: str) -> Table:
    table = Table(title=f"sent to {bootstrap}", title_justify="left", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_row("sent (acknowledged)", f"[green]{summary.sent}[/]")
    table.add_row("failed", f"[red]{summary.failed}[/]" if summary.failed else "0")
    table.add_row("elapsed", f"{summary.elapsed_s:.1f} s")
    table.add_row("achieved rate", f"{summary.rate:,.0f} records/s")
    return table


@click.command("generate")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=200,
    metavar="EVENTS_PER_S",
    show_default=True,
    help="Events per second of simulated event time; with --throttle also the send rate.",
)
@click.option(
    "--count",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Normal events to generate (injections come on top). Wins over --duration.  [default: 1000]",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Simulated seconds of traffic instead of --count (count = duration x rate).  [default: unset]",
)
@click.option(
    "--seed", type=int, default=42, show_default=True, metavar="INT", help="Same seed and options, same bytes."
)
@click.option(
    "--topics",
    default=_TOPICS_DEFAULT,
    show_default=True,
    metavar="LIST",
    help="Comma-separated topics; normal traffic is payments 40%, clickstream 40%, iot 20% of those chosen.",
)
@click.option(
    "--start-time",
    default=None,
    metavar="ISO",
    help="Event time of the first event, ISO-8601 (UTC if no zone).  [default: now minus the run's span, "
    "so every event is in the recent past]",
)
@click.option(
    "--throttle/--no-throttle",
    default=False,
    show_default=True,
    help="Pace sends at --rate instead of sending as fast as possible.",
)
@click.option(
    "--card-testing",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    show_default=True,
    help="Instances of card testing: 6 payments under 2.00 on one card within 40 s.",
)
@click.option(
    "--velocity",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    show_default=True,
    help="Instances of velocity fraud: 11 payments by one user within 50 s.",
)
@click.option(
    "--amount-spike",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    show_default=True,
    help="Instances of an amount spike: 8 normal payments, then one above 20x their median.",
)
@click.option(
    "--impossible-travel",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    show_default=True,
    help="Instances of impossible travel: one card used in two countries 3 minutes apart.",
)
@click.option(
    "--anomalies",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    show_default=True,
    help="IoT readings outside the normal range (temperature -30..60, humidity 0..100, "
    "pressure 870..1085, vibration 0..50).",
)
@click.option(
    "--duplicates",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    show_default=True,
    help="Events resent with the same event_id and bytes; about half to a different partition.",
)
@click.option(
    "--out-of-order",
    type=click.FloatRange(min=0, max=1),
    default=0.0,
    show_default=True,
    metavar="FRACTION",
    help="Fraction of events sent later than their event time (by at most 5 minutes, inside the watermark).",
)
@click.option(
    "--late",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    show_default=True,
    help="Valid events 20-60 minutes before --start-time, sent last (beyond the 10-minute watermark).",
)
@click.option(
    "--invalid",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    show_default=True,
    help="Invalid records, round-robin over: not JSON, not an object, missing/wrong-type/out-of-range field, "
    "bad enum, bad pattern, unparsable or future event_time, too-long event_id.",
)
@click.option(
    "--truth",
    "truth_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the ground-truth JSON.  [default: <state_dir>/generator/truth-<seed>.json]",
)
@click.option("--dry-run", is_flag=True, help="Generate and write the ground truth; send nothing.")
@friendly_errors
def generate(
    rate: float,
    count: int | None,
    duration: float | None,
    seed: int,
    topics: str,
    start_time: str | None,
    throttle: bool,
    card_testing: int,
    velocity: int,
    amount_spike: int,
    impossible_travel: int,
    anomalies: int,
    duplicates: int,
    out_of_order: float,
    late: int,
    invalid: int,
    truth_path: Path | None,
    dry_run: bool,
) -> None:
    """Send seeded synthetic payments, clickstream and IoT events to Kafka, with injected faults.

    Every record that is sent is described in a ground-truth JSON file (written before
    sending): what it is (valid, duplicate, invalid and why, late), what was injected, the
    expected counts per topic and the fraud alerts the platform must raise. The same seed
    and options give the same records, byte for byte (pass --start-time to pin the clock).
    """
    from lakehouse.generator import GeneratorConfig, GeneratorError, ProduceError, produce
    from lakehouse.generator import generate as build
    from lakehouse.settings import get_settings

    settings = get_settings()
    try:
        cfg = GeneratorConfig(
            seed=seed,
            rate=rate,
            count=count,
            duration_s=duration,
            topics=_parse_topics(topics),
            start_time=_parse_start(start_time),
            throttle=throttle,
            fraud_card_testing=card_testing,
            fraud_velocity=velocity,
            fraud_amount_spike=amount_spike,
            fraud_impossible_travel=impossible_travel,
            anomalies=anomalies,
            duplicates=duplicates,
            out_of_order=out_of_order,
            late=late,
            invalid=invalid,
            partitions=settings.kafka_partitions,
        )
    except GeneratorError as exc:
        _fail(str(exc))

    t0 = time.monotonic()
    run = build(cfg)
    path = truth_path or settings.state_dir / "generator" / f"truth-{seed}.json"
    try:
        run.truth.write(path)
    except OSError as exc:
        _fail(f"cannot write the ground truth to {path}: {exc.strerror or exc}")
    console.print(f"generated {len(run.records)} records in {time.monotonic() - t0:.1f}s", highlight=False)
    console.print(_injected_table(run, path))
    if dry_run:
        console.print("[yellow]dry run[/]: nothing sent")
        return

    servers = settings.bootstrap_servers
    _ensure_topics(settings, servers)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("send", total=len(run.records))

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            summary = produce(run, settings, progress)
        except ProduceError as exc:
            _fail(str(exc))
    console.print(_sent_table(summary, servers))
    if summary.failed:
        for message in summary.errors:
            console.print(f"  [red]{message}[/]", highlight=False)
        _fail(f"{summary.failed} of {summary.attempted} records were not acknowledged by {servers}", code=1)
    console.print(f"[green]ok[/]: {summary.sent} records sent; ground truth in {path}", highlight=False)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def _reachable(servers: str, timeout_s: float = 3.0) -> bool:
    """True when at least one bootstrap server accepts a TCP connection (fails fast instead of a 30 s timeout)."""
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def _ensure_topics(settings: Any, servers: str) -> None:
    """Create the contract's topics when missing (so they get the contract's partition count)."""
    from kafka.errors import KafkaError

    from lakehouse.services.kafka import ensure_topics

    if not _reachable(servers):
        _fail(f"cannot reach Kafka at {servers} (connection refused or timed out); is it up? `lakehouse status`")
    try:
        ensure_topics(settings)
    except (KafkaError, OSError) as exc:
        _fail(f"cannot reach Kafka at {servers}: {_describe(exc)}")
