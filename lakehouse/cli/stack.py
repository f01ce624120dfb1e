"""`lakehouse setup|up|down|status|logs|config|connect|ui|smoke|tables|demo`: the local stack and its state."""

from __future__ import annotations

import json
import sys
import time

import click
from rich.table import Table

from lakehouse.cli import serving, trino
from lakehouse.cli._common import console, err_console, friendly_errors, human_bytes, load_settings
from lakehouse.settings import DAGSTER_USERS


@click.command()
@friendly_errors
def setup() -> None:
    """Install JVM artifacts (Kafka, Spark connectors, Trino) and Debian packages; idempotent and cached.

    Resolves infra/jvm/*.pom.xml from Maven Central into ~/.m2 and copies them into
    <state_dir>/jvm/. Installs redis-server, prometheus, prometheus-pushgateway and maven
    with apt when missing (as root; otherwise it says what to install).
    """
    from lakehouse.stack.install import Setup

    Setup(load_settings(), log=lambda m: console.print(m, highlight=False)).run()


@click.command()
@click.argument("components", nargs=-1)
@friendly_errors
def up(components: tuple[str, ...]) -> None:
    """Start the stack (or only COMPONENTS) on loopback, in dependency order, each health-checked.

    Components, in start order: kafka, redis, trino, pushgateway, alertmanager, node-exporter,
    redis-exporter, prometheus, dashboard, dagster-code-server, dagster-webserver, dagster-daemon. Running `up` again is
    harmless: what is healthy is left alone (`lakehouse up dagster-daemon` restarts a dead daemon).
    """
    from lakehouse.stack import components as stack

    t0 = time.monotonic()
    stack.up(load_settings(), list(components) or None, log=lambda m: console.print(m, highlight=False))
    console.print(f"[green]stack up[/] in {time.monotonic() - t0:.0f}s; `lakehouse status` for details")


@click.command()
@click.argument("components", nargs=-1)
@friendly_errors
def down(components: tuple[str, ...]) -> None:
    """Stop what `up` started (pid files): SIGTERM, then SIGKILL after 30 s."""
    from lakehouse.stack import components as stack

    stack.down(load_settings(), list(components) or None, log=lambda m: console.print(m, highlight=False))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly_errors
def status(as_json: bool) -> None:
    """Show each component's state, pid, URL, version and resident memory; exit 1 if any is down."""
    from lakehouse.stack import components as stack

    s = load_settings()
    rows = stack.status(s)
    running = stack.stream_memory(s)
    bad = [r.name for r in rows if r.state != "healthy"]
    if as_json:
        click.echo(
            json.dumps([*(r.__dict__ for r in rows), *({**m.__dict__, "state": "stream"} for m in running)], indent=2)
        )
    else:
        table = Table(title="lakehouse stack", title_justify="left")
        for col in ("component", "state", "pid", "port / URL", "version", "memory (RSS)"):
            table.add_column(col, justify="right" if col in ("pid", "memory (RSS)") else "left")
        colors = {"healthy": "green", "foreign": "magenta", "unhealthy": "yellow", "down": "red"}
        for r in rows:
            table.add_row(
                r.name,
                f"[{colors[r.state]}]{r.state}[/]",
                str(r.pid or "-"),
                r.url,
                r.version or "-",
                human_bytes(r.rss_bytes),
            )
        total = sum(r.rss_bytes for r in rows)
        table.add_row("total", "", "", "", "", human_bytes(total), style="bold")
        for m in running:  # Spark drivers and the fast path's Flink JVM: the memory beside the idle stack
            table.add_row(f"stream {m.name}", "[green]running[/]", str(m.pid), "", "", human_bytes(m.rss_bytes))
        if running:
            streams_total = sum(m.rss_bytes for m in running)
            table.add_row("total with streams", "", "", "", "", human_bytes(total + streams_total), style="bold")
        console.print(table)
        if bad:
            console.print(f"[red]not healthy:[/] {', '.join(bad)}  (see `lakehouse logs NAME`)")
        for r in rows:
            if r.why:
                console.print(f"[red]{r.name}:[/] {r.why}", highlight=False)
        console.print(
            f"dashboards: {s.dashboard_url}  ·  Dagster: {s.dagster_url}  ·  alerts: {s.alertmanager_url}"
            "  (`lakehouse ui` or `lakehouse ui --dashboard` prints a login link)",
            highlight=False,
        )
    sys.exit(1 if bad else 0)


