"""`lakehouse stream …` and the batch jobs `replay`, `maintain`, `check`.

`lakehouse stream run` runs an app in the foreground without Dagster; `stream start|stop|
enable|disable|status` drive the running Dagster instance (GraphQL), so what they do shows
in the UI and the UI's actions show here. `replay`, `maintain` and `check` run a batch app in
the foreground, or as a Dagster run with `--via-dagster`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table

from lakehouse.cli._common import console, err_console, friendly_errors, load_settings
from lakehouse.services import dagster_api as api
from lakehouse.services import streams
from lakehouse.settings import Settings, SettingsError, check_run_overrides

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
#: What Dagster runs and supervises: the Spark streams and the fraud fast path (Flink).
SUPERVISED = (*streams.STREAMS, streams.FAST_PATH)
name_arg = click.argument("name", type=click.Choice(SUPERVISED))


@click.group()
def stream() -> None:
    """Run streams in the foreground (`run`), or through Dagster (`start`, `stop`, `enable`, `disable`, `status`)."""


@stream.command("run")
@click.argument("name", type=click.Choice([*streams.APPS, streams.FAST_PATH]))
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
    one pass), serving (gold -> Redis), all (bronze and refine in one driver), or fastpath (the
    fraud fast path: Kafka payments -> Redis alerts in one Flink job, continuous only).

    Each query has its own checkpoint under <lake>/_checkpoints/, so a restart resumes
    exactly where the last run stopped. With `all --available-now` the layers run one
    after the other, so gold is up to date with Kafka when it returns.
    """
    s = load_settings()
    if name == streams.FAST_PATH:
        if mode == "available-now":
            raise click.UsageError("fastpath runs continuously only (it has no catch-up mode)")
        from lakehouse.services import fastpath

        code = fastpath.run(s)
        if code not in (0, 143, -15):  # a stop signal ends the JVM with SIGTERM's code
            err_console.print(f"[red]fastpath failed[/] (exit {code}): see its log lines above")
            sys.exit(code)
        return
    t0 = time.monotonic()
    console.print(f"spark-submit spark_apps/{streams.APPS[name]} --{mode} (master {master or s.spark_master})")
    if mode == "available-now":
        from lakehouse.cli.progress import catchup_display

        with catchup_display(f"catching {name} up") as on_line:
            code = streams.run(s, name, available_now=True, master=master, on_line=on_line)
    else:
        code = streams.run(s, name, available_now=False, master=master)
    if code != 0:
        err_console.print(f"[red]stream {name} failed[/] (exit {code}) after {time.monotonic() - t0:.0f}s")
        sys.exit(code)
    console.print(f"[green]stream {name} done[/] in {time.monotonic() - t0:.0f}s")


