"""Trino helpers: a DB-API connection from settings, queries, schemas and table registration.

Spark creates and writes every Delta table; Trino only *registers* them where they are
(``system.register_table``). Trino's Delta Lake connector reads a table's schema, comments
and files from its Delta log at query time, so registering once is enough: columns that
Spark adds later show up by themselves, and each query reads one committed snapshot.
On a ``local://`` file system the connector refuses commits to existing tables (INSERT,
CREATE OR REPLACE, COMMENT ON), so nothing here writes to a table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.settings import TRINO_USERS, Settings

if TYPE_CHECKING:
    from lakehouse.settings import LakePath
    from lakehouse.tables import TableSpec

#: The schemas of the catalog, one per layer, each at <lake>/<layer>.


def connect(s: Settings, schema: str | None = None, timeout: float = 60.0, *, user: str = "engineer") -> Any:
    """A DB-API connection to Trino over HTTPS (verified against the local CA) as USER (TRINO_USERS),
    with its password from the secrets. The platform's own work (schemas, table registration, the
    CLI's `lakehouse sql`) runs as engineer; dbt as dbt."""
    import requests
    import trino
    from trino.auth import BasicAuthentication

    if user not in TRINO_USERS:
        raise ValueError(f"unknown Trino user {user!r}; known: {', '.join(TRINO_USERS)}")
    session = requests.Session()
    session.verify = str(s.ca_file)
    # requests lets REQUESTS_CA_BUNDLE (set on many machines) override a session's CA: not here.
    session.trust_env = False
    return trino.dbapi.connect(  # type: ignore[no-untyped-call]
        host=s.trino_address[0],
        port=s.trino_address[1],
        user=user,
        auth=BasicAuthentication(user, s.secret(f"trino_{user}").get_secret_value()),
        catalog=s.trino_catalog,
        schema=schema,
        http_scheme="https",
        http_session=session,
        request_timeout=timeout,
    )


def query(
    s: Settings, sql: str, params: Iterable[Any] | None = None, *, user: str = "engineer"
) -> list[tuple[Any, ...]]:
    conn = connect(s, user=user)
    try:
        cur = conn.cursor()
        cur.execute(sql, list(params) if params is not None else None)
        return [tuple(row) for row in cur.fetchall()]
    finally:
        conn.close()


def error_message(exc: BaseException) -> str:
    """The readable part of a Trino client error (``TrinoUserError.message``), else the exception text."""
    return str(getattr(exc, "message", None) or exc)


def reachable(s: Settings, timeout: float = 2.0) -> bool:
    """True when the coordinator answers ``/v1/info`` and has finished starting."""
    import requests

    try:
        r = requests.get(f"{s.trino_url}/v1/info", timeout=timeout, verify=str(s.ca_file))
        return r.ok and not r.json().get("starting", True)
    except (requests.RequestException, ValueError, OSError):  # OSError: no CA file (no secrets yet)
        return False


def lake_location(s: Settings, relative: str) -> str:
    """A path under the lake root as the Trino catalog sees it: the s3a:// URI Spark writes to, or, for a lake
    on the local disk, a ``local://`` path (the catalog's local.location is the lake root)."""
    if isinstance(s.lake_root, str):
        return f"{s.lake_root.rstrip('/')}/{relative.strip('/')}"
    return "local:///" + relative.strip("/")


def ensure_schema(s: Settings, name: str, relative_path: str | None = None) -> None:
    """Create a schema of the catalog whose tables live under <lake>/<relative_path> (default: its name)."""
    location = lake_location(s, relative_path or name)
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
        f"schema_name => '{schema}', table_name => '{table}', table_location => '{lake_location(s, relative_path)}')",
    )


