"""`lakehouse redis …` (the Redis projection of gold) and `lakehouse serve get …` (what services read).

`serve get` reads through `lakehouse.serving.ServingClient`, the same typed client a service
uses, so what it prints is exactly what a service would get.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from rich.table import Table
from rich.text import Text

from lakehouse.cli._common import console, err_console, friendly_errors, load_settings
from lakehouse.settings import Settings

T = TypeVar("T")


@contextmanager
def _client(s: Settings, role: str = "reader") -> Iterator[Any]:
    """A Redis client as ROLE; an unreachable Redis or a refused password becomes a clear message."""
    import redis

    from lakehouse import serving

    r = serving.connect(s, role=role)
    try:
        yield r
    except (redis.ConnectionError, redis.TimeoutError) as e:
        raise click.ClickException(
            f"Redis at {s.redis_where} is not reachable ({e}); start it with `lakehouse up redis`"
        ) from None
    except redis.AuthenticationError as e:
        where = s.secret_file(f"redis_{role}")
        raise click.ClickException(
            f"Redis at {s.redis_where} refused user {role!r}: {e} (its password is in {where})"
        ) from None
    finally:
        r.close()


def parse_time(text: str) -> datetime:
    """ISO-8601 (a naive one is UTC) or whole seconds since the epoch."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected ISO-8601 (2026-11-26T10:15:00Z) or epoch seconds") from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, tuple | list):
        return ", ".join(str(v) for v in value)
    return str(value)


def show(rows: list[Any], title: str, as_json: bool, empty: str) -> None:
    """Dataclass rows as a table (or JSON); EMPTY explains an empty answer."""
    if as_json:
        click.echo(json.dumps(_jsonable(rows), indent=2))
        return
    if not rows:
        err_console.print(f"[yellow]{empty}[/]")
        return
    fields = [f.name for f in dataclasses.fields(rows[0])]
    table = Table(*fields, title=title, title_justify="left")
    for row in rows:
        table.add_row(*(Text(_cell(getattr(row, f))) for f in fields))
    console.print(table)


# -- lakehouse redis ----------------------------------------------------------------------
@click.group()
def redis() -> None:
    """The Redis projection of gold: what it holds (`keys`) and refilling it from the lake (`rebuild`).

    \b
    Redis is a cache of gold: the serving stream (`lakehouse stream start serving`, or
    `lakehouse stream run serving`) writes each change of gold to it; the lake stays the
    system of record. The key layout is in docs/querying-and-serving.md.
    """


@redis.command("keys")
@friendly_errors
def redis_keys() -> None:
    """Count the serving keys per family, with Redis's memory use."""
    from lakehouse import serving

    s = load_settings()
    with _client(s, role="admin") as r:  # INFO is an admin command
        table = Table("key pattern", "keys", title=f"Redis {s.redis_where}", title_justify="left")
        for pattern, exact in serving.SERVING_KEY_PATTERNS:
            n = sum(1 for k in r.scan_iter(match=pattern, count=1000) if exact.fullmatch(k))
            table.add_row(Text(pattern), f"{n:,}")  # Text: `page:top:*` is not an emoji code
        console.print(table)
        length = r.xlen(serving.FRAUD_ALERTS_STREAM) if r.exists(serving.FRAUD_ALERTS_STREAM) else 0
        memory = r.info("memory").get("used_memory_human", "?")
        console.print(f"fraud:alerts stream length {length:,} (capped near {serving.FRAUD_ALERTS_MAXLEN:,}); {memory}")


@redis.command("rebuild")
@click.option("--all", "everything", is_flag=True, help="Also minute windows older than the keys' 24 h TTL.")
@click.option("--master", help="Spark master URL (default: LAKEHOUSE_SPARK_MASTER).")
@friendly_errors
def redis_rebuild(everything: bool, master: str | None) -> None:
    """Drop every serving key and refill Redis from gold's current snapshot (a Spark job).

    \b
    Refuses while the serving stream runs (stop it first: `lakehouse stream stop serving`);
    restart it afterwards, it resumes from its checkpoint. Only serving keys are dropped:
    anything else in the same Redis is left alone. Minute windows older than 24 h are skipped
    (their keys would expire at once) unless --all.
    """
    from lakehouse.cli.progress import steps_display
    from lakehouse.services import streams

    s = load_settings()
    cmd = streams.spark_submit(s, "serving", ["--rebuild", *(["--all"] if everything else [])], master)
    console.print("spark-submit spark_apps/serving.py --rebuild" + (" --all" if everything else ""))
    t0 = time.monotonic()
    with steps_display("rebuilding Redis from gold") as lines:
        code = streams.run_process(s, cmd, "serving", streams.app_preexec(s), on_line=lines)
        if code == 0:
            lines.finished()
    if code == streams.ALREADY_RUNNING:
        err_console.print("[red]the serving stream is running[/]: stop it first (`lakehouse stream stop serving`)")
        sys.exit(code)
    if code != 0:
        err_console.print(f"[red]rebuild failed[/] (exit {code}) after {time.monotonic() - t0:.0f}s; see above")
        sys.exit(code)
    console.print(f"[green]Redis rebuilt from gold[/] in {time.monotonic() - t0:.0f}s")


