"""`lakehouse`: set up, run and inspect the streaming lakehouse on this machine.

Every command reads its settings from LAKEHOUSE_* environment variables and an
optional .env file (see `lakehouse config`). Errors are reported as one readable
message and a non-zero exit code, never as a stack trace.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from lakehouse import __version__

# Wide enough for the status table when the output is a pipe or a CI log.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
F = TypeVar("F", bound=Callable[..., Any])


def _human_bytes(n: int) -> str:
    if n <= 0:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def friendly_errors(fn: F) -> F:
    """Turn the platform's known errors into a message and exit code instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from lakehouse.bench.load import BenchError
        from lakehouse.bootstrap import SetupError
        from lakehouse.settings import SettingsError
        from lakehouse.spark import SparkSetupError
        from lakehouse.stack import StackError

        try:
            return fn(*args, **kwargs)
        except (SettingsError, SetupError, StackError, SparkSetupError, BenchError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _settings() -> Any:
    from lakehouse.settings import get_settings

    return get_settings()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lakehouse")
def main() -> None:
    """Streaming lakehouse: Kafka -> Spark -> Delta (bronze/silver/gold) -> Redis, Trino, dbt; run by Dagster.

    \b
    Typical session:
      lakehouse setup      install what the stack needs (idempotent; `make setup` runs it)
      lakehouse up         start Kafka, Redis, Trino, Prometheus, pushgateway, Dagster
      lakehouse status     one line per component; exit 1 if anything is down
      lakehouse smoke      Spark writes a Delta table, Trino reads it back
      lakehouse demo       generated events through the whole pipeline, results shown
      lakehouse stream …   run streams (foreground) or start/stop them as Dagster runs
      lakehouse sql "…"    query the lake through Trino
      lakehouse serve get  read what services read from Redis
      lakehouse down       stop what `up` started

    Settings come from LAKEHOUSE_* variables and .env; `lakehouse config` shows them.
    """


@main.command()
@friendly_errors
def setup() -> None:
    """Install JVM artifacts (Kafka, Spark connectors, Trino) and Debian packages; idempotent and cached.

    Resolves infra/jvm/*.pom.xml from Maven Central into ~/.m2 and copies them into
    <state_dir>/jvm/. Installs redis-server, prometheus, prometheus-pushgateway and maven
    with apt when missing (as root; otherwise it says what to install).
    """
    from lakehouse.bootstrap import Setup

    Setup(_settings(), log=lambda m: console.print(m, highlight=False)).run()


@main.command()
@click.argument("components", nargs=-1)
@friendly_errors
def up(components: tuple[str, ...]) -> None:
    """Start the stack (or only COMPONENTS) on loopback, in dependency order, each health-checked.

    Components: kafka, redis, trino, pushgateway, prometheus, dagster-webserver, dagster-daemon.
    Running `up` again is harmless: what is healthy is left alone.
    """
    from lakehouse import stack

    t0 = time.monotonic()
    stack.up(_settings(), list(components) or None, log=lambda m: console.print(m, highlight=False))
    console.print(f"[green]stack up[/] in {time.monotonic() - t0:.0f}s; `lakehouse status` for details")


@main.command()
@click.argument("components", nargs=-1)
@friendly_errors
def down(components: tuple[str, ...]) -> None:
    """Stop what `up` started (pid files): SIGTERM, then SIGKILL after 30 s."""
    from lakehouse import stack

    stack.down(_settings(), list(components) or None, log=lambda m: console.print(m, highlight=False))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly_errors
def status(as_json: bool) -> None:
    """Show each component's state, pid, URL, version and resident memory; exit 1 if any is down."""
    from lakehouse import stack

    rows = stack.status(_settings())
    bad = [r.name for r in rows if r.state not in ("healthy", "external")]
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in rows], indent=2))
    else:
        table = Table(title="lakehouse stack", title_justify="left")
        for col in ("component", "state", "pid", "port / URL", "version", "memory (RSS)"):
            table.add_column(col, justify="right" if col in ("pid", "memory (RSS)") else "left")
        colors = {"healthy": "green", "external": "cyan", "unhealthy": "yellow", "down": "red"}
        for r in rows:
            table.add_row(
                r.name,
                f"[{colors[r.state]}]{r.state}[/]",
                str(r.pid or "-"),
                r.url,
                r.version or "-",
                _human_bytes(r.rss_bytes),
            )
        total = sum(r.rss_bytes for r in rows)
        table.add_row("total", "", "", "", "", _human_bytes(total), style="bold")
        console.print(table)
        if bad:
            console.print(f"[red]not healthy:[/] {', '.join(bad)}  (see `lakehouse logs NAME`)")
    sys.exit(1 if bad else 0)