def delta_log_exists(table_dir: LakePath) -> bool:
    """True when the directory holds a Delta table: at least one commit or checkpoint in ``_delta_log``.

    An empty ``_delta_log`` (a writer between creating the directory and its first commit)
    is not a table yet: registering it would fail.
    """
    log = table_dir / "_delta_log"
    if not log.is_dir():
        return False
    return any(p.suffix == ".json" and p.stem.isdigit() for p in log.iterdir()) or any(log.glob("*.checkpoint*"))


#: What each state of a table in a SyncReport means.
SYNC_STATES = {
    "registered": "registered now",
    "present": "already registered",
    "missing": "not created by Spark yet",
    "unregistered": "its Delta log is gone: removed from the catalog",
}


@dataclass
class SyncReport:
    """What :func:`sync_tables` did, table by table (``layer.name``)."""

    catalog: str
    registered: list[str] = field(default_factory=list)  # registered by this call
    present: list[str] = field(default_factory=list)  # already registered, Delta log in place
    missing: list[str] = field(default_factory=list)  # Spark has not created it yet
    unregistered: list[str] = field(default_factory=list)  # was registered, its Delta log is gone
    failed: dict[str, str] = field(default_factory=dict)  # table -> error message
    skipped: str | None = None  # why nothing was done at all (Trino on another lake)
    order: list[str] = field(default_factory=list, repr=False)  # tables in the order they were synced

    def add(self, state: str, table: str, error: str = "") -> None:
        if state == "failed":
            self.failed[table] = error
        else:
            getattr(self, state).append(table)
        self.order.append(table)

    @property
    def ok(self) -> bool:
        return not self.failed and self.skipped is None

    def state(self, table: str) -> tuple[str, str]:
        """(state, detail) of one table."""
        if table in self.failed:
            return "failed", self.failed[table]
        for state, detail in SYNC_STATES.items():
            if table in getattr(self, state):
                return state, detail
        raise KeyError(table)

    def rows(self) -> list[tuple[str, str, str]]:
        """(catalog.layer.name, state, detail) for every table, in the order they were synced."""
        return [(f"{self.catalog}.{t}", *self.state(t)) for t in self.order]

    def summary(self) -> str:
        if self.skipped:
            return f"catalog {self.catalog}: nothing synced: {self.skipped}"
        parts = [
            f"{len(self.registered)} registered now",
            f"{len(self.present)} already registered",
            f"{len(self.missing)} not created yet",
        ]
        if self.unregistered:
            parts.append(f"{len(self.unregistered)} unregistered ({', '.join(self.unregistered)})")
        if self.failed:
            parts.append(f"{len(self.failed)} failed: " + "; ".join(f"{t}: {m}" for t, m in self.failed.items()))
        return f"catalog {self.catalog}: " + ", ".join(parts)


class _Session:
    """One DB-API connection for a sequence of statements."""

    def __init__(self, s: Settings, timeout: float) -> None:
        self.conn = connect(s, timeout=timeout)

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]

    def close(self) -> None:
        self.conn.close()


def _registered(db: _Session, catalog: str, schemas: Sequence[str]) -> set[str]:
    names = ", ".join(f"'{x}'" for x in schemas)
    rows = db.run(
        f"SELECT table_schema, table_name FROM {catalog}.information_schema.tables WHERE table_schema IN ({names})"
    )
    return {f"{schema}.{table}" for schema, table in rows}


def _catalog_lake_mismatch(s: Settings, schemas: Sequence[str], registered: set[str]) -> str | None:
    """Why Trino's catalog is not rooted at ``s.lake_dir``, or None when it is.

    The catalog keeps its file metastore inside its own lake (``<lake>/_trino_metastore``,
    one directory per schema and table). A Spark app or test writing to another lake
    (``LAKEHOUSE_LAKE_ROOT``) shares the stack's Trino: it must neither register its
    tables there nor unregister the stack's tables because its own lake lacks them.
    """
    meta = s.lake_dir / "_trino_metastore"
    if not meta.is_dir():
        return f"Trino's catalog is not on this lake ({s.lake_dir} has no _trino_metastore)"
    for schema in schemas:
        if not (meta / schema).is_dir() and not (meta / f".{schema}.trinoSchema").exists():
            return f"Trino's catalog is not on this lake (schema {schema} is not in {meta})"
    for name in sorted(registered):
        if not (meta / name.replace(".", "/", 1)).is_dir():
            return f"Trino's catalog is not on this lake (its table {name} is not in {meta})"
    return None