# -- lakehouse serve get ------------------------------------------------------------------
@click.group()
def serve() -> None:
    """Read what services read from Redis, through the typed client `lakehouse.serving.ServingClient`."""


@serve.group("get")
def serve_get() -> None:
    """One of: merchant, device, pages, alerts, user. Each takes --json."""


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _read(fn: Callable[[Any], T]) -> T:
    from lakehouse.serving import ServingClient

    s = load_settings()
    with _client(s) as r:
        return fn(ServingClient(r))


@serve_get.command("merchant")
@click.argument("merchant_id")
@click.option("--since", help="First minute (ISO-8601 or epoch s). Default: --minutes before now.")
@click.option("--until", help="End, exclusive (default: now).")
@click.option("--minutes", default=60, show_default=True, help="How far back from --until when --since is not given.")
@json_option
@friendly_errors
def get_merchant(merchant_id: str, since: str | None, until: str | None, minutes: int, as_json: bool) -> None:
    """MERCHANT_ID's one-minute aggregates (key merchant:{id}:minute:{epoch}), oldest first."""
    end = parse_time(until) if until else datetime.now(UTC)
    start = parse_time(since) if since else end - timedelta(minutes=minutes)
    try:
        rows = _read(lambda c: c.merchant_minutes(merchant_id, start, end))
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    show(rows, f"merchant {merchant_id}", as_json, f"no minutes of merchant {merchant_id} in {start} .. {end}")


@serve_get.command("device")
@click.argument("device_id")
@click.argument("sensor_type", type=click.Choice(["temperature", "humidity", "pressure", "vibration"]))
@json_option
@friendly_errors
def get_device(device_id: str, sensor_type: str, as_json: bool) -> None:
    """The latest minute of DEVICE_ID's SENSOR_TYPE (key device:{id}:{sensor}:latest)."""
    row = _read(lambda c: c.device_latest(device_id, sensor_type))
    show([row] if row else [], f"device {device_id} {sensor_type}", as_json, f"nothing for {device_id} {sensor_type}")


def _latest_page_window(r: Any) -> datetime | None:
    starts = [int(k.rsplit(":", 1)[1]) for k in r.scan_iter(match="page:top:*", count=1000) if k.count(":") == 2]
    return datetime.fromtimestamp(max(starts), UTC) if starts else None


@serve_get.command("pages")
@click.option("--minute", help="The window (ISO-8601 or epoch s). Default: the newest one in Redis.")
@click.option("-n", "top", default=10, show_default=True, help="How many pages.")
@json_option
@friendly_errors
def get_pages(minute: str | None, top: int, as_json: bool) -> None:
    """The most viewed pages of a minute (key page:top:{epoch}), most viewed first."""
    from lakehouse.serving import ServingClient

    s = load_settings()
    with _client(s) as r:
        window = parse_time(minute) if minute else _latest_page_window(r)
        if window is None:
            err_console.print("[yellow]no page:top:* keys in Redis[/] (is the serving stream running?)")
            return
        result = ServingClient(r).top_pages(window, top)
    if as_json:
        click.echo(json.dumps(_jsonable(result), indent=2))
        return
    show(list(result.entries), f"top pages of {_cell(result.window_start)} UTC", False, f"no page views at {window}")


@serve_get.command("alerts")
@click.option("-n", "count", default=10, show_default=True, help="How many of the newest alerts.")
@json_option
@friendly_errors
def get_alerts(count: int, as_json: bool) -> None:
    """The newest fraud alerts (stream fraud:alerts), newest first."""
    rows = _read(lambda c: c.recent_fraud_alerts(count))
    show(rows, "fraud alerts", as_json, "no fraud alerts in Redis")


@serve_get.command("user")
@click.argument("user_id")
@json_option
@friendly_errors
def get_user(user_id: str, as_json: bool) -> None:
    """USER_ID's fraud summary (key fraud:user:{id}): last alert, its score, distinct alerts."""
    row = _read(lambda c: c.user_fraud(user_id))
    show([row] if row else [], f"user {user_id}", as_json, f"no fraud alerts for user {user_id}")