@click.command()
@click.argument("component")
@click.option("-n", "--lines", default=60, show_default=True, help="How many lines from the end.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
@friendly_errors
def logs(component: str, lines: int, follow: bool) -> None:
    """Print the log of COMPONENT (under <state_dir>/logs/)."""
    from lakehouse.stack import components as stack

    (c,) = stack.select(load_settings(), [component])
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--reference", is_flag=True, help="Every setting with its default and meaning (Markdown), not the values."
)
@friendly_errors
def config(as_json: bool, reference: bool) -> None:
    """Print the effective settings (environment + .env + defaults), secrets hidden."""
    from lakehouse.settings import ENV_PREFIX, reference_markdown

    if reference:
        click.echo(reference_markdown(), nl=False)
        return
    values = load_settings().redacted()
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


@click.command()
@friendly_errors
def smoke() -> None:
    """Prove the stack end to end: Spark writes a Delta table, Trino reads the same rows."""
    from lakehouse.stack.smoke import spark_to_trino_roundtrip

    s = load_settings()
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


@click.command()
@click.option("--exact", is_flag=True, help="Count every table with Spark (a scan) instead of reading the Delta logs.")
@friendly_errors
def tables(exact: bool) -> None:
    """Print every table: row count, files, size, latest version and its time.

    Read from each table's Delta log (the row counts Delta records per file, the checksum of the
    latest commit): no Spark job, well under a second. A table whose log cannot say (a Parquet
    checkpoint and no file list in the checksum) is counted with Spark, as is every table with --exact.
    """
    from lakehouse.delta.stats import fast_table_stats
    from lakehouse.tables import ALL_TABLES

    s = load_settings()
    found = {spec.full_name: (None if exact else fast_table_stats(s, spec)) for spec in ALL_TABLES}
    missing = [spec for spec in ALL_TABLES if found[spec.full_name] is None]
    if missing:
        from lakehouse.delta.session import build_spark_session
        from lakehouse.delta.stats import table_stats

        err_console.print(f"counting {len(missing)} table(s) with Spark ...", highlight=False)
        spark = build_spark_session("lakehouse-tables", s)
        try:
            for spec in missing:
                found[spec.full_name] = table_stats(spark, s, spec)
        finally:
            spark.stop()
    stats = [st for st in found.values() if st is not None]
    table = Table(title=f"tables under {s.lake_dir}", title_justify="left")
    for col in ("table", "rows", "files", "size", "version", "last commit (UTC)", "counted by"):
        table.add_column(col, justify="left" if col in ("table", "last commit (UTC)", "counted by") else "right")
    for st in stats:
        if not st.exists:
            table.add_row(st.name, "[dim]not created yet[/]", "", "", "", "")
            continue
        table.add_row(
            st.name,
            f"{st.rows:,}",
            str(st.files),
            human_bytes(st.size_bytes),
            str(st.version),
            st.modified.strftime("%Y-%m-%d %H:%M:%S") if st.modified else "",
            st.counted_by,
        )
    console.print(table)


