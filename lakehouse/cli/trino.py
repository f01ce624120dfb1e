"""Trino from the command line: `lakehouse sql` output formats and `lakehouse trino sync`.

`lakehouse sql "…"` (declared in cli.py) runs one statement through the stack's Trino
and prints a table, CSV or JSON with the helpers below. `lakehouse trino sync` registers
every table Spark has created in the catalog (what `lakehouse up` and each Spark app do by
themselves) and prints what it did, table by table.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from lakehouse.cli._common import console, err_console, friendly_errors, load_settings
from lakehouse.settings import Settings

FORMATS = ("table", "csv", "json")


# -- values -----------------------------------------------------------------------------
def json_value(v: Any) -> Any:
    """A Trino value as JSON: arrays and rows as lists, maps as objects, timestamps in ISO 8601,
    decimals as exact strings, varbinary as hex."""
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else str(v)  # JSON has no NaN/Infinity
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    if isinstance(v, bytes | bytearray):
        return bytes(v).hex()
    if isinstance(v, dict):
        return {str(json_value(k)): json_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_value(x) for x in v]
    return str(v)


def cell(v: Any, null: str = "NULL") -> str:
    """One value as text for a table or CSV cell: arrays, maps and rows as JSON, varbinary as hex."""
    if v is None:
        return null
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, bytes | bytearray):
        return bytes(v).hex()
    if isinstance(v, list | tuple | dict):
        return json.dumps(json_value(v), ensure_ascii=False)
    return str(v)


def _numeric(rows: Sequence[Sequence[Any]], i: int) -> bool:
    values = [r[i] for r in rows if r[i] is not None]
    return bool(values) and all(isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in values)


# -- result sets -------------------------------------------------------------------------
def format_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """RFC 4180 CSV with a header line; NULL is an empty field."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    w.writerows([cell(v, null="") for v in r] for r in rows)
    return out.getvalue()


def format_json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A JSON array with one object per row, keys in column order."""
    return json.dumps(
        [{c: json_value(v) for c, v in zip(columns, r, strict=True)} for r in rows], indent=2, ensure_ascii=False
    )


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table: numbers right-aligned, NULL dimmed."""
    table = Table(show_lines=False)
    for i, c in enumerate(columns):
        table.add_column(c, justify="right" if _numeric(rows, i) else "left", overflow="fold")
    for r in rows:
        table.add_row(*("[dim]NULL[/]" if v is None else escape(cell(v)) for v in r))
    return table


def rows_line(n: int) -> str:
    return f"({n} row{'' if n == 1 else 's'})"


# -- running a statement ------------------------------------------------------------------
@dataclass
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    update_type: str | None = None  # e.g. "CREATE SCHEMA" for a statement that returns no rows


def run_statement(s: Settings, sql_text: str) -> Result:
    """One statement's result; a readable ClickException when Trino refuses it or is down."""
    import requests
    from trino.exceptions import TrinoConnectionError, TrinoQueryError

    from lakehouse.services.trino import connect

    down = f"Trino is not reachable at {s.trino_url}: start it with `lakehouse up trino` (`lakehouse status` shows it)"
    conn = connect(s)
    try:
        cur = conn.cursor()
        try:
            cur.execute(sql_text)
            rows = [tuple(r) for r in cur.fetchall()]
        except TrinoQueryError as exc:  # the query failed in Trino: syntax, missing table, ...
            raise click.ClickException(f"Trino: {exc.error_name}: {exc.message}") from None
        except (TrinoConnectionError, requests.ConnectionError, requests.Timeout):
            raise click.ClickException(down) from None
        except Exception as exc:  # trino.exceptions.* (HTTP errors, ...) carry a readable message
            raise click.ClickException(f"Trino: {getattr(exc, 'message', None) or exc}") from None
        columns = [d[0] for d in (cur.description or [])]
        update_type = getattr(cur, "update_type", None)
    finally:
        conn.close()
    return Result(columns, rows, update_type)


def print_result(result: Result, fmt: str) -> None:
    columns, rows = result.columns, result.rows
    if fmt == "json":
        click.echo(format_json(columns, rows))
    elif fmt == "csv":
        if columns:
            click.echo(format_csv(columns, rows), nl=False)
    elif not columns:
        console.print(result.update_type or "done", highlight=False)
    else:
        console.print(format_table(columns, rows))
        console.print(rows_line(len(rows)))


def sql_command(sql_text: str, fmt: str) -> None:
    """The body of `lakehouse sql`."""
    print_result(run_statement(load_settings(), sql_text), fmt)


# -- lakehouse trino ... -----------------------------------------------------------------
@click.command()
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
    sql_command(sql, fmt)


@click.group()
def trino() -> None:
    """The Trino catalog over the lake: `lakehouse trino sync` registers the tables Spark created."""


@trino.command("sync")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly_errors
def trino_sync(as_json: bool) -> None:
    """Register every table Spark has created in Trino's catalog, in schemas bronze, silver and gold.

    \b
    Idempotent: a table already registered is left as it is; one whose Delta log is gone
    (the lake was wiped) is unregistered; one Spark has not created yet is reported.
    `lakehouse up` and every Spark app do the same by themselves (best effort). Schema
    changes need no sync: Trino reads each table's schema from its Delta log per query.
    Exit 1 when a table could not be registered or Trino is not on this lake.
    """
    from lakehouse.services.trino import error_message, reachable, sync_tables

    s = load_settings()
    if not reachable(s):
        raise click.ClickException(f"Trino is not reachable at {s.trino_url}: start it with `lakehouse up trino`")
    try:
        report = sync_tables(s)
    except Exception as exc:
        raise click.ClickException(f"Trino: {error_message(exc)}") from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "catalog": report.catalog,
                    "skipped": report.skipped,
                    "tables": [{"table": t, "state": st, "detail": d} for t, st, d in report.rows()],
                },
                indent=2,
            )
        )
    else:
        colors = {"registered": "green", "present": "cyan", "missing": "yellow", "unregistered": "magenta"}
        table = Table(title=f"Trino catalog {report.catalog} <- {s.lake_dir}", title_justify="left")
        for col in ("table", "state", "detail"):
            table.add_column(col, overflow="fold")
        for name, state, detail in report.rows():
            table.add_row(name, f"[{colors.get(state, 'red')}]{state}[/]", detail)
        if report.rows():
            console.print(table)
        (console if report.ok else err_console).print(report.summary(), highlight=False, markup=False)
    sys.exit(0 if report.ok else 1)
