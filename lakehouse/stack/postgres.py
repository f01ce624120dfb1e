"""PostgreSQL for Dagster's storage (``dagster_storage=postgres``, the cluster profile's).

Debian's server (``make setup`` installs the ``postgresql`` package), run by the stack like any component:
its own data directory under the state directory, listening on the stack's host over TLS only (the
stack's certificate), SCRAM-SHA-256 passwords, and one database, ``dagster``, owned by the role
``dagster``. No password is ever on a command line, in a log or in Dagster's configuration:

- the superuser's goes to ``initdb`` in a file (0600, deleted at once); the ``dagster`` role is created
  with a SCRAM verifier computed here, so the server never sees the password itself;
- Dagster reads its password from a libpq password file (``<secrets>/dagster.pgpass``, 0600), named in
  ``dagster.yaml`` by path.

PostgreSQL refuses to run as root: when the stack runs as root (CI's containers) the server runs as the
``postgres`` user Debian's package creates, owning its data directory; the state directory then gets
the search (x) bit for others so that user can reach it (its contents stay the owner's: 0700 each).
"""

from __future__ import annotations

import base64
import grp
import hashlib
import hmac
import os
import pwd
import re
import shutil
import signal
import subprocess
from pathlib import Path
from secrets import token_bytes
from typing import Any

from lakehouse.settings import CA_CERT, SERVER_CERT, SERVER_KEY, Settings, child_env, write_private
from lakehouse.stack.components import Component, Log, StackError, port_open

#: Dagster's database and role.
DATABASE = ROLE = "dagster"
#: The metrics exporter's role: a member of pg_monitor (the server's statistics, none of the data).
MONITOR = "monitor"
#: The system user the server runs as when the stack runs as root (created by Debian's package).
SERVER_USER = "postgres"
PGPASS = "dagster.pgpass"


