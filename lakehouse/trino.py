"""Trino helpers: a DB-API connection from settings, queries, schemas and table registration."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lakehouse.settings import Settings


def connect(s: Settings, schema: str | None = None) -> Any:
    import trino

    return trino.dbapi.connect(  # type: ignore[no-untyped-call]
        host=s.host,
        port=s.trino_port,
        user=s.trino_user,
        catalog=s.trino_catalog,
        schema=schema,
        http_scheme="http",
        request_timeout=60,
    )


def query(s: Settings, sql: str, params: Iterable[Any] | None = None) -> list[tuple[Any, ...]]:
    conn = connect(s)
    try:
        cur = conn.cursor()
        cur.execute(sql, list(params) if params is not None else None)
        return [tuple(row) for row in cur.fetchall()]
    finally:
        conn.close()


def lake_location(relative: str) -> str:
    """A path under the lake root as the Trino catalog sees it (local.location is the lake root)."""
    return "local:///" + relative.strip("/")


def ensure_schema(s: Settings, name: str, relative_path: str | None = None) -> None:
    """Create a schema of the catalog whose tables live under <lake>/<relative_path> (default: its name)."""
    location = lake_location(relative_path or name)
    query(s, f"CREATE SCHEMA IF NOT EXISTS {s.trino_catalog}.{name} WITH (location = '{location}')")


def ensure_schemas(s: Settings, schemas: Iterable[str]) -> None:
    for name in schemas:
        ensure_schema(s, name)


def register_table(s: Settings, schema: str, table: str, relative_path: str) -> None:
    """Register an existing Delta table (written by Spark under the lake root) in the catalog."""
    existing = query(s, f"SHOW TABLES FROM {s.trino_catalog}.{schema} LIKE '{table}'")
    if existing:
        return
    query(
        s,
        f"CALL {s.trino_catalog}.system.register_table("
        f"schema_name => '{schema}', table_name => '{table}', table_location => '{lake_location(relative_path)}')",
    )


def register_tables(s: Settings, specs: Iterable[Any]) -> list[str]:
    """Register each table spec whose Delta log exists in the catalog; return the names registered now."""
    done = []
    for spec in specs:
        if not (s.lake_dir / spec.relative_path / "_delta_log").is_dir():
            continue
        ensure_schema(s, spec.layer)
        if not query(s, f"SHOW TABLES FROM {s.trino_catalog}.{spec.layer} LIKE '{spec.name}'"):
            register_table(s, spec.layer, spec.name, spec.relative_path)
            done.append(spec.full_name)
    return done
