"""Dagster's storage on PostgreSQL (``dagster_storage=postgres``, the cluster profile's), on a server of this
test's own: what one Dagster process records, another with its own DAGSTER_HOME (another machine) sees;
the server takes TLS and the right password only; no password is in Dagster's configuration, its storage,
the server's command line or its log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lakehouse.settings import Settings
from lakehouse.stack import components, secrets
from lakehouse.stack.postgres import Postgres, connect


@pytest.fixture
def postgres(own_stack: Settings, tmp_path: Path) -> Iterator[Settings]:
    s = own_stack.model_copy(
        update={
            "state_dir": tmp_path / "state",
            "jvm_root": own_stack.jvm_dir,
            "dagster_storage": "postgres",
            "postgres_port": components.free_port(),
        }
    )
    # The server runs as `postgres` when the tests run as root, and pytest's temporary directories are closed
    # to others: open them for search (not listing), as a state directory's parents are.
    for d in (tmp_path, *tmp_path.parents[:2]):
        d.chmod(d.stat().st_mode | 0o001)
    secrets.ensure(s)
    server = Postgres(s)
    try:
        assert server.start(print) == "started"
        yield s
    finally:
        server.stop()


def _instance(s: Settings, home: Path):  # type: ignore[no-untyped-def]
    """A Dagster instance in HOME from the stack's dagster.yaml for S (as a process on another machine has)."""
    from dagster import DagsterInstance

    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(components.write_dagster_yaml(s).read_text())
    return DagsterInstance.from_config(str(home))


def test_runs_recorded_by_one_dagster_are_seen_by_another_through_postgres(postgres: Settings, tmp_path: Path) -> None:
    import dagster as dg

    s = postgres
    password = s.secret("postgres_dagster").get_secret_value()
    admin_password = s.secret("postgres_admin").get_secret_value()

    @dg.op
    def count() -> int:
        return 3

    @dg.job
    def hello() -> None:
        count()

    writer = _instance(s, tmp_path / "machine-a")
    result = hello.execute_in_process(instance=writer, tags={"lakehouse/test": "postgres"})
    assert result.success
    reader = _instance(s, tmp_path / "machine-b")
    run = reader.get_run_by_id(result.run_id)
    assert run is not None
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["lakehouse/test"] == "postgres"
    assert reader.get_records_for_run(result.run_id).records  # the events too
    assert type(reader.run_storage).__name__ == "PostgresRunStorage"

    # Nothing secret where it should not be: configuration, the storage, the server's command line and log.
    for home in ("machine-a", "machine-b"):
        text = (tmp_path / home / "dagster.yaml").read_text()
        assert password not in text
        assert "passfile" in text
    with connect(s) as conn, conn.cursor() as cur:
        cur.execute("SELECT string_agg(t::text, '') FROM runs t")
        runs = cur.fetchone()[0]
        cur.execute("SELECT string_agg(t::text, '') FROM event_logs t")
        events = cur.fetchone()[0]
    assert result.run_id in runs
    for secret in (password, admin_password):
        assert secret not in runs
        assert secret not in events
    server = Postgres(s).process()
    assert server is not None
    for proc in (server, *server.children(recursive=True)):
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.NoSuchProcess:
            continue
        assert password not in cmdline
        assert admin_password not in cmdline
    log = Postgres(s).logfile.read_text()
    assert password not in log
    assert admin_password not in log


def test_the_server_takes_tls_and_the_right_password_only(postgres: Settings) -> None:
    import psycopg2

    s = postgres
    host, port = s.postgres_address
    base = {"host": host, "port": port, "dbname": "dagster", "user": "dagster", "connect_timeout": 3}
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        psycopg2.connect(**base, password=s.secret("postgres_dagster").get_secret_value(), sslmode="disable")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(**base, password="not-the-password", sslmode="verify-full", sslrootcert=str(s.ca_file))
    # Dagster's role reaches its own database only.
    with pytest.raises(psycopg2.OperationalError, match=r"no pg_hba\.conf entry"):
        psycopg2.connect(
            **(base | {"dbname": "postgres"}),
            password=s.secret("postgres_dagster").get_secret_value(),
            sslmode="verify-full",
            sslrootcert=str(s.ca_file),
        )
    with connect(s) as conn, conn.cursor() as cur:
        cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone()[0] is True