def bin_dir() -> Path:
    """Where the server's programs are: Debian keeps them off PATH, in /usr/lib/postgresql/<major>/bin."""
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name or 0)
    )
    if not candidates:
        raise StackError("PostgreSQL's server is not installed (Debian package `postgresql`): run `make setup`")
    return candidates[-1].parent


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of PASSWORD (RFC 5802/7677, as ``pg_authid`` stores it): what
    ``CREATE ROLE ... PASSWORD`` may be given instead of the password."""
    salt = salt if salt is not None else token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


def pgpass_file(s: Settings) -> Path:
    """libpq's password file for Dagster's role (0600): host:port:database:role:password."""
    host, port = s.postgres_address
    password = s.secret("postgres_dagster").get_secret_value()
    path = s.secrets_dir / PGPASS
    write_private(path, f"{host}:{port}:{DATABASE}:{ROLE}:{password}\n".encode())
    return path


def dagster_storage(s: Settings) -> dict[str, Any]:
    """``dagster.yaml``'s ``storage`` section for PostgreSQL: TLS verified against the stack's CA, the password
    from the password file (never in the configuration, nor in Dagster's environment)."""
    host, port = s.postgres_address
    return {
        "postgres": {
            "postgres_db": {
                "username": ROLE,
                "hostname": host,
                "port": port,
                "db_name": DATABASE,
                # dagster-postgres is built on psycopg2; SQLAlchemy 2.1 takes plain postgresql:// for psycopg 3.
                "scheme": "postgresql+psycopg2",
                "params": {"sslmode": "verify-full", "sslrootcert": str(s.ca_file), "passfile": str(pgpass_file(s))},
            }
        }
    }


def connect(s: Settings, as_admin: bool = False, timeout_s: int = 3) -> Any:
    """A psycopg2 connection over verified TLS: as Dagster's role, or as the superuser (the stack's own)."""
    import psycopg2

    host, port = s.postgres_address
    user, secret, db = ("postgres", "postgres_admin", "postgres") if as_admin else (ROLE, "postgres_dagster", DATABASE)
    return psycopg2.connect(
        host=host,
        port=port,
        user=user,
        dbname=db,
        password=s.secret(secret).get_secret_value(),
        sslmode="verify-full",
        sslrootcert=str(s.ca_file),
        connect_timeout=timeout_s,
        application_name="lakehouse-stack",
    )


class Postgres(Component):
    # Fast shutdown: SIGTERM is "smart" (waits for every client to leave: Dagster's pools never do).
    STOP_SIGNAL = signal.SIGINT

    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="postgres", timeout_s=60)

    def port(self) -> int:
        return self.s.postgres_port

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def _user(self) -> pwd.struct_passwd | None:
        """The user the server runs as when we are root (PostgreSQL refuses root); None: as ourselves."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise StackError(
                f"running as root, PostgreSQL needs the system user {SERVER_USER!r} (Debian's package makes it): "
                "run `make setup`"
            ) from None

    def _own(self, path: Path) -> None:
        user = self._user()
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)

    def prepare(self) -> None:
        user = self._user()
        if user is not None:
            self._reachable_by(user)
            self._own(self.workdir)
        tls = self.workdir / "tls"
        tls.mkdir(mode=0o700, exist_ok=True)
        self._own(tls)
        for name, src in (("server.pem", SERVER_CERT), ("server.key", SERVER_KEY)):
            write_private(tls / name, (self.s.secrets_dir / src).read_bytes())
            self._own(tls / name)
        hba = self.workdir / "pg_hba.conf"
        # TLS from the server's own addresses only, SCRAM passwords; Dagster's role to its database alone.
        hba.write_text(
            f"hostssl {DATABASE} {ROLE} samehost scram-sha-256\nhostssl postgres postgres samehost scram-sha-256\n"
            f"hostssl postgres {MONITOR} samehost scram-sha-256\n"
        )
        self._own(hba)
        if not (self.data / "PG_VERSION").exists():
            self._initdb()

    def _reachable_by(self, user: pwd.struct_passwd) -> None:
        """Let USER reach the workdir: the workdir and the state directories on the way (this one, and the
        user's that holds the tests' stacks: each has the stack's CA) get the search bit for others (no
        listing: their contents stay 0700); another directory it cannot search is an error naming it, not
        changed behind its owner's back."""
        groups = {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem} | {user.pw_gid}
        for d in [self.workdir, *self.workdir.parents]:
            st = os.stat(d)
            if (
                st.st_mode & 0o001
                or (st.st_uid == user.pw_uid and st.st_mode & 0o100)
                or (st.st_gid in groups and st.st_mode & 0o010)
            ):
                continue
            if d == self.workdir or d == self.s.state_dir or (d / "secrets" / CA_CERT).is_file():
                os.chmod(d, st.st_mode | 0o001)
                continue
            raise StackError(
                f"PostgreSQL runs as {user.pw_name!r} (it refuses root) and cannot reach {self.workdir}: {d} is "
                f"closed to others (mode {st.st_mode & 0o777:o}). Give it the search bit (`chmod o+x {d}`), or "
                "move the state directory (LAKEHOUSE_STATE_DIR) somewhere it can reach"
            )

    def _initdb(self) -> None:
        pwfile = self.workdir / ".initdb-pw"
        write_private(pwfile, self.s.secret("postgres_admin").get_secret_value().encode())
        self._own(pwfile)
        try:
            proc = subprocess.run(
                [
                    str(bin_dir() / "initdb"),
                    "--pgdata",
                    str(self.data),
                    "--username",
                    "postgres",
                    "--pwfile",
                    str(pwfile),
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C.UTF-8",
                ],
                capture_output=True,
                text=True,
                check=False,
                cwd=self.workdir,
                env=child_env(),
                **self.popen_as(),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise StackError(f"initdb failed in {self.data}: {proc.stdout}{proc.stderr}")

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": self.s.host,
            "port": self.s.postgres_port,
            "unix_socket_directories": "",  # TCP and TLS only
            "hba_file": self.workdir / "pg_hba.conf",
            "ssl": "on",
            "ssl_cert_file": self.workdir / "tls" / "server.pem",
            "ssl_key_file": self.workdir / "tls" / "server.key",
            "ssl_min_protocol_version": "TLSv1.2",
            "password_encryption": "scram-sha-256",
            "shared_buffers": "64MB",
            "max_connections": 100,
            # Never a statement in the log: a failed one could name a secret.
            "log_min_error_statement": "panic",
            "log_statement": "none",
        }
        cmd = [str(bin_dir() / "postgres"), "-D", str(self.data)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def popen_as(self) -> dict[str, Any]:
        user = self._user()
        # Its own group and no other: left in root's group, directories closed to that group stay closed to it.
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}

    def healthy(self) -> bool:
        if not port_open(self.s.host, self.s.postgres_port):
            return False
        try:
            connect(self.s, as_admin=True).close()
            return True
        except Exception:
            return False

    def after_start(self, log: Log) -> None:
        """Dagster's role (with a SCRAM verifier: the password never reaches the server) and its database."""
        conn = connect(self.s, as_admin=True)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                verifier = scram_verifier(self.s.secret("postgres_dagster").get_secret_value())
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(f"{verb} ROLE {ROLE} LOGIN PASSWORD %s", (verifier,))
                monitor = scram_verifier(self.s.secret("postgres_monitor").get_secret_value())
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (MONITOR,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(f"{verb} ROLE {MONITOR} LOGIN PASSWORD %s", (monitor,))
                cur.execute(f"GRANT pg_monitor TO {MONITOR}")
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cur.fetchone() is None:
                    cur.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
                    cur.execute(f"REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC")
        finally:
            conn.close()
        log(f"      database {DATABASE} (role {ROLE}; TLS, SCRAM) in {self.data}")

    def version(self) -> str:
        return bin_dir().parent.name


class PostgresExporter(Component):
    """PostgreSQL's health and statistics for Prometheus (Debian's prometheus-postgres-exporter), logged in as
    ``monitor`` (pg_monitor) over TLS, its password read from the secrets file (DATA_SOURCE_PASS_FILE: not
    in its environment or arguments); its own endpoint HTTPS with the scraper's login, as the node exporter's."""

    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="postgres-exporter", timeout_s=30, depends_on=("postgres",))

    def port(self) -> int:
        return self.s.postgres_exporter_port

    def url(self) -> str:
        return f"https://{self.s.host}:{self.s.postgres_exporter_port}/metrics"

    def prepare(self) -> None:
        from lakehouse.stack.components import web_config

        web_config(self.s, self.workdir / "web.yml", ("admin", "scraper"))

    def env(self) -> dict[str, str]:
        host, port = self.s.postgres_address
        return child_env(
            DATA_SOURCE_URI=f"{host}:{port}/postgres?sslmode=verify-full&sslrootcert={self.s.ca_file}",
            DATA_SOURCE_USER=MONITOR,
            DATA_SOURCE_PASS_FILE=str(self.s.secret_file("postgres_monitor")),
        )

    def command(self) -> list[str]:
        return [
            "prometheus-postgres-exporter",
            f"--web.listen-address={self.s.host}:{self.s.postgres_exporter_port}",
            f"--web.config.file={self.workdir / 'web.yml'}",
        ]

    def healthy(self) -> bool:
        from lakehouse.stack.components import _admin_get

        return _admin_get(self.s, self.url()) is not None

    def version(self) -> str:
        from lakehouse.stack.components import _admin_get

        r = _admin_get(self.s, self.url())
        m = re.search(r'postgres_exporter_build_info\{[^}]*version="([^"]+)"', r.text) if r else None
        return m.group(1) if m else "?"
