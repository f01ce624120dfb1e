"""`lakehouse chaos SCENARIO`: inject a fault under load, recover, and prove nothing was lost or doubled."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from lakehouse.cli._common import console, err_console, friendly_errors, load_settings


@click.command()
@click.argument("scenario", type=click.Choice(["kill-driver", "kafka-restart", "list"]))
@click.option(
    "--times", type=click.IntRange(1, 100), default=10, show_default=True, help="kill-driver: kills in a row."
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the scenario's private lake goes (default: a temporary directory, removed afterwards).",
)
@friendly_errors
def chaos(scenario: str, times: int, workdir: Path | None) -> None:
    """Run a fault SCENARIO against the running stack, then check the books exactly.

    \b
    kill-driver    SIGKILL the pipeline's Spark driver --times in a row under load, each time
                   after a new batch commit, restarting it from its checkpoint
    kafka-restart  SIGKILL the Kafka broker under a running stream, restart it 10 s later
    list           say what each scenario does

    Each scenario writes to a private lake (the stack's lake is left alone) and ends with:
    bronze = produced; silver + quarantine + duplicates = bronze; gold = recomputation;
    fraud alerts = reference. Exit 0 only when all of them hold exactly.
    """
    from lakehouse.chaos.scenarios import SCENARIOS, ChaosError, run

    if scenario == "list":
        for name, (_, what) in SCENARIOS.items():
            console.print(f"[bold]{name}[/]  {what}", highlight=False)
        return
    from lakehouse.delta.session import build_spark_session

    s = load_settings()
    options = {"times": times} if scenario == "kill-driver" else {}
    with tempfile.TemporaryDirectory(prefix=f"lakehouse-chaos-{scenario}-") as tmp:
        root = workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        spark = build_spark_session("lakehouse-chaos", s)
        try:
            outcome = run(scenario, s, root, spark, log=lambda line: console.print(line, highlight=False), **options)
        except ChaosError as e:
            err_console.print(f"[red]{scenario} could not run:[/] {e}")
            sys.exit(2)
        finally:
            spark.stop()
    acc = outcome.accounting
    for name, problems in acc.problems.items():
        mark = "[green]ok[/]" if not problems else "[red]WRONG[/]"
        console.print(f"{mark}  {name}" + ("" if not problems else ": " + "; ".join(problems)), highlight=False)
    console.print(
        f"{scenario}: {'exact' if outcome.exact else 'NOT exact'} after {outcome.seconds:.0f}s", highlight=False
    )
    sys.exit(0 if outcome.exact else 1)
