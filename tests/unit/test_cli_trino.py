"""`lakehouse sql` output formats and errors, and `sync_tables`' decisions, without a Trino server.

A fake DB-API connection stands in for Trino: it records each statement and answers the
catalog listing, so the register / unregister / missing logic and the messages are tested
here; tests/integration/test_trino.py runs the same against the real server.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console
from trino.exceptions import TrinoConnectionError, TrinoUserError

from lakehouse.cli.app import main
from lakehouse.cli.trino import cell, format_csv, format_json, format_table, json_value, rows_line
from lakehouse.services import trino as trino_mod
from lakehouse.services.trino import SyncReport, delta_log_exists, sync_tables, try_sync_tables
from lakehouse.settings import Settings
from lakehouse.tables import ALL_TABLES, BRONZE, GOLD

TS = datetime(2024, 3, 1, 12, 30, 5, 123000, tzinfo=UTC)
RULES = ["velocity", "card_testing"]
COLUMNS = ["id", "name", "amount", "price", "at", "day", "rules", "attrs", "sketch", "ok", "missing"]
ROWS: list[tuple[Any, ...]] = [
    (1, 'a,"quoted"', 12.5, Decimal("2.50"), TS, date(2024, 3, 1), RULES, {"k": 1}, b"\x01\xff", True, None),
    (20, "[red]not markup[/]", -3.25, Decimal("10.00"), TS, date(2024, 3, 2), [], {}, b"", False, None),
]


# -- values and formats -------------------------------------------------------------------
def test_json_values_are_json_native_and_exact() -> None:
    assert json_value(None) is None
    assert json_value(Decimal("2.50")) == "2.50"  # exact, not 2.5 through a float
    assert json_value(TS) == "2024-03-01T12:30:05.123000+00:00"
    assert json_value(date(2024, 3, 1)) == "2024-03-01"
    assert json_value(b"\x01\xff") == "01ff"
    assert json_value(["a", None]) == ["a", None]
    assert json_value(("row", 1)) == ["row", 1]  # a ROW value arrives as a tuple
    assert json_value({"k": [1.5]}) == {"k": [1.5]}
    assert json_value(float("nan")) == "nan"  # JSON has no NaN


def test_cells_for_tables_and_csv() -> None:
    assert cell(None) == "NULL"
    assert cell(None, null="") == ""
    assert cell(True) == "true"
    assert cell(TS) == "2024-03-01 12:30:05.123000+00:00"
    assert cell(b"\x01\xff") == "01ff"
    assert cell(["velocity", "card_testing"]) == '["velocity", "card_testing"]'
    assert cell(Decimal("2.50")) == "2.50"
    assert cell(-3.25) == "-3.25"


def test_csv_has_a_header_and_one_parsable_line_per_row() -> None:
    text = format_csv(COLUMNS, ROWS)
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == COLUMNS
    assert len(parsed) == 3
    first = dict(zip(COLUMNS, parsed[1], strict=True))
    assert first["name"] == 'a,"quoted"'
    assert first["rules"] == '["velocity", "card_testing"]'
    assert first["missing"] == ""  # NULL is an empty field
    assert first["price"] == "2.50"
    assert first["ok"] == "true"


def test_csv_of_an_empty_result_is_the_header() -> None:
    assert format_csv(["a", "b"], []) == "a,b\n"


def test_json_is_an_array_of_objects_in_column_order() -> None:
    data = json.loads(format_json(COLUMNS, ROWS))
    assert [list(o) for o in data] == [COLUMNS, COLUMNS]
    assert data[0]["rules"] == ["velocity", "card_testing"]
    assert data[0]["attrs"] == {"k": 1}
    assert data[0]["missing"] is None
    assert data[1]["amount"] == -3.25
    assert json.loads(format_json(["a"], [])) == []


def _render(table: Any) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_table_shows_nulls_and_prints_values_literally() -> None:
    text = _render(format_table(COLUMNS, ROWS))
    assert "NULL" in text
    assert "[red]not markup[/]" in text  # a value is never interpreted as rich markup
    assert '["velocity", "card_testing"]' in text
    header = next(line for line in text.splitlines() if "amount" in line)
    body = next(line for line in text.splitlines() if "-3.25" in line)
    # numbers are right-aligned: the value ends where the header cell ends
    assert body.index("-3.25") + len("-3.25") == header.index("amount") + len("amount")
    assert rows_line(1) == "(1 row)"
    assert rows_line(2) == "(2 rows)"


# -- the command, against a fake Trino -------------------------------------------------------
class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.description: list[tuple[str, ...]] | None = None
        self.update_type: str | None = None
        self._rows: list[list[Any]] = []

    def execute(self, sql: str, params: Any = None) -> None:
        self.conn.statements.append(sql)
        columns, rows = self.conn.answer(sql)
        self.description = [(c,) for c in columns] if columns else None
        self.update_type = "CREATE SCHEMA" if sql.startswith("CREATE SCHEMA") else None
        self._rows = [list(r) for r in rows]

    def fetchall(self) -> list[list[Any]]:
        return self._rows


class FakeConnection:
    def __init__(self, answer: Callable[[str], tuple[list[str], list[tuple[Any, ...]]]]) -> None:
        self.answer = answer
        self.statements: list[str] = []
        self.closed = False

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def close(self) -> None:
        self.closed = True


def _fake_trino(monkeypatch: pytest.MonkeyPatch, answer: Callable[[str], Any]) -> FakeConnection:
    conn = FakeConnection(answer)
    monkeypatch.setattr(trino_mod, "connect", lambda *a, **k: conn)
    return conn


def _user_error(message: str) -> TrinoUserError:
    return TrinoUserError({"message": message, "errorName": "TABLE_NOT_FOUND", "errorType": "USER_ERROR"}, "q1")


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_sql_prints_each_format(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    conn = _fake_trino(monkeypatch, lambda sql: (COLUMNS, ROWS))
    result = CliRunner().invoke(main, ["sql", "SELECT * FROM gold.fraud_alerts", "--format", fmt])
    assert result.exit_code == 0, result.output
    assert conn.statements == ["SELECT * FROM gold.fraud_alerts"]
    assert conn.closed
    if fmt == "json":
        assert json.loads(result.output)[0]["name"] == 'a,"quoted"'
    elif fmt == "csv":
        assert result.output.splitlines()[0] == ",".join(COLUMNS)
    else:
        assert "(2 rows)" in result.output
        assert "velocity" in result.output


def test_sql_statement_without_rows_says_what_it_did(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_trino(monkeypatch, lambda sql: ([], []))
    result = CliRunner().invoke(main, ["sql", "CREATE SCHEMA IF NOT EXISTS lakehouse.gold"])
    assert result.exit_code == 0
    assert result.output.strip() == "CREATE SCHEMA"


def test_sql_error_is_one_line_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(sql: str) -> Any:
        raise _user_error("line 1:15: Table 'lakehouse.gold.nope' does not exist")

    _fake_trino(monkeypatch, answer)
    result = CliRunner().invoke(main, ["sql", "SELECT * FROM gold.nope"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: Trino: TABLE_NOT_FOUND: line 1:15: Table 'lakehouse.gold.nope' does not exist"
    )
    assert "Traceback" not in result.output


def test_sql_against_a_trino_that_is_down_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(sql: str) -> Any:
        raise TrinoConnectionError("failed to execute: HTTPConnectionPool(...): Max retries exceeded")

    _fake_trino(monkeypatch, answer)
    result = CliRunner().invoke(main, ["sql", "SELECT 1", "--format", "csv"])
    assert result.exit_code == 1
    assert "Trino is not reachable at https://" in result.output
    assert "lakehouse up trino" in result.output
    assert "Traceback" not in result.output


def test_the_trino_commands_explain_themselves() -> None:
    for args in (["trino", "--help"], ["trino", "sync", "--help"], ["sql", "--help"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    assert "--format" in CliRunner().invoke(main, ["sql", "--help"]).output


# -- sync_tables' decisions ------------------------------------------------------------------
def _lake(tmp_path: Path) -> Settings:
    s = Settings(state_dir=tmp_path)
    (s.lake_dir / "_trino_metastore").mkdir(parents=True)
    for layer in ("bronze", "silver", "gold"):
        (s.lake_dir / "_trino_metastore" / f".{layer}.trinoSchema").write_text("{}")
    return s


def _make_table(s: Settings, relative: str, registered_in_metastore: bool = False) -> None:
    log = s.lake_dir / relative / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000000.json").write_text("{}")
    if registered_in_metastore:
        (s.lake_dir / "_trino_metastore" / relative).mkdir(parents=True)


class Catalog:
    """What the fake Trino has registered; answers the listing and applies (un)register calls."""

    def __init__(self, registered: set[str]) -> None:
        self.registered = set(registered)

    def __call__(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        if "information_schema.tables" in sql:
            return ["table_schema", "table_name"], [tuple(t.split(".")) for t in sorted(self.registered)]
        if "register_table(" in sql:
            schema = sql.split("schema_name => '")[1].split("'")[0]
            table = sql.split("table_name => '")[1].split("'")[0]
            if "unregister_table" in sql:
                self.registered.discard(f"{schema}.{table}")
            else:
                self.registered.add(f"{schema}.{table}")
        return [], []


def test_delta_log_exists_needs_a_commit(tmp_path: Path) -> None:
    assert not delta_log_exists(tmp_path / "t")
    (tmp_path / "t" / "_delta_log").mkdir(parents=True)
    assert not delta_log_exists(tmp_path / "t")  # created, first commit not written yet
    (tmp_path / "t" / "_delta_log" / "00000000000000000000.json").write_text("{}")
    assert delta_log_exists(tmp_path / "t")


def test_sync_registers_new_tables_keeps_present_ones_and_unregisters_gone_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = _lake(tmp_path)
    _make_table(s, "bronze/payments")  # created by Spark, not registered yet
    _make_table(s, "gold/fraud_alerts", registered_in_metastore=True)  # registered and present
    (s.lake_dir / "_trino_metastore" / "gold" / "late_events").mkdir(parents=True)  # registered, log gone
    _make_table(s, "gold/_stream_progress")  # not a table of the platform (an old lake's leftover): ignored
    catalog = Catalog({"gold.fraud_alerts", "gold.late_events"})
    conn = _fake_trino(monkeypatch, catalog)

    report = sync_tables(s)

    assert report.registered == ["bronze.payments"]
    assert report.present == ["gold.fraud_alerts"]
    assert report.unregistered == ["gold.late_events"]
    assert set(report.missing) == {t.full_name for t in ALL_TABLES} - {
        "bronze.payments",
        "gold.fraud_alerts",
        "gold.late_events",
    }
    assert report.ok
    assert catalog.registered == {"bronze.payments", "gold.fraud_alerts"}
    assert "_stream_progress" not in " ".join(conn.statements)
    creates = [q for q in conn.statements if q.startswith("CREATE SCHEMA")]
    assert [q.split()[5] for q in creates] == ["lakehouse.bronze", "lakehouse.silver", "lakehouse.gold"]
    register = next(q for q in conn.statements if "system.register_table" in q)
    assert "table_location => 'local:///bronze/payments'" in register
    assert conn.statements[-1] == "CALL lakehouse.system.flush_metadata_cache()"
    assert [r[0] for r in report.rows()][:1] == ["lakehouse.bronze.payments"]
    assert "1 registered now, 1 already registered" in report.summary()
    assert "1 unregistered (gold.late_events)" in report.summary()


def test_sync_names_the_table_that_failed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = _lake(tmp_path)
    _make_table(s, "gold/merchant_minute")
    catalog = Catalog(set())

    def answer(sql: str) -> Any:
        if "register_table(" in sql:
            raise _user_error("Failed checking table location local:///gold/merchant_minute")
        return catalog(sql)

    _fake_trino(monkeypatch, answer)
    report = sync_tables(s, [GOLD["merchant_minute"], BRONZE["iot"]])
    assert not report.ok
    assert list(report.failed) == ["gold.merchant_minute"]
    assert "registering local:///gold/merchant_minute failed: Failed checking" in report.failed["gold.merchant_minute"]
    assert report.missing == ["bronze.iot"]
    assert "gold.merchant_minute: registering" in report.summary()


def test_sync_counts_a_table_another_process_registered_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = _lake(tmp_path)
    _make_table(s, "gold/merchant_minute", registered_in_metastore=True)
    catalog = Catalog(set())

    def answer(sql: str) -> Any:
        if "system.register_table(" in sql:
            catalog.registered.add("gold.merchant_minute")  # the other app won the race
            raise _user_error("Table already exists: 'gold.merchant_minute'")
        return catalog(sql)

    _fake_trino(monkeypatch, answer)
    report = sync_tables(s, [GOLD["merchant_minute"]])
    assert report.ok
    assert report.present == ["gold.merchant_minute"]


def test_sync_leaves_trino_alone_when_its_catalog_is_on_another_lake(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A test or app writing to a private lake shares the stack's Trino: it must neither
    # register its tables there nor unregister the stack's because its lake lacks them.
    s = Settings(state_dir=tmp_path)  # no _trino_metastore in this lake
    _make_table(s, "bronze/payments")
    catalog = Catalog({"gold.fraud_alerts"})
    conn = _fake_trino(monkeypatch, catalog)
    report = sync_tables(s)
    assert "not on this lake" in (report.skipped or "")
    assert not report.ok
    assert catalog.registered == {"gold.fraud_alerts"}
    assert not any("register_table" in q for q in conn.statements)
    assert "nothing synced" in report.summary()

    # A lake with a metastore directory that does not hold the tables Trino lists is another lake too.
    s2 = _lake(tmp_path / "other")
    _make_table(s2, "gold/page_minute")
    report = sync_tables(s2)
    assert "gold.fraud_alerts" in (report.skipped or "")
    assert catalog.registered == {"gold.fraud_alerts"}


def test_try_sync_is_one_warning_when_trino_is_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path, trino_port=1)  # nobody listens on port 1
    lines: list[str] = []
    assert try_sync_tables(s, log=lines.append) is None
    assert len(lines) == 1
    assert lines[0].startswith("warning: Trino is not reachable at https://127.0.0.1:1")


def test_try_sync_turns_an_error_into_a_warning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(trino_mod, "reachable", lambda s, timeout=2.0: True)

    def boom(*a: Any, **k: Any) -> Any:
        raise TrinoConnectionError("connection reset")

    monkeypatch.setattr(trino_mod, "sync_tables", boom)
    lines: list[str] = []
    assert try_sync_tables(Settings(state_dir=tmp_path), log=lines.append) is None
    assert lines == ["warning: registering the tables in Trino failed: connection reset (retry: lakehouse trino sync)"]


def test_sync_report_rows_keep_the_sync_order() -> None:
    r = SyncReport(catalog="lakehouse")
    r.add("missing", "gold.late_events")
    r.add("registered", "bronze.iot")
    r.add("failed", "silver.iot", "boom")
    assert r.rows() == [
        ("lakehouse.gold.late_events", "missing", "not created by Spark yet"),
        ("lakehouse.bronze.iot", "registered", "registered now"),
        ("lakehouse.silver.iot", "failed", "boom"),
    ]