def sync_tables(s: Settings, specs: Iterable[TableSpec] | None = None, timeout: float = 30.0) -> SyncReport:
    """Make the catalog match the lake for every table spec; idempotent.

    For each spec: its schema (the layer) is created if missing; a table whose Delta log
    exists and is not registered is registered at its location; a registered table whose
    Delta log is gone (the lake or the layer was wiped) is unregistered; a table Spark has
    not created yet is reported missing. Then the catalog's metadata cache is flushed, so
    a table Spark re-created in place is read from its new log, not a cached snapshot.
    Per-table errors are collected in ``failed`` (named by table); a Trino that cannot be
    reached raises the client's error.
    """
    if specs is None:
        from lakehouse.tables import ALL_TABLES

        specs = ALL_TABLES
    chosen = list(specs)
    cat = s.trino_catalog
    report = SyncReport(catalog=cat)
    schemas = list(dict.fromkeys(t.layer for t in chosen))
    db = _Session(s, timeout)
    try:
        for schema in schemas:
            db.run(f"CREATE SCHEMA IF NOT EXISTS {cat}.{schema} WITH (location = '{lake_location(s, schema)}')")
        registered = _registered(db, cat, schemas)
        report.skipped = _catalog_lake_mismatch(s, schemas, registered)
        if report.skipped:
            return report
        changed = False
        for t in chosen:
            name, here = t.full_name, delta_log_exists(s.lake_dir / t.relative_path)
            try:
                if here and name in registered:
                    report.add("present", name)
                elif here:
                    db.run(
                        f"CALL {cat}.system.register_table(schema_name => '{t.layer}', table_name => '{t.name}', "
                        f"table_location => '{lake_location(s, t.relative_path)}')"
                    )
                    report.add("registered", name)
                    changed = True
                elif name in registered:
                    db.run(f"CALL {cat}.system.unregister_table(schema_name => '{t.layer}', table_name => '{t.name}')")
                    report.add("unregistered", name)
                    changed = True
                else:
                    report.add("missing", name)
            except Exception as exc:
                # Another process (a second app starting) may have done the same a moment before.
                now = _registered(db, cat, [t.layer])
                if here and name in now:
                    report.add("present", name)
                elif not here and name not in now:
                    report.add("missing", name)
                else:
                    what = "registering" if here else "unregistering"
                    report.add(
                        "failed", name, f"{what} {lake_location(s, t.relative_path)} failed: {error_message(exc)}"
                    )
        if report.present or changed:
            db.run(f"CALL {cat}.system.flush_metadata_cache()")
    finally:
        db.close()
    return report


def try_sync_tables(
    s: Settings, log: Callable[[str], None] = print, specs: Iterable[TableSpec] | None = None, timeout: float = 10.0
) -> SyncReport | None:
    """:func:`sync_tables`, best effort: a Trino that is down or refuses is one warning line, never an error."""
    if not reachable(s):
        log(f"warning: Trino is not reachable at {s.trino_url}: tables not registered (later: lakehouse trino sync)")
        return None
    try:
        report = sync_tables(s, specs, timeout=timeout)
    except Exception as exc:
        log(f"warning: registering the tables in Trino failed: {error_message(exc)} (retry: lakehouse trino sync)")
        return None
    log(("" if report.ok or report.skipped else "warning: ") + "trino " + report.summary())
    return report


def register_tables(s: Settings, specs: Iterable[TableSpec]) -> list[str]:
    """Register each table spec whose Delta log exists; return the names registered now (see sync_tables)."""
    return sync_tables(s, specs).registered
