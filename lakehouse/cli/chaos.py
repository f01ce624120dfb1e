"""`lakehouse chaos SCENARIO...`: inject faults under load, recover, and prove nothing was lost or doubled."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from lakehouse.cli._common import console, err_console, friendly_errors, load_settings

#: The scenarios (lakehouse.chaos.scenarios.SCENARIOS, named here to keep `--help` free of its imports).
SCENARIO_NAMES = ("kill-driver", "disk-full", "kafka-restart", "poison-flood", "retention-outage")


@click.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Choice([*SCENARIO_NAMES, "list"]))
@click.option(
    "--times", type=click.IntRange(1, 100), default=10, show_default=True, help="kill-driver: kills in a row."
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the scenarios' private lake goes (default: a temporary directory, removed afterwards).",
)
@click.option(
    "--allow-deleting-records",
    is_flag=True,
    help="retention-outage: let the broker delete every record of the stack's topics sent so far (other "
    "streams behind that point will stop with DATA_LOST, as after a real outage).",
)
@friendly_errors
def chaos(scenarios: tuple[str, ...], times: int, workdir: Path | None, allow_deleting_records: bool) -> None:
    """Run fault SCENARIOS against the running stack, one after another, then check the books exactly.

    \b
    kill-driver    SIGKILL the pipeline's Spark driver --times in a row under load, restarting it
                   from its checkpoint each time: odd kills after a new batch commit, even ones in
                   the first micro-batch, which redoes what the kill before cut short
    disk-full      the private lake on a filesystem of its own (a tmpfs: needs root), shrunk to
                   full under a running stream: the driver must stop (exit 74) saying so, and
                   resume once there is room again
    kafka-restart  SIGKILL the Kafka broker under a running stream, restart it 10 s later
    poison-flood   1,200 invalid records of every kind (not UTF-8, JSON nested 5,000 deep, ...)
                   and 40 of ~1 MB at once, under a running stream
    retention-outage
                   the stream down while the broker deletes what it had not read (as retention
                   would): bronze must stop (exit 65) naming the lost offsets, push the page's
                   metric, and `lakehouse stream skip-lost` must record exactly those records
                   and get it going again (needs --allow-deleting-records)
    list           say what each scenario does

    The scenarios write to one private lake and a private Redis (the stack's are left alone) and
    end with one drain, serving gold into that Redis, and the accounting: bronze = produced;
    silver + quarantine + duplicates = bronze (each reason naming the broken field); gold =
    recomputation; fraud alerts = reference; Redis = gold (every key). Exit 0 only when all of
    them hold exactly.
    """
    from lakehouse.chaos.scenarios import SCENARIOS, ChaosError, run

    if "list" in scenarios:
        for name, (_, what) in SCENARIOS.items():
            console.print(f"[bold]{name}[/]  {what}", highlight=False)
        return
    if "retention-outage" in scenarios and not allow_deleting_records:
        raise click.UsageError(
            "retention-outage deletes every record sent so far from the stack's topics (as Kafka's retention "
            "would); streams of the stack that have not read them will stop. Add --allow-deleting-records."
        )
    from lakehouse.delta.session import build_spark_session

    s = load_settings()
    scenario = " + ".join(scenarios)
    with tempfile.TemporaryDirectory(prefix="lakehouse-chaos-") as tmp:
        root = workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        spark = build_spark_session("lakehouse-chaos", s)
        try:
            outcome = run(scenarios, s, root, spark, log=lambda line: console.print(line, highlight=False), times=times)
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