def _api(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the Dagster API; a stack that is down or a refused request becomes a clear message."""
    import requests

    try:
        return fn(*args, **kwargs)
    except requests.ConnectionError:
        raise click.ClickException(
            "the Dagster webserver is not reachable: start the stack with `lakehouse up`"
        ) from None
    except (api.DagsterApiError, RuntimeError) as e:
        raise click.ClickException(f"Dagster refused: {e}") from None


def _parse_sets(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected NAME=VALUE (a setting, e.g. max_offsets_per_trigger=500)")
        out[key.strip().lower()] = value
    try:
        check_run_overrides(out)
    except SettingsError as e:
        raise click.BadParameter(str(e), param_hint="--set") from None
    return out


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@stream.command("forget")
@click.argument("app", type=click.Choice(list(streams.METRICS_APPS)))
@friendly_errors
def stream_forget(app: str) -> None:
    """Remove the metrics a killed driver of APP left in the pushgateway.

    A driver that ends cleanly removes its own metrics. One that was killed (or whose machine
    died) leaves them, so its heartbeat ages and LakehouseStreamDown keeps paging until a new
    driver of the same app replaces them. For a stream that is not coming back (pipeline replaced
    by separate bronze and refine drivers, say), this ends that page. Refused while APP runs.
    """
    s = load_settings()
    try:
        held = streams.forget_metrics(s, app)
    except RuntimeError as e:
        err_console.print(f"[red]error:[/] {e}", highlight=False)
        sys.exit(1)
    console.print(
        f"forgot {app}: {held} series removed from the pushgateway" if held else f"{app} had no metrics there"
    )


@stream.command("skip-lost")
@click.option("--yes", is_flag=True, help="Skip without asking (for scripts).")
@friendly_errors
def stream_skip_lost(yes: bool) -> None:
    """Accept that Kafka deleted records bronze had not read, record them, and let bronze go on.

    Bronze stops (exit 65, page LakehouseKafkaRecordsLost) when the offsets its checkpoints would
    read next are older than the oldest Kafka still holds: its retention deleted them while the
    stream was down or behind. If the producers can send those records again, have them do it
    first. Then this command:

    \b
    1. lists the lost ranges (topic, partition, offsets) and writes them, with their count,
       to <lake>/_lost_offsets/<time>.json (kept: the record of what the lake never saw);
    2. runs bronze once (available-now) past the gap: for that run only Spark's
       failOnDataLoss is off, so it starts from the oldest records Kafka holds;
    3. clears the page's metric.

    Bronze must not be running (stop it, or its supervisor, first). Silver and gold continue
    from bronze as usual: start the streams again afterwards.
    """
    from lakehouse.services import retention

    s = load_settings()
    lost = retention.find_lost(s)
    if not lost:
        console.print("nothing lost: every bronze checkpoint is within what Kafka holds")
        retention.clear_lost(s, log=console.print)
        return
    table = Table("topic", "partition", "lost offsets", "records", box=None)
    for r in lost:
        table.add_row(r.topic, str(r.partition), f"{r.first}..{r.end - 1}", f"{r.count:,}")
    console.print(table)
    total = sum(r.count for r in lost)
    if not yes and not click.confirm(f"skip these {total:,} records for good?", default=False):
        err_console.print("nothing skipped")
        sys.exit(1)
    try:
        skipped, report = retention.skip(
            s, lambda past: streams.run(past, "bronze", available_now=True, on_line=lambda line: None)
        )
    except retention.DataLostError as e:  # retention moved on again while bronze ran: once more
        err_console.print(f"[red]still lost:[/] {e}", highlight=False)
        sys.exit(retention.DATA_LOST)
    except RuntimeError as e:
        err_console.print(f"[red]error:[/] {e}", highlight=False)
        sys.exit(1)
    console.print(f"lost ranges recorded in {report}")
    console.print(
        f"[green]bronze is past the gap[/]: {sum(r.count for r in skipped):,} records skipped; start the streams again"
    )


@stream.command("start")
@name_arg
@click.option("--available-now", is_flag=True, help="Run the catch-up job (ends by itself) instead of the stream.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Override a setting for this run (repeat).")
@click.option("--master", help="Spark master URL for this run (default: LAKEHOUSE_SPARK_MASTER).")
@friendly_errors
def stream_start(name: str, available_now: bool, sets: tuple[str, ...], master: str | None) -> None:
    """Launch stream NAME as a Dagster run (job stream_NAME, or catchup_NAME with --available-now).

    The run shows in the UI with each micro-batch as an observation on the tables it
    writes. The run queue admits one run per stream, so a second start waits in the queue.
    """
    s = load_settings()
    if name == streams.FAST_PATH and (available_now or master):
        raise click.UsageError("fastpath runs continuously on its own engine: no --available-now, no --master")
    job = f"{'catchup' if available_now else 'stream'}_{name}"
    op_config: dict[str, Any] = {}
    if name != streams.FAST_PATH:
        op_config["mode"] = "available_now" if available_now else "continuous"
    if sets:
        op_config["settings"] = _parse_sets(sets)
    if master:
        op_config["master"] = master
    run_id = _api(
        api.launch_run, s, job, {"ops": {f"{name}_stream": {"config": op_config}}}, {"lakehouse/cli": "start"}
    )
    console.print(f"launched {job}: run {run_id}\n  {s.dagster_url}/runs/{run_id}")


@stream.command("stop")
@name_arg
@click.option("--keep-supervisor", is_flag=True, help="Leave the supervisor on (it will start the stream again).")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for the runs to end.")
@friendly_errors
def stream_stop(name: str, keep_supervisor: bool, timeout: float) -> None:
    """Stop stream NAME gracefully, at a micro-batch boundary.

    Switches its supervisor off first (unless --keep-supervisor), then terminates its
    Dagster runs (stream or catch-up) and waits for them to end. A driver started with
    `lakehouse stream run` outside Dagster gets SIGTERM, which stops it the same way.
    """
    s = load_settings()
    if not keep_supervisor and _api(api.set_sensor, s, f"supervise_{name}", False) == "STOPPED":
        console.print(f"supervisor supervise_{name}: off")
    active = _api(api.runs, s, tags={"lakehouse/stream": name}, statuses=api.IN_PROGRESS)
    for r in active:
        _api(api.terminate_run, s, r["runId"])
        console.print(f"terminating run {r['runId']} ({r['jobName']}, {r['status']})")
    holder = streams.lock_holder(s, name) if not active else None
    if holder:
        os.kill(holder, signal.SIGTERM)
        console.print(f"sent SIGTERM to the {name} driver outside Dagster (pid {holder})")
    if not active and not holder:
        console.print(f"{name} is not running")
        return
    deadline = time.monotonic() + timeout
    with console.status(f"waiting for {name} to finish its micro-batch and stop ..."):
        while time.monotonic() < deadline:
            pending = [
                r for r in _api(api.runs, s, run_ids=[r["runId"] for r in active]) if r["status"] not in TERMINAL
            ]
            if not pending and streams.lock_holder(s, name) is None:
                break
            time.sleep(1)
        else:
            err_console.print(f"[red]{name} did not stop within {timeout:.0f}s[/]; see `lakehouse stream status`")
            sys.exit(1)
    for r in _api(api.runs, s, run_ids=[r["runId"] for r in active]) if active else []:
        console.print(f"run {r['runId']}: {r['status']}")
    console.print(f"[green]{name} stopped[/]")


@stream.command("enable")
@name_arg
@friendly_errors
def stream_enable(name: str) -> None:
    """Switch on the supervisor of NAME: it starts the stream and keeps it running, restarting with backoff."""
    status = _api(api.set_sensor, load_settings(), f"supervise_{name}", True)
    console.print(f"supervise_{name}: {status}; the stream starts within a few seconds (`lakehouse stream status`)")


@stream.command("disable")
@name_arg
@friendly_errors
def stream_disable(name: str) -> None:
    """Switch off the supervisor of NAME. A running stream keeps running: `lakehouse stream stop NAME` stops it."""
    status = _api(api.set_sensor, load_settings(), f"supervise_{name}", False)
    console.print(f"supervise_{name}: {status}")


@stream.command("status")
@friendly_errors
def stream_status() -> None:
    """One line per stream: supervisor, current or last run, Kafka lag where the stream commits its
    offsets to a consumer group (the fast path), and the supervisor's last decision."""
    s = load_settings()
    table = Table(title="streams")
    for col in ("stream", "supervisor", "run", "status", "job", "since", "restart", "lag", "supervisor says"):
        table.add_column(col)
    for name in SUPERVISED:
        sensor = _api(api.sensor_state, s, f"supervise_{name}")
        recent = _api(api.runs, s, tags={"lakehouse/stream": name}, limit=1)
        tick = sensor["last_tick"] or {}
        says = tick.get("skipReason") or ((tick.get("error") or {}).get("message") or "")
        r = recent[0] if recent else None
        holder = streams.lock_holder(s, name)
        table.add_row(
            name,
            "on" if sensor["status"] == "RUNNING" else "off",
            r["runId"][:8] if r else ("outside Dagster" if holder else "-"),
            r["status"] if r else (f"pid {holder}" if holder else "-"),
            r["jobName"] if r else "-",
            _when(r["startTime"]) if r else "-",
            r["tags"].get("lakehouse/restart", "-") if r else "-",
            _lag(s, name),
            says[:80],
        )
    console.print(table)
    console.print(f"UI: {s.dagster_url}/automation (supervisors)  ·  {s.dagster_url}/runs")


@stream.command("checkpoints")
@friendly_errors
def stream_checkpoints() -> None:
    """Check every query's checkpoint (read only): its newest batch and commit, what a start would repair
    by itself, and damage that stops it (exit 66: docs/runbook.md, 'A damaged checkpoint')."""
    from lakehouse.services import checkpoints

    s = load_settings()
    found = [checkpoints.diagnose(root) for root in checkpoints.queries(s.checkpoint_dir)]
    if not found:
        console.print(f"no checkpoints under {s.checkpoint_dir}")
        return
    table = Table(title=f"checkpoints under {s.checkpoint_dir}")
    for col in ("query", "batch", "committed", "state"):
        table.add_column(col)
    for d in found:
        notes = [f"[red]damaged[/]: {p}" for p in d.problems]
        notes += [f"[yellow]repaired at start[/]: {r}" for r in d.repairs]
        notes += [f"[yellow]warning[/]: {w}" for w in d.warnings]
        table.add_row(
            str(d.root).removeprefix(str(s.checkpoint_dir)).strip("/"),
            "-" if d.latest_batch is None else str(d.latest_batch),
            "-" if d.latest_commit is None else str(d.latest_commit),
            "\n".join(notes) or "[green]ok[/]",
        )
    console.print(table)
    if any(d.problems for d in found):
        sys.exit(checkpoints.CHECKPOINT_DAMAGED)


def _lag(s: Settings, name: str) -> str:
    """Records the stream's consumer group is behind (the fast path only: Spark keeps its offsets in checkpoints)."""
    if name != streams.FAST_PATH:
        return "-"
    from lakehouse.services import fastpath, kafka

    try:
        lag = kafka.group_lag(s, fastpath.GROUP, fastpath.TOPIC)["lag"]
    except Exception:  # Kafka down: the rest of the table is still worth showing
        return "?"
    return "no commit yet" if lag is None else f"{lag:,}"


@click.command("replay")
@click.option("--from", "start", required=True, metavar="YYYY-MM-DD", help="First event date to rebuild (UTC).")
@click.option("--to", "end", required=True, metavar="YYYY-MM-DD", help="Last event date to rebuild, inclusive.")
@click.option("--layers", default="silver,gold", show_default=True, help="silver, gold, or both.")
@click.option(
    "--dagster", "via_dagster", is_flag=True, help="Launch the Dagster job `replay` (one run) instead of running here."
)
@click.option(
    "--backfill",
    is_flag=True,
    help="Launch a Dagster backfill of `replay_by_date`: one run per date, shown on the UI's partition and "
    "backfill pages.",
)
@friendly_errors
def replay(start: str, end: str, layers: str, via_dagster: bool, backfill: bool) -> None:
    """Rebuild silver and gold from bronze for event dates START..END (bronze is only read).

    Silver rows of the dates are re-validated from bronze and replaced in one commit; gold
    minute tables, late events and fraud alerts of the dates are recomputed from them.
    The refine stream, which writes silver and gold, must be stopped first
    (`lakehouse stream stop refine`).

    \b
    Where it runs:
      (default)    here, in the foreground, one Spark app for the whole range
      --dagster    one Dagster run of the job `replay` for the whole range
      --backfill   a Dagster backfill of `replay_by_date`: one run per date (queued one at a time),
                   each date's outcome kept on the job's Partitions tab
    """
    from datetime import date, timedelta

    days = []
    for value in (start, end):
        try:
            days.append(date.fromisoformat(value))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a date: use YYYY-MM-DD") from None
    if days[1] < days[0]:
        raise click.BadParameter(f"--to {end} is before --from {start}")
    if via_dagster and backfill:
        raise click.UsageError("choose one of --dagster and --backfill")
    s = load_settings()
    chosen = layers.split(",")
    if backfill:
        dates = [(days[0] + timedelta(days=i)).isoformat() for i in range((days[1] - days[0]).days + 1)]
        config = {"ops": {"replay_date": {"config": {"layers": chosen}}}}
        backfill_id = _api(
            api.launch_backfill,
            s,
            "replay_by_date",
            dates,
            config,
            {"lakehouse/cli": "replay"},
            f"replay {start}..{end}",
        )
        console.print(
            f"launched a backfill of {len(dates)} date(s), one run each: {backfill_id}\n"
            f"  {s.dagster_url}/runs/b/{backfill_id}?tab=runs"
        )
        return
    if via_dagster:
        ranged: dict[str, Any] = {"from_date": start, "to_date": end, "layers": chosen}
        run_id = _api(
            api.launch_run, s, "replay", {"ops": {"replay_tables": {"config": ranged}}}, {"lakehouse/cli": "replay"}
        )
        console.print(f"launched replay: run {run_id}\n  {s.dagster_url}/runs/{run_id}")
        return
    _foreground(s, "replay", ["--from", start, "--to", end, "--layers", layers], f"replay {start}..{end}", steps=True)


def _foreground(s: Settings, app: str, args: list[str], what: str, steps: bool = False) -> None:
    """Run spark_apps/<app>.py with spark-submit here, output to the terminal; exit with its status.
    STEPS: the app prints step lines, drawn as a bar on a terminal. A stop signal (Ctrl-C, TERM) stops
    the app, a second one kills it (``streams.run_process``)."""
    from lakehouse.cli.progress import steps_display

    t0 = time.monotonic()
    cmd = streams.spark_submit(s, app, args)
    if steps:
        with steps_display(what) as lines:
            code = streams.run_process(s, cmd, app, streams.app_preexec(s), on_line=lines)
            if code == 0:
                lines.finished()
    else:
        code = streams.run_process(s, cmd, app, streams.app_preexec(s))
    if code != 0:
        err_console.print(f"[red]{what} failed[/] (exit {code}) after {time.monotonic() - t0:.0f}s")
        sys.exit(code)
    console.print(f"[green]{what} done[/] in {time.monotonic() - t0:.0f}s")


def _launch_job(s: Settings, job: str, op: str, op_config: dict[str, Any]) -> None:
    run_id = _api(api.launch_run, s, job, {"ops": {op: {"config": op_config}}}, {"lakehouse/cli": job})
    console.print(f"launched {job}: run {run_id}\n  {s.dagster_url}/runs/{run_id}")


@click.command("maintain")
@click.option("--optimize", "ops", flag_value="optimize", multiple=True, help="Compact; Z-order gold by its keys.")
@click.option("--vacuum", "ops", flag_value="vacuum", multiple=True, help="Delete unreferenced files past retention.")
@click.option("--checkpoint", "ops", flag_value="checkpoint", multiple=True, help="Write a Delta checkpoint.")
@click.option(
    "--rekey",
    "ops",
    flag_value="rekey",
    multiple=True,
    help="After `lakehouse keys rotate`: rewrite encrypted files still under an older master key.",
)
@click.option("--tables", default="", metavar="LAYER/NAME,...", help="Only these tables (default: all).")
@click.option("--retention-hours", type=float, help="VACUUM retention (default: each table's own, 7 days).")
@click.option("--force", is_flag=True, help="Allow a VACUUM retention shorter than the table's (unsafe).")
@click.option("--dagster", "via_dagster", is_flag=True, help="Launch the Dagster job `maintenance` instead.")
@friendly_errors
def maintain(ops: tuple[str, ...], tables: str, retention_hours: float | None, force: bool, via_dagster: bool) -> None:
    """Table maintenance: OPTIMIZE, VACUUM, checkpoints (all three when none is named), re-encryption.

    Safe while streams write: Delta conflicts are retried. Each table's result (files and
    bytes before and after) is printed, or, with --dagster, recorded on its asset.
    """
    s = load_settings()
    if via_dagster:
        config: dict[str, Any] = {"operations": list(ops) or ["optimize", "vacuum", "checkpoint"]}
        config |= {"tables": tables.split(",")} if tables else {}
        config |= {"retention_hours": retention_hours} if retention_hours is not None else {}
        _launch_job(s, "maintenance", "maintain_tables", config | ({"force": True} if force else {}))
        return
    args = [f"--{op}" for op in ops] + (["--tables", tables] if tables else [])
    args += (["--retention-hours", str(retention_hours)] if retention_hours is not None else []) + (
        ["--force"] if force else []
    )
    _foreground(s, "maintenance", args, "maintenance")


@click.command("check")
@click.option("--assets", default="", metavar="LAYER/NAME,...", help="Only these tables (default: silver and gold).")
@click.option("--dagster", "via_dagster", is_flag=True, help="Launch the Dagster job `quality` instead.")
@friendly_errors
def check(assets: str, via_dagster: bool) -> None:
    """Run the data-quality checks (Great Expectations) and print each result with failing examples.

    A failing check is a result, not an error: the exit status is 0 unless the checks could not run.
    With --dagster the results are asset checks in the UI (all tables; --assets is ignored).
    """
    s = load_settings()
    if via_dagster:
        run_id = _api(api.launch_run, s, "quality", {}, {"lakehouse/cli": "check"})
        console.print(f"launched quality: run {run_id}\n  {s.dagster_url}/runs/{run_id}")
        return
    _foreground(s, "quality", ["--assets", assets] if assets else [], "quality checks")