@main.command()
@click.argument("component")
@click.option("-n", "--lines", default=60, show_default=True, help="How many lines from the end.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@friendly_errors
def logs(component: str, lines: int, follow: bool) -> None:
    """Print the log of COMPONENT (under <state_dir>/logs/)."""
    from lakehouse import stack

    (c,) = stack.select(_settings(), [component])
    click.echo(f"==> {c.logfile} <==")
    click.echo(c.log_tail(lines))
    if follow and c.logfile.exists():
        with open(c.logfile, errors="replace") as fh:
            fh.seek(0, 2)
            try:
                while True:
                    line = fh.readline()
                    if line:
                        click.echo(line, nl=False)
                    else:
                        time.sleep(0.5)
            except KeyboardInterrupt:
                pass


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly_errors
def config(as_json: bool) -> None:
    """Print the effective settings (environment + .env + defaults), secrets hidden."""
    from lakehouse.settings import ENV_PREFIX

    values = _settings().redacted()
    if as_json:
        click.echo(json.dumps({k: str(v) if v is not None else None for k, v in values.items()}, indent=2))
        return
    table = Table(title=f"effective settings ({ENV_PREFIX}* and .env)", title_justify="left")
    table.add_column("setting", no_wrap=True)
    table.add_column("environment variable", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in values.items():
        env = "" if "(derived)" in key else f"{ENV_PREFIX}{key.upper()}"
        table.add_row(key, env, "" if value is None else str(value))
    console.print(table)


@main.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@friendly_errors
def sql(sql: str, fmt: str) -> None:
    """Run SQL against the stack's Trino (catalog from settings) and print the result.

    \b
    --format table   a table for people (the default)
    --format csv     RFC 4180 CSV with a header; NULL is an empty field
    --format json    an array of objects, one per row
    A SQL error or a Trino that is down is one line on stderr and exit 1.
    """
    from lakehouse.cli_trino import sql_command

    sql_command(sql, fmt)


@main.command()
@friendly_errors
def smoke() -> None:
    """Prove the stack end to end: Spark writes a Delta table, Trino reads the same rows."""
    from lakehouse.smoke import spark_to_trino_roundtrip

    s = _settings()
    console.print("Spark writes lake/_smoke/spark_roundtrip (Delta); Trino reads it back ...")
    result = spark_to_trino_roundtrip(s)
    table = Table("id", "source", "amount", title=f"{s.trino_catalog}.smoke.spark_roundtrip via Trino")
    for r in sorted(result.read_back):
        table.add_row(*(str(v) for v in r))
    console.print(table)
    if not result.ok:
        err_console.print(
            f"[red]mismatch:[/] Spark wrote {sorted(result.written)}, Trino read {sorted(result.read_back)}"
        )
        sys.exit(1)
    console.print(
        f"[green]ok[/]: {len(result.read_back)} rows identical through Spark -> Delta -> Trino in {result.seconds:.1f}s"
    )


@main.group()
def stream() -> None:
    """Run streams in the foreground (`run`), or through Dagster (`start`, `stop`, `enable`, `disable`, `status`)."""


@stream.command("run")
@click.argument("name", type=click.Choice(["bronze", "refine", "serving", "all"]))
@click.option("--available-now", "mode", flag_value="available-now", help="Catch up with what is available, then exit.")
@click.option(
    "--continuous",
    "mode",
    flag_value="continuous",
    default=True,
    help="Run until stopped (Ctrl-C stops it between two micro-batches). The default.",
)
@click.option("--master", help="Spark master URL (default: LAKEHOUSE_SPARK_MASTER).")
@friendly_errors
def stream_run(name: str, mode: str, master: str | None) -> None:
    """Run stream NAME: bronze (Kafka -> bronze), refine (bronze -> silver, quarantine and gold in
    one pass), serving (gold -> Redis), or all (bronze and refine in one driver).

    Each query has its own checkpoint under <lake>/_checkpoints/, so a restart resumes
    exactly where the last run stopped. With `all --available-now` the layers run one
    after the other, so gold is up to date with Kafka when it returns.
    """
    from lakehouse import streams

    s = _settings()
    t0 = time.monotonic()
    console.print(f"spark-submit spark_apps/{streams.APPS[name]} --{mode} (master {master or s.spark_master})")
    code = streams.run(s, name, available_now=mode == "available-now", master=master)
    if code != 0:
        err_console.print(f"[red]stream {name} failed[/] (exit {code}) after {time.monotonic() - t0:.0f}s")
        sys.exit(code)
    console.print(f"[green]stream {name} done[/] in {time.monotonic() - t0:.0f}s")


@main.command()
@friendly_errors
def tables() -> None:
    """Print every table: row count, files, size, latest version and its time."""
    from lakehouse.spark import build_spark_session
    from lakehouse.table_stats import all_stats

    s = _settings()
    spark = build_spark_session("lakehouse-tables", s)
    try:
        stats = all_stats(spark, s)
    finally:
        spark.stop()
    table = Table(title=f"tables under {s.lake_dir}", title_justify="left")
    for col in ("table", "rows", "files", "size", "version", "last commit (UTC)"):
        table.add_column(col, justify="left" if col in ("table", "last commit (UTC)") else "right")
    for st in stats:
        if not st.exists:
            table.add_row(st.name, "[dim]not created yet[/]", "", "", "", "")
            continue
        table.add_row(
            st.name,
            f"{st.rows:,}",
            str(st.files),
            _human_bytes(st.size_bytes),
            str(st.version),
            st.modified.strftime("%Y-%m-%d %H:%M:%S") if st.modified else "",
        )
    console.print(table)


@main.command()
@click.option("--minutes", default=3.0, show_default=True, help="Minutes of event time to generate.")
@click.option("--rate", default=20.0, show_default=True, help="Events per second of event time.")
@click.option("--seed", default=42, show_default=True)
@click.pass_context
@friendly_errors
def demo(ctx: click.Context, minutes: float, rate: float, seed: int) -> None:
    """The whole flow on this machine: stack up, generated events, the pipeline, results.

    \b
    1. `lakehouse up` (Kafka, Redis, Trino, Prometheus, pushgateway, Dagster)
    2. `lakehouse generate`: MINUTES of payments, clicks and IoT readings with every fraud
       pattern, sensor anomalies, duplicates, out-of-order and invalid records injected
    3. `lakehouse stream run all --available-now`: Kafka -> bronze -> silver + gold
    4. `lakehouse stream run serving --available-now`: gold -> Redis
    5. row counts per table, a few fraud alerts and a gold sample, queried through Trino; the
       newest alerts and top pages read back from Redis
    """
    from lakehouse import streams
    from lakehouse.generator import GeneratorConfig, generate, produce
    from lakehouse.tables import ALL_TABLES
    from lakehouse.trino import query, sync_tables

    s = _settings()
    ctx.invoke(up)
    cfg = GeneratorConfig(
        seed=seed,
        rate=rate,
        count=int(minutes * 60 * rate),
        fraud_card_testing=2,
        fraud_velocity=2,
        fraud_amount_spike=2,
        fraud_impossible_travel=2,
        anomalies=10,
        duplicates=30,
        out_of_order=0.03,
        invalid=20,
    )
    run = generate(cfg)
    truth_path = run.truth.write(s.state_dir / "generator" / f"demo-{seed}.json")
    console.print(
        f"\n[bold]generate[/]: {len(run.records):,} records ({minutes:g} min of event time); truth in {truth_path}"
    )
    sent = produce(run, s)
    console.print(f"  sent {sent.sent:,}, failed {sent.failed}, {sent.rate:,.0f} records/s")
    console.print("\n[bold]pipeline[/]: bronze -> refine (silver + gold), available-now")
    t0 = time.monotonic()
    code = streams.run(s, "all", available_now=True)
    if code != 0:
        err_console.print(f"[red]the pipeline failed[/] (exit {code}); see the output above")
        sys.exit(code)
    elapsed = time.monotonic() - t0
    console.print(f"  caught up in {elapsed:.0f}s ({sent.sent / elapsed:,.0f} records/s end to end, incl. Spark start)")
    console.print("\n[bold]serving[/]: gold -> Redis, available-now")
    code = streams.run(s, "serving", available_now=True)
    if code != 0:
        err_console.print(f"[red]the serving stream failed[/] (exit {code}); see the output above")
        sys.exit(code)
    sync = sync_tables(s)
    console.print(f"\n[bold]trino[/]: {sync.summary()}", highlight=False)
    cat = s.trino_catalog
    counts = Table("table", "rows", title="row counts (Trino)", title_justify="left")
    for t in ALL_TABLES:
        n = query(s, f"SELECT count(*) FROM {cat}.{t.full_name}")[0][0]
        counts.add_row(t.full_name, f"{n:,}")
    console.print(counts)
    for title, sql_text in (
        (
            "fraud alerts (top 5 by score)",
            f"SELECT event_id, user_id, merchant_id, amount, array_join(rules, ', ') AS rules, score "
            f"FROM {cat}.gold.fraud_alerts ORDER BY score DESC, event_time LIMIT 5",
        ),
        (
            "busiest merchant minutes",
            f"SELECT merchant_id, window_start, tx_count, round(amount_sum, 2) AS amount_sum, flagged_count "
            f"FROM {cat}.gold.merchant_minute ORDER BY tx_count DESC, window_start LIMIT 5",
        ),
    ):
        ctx.invoke(sql, sql=sql_text, fmt="table")
        console.print(f"  ^ {title}")
    console.print("\n[bold]Redis[/] (what services read: lakehouse serve get …)")
    ctx.invoke(cli_serving.get_alerts, count=3, as_json=False)
    ctx.invoke(cli_serving.get_pages, minute=None, top=5, as_json=False)
    console.print("\n[bold]Where to look next[/]")
    console.print(f"  Dagster UI        {s.dagster_url}")
    console.print(f'  Trino             {s.trino_url}   lakehouse sql "SHOW TABLES FROM {cat}.gold"')
    console.print(f"  Prometheus        {s.prometheus_url}")
    console.print("  tables            lakehouse tables")
    console.print(f"  state and logs    {s.state_dir}  (lakehouse logs NAME)")
    console.print("  stop everything   lakehouse down")


from lakehouse.cli_generate import generate  # noqa: E402 - registered after main exists

main.add_command(generate)

# Registered after main exists: `stream start|stop|…` (cli_stream), `redis …` and `serve get …` (cli_serving),
# `trino sync` (cli_trino, which also formats `sql` results), `bench …` (cli_bench).
from lakehouse import cli_bench, cli_serving, cli_stream, cli_trino  # noqa: E402, F401

if __name__ == "__main__":
    main()