@click.command()
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
    from lakehouse.cli.progress import catchup_display
    from lakehouse.generator import GeneratorConfig, generate, produce
    from lakehouse.services import streams
    from lakehouse.services.trino import query, sync_tables
    from lakehouse.tables import ALL_TABLES

    s = load_settings()
    ctx.invoke(up)
    cfg = GeneratorConfig.every_fault(int(minutes * 60 * rate), seed=seed, rate=rate)
    run = generate(cfg)
    truth_path = run.truth.write(s.state_dir / "generator" / f"demo-{seed}.json")
    console.print(
        f"\n[bold]generate[/]: {len(run.records):,} records ({minutes:g} min of event time); truth in {truth_path}"
    )
    sent = produce(run, s)
    console.print(f"  sent {sent.sent:,}, failed {sent.failed}, {sent.rate:,.0f} records/s")
    console.print("\n[bold]pipeline[/]: bronze -> refine (silver + gold), available-now")
    t0 = time.monotonic()
    with catchup_display("catching the pipeline up") as on_line:
        code = streams.run(s, "all", available_now=True, on_line=on_line)
    if code != 0:
        err_console.print(f"[red]the pipeline failed[/] (exit {code}); see the output above")
        sys.exit(code)
    elapsed = time.monotonic() - t0
    console.print(f"  caught up in {elapsed:.0f}s ({sent.sent / elapsed:,.0f} records/s end to end, incl. Spark start)")
    console.print("\n[bold]serving[/]: gold -> Redis, available-now")
    with catchup_display("catching Redis up") as on_line:
        code = streams.run(s, "serving", available_now=True, on_line=on_line)
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
        ctx.invoke(trino.sql, sql=sql_text, fmt="table")
        console.print(f"  ^ {title}")
    console.print("\n[bold]Redis[/] (what services read: lakehouse serve get …)")
    ctx.invoke(serving.get_alerts, count=3, as_json=False)
    ctx.invoke(serving.get_pages, minute=None, top=5, as_json=False)
    console.print("\n[bold]Where to look next[/]")
    console.print(f"  Dagster UI        {s.dagster_url}   (log in: lakehouse ui)")
    console.print(f'  Trino             {s.trino_url}   lakehouse sql "SHOW TABLES FROM {cat}.gold"')
    console.print(f"  Prometheus        {s.prometheus_url}")
    console.print("  tables            lakehouse tables")
    console.print(f"  state and logs    {s.state_dir}  (lakehouse logs NAME)")
    console.print("  stop everything   lakehouse down")


@click.command("ui")
@click.option(
    "--user",
    type=click.Choice(DAGSTER_USERS),
    default="engineer",
    show_default=True,
    help="engineer operates (runs, sensors, reloads); viewer only looks.",
)
@click.option("--path", "next_path", default="/", show_default=True, help="The page to open, e.g. /runs or /assets.")
@click.option("--dashboard", is_flag=True, help="Log into the dashboards page (live charts of every stream) instead.")
@friendly_errors
def ui(user: str, next_path: str, dashboard: bool) -> None:
    """Print a one-time link that logs a browser into the Dagster UI (or, with --dashboard, the dashboards).

    \b
    The UI is HTTPS with a login (Dagster itself has none). The link is good for one use within
    two minutes and sets a 12-hour session cookie; the token never leaves this machine's state
    directory except in the link. Or log in with user and password (`lakehouse connect engineer`).
    The browser must trust the stack's CA (its path: `lakehouse connect engineer`).
    """
    from lakehouse.services import dagster_guard as dagster_web

    s = load_settings()
    click.echo(dagster_web.login_link(s, user, next_path, base_url=s.dashboard_url if dashboard else None))
    err_console.print(f"one use, within {dagster_web.LOGIN_TTL_S:.0f}s; CA to trust: {s.ca_file}", highlight=False)


@click.command("connect")
@click.argument("role", type=click.Choice(["producer", "engineer", "analyst", "service"]))
@click.option(
    "--json", "as_json", is_flag=True, help="One object keyed by service, passwords included (pipe it; never log it)."
)
@friendly_errors
def connect(role: str, as_json: bool) -> None:
    """How ROLE reaches each service: endpoint, user, the CA file and where the password is.

    \b
    Roles: producer (writes events to Kafka), engineer (everything), analyst (reads the lake
    without raw PII columns, reads Redis), service (reads gold's serving copy in Redis).
    Without --json no password is printed, only the file that holds it; with --json the
    passwords are in the output (e.g. `redis.Redis(**json.load(f)["redis"])`).
    """
    from lakehouse.stack import access

    s = load_settings()
    if as_json:
        click.echo(json.dumps(access.connection(s, role, with_secrets=True), indent=2))
        return
    console.print(f"[bold]{role}[/]: {access.ROLES[role]}")
    for service, fields in access.connection(s, role, with_secrets=False).items():
        console.print(f"\n[bold]{service}[/]")
        for key, value in fields.items():
            console.print(f"  {key:<18} {value}", highlight=False, soft_wrap=True)  # paths whole, to copy
    for title, code in access.examples(s, role).items():
        console.print(f"\n[bold]{title}[/]")
        console.print(code, highlight=False, markup=False, soft_wrap=True)
