"""The local stack: real Kafka, Redis, Trino, Prometheus, pushgateway and Dagster on loopback.

``up`` renders each component's configuration from ``infra/`` and the settings,
starts it as a child process in its own session (so ``down`` can stop the whole
process group), writes a pid file, and waits for its health check. ``down`` stops
only what a pid file names: SIGTERM, then SIGKILL after a grace period. A pid
file whose process is gone, or whose pid now belongs to another program, is
stale and removed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version as pkg_version
from pathlib import Path
from secrets import token_bytes, token_hex
from string import Template
from typing import Any, ClassVar

import psutil
import requests

from lakehouse.contracts import LAYERS, TOPICS
from lakehouse.settings import (
    FLINK_KEYSTORE,
    KAFKA_PRINCIPALS,
    PROJECT_ROOT,
    REDIS_ROLES,
    SERVER_BUNDLE,
    SERVER_CERT,
    SERVER_KEY,
    TRINO_USERS,
    Settings,
    child_env,
    write_private,
)
from lakehouse.stack.secrets import SERVER_COMMON_NAME

INFRA = PROJECT_ROOT / "infra"
Log = Callable[[str], None]


class StackError(RuntimeError):
    """A component could not be started, stopped or checked; the message says which and why."""


def fill(template: Path, **values: Any) -> str:
    """An infra template's text with its ``${name}`` placeholders filled; a missing value is an error, not a
    blank."""
    try:
        return Template(template.read_text()).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise StackError(f"template {template} needs a value for {exc}") from None
    except ValueError as exc:
        raise StackError(f"template {template} is malformed: {exc}") from None


def render(template: Path, dest: Path, **values: Any) -> Path:
    """``fill`` the template into DEST."""
    text = fill(template, **values)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return dest


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (another process may take it before it is bound)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _http_ok(url: str, timeout: float = 2.0, **kw: Any) -> requests.Response | None:
    try:
        r = requests.get(url, timeout=timeout, **kw)
    except (requests.RequestException, OSError):  # OSError: no CA file (no secrets yet)
        return None
    return r if r.ok else None


# --------------------------------------------------------------------------- pid files
def start_ticks(pid: int) -> int | None:
    """When PID started, in clock ticks since boot (``/proc/<pid>/stat``, field 22), or None off Linux.

    Unlike ``psutil.Process.create_time()`` (boot time + these ticks, both in wall-clock seconds) it does
    not move when the wall clock is stepped or slewed: this machine's clock is corrected while the stack
    runs, and a create time compared to the second made live services look like reused pids.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count fields after its ')'.
    return int(stat[stat.rindex(")") + 2 :].split()[19])


@dataclass
class PidFile:
    path: Path

    def write(self, proc: psutil.Process) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"pid": proc.pid, "create_time": proc.create_time(), "start_ticks": start_ticks(proc.pid)}
        self.path.write_text(json.dumps(data))

    def process(self) -> psutil.Process | None:
        """The live process this file names, or None (and the file is removed) when it is stale."""
        if not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text())
            pid = int(data["pid"])
            proc = psutil.Process(pid)
            # Same pid but another start: the pid was reused by an unrelated process.
            ticks = start_ticks(pid)
            if data.get("start_ticks") is not None and ticks is not None:
                reused = ticks != int(data["start_ticks"])
            else:  # an older pid file, or no /proc: wall-clock start times, to the second
                reused = abs(proc.create_time() - float(data["create_time"])) > 1.0
            if reused or proc.status() == psutil.STATUS_ZOMBIE:
                raise psutil.NoSuchProcess(pid)
            return proc
        except (ValueError, KeyError, json.JSONDecodeError, psutil.NoSuchProcess, psutil.AccessDenied):
            self.path.unlink(missing_ok=True)
            return None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- components
@dataclass
class Component:
    """One service of the stack. Subclasses say how to prepare, start and check it."""

    s: Settings
    name: str = ""
    timeout_s: float = 60.0
    depends_on: tuple[str, ...] = field(default_factory=tuple)
    #: What `stop` sends first (then SIGKILL after the grace period).
    STOP_SIGNAL: ClassVar[signal.Signals] = signal.SIGTERM

    # what to override
    def port(self) -> int | None:
        return None

    def url(self) -> str:
        return f"{self.s.host}:{self.port()}"

    def prepare(self) -> None:
        """Render configuration and initialise storage (idempotent)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return child_env()

    def popen_as(self) -> dict[str, Any]:
        """``subprocess.Popen``'s user, group and extra_groups when the process runs as another user than
        ours (PostgreSQL refuses root); empty: as ourselves."""
        return {}

    def healthy(self) -> bool:
        port = self.port()
        return port is not None and port_open(self.s.host, port)

    def started(self) -> bool:
        """What `start` waits for before going on to the next component: by default, healthy."""
        return self.healthy()

    def stuck(self) -> str:
        """While `stop` waits: why the process cannot finish stopping by itself ("" while it may), so it is
        killed at once instead of at the end of the grace period."""
        return ""

    def after_start(self, log: Log) -> None:
        """Work that needs the running service (create topics, schemas)."""

    def version(self) -> str:
        return "?"

    # shared machinery
    @property
    def pidfile(self) -> PidFile:
        return PidFile(self.s.run_dir / f"{self.name}.pid")

    @property
    def logfile(self) -> Path:
        return self.s.logs_dir / f"{self.name}.log"

    @property
    def workdir(self) -> Path:
        return self.s.state_dir / self.name

    def process(self) -> psutil.Process | None:
        return self.pidfile.process()

    def start(self, log: Log) -> str:
        """Start if needed; return what happened ('started' or 'running')."""
        running = self.process()
        if running is not None:
            if self._wait_healthy(running):
                return "running"
            raise StackError(
                f"{self.name} is running (pid {running.pid}) but not healthy after {self.timeout_s:.0f}s; "
                f"see `lakehouse logs {self.name}` or restart it with `lakehouse down {self.name}`"
            )
        port = self.port()
        if port is not None and port_open(self.s.host, port):
            # Not adopted as an "external" service: it would be handed our credentials (and our clients'
            # data) without proof that it is what it claims to be.
            raise StackError(
                f"{self.name}: port {port} on {self.s.host} is taken by a program this stack did not start "
                f"(no pid file in {self.s.run_dir}); stop it, or set "
                f"LAKEHOUSE_{self.name.upper().replace('-', '_')}_PORT to another port"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.s.logs_dir.mkdir(parents=True, exist_ok=True)
        self.rotate_log()
        self.prepare()
        cmd = self.command()
        with open(self.logfile, "ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
            out.flush()
            try:
                popen = subprocess.Popen(
                    cmd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.workdir,
                    env=self.env(),
                    start_new_session=True,
                    **self.popen_as(),
                )
            except FileNotFoundError:
                raise StackError(f"{self.name}: `{cmd[0]}` not found; run `make setup`") from None
        proc = psutil.Process(popen.pid)
        self.pidfile.write(proc)
        if not self._wait_healthy(proc):
            tail = self.log_tail(25)
            self.stop()
            raise StackError(
                f"{self.name} did not become healthy within {self.timeout_s:.0f}s; log {self.logfile}:\n{tail}"
            )
        self.after_start(log)
        return "started"

    def _wait_healthy(self, proc: psutil.Process | None) -> bool:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if proc is not None and (not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE):
                return False
            if self.started():
                return True
            time.sleep(0.5)
        return False

    def stop(self, grace_s: float = 30.0) -> str:
        proc = self.process()
        if proc is None:
            return "not running"
        try:
            pgid = os.getpgid(proc.pid)
            os.killpg(pgid, self.STOP_SIGNAL)
        except ProcessLookupError:
            self.pidfile.remove()
            return "stopped"
        group = [proc, *proc.children(recursive=True)]
        deadline = time.monotonic() + grace_s
        alive = group
        while alive and time.monotonic() < deadline:
            _, alive = psutil.wait_procs(alive, timeout=1)
            if alive and (why := self.stuck()):
                break
        how = "stopped"
        if alive:
            how = f"killed: {why}" if (why := self.stuck()) else "killed after SIGTERM timed out"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            psutil.wait_procs(alive, timeout=10)
        self.pidfile.remove()
        return how

    def rss_bytes(self) -> int:
        proc = self.process()
        return 0 if proc is None else tree_rss(proc)

    def rotate_log(self, max_bytes: int = 64 << 20) -> None:
        """Before a start: a log over MAX_BYTES becomes ``<name>.log.1`` (replacing the previous one), so
        a stack that runs for months keeps at most two logs' worth per component."""
        try:
            if self.logfile.stat().st_size > max_bytes:
                self.logfile.replace(self.logfile.with_name(self.logfile.name + ".1"))
        except FileNotFoundError:
            pass

    def log_tail(self, n: int = 40) -> str:
        if not self.logfile.exists():
            return "(no log)"
        lines = self.logfile.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def why_down(self, last_bytes: int = 1 << 20) -> str:
        """What the log of its last run says stopped it, when it is a cause we know; "" otherwise.
        (A broker whose log directory filled stops itself: `lakehouse status` then says so.)"""
        try:
            with self.logfile.open("rb") as f:
                f.seek(max(0, self.logfile.stat().st_size - last_bytes))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        last_run = text.rsplit("\n=== ", 1)[-1]  # start() writes "=== <time> starting: ..." before each run
        if "No space left on device" in last_run:
            return (
                f"its last run stopped on a full disk (No space left on device, in {self.logfile}); free space "
                f"under {self.workdir}, then `lakehouse up {self.name}`"
            )
        return ""


#: Written into Kafka's storage directory once it is formatted with the SCRAM users.
SECURED_MARKER = "lakehouse-secured"
#: ... and the node ids of the controller quorum it was formatted for (a KRaft cluster cannot change it).
VOTERS_MARKER = "lakehouse-voters"


class Kafka(Component):
    """KRaft node NODE (1-based) of the stack's ``kafka_brokers``: broker and controller both. The first is
    ``kafka`` (the only one of the local profile); the others ``kafka-2``, ``kafka-3``, on the ports of
    ``Settings.kafka_node_ports``. All share one cluster id and the same SCRAM users and certificate."""

    def __init__(self, s: Settings, node: int = 1) -> None:
        super().__init__(s, name="kafka" if node == 1 else f"kafka-{node}", timeout_s=90)
        self.node = node

    @property
    def ports(self) -> tuple[int, int, int]:
        """(client, controller, metrics)."""
        return self.s.kafka_node_ports(self.node)

    def port(self) -> int:
        return self.ports[0]

    def _java(self) -> str:
        return str(self.s.java17() / "bin" / "java")

    def _classpath(self) -> str:
        jars = self.s.jvm_dir / "kafka"
        if not any(jars.glob("kafka_2.13-*.jar")):
            raise StackError(f"Kafka jars missing in {jars}: run `make setup`")
        return str(jars / "*")

    def voters(self) -> str:
        """The controller quorum: every node, ``id@host:controller_port``."""
        nodes = range(1, self.s.kafka_brokers + 1)
        return ",".join(f"{n}@{self.s.host}:{self.s.kafka_node_ports(n)[1]}" for n in nodes)

    def render_config(self) -> Path:
        """The node's ``server.properties`` (and its log4j2 configuration) in the workdir, from infra/kafka."""
        render(INFRA / "kafka" / "log4j2.properties", self.workdir / "log4j2.properties")
        client, controller, _ = self.ports
        return render(
            INFRA / "kafka" / "server.properties",
            self.workdir / "server.properties",
            node_id=self.node,
            voters=self.voters(),
            host=self.s.host,
            kafka_port=client,
            kafka_controller_port=controller,
            data_dir=self.workdir / "data",
            kafka_partitions=self.s.kafka_partitions,
            replication_factor=self.s.kafka_replication_factor,
            min_insync_replicas=self.s.kafka_min_insync_replicas,
            secrets_dir=self.s.secrets_dir,
            server_bundle=self.s.secrets_dir / SERVER_BUNDLE,
            ca_file=self.s.ca_file,
            controller_principal=f"CN={SERVER_COMMON_NAME}",
        )

    def cluster_id(self) -> str:
        """The id every node's storage is formatted with (made once, kept beside the first node's data)."""
        path = self.s.state_dir / "kafka" / "cluster.id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=") + "\n")
        return path.read_text().strip()

    def metrics_agent(self) -> Path:
        """Prometheus' JMX exporter agent jar (``make setup``)."""
        jar = next((self.s.jvm_dir / "kafka-metrics").glob("jmx_prometheus_javaagent-*.jar"), None)
        if jar is None:
            raise StackError(
                f"the JMX exporter agent is missing in {self.s.jvm_dir / 'kafka-metrics'}: run `make setup`"
            )
        return jar

    def render_metrics_config(self) -> Path:
        """The agent's configuration (0600: the key store's password): HTTPS, Basic auth as the scraper."""
        salt = token_hex(16)
        password = self.s.secret("prometheus_scraper").get_secret_value()
        text = fill(
            INFRA / "kafka" / "jmx-exporter.yml",
            keystore=self.s.secrets_dir / FLINK_KEYSTORE,
            keystore_password=self.s.secret("flink_keystore").get_secret_value(),
            salt=salt,
            password_hash=hashlib.sha256(f"{salt}:{password}".encode()).hexdigest(),
        )
        path = self.workdir / "jmx-exporter.yml"
        write_private(path, text.encode())
        return path

    def prepare(self) -> None:
        data = self.workdir / "data"
        self.render_metrics_config()
        conf = self.render_config()
        if (data / "meta.properties").exists():
            if not (data / SECURED_MARKER).exists():
                raise StackError(
                    f"Kafka's storage in {data} was formatted before Kafka was secured: its SCRAM users cannot be "
                    "added to it. Stop the stack (`lakehouse down`), move that directory away (its events are "
                    "lost; what bronze ingested stays in the lake) and the bronze checkpoint with it "
                    f"({self.s.checkpoint_dir / 'bronze'}: its offsets are of the old topics), then `lakehouse up`"
                )
            self.check_quorum(data)
            return
        self._format(conf, data)

    def check_quorum(self, data: Path) -> None:
        """Refuse storage formatted for another controller quorum (another number of nodes)."""
        nodes = ",".join(str(n) for n in range(1, self.s.kafka_brokers + 1))
        marker = data / VOTERS_MARKER
        formatted_for = marker.read_text().strip() if marker.exists() else "1"  # older: one node
        if formatted_for != nodes:
            raise StackError(
                f"Kafka's storage in {data} was formatted for a controller quorum of the nodes {formatted_for}; "
                f"this stack's is {nodes} (LAKEHOUSE_KAFKA_BROKERS={self.s.kafka_brokers}, or the profile, "
                "changed). A KRaft cluster cannot change its quorum in place: go back to the settings it was "
                "made with, or give the new one a state directory of its own (LAKEHOUSE_STATE_DIR; the old "
                "one's events stay in its directory)"
            )

    def _format(self, conf: Path, data: Path) -> None:
        """Format the storage with a SCRAM-SHA-512 credential for every principal. The passwords go to the
        JVM through an argument file (0600, deleted at once): never on a command line others can read."""
        cluster_id = self.cluster_id()
        args = [
            "kafka.tools.StorageTool",
            "format",
            # One argument: a base64 id may begin with "-", which argparse would take for an option.
            f"--cluster-id={cluster_id}",
            "-c",
            str(conf),
            "--ignore-formatted",
        ]
        for principal in KAFKA_PRINCIPALS:
            password = self.s.secret(f"kafka_{principal}").get_secret_value()
            args += ["--add-scram", f"SCRAM-SHA-512=[name={principal},password={password}]"]
        argfile = self.workdir / ".format-args"
        write_private(argfile, "\n".join(f'"{a}"' for a in args).encode())
        try:
            proc = subprocess.run(
                [
                    self._java(),
                    "-cp",
                    self._classpath(),
                    f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
                    f"@{argfile}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            argfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise StackError(f"formatting Kafka storage failed: {proc.stdout}{proc.stderr}")
        (data / SECURED_MARKER).write_text("SCRAM-SHA-512 users: " + ", ".join(KAFKA_PRINCIPALS) + "\n")
        (data / VOTERS_MARKER).write_text(",".join(str(n) for n in range(1, self.s.kafka_brokers + 1)) + "\n")

    def command(self) -> list[str]:
        return [
            self._java(),
            f"-Xms{self.s.kafka_heap}",
            f"-Xmx{self.s.kafka_heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            # The broker's metrics for Prometheus (kafka_log_*, kafka_topic_*, kafka_server_*).
            f"-javaagent:{self.metrics_agent()}={self.s.host}:{self.ports[2]}:{self.workdir / 'jmx-exporter.yml'}",
            "-cp",
            self._classpath(),
            "kafka.Kafka",
            str(self.workdir / "server.properties"),
        ]

    def healthy(self) -> bool:
        """This node's broker answers a metadata request (asked through it alone)."""
        if not port_open(self.s.host, self.port()):
            return False
        from lakehouse.services.kafka import broker_ready

        return broker_ready(self.s, f"{self.s.host}:{self.port()}")

    def _quorum_without_me(self) -> bool:
        """Whether the other running nodes and this one are a majority of the controller quorum."""
        running = 1 + sum(1 for n in self._peers() if n.process() is not None)
        return running > self.s.kafka_brokers // 2

    def _peers(self) -> list[Kafka]:
        return [Kafka(self.s, n) for n in range(1, self.s.kafka_brokers + 1) if n != self.node]

    def started(self) -> bool:
        # A node without a majority of the quorum running cannot elect a controller, so its broker is never
        # ready: the first nodes of a cluster count as started once their controller listens, the node that
        # completes the majority waits for its broker.
        if self._quorum_without_me():
            return self.healthy()
        return port_open(self.s.host, self.ports[1])

    def stuck(self) -> str:
        # A stopping broker asks the controller quorum to move its leaders away first (controlled shutdown);
        # once a majority of the nodes is gone there is no quorum to ask, and it would wait out the grace.
        if self.s.kafka_brokers > 1 and not self._quorum_without_me():
            return "no controller quorum left to shut down against (the other nodes have stopped)"
        return ""

    def after_start(self, log: Log) -> None:
        from lakehouse.services.kafka import align_topic_configs, ensure_acls, ensure_topics

        if any(n.process() is None for n in self._peers()):
            log(f"      {self.name}: topics and ACLs once every broker runs ({self.s.kafka_brokers})")
            return
        # Topics of RF brokers: every broker registered first (the first nodes' `started` did not wait).
        deadline = time.monotonic() + self.timeout_s
        while not all(n.healthy() for n in [self, *self._peers()]):
            if time.monotonic() > deadline:
                raise StackError(f"Kafka: not every broker of {self.s.kafka_brokers} ready in {self.timeout_s:.0f}s")
            time.sleep(0.5)
        created = ensure_topics(self.s)
        log(
            f"      topics: {', '.join(f'{t.name}({self.s.kafka_partitions})' for t in TOPICS)}"
            f" x{self.s.kafka_replication_factor} replicas, {self.s.kafka_min_insync_replicas} in sync"
            + (f"; created {', '.join(created)}" if created else "")
        )
        for topic, changed in align_topic_configs(self.s).items():
            log(f"      topic {topic}: set {', '.join(f'{k}={v}' for k, v in changed.items())} (from the settings)")
        log(f"      ACLs: {ensure_acls(self.s)} (principals {', '.join(KAFKA_PRINCIPALS)}; none where no ACL matches)")

    def version(self) -> str:
        jar = next((self.s.jvm_dir / "kafka").glob("kafka_2.13-*.jar"), None)
        return jar.stem.split("-", 1)[1] if jar else "?"


#: What each Redis user may do. Keys: the serving layout's prefixes (lakehouse.serving.keys). The writer
#: (the serving stream, the fast path) writes them, through the serving writer's Lua scripts too; a
#: reader (services) only reads them; neither may run a dangerous command (FLUSHALL, CONFIG, REPLICAOF,
#: KEYS, DEBUG, ...) or touch another key. Only admin (the stack itself, tests, benchmarks) may.
REDIS_SERVING_KEYS = ("merchant:*", "device:*", "page:*", "fraud:*")
REDIS_ACL_RULES = {
    "admin": "~* &* +@all",
    "writer": " ".join(f"~{k}" for k in REDIS_SERVING_KEYS)
    + " resetchannels -@all +@read +@write +@keyspace +@scripting +@connection -@dangerous"
    " -script|flush -script|kill -function +acl|whoami",
    "reader": " ".join(f"%R~{k}" for k in REDIS_SERVING_KEYS)
    + " resetchannels -@all +@read +@connection -@dangerous +acl|whoami",
    # The exporter: server statistics only, no key, no configuration change.
    "monitor": "resetchannels -@all +@connection +info +ping +dbsize +client|list +slowlog|get +slowlog|len"
    " +latency|latest +config|get +select",
}


def redis_acl(s: Settings) -> str:
    """Redis's ACL file: one user per role with its password's SHA-256 (never the password), and `default`
    with a password nobody has.

    `default` is not `off`: Redis 7.0 replays the append-only file's transactions (every Lua script's
    writes: the fraud alerts) as `default` and checks its ACL at EXEC, so with `default` off a restart
    silently dropped them (the log says "NOPERM ACLs rules changed between the moment the transaction was
    accumulated and the EXEC call"; tests/unit/test_redis_security.py restarts Redis to check). Its
    password is 256 random bits, hashed and thrown away here: nobody can log in as it, and a client
    that does not log in gets NOAUTH for every command, as with `default off`."""
    unknowable = hashlib.sha256(token_bytes(32)).hexdigest()
    lines = [f"user default on #{unknowable} ~* &* +@all"]
    for role in REDIS_ROLES:
        digest = hashlib.sha256(s.secret(f"redis_{role}").get_secret_value().encode()).hexdigest()
        lines.append(f"user {role} on #{digest} {REDIS_ACL_RULES[role]}")
    return "\n".join(lines) + "\n"


class Redis(Component):
    """redis-server as the stack configures it; NAME (its directory, pid file and log) other than
    ``redis`` for a private one beside the stack's (the fault suite's, the benchmarks')."""

    def __init__(self, s: Settings, name: str = "redis") -> None:
        super().__init__(s, name=name, timeout_s=30)

    def port(self) -> int:
        return self.s.redis_port

    def prepare(self) -> None:
        write_private(self.workdir / "users.acl", redis_acl(self.s).encode())
        render(
            INFRA / "redis" / "redis.conf",
            self.workdir / "redis.conf",
            host=self.s.host,
            redis_port=self.s.redis_port,
            data_dir=self.workdir,
            tls_cert=self.s.secrets_dir / SERVER_CERT,
            tls_key=self.s.secrets_dir / SERVER_KEY,
            tls_ca=self.s.ca_file,
            acl_file=self.workdir / "users.acl",
            maxmemory=self.s.redis_maxmemory,
        )

    def command(self) -> list[str]:
        return ["redis-server", str(self.workdir / "redis.conf")]

    def _client(self) -> Any:
        from lakehouse.serving import connect

        return connect(self.s, role="admin", socket_timeout=2)

    def healthy(self) -> bool:
        try:
            return bool(self._client().ping())
        except Exception:
            return False

    def version(self) -> str:
        try:
            return str(self._client().info("server")["redis_version"])
        except Exception:
            return "?"


class RedisExporter(Component):
    """Redis' memory, clients and errors for Prometheus (Debian's prometheus-redis-exporter), logged in
    as the ACL user ``monitor``. It has no Basic auth: its HTTPS endpoint requires a client certificate
    signed by the stack's CA (Prometheus presents the stack's)."""

    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="redis-exporter", timeout_s=30, depends_on=("redis",))

    def port(self) -> int:
        return self.s.redis_exporter_port

    def url(self) -> str:
        return f"https://{self.s.host}:{self.s.redis_exporter_port}/metrics"

    @property
    def redis_uri(self) -> str:
        return f"rediss://{self.s.host}:{self.s.redis_port}"

    @property
    def password_file(self) -> Path:
        """The exporter reads its password from a JSON map (URI -> password): kept with the secrets."""
        return self.s.secrets_dir / "redis-exporter.json"

    def prepare(self) -> None:
        body = json.dumps({self.redis_uri: self.s.secret("redis_monitor").get_secret_value()})
        write_private(self.password_file, body.encode())

    def command(self) -> list[str]:
        d = self.s.secrets_dir
        return [
            "prometheus-redis-exporter",
            f"-redis.addr={self.redis_uri}",
            "-redis.user=monitor",
            f"-redis.password-file={self.password_file}",
            f"-tls-ca-cert-file={self.s.ca_file}",
            f"-web.listen-address={self.s.host}:{self.s.redis_exporter_port}",
            f"-tls-server-cert-file={d / SERVER_CERT}",
            f"-tls-server-key-file={d / SERVER_KEY}",
            f"-tls-server-ca-cert-file={self.s.ca_file}",  # scrapers must present a certificate of the CA
        ]

    def healthy(self) -> bool:
        return self._metrics() is not None

    def _metrics(self) -> requests.Response | None:
        d = self.s.secrets_dir
        return _http_ok(self.url(), verify=str(self.s.ca_file), cert=(str(d / SERVER_CERT), str(d / SERVER_KEY)))

    def version(self) -> str:
        r = self._metrics()
        m = re.search(r'redis_exporter_build_info\{[^}]*version="([^"]+)"', r.text) if r else None
        return m.group(1) if m else "?"


def bcrypt_hash(s: Settings, secret: str) -> str:
    """The bcrypt hash (``$2b$``, cost 10: a login costs the server about 50 ms once, then it is cached) of
    SECRET's value: what the password files of Trino, Prometheus and the pushgateway hold."""
    import bcrypt

    return bcrypt.hashpw(s.secret(secret).get_secret_value().encode(), bcrypt.gensalt(rounds=10)).decode()


def trino_password_db(s: Settings) -> str:
    """Trino's password file: one ``user:bcrypt`` line per user (Trino wants the ``$2y$`` prefix; the hash is
    the same as bcrypt's ``$2b$``)."""
    lines = [f"{user}:$2y${bcrypt_hash(s, f'trino_{user}')[4:]}" for user in TRINO_USERS]
    return "\n".join(lines) + "\n"


class Trino(Component):
    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="trino", timeout_s=240)

    def port(self) -> int:
        return self.s.trino_port

    def url(self) -> str:
        return self.s.trino_url

    @property
    def home(self) -> Path:
        from lakehouse.stack.install import trino_home

        return trino_home(self.s)

    def prepare(self) -> None:
        if not (self.home / "plugin" / "delta-lake").is_dir():
            raise StackError(f"Trino is not installed in {self.home}: run `make setup`")
        etc = self.workdir / "etc"
        values = dict(
            host=self.s.host,
            trino_port=self.s.trino_port,
            trino_home=self.home,
            etc_dir=etc,
            query_max_memory_per_node=self.s.trino_query_max_memory_per_node,
            trino_heap=self.s.trino_heap,
            lake_dir=self.s.lake_dir,
        )
        values |= dict(
            server_bundle=self.s.secrets_dir / SERVER_BUNDLE,
            shared_secret=self.s.secret("trino_shared_secret").get_secret_value(),
            ca_file=self.s.ca_file,
            catalog=self.s.trino_catalog,
            trust_store_options="",
        )
        for name in (
            "config.properties",
            "log.properties",
            "password-authenticator.properties",
            "access-control.properties",
            "rules.json",
        ):
            render(INFRA / "trino" / name, etc / name, **values)
        catalog = etc / "catalog" / "lakehouse.properties"
        if isinstance(self.s.lake_root, str):  # the lake on the object store: S3, and trust in the store's CA
            from lakehouse.storage import jvm_files

            store = jvm_files(self.s)[1]
            values["trust_store_options"] = f"-Djavax.net.ssl.trustStore={store}\n-Djavax.net.ssl.trustStoreType=PKCS12"
            text = fill(
                INFRA / "trino" / "catalog" / "lakehouse-s3.properties",
                lake_uri=self.s.lake_root,
                s3_endpoint=self.s.s3_url,
                s3_region=self.s.s3_region,
                s3_access_key=self.s.s3_trino_access_key,
                s3_secret_key=self.s.secret("s3_trino").get_secret_value(),
            )
            write_private(catalog, text.encode())
        else:
            render(INFRA / "trino" / "catalog" / "lakehouse.properties", catalog, **values)
        render(INFRA / "trino" / "jvm.config", etc / "jvm.config", **values)
        write_private(etc / "password.db", trino_password_db(self.s).encode())
        # The catalog file keeps the name of the catalog: settings.trino_catalog.
        if self.s.trino_catalog != "lakehouse":
            (etc / "catalog" / "lakehouse.properties").rename(etc / "catalog" / f"{self.s.trino_catalog}.properties")
        if not isinstance(self.s.lake_root, str):  # on the object store, "directories" are key prefixes
            self.s.lake_dir.mkdir(parents=True, exist_ok=True)
            (self.s.lake_dir / "_trino_metastore").mkdir(exist_ok=True)

    def command(self) -> list[str]:
        etc = self.workdir / "etc"
        jvm = [line.strip() for line in (etc / "jvm.config").read_text().splitlines() if line.strip()]
        return [
            str(self.s.java25() / "bin" / "java"),
            *jvm,
            "-Dnode.environment=lakehouse",
            "-Dnode.id=lakehouse-1",
            f"-Dnode.data-dir={self.workdir / 'data'}",
            f"-Dnode.internal-address={self.s.host}",
            f"-Dnode.bind-ip={self.s.host}",
            f"-Dconfig={etc / 'config.properties'}",
            f"-Dlog.levels-file={etc / 'log.properties'}",
            "-cp",
            str(self.home / "lib" / "*"),
            "io.trino.server.TrinoServer",
        ]

    def healthy(self) -> bool:
        r = _http_ok(f"{self.s.trino_url}/v1/info", verify=str(self.s.ca_file))
        if r is None or r.json().get("starting", True):
            return False
        # Its HTTP server answers (and even SELECT 1 runs on the coordinator alone) a few seconds before
        # its node has announced itself: a query that scans a catalog then fails with NO_NODES_AVAILABLE.
        try:
            from lakehouse.services.trino import query

            active = "SELECT count(*) FROM system.runtime.nodes WHERE state = 'active'"
            return bool(query(self.s, active)[0][0] >= 1)
        except Exception:
            return False

    def after_start(self, log: Log) -> None:
        from lakehouse.services.trino import ensure_schemas

        ensure_schemas(self.s, LAYERS)
        log(f"      catalog {self.s.trino_catalog}: schemas {', '.join(LAYERS)}")

    def version(self) -> str:
        r = _http_ok(f"{self.s.trino_url}/v1/info", verify=str(self.s.ca_file))
        return str(r.json()["nodeVersion"]["version"]) if r else "?"


def web_config(s: Settings, dest: Path, users: tuple[str, ...]) -> Path:
    """A Prometheus-style web config (TLS, Basic auth for USERS, bcrypt hashes) at DEST, mode 0600."""
    lines = [f"  {user}: {bcrypt_hash(s, f'prometheus_{user}')}" for user in users]
    text = fill(
        INFRA / "prometheus" / "web.yml",
        cert_file=s.secrets_dir / SERVER_CERT,
        key_file=s.secrets_dir / SERVER_KEY,
        users="\n".join(lines),
    )
    write_private(dest, text.encode())
    return dest


def _admin_get(s: Settings, url: str) -> requests.Response | None:
    """GET URL of Prometheus or the pushgateway as admin, over TLS verified against the local CA."""
    return _http_ok(url, verify=str(s.ca_file), auth=s.http_auth("admin"))


class Pushgateway(Component):
    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="pushgateway", timeout_s=30)

    def port(self) -> int:
        return self.s.pushgateway_port

    def url(self) -> str:
        return self.s.pushgateway_url

    def prepare(self) -> None:
        web_config(self.s, self.workdir / "web.yml", ("admin", "pusher", "scraper"))

    def command(self) -> list[str]:
        return [
            "prometheus-pushgateway",
            f"--web.listen-address={self.s.host}:{self.s.pushgateway_port}",
            f"--web.config.file={self.workdir / 'web.yml'}",
            f"--persistence.file={self.workdir / 'metrics.db'}",
            "--persistence.interval=1m",
        ]

    def healthy(self) -> bool:
        return _admin_get(self.s, f"{self.s.pushgateway_url}/-/ready") is not None

    def version(self) -> str:
        r = _admin_get(self.s, f"{self.s.pushgateway_url}/api/v1/status")
        return str(r.json()["data"]["build_information"]["version"]) if r else "?"


class Prometheus(Component):
    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="prometheus", timeout_s=60, depends_on=("pushgateway", "alertmanager"))

    def port(self) -> int:
        return self.s.prometheus_port

    def url(self) -> str:
        return self.s.prometheus_url

    def prepare(self) -> None:
        render(
            INFRA / "prometheus" / "prometheus.yml",
            self.workdir / "prometheus.yml",
            host=self.s.host,
            prometheus_port=self.s.prometheus_port,
            pushgateway_port=self.s.pushgateway_port,
            alertmanager_port=self.s.alertmanager_port,
            node_exporter_port=self.s.node_exporter_port,
            redis_exporter_port=self.s.redis_exporter_port,
            kafka_metrics_targets=", ".join(
                f'"{self.s.host}:{self.s.kafka_node_ports(n)[2]}"' for n in range(1, self.s.kafka_brokers + 1)
            ),
            postgres_exporter_targets=", ".join(
                f'"{self.s.host}:{c.port()}"' for c in local_postgres(self.s) if c.name == "postgres-exporter"
            ),
            client_cert=self.s.secrets_dir / SERVER_CERT,
            client_key=self.s.secrets_dir / SERVER_KEY,
            rules_dir=self.workdir / "rules",
            trino_port=self.s.trino_port,
            environment=self.s.environment,
            ca_file=self.s.ca_file,
            trino_monitoring_password_file=self.s.secret_file("trino_monitoring"),
            scraper_password_file=self.s.secret_file("prometheus_scraper"),
            dashboard_port=self.s.dashboard_port,
            dagster_viewer_password_file=self.s.secret_file("dagster_viewer"),
        )
        web_config(self.s, self.workdir / "web.yml", ("admin", "scraper"))
        rules = self.workdir / "rules"
        shutil.rmtree(rules, ignore_errors=True)
        shutil.copytree(INFRA / "prometheus" / "rules", rules)

    def command(self) -> list[str]:
        # No --web.enable-lifecycle: nobody may stop or reload Prometheus over HTTP (`lakehouse down` does).
        return [
            "prometheus",
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--web.config.file={self.workdir / 'web.yml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            "--storage.tsdb.retention.time=7d",
            f"--web.listen-address={self.s.host}:{self.s.prometheus_port}",
        ]

    def healthy(self) -> bool:
        return _admin_get(self.s, f"{self.s.prometheus_url}/-/ready") is not None

    def version(self) -> str:
        r = _admin_get(self.s, f"{self.s.prometheus_url}/api/v1/status/buildinfo")
        return str(r.json()["data"]["version"]) if r else "?"


def alertmanager_config(s: Settings) -> str:
    """Alertmanager's configuration for S: routes, PagerDuty, and the webhook when one is set."""
    webhook = ""
    if s.alert_webhook_url:
        webhook = f"    webhook_configs:\n      - url: {json.dumps(s.alert_webhook_url)}\n        send_resolved: true"
    return fill(
        INFRA / "alertmanager" / "alertmanager.yml",
        pagerduty_url=json.dumps(s.pagerduty_url),
        routing_key_file=s.secret_file("pagerduty_routing_key"),
        alertmanager_url=s.alertmanager_url,
        environment=s.environment,
        pager_webhooks=webhook,
        ticket_webhooks=webhook,
    )


class Alertmanager(Component):
    """Routes Prometheus' alerts: pages to PagerDuty, all of them to the webhook (when set)."""

    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="alertmanager", timeout_s=30)

    def port(self) -> int:
        return self.s.alertmanager_port

    def url(self) -> str:
        return self.s.alertmanager_url

    @property
    def config_file(self) -> Path:
        return self.workdir / "alertmanager.yml"

    def prepare(self) -> None:
        write_private(self.config_file, alertmanager_config(self.s).encode())
        web_config(self.s, self.workdir / "web.yml", ("admin", "scraper"))

    def start(self, log: Log) -> str:
        """Start, or apply changed alerting settings to the running Alertmanager (it reloads on SIGHUP)."""
        state = super().start(log)
        proc = self.process()
        wanted = alertmanager_config(self.s)
        if state == "running" and proc is not None and self.config_file.read_text() != wanted:
            write_private(self.config_file, wanted.encode())
            proc.send_signal(signal.SIGHUP)
            log(f"      alertmanager: configuration changed, reloaded ({self.config_file})")
        return state

    def command(self) -> list[str]:
        return [
            "prometheus-alertmanager",
            f"--config.file={self.config_file}",
            f"--web.config.file={self.workdir / 'web.yml'}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.s.host}:{self.s.alertmanager_port}",
            f"--web.external-url={self.s.alertmanager_url}",
            "--cluster.listen-address=",  # one instance: no gossip port (it would bind 0.0.0.0:9094)
        ]

    def healthy(self) -> bool:
        return _admin_get(self.s, f"{self.s.alertmanager_url}/-/ready") is not None

    def version(self) -> str:
        r = _admin_get(self.s, f"{self.s.alertmanager_url}/api/v2/status")
        return str(r.json()["versionInfo"]["version"]) if r else "?"


class NodeExporter(Component):
    """The machine's filesystems (free space) for the disk alert; no other collector."""

    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="node-exporter", timeout_s=30)

    def port(self) -> int:
        return self.s.node_exporter_port

    def url(self) -> str:
        return f"https://{self.s.host}:{self.s.node_exporter_port}/metrics"

    def prepare(self) -> None:
        web_config(self.s, self.workdir / "web.yml", ("admin", "scraper"))

    def command(self) -> list[str]:
        return [
            "prometheus-node-exporter",
            "--collector.disable-defaults",
            "--collector.filesystem",
            f"--web.listen-address={self.s.host}:{self.s.node_exporter_port}",
            f"--web.config.file={self.workdir / 'web.yml'}",
        ]

    def healthy(self) -> bool:
        return _admin_get(self.s, self.url()) is not None

    def version(self) -> str:
        r = _admin_get(self.s, self.url())
        m = re.search(r'node_exporter_build_info\{[^}]*version="([^"]+)"', r.text) if r else None
        return m.group(1) if m else "?"


class DashboardServer(Component):
    """The dashboards page (lakehouse.services.dashboard) behind the Dagster UI's login."""

    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="dashboard", timeout_s=30, depends_on=("prometheus",))

    def port(self) -> int:
        return self.s.dashboard_port

    def url(self) -> str:
        return self.s.dashboard_url

    def command(self) -> list[str]:
        return [sys.executable, "-m", "lakehouse.services.dashboard"]

    def healthy(self) -> bool:
        r = _http_ok(f"{self.s.dashboard_url}/healthz", verify=str(self.s.ca_file), auth=self.s.dagster_auth("viewer"))
        return r is not None

    def version(self) -> str:
        from lakehouse import __version__

        return __version__


def _bin(name: str) -> str:
    """A console script installed beside this interpreter (the project's venv)."""
    return str(Path(sys.executable).parent / name)


class _Dagster(Component):
    def env(self) -> dict[str, str]:
        return child_env(DAGSTER_HOME=str(self.s.dagster_home))

    def prepare(self) -> None:
        self.s.dagster_home.mkdir(parents=True, exist_ok=True)
        write_dagster_yaml(self.s)
        # The webserver and the daemon load the definitions from the stack's code server: the daemon
        # reloads its workspace every minute, and with a Python module there it started a new code
        # server each time (8-12 CPU-s each, a fifth of a core on an idle stack).
        workspace = {"load_from": [{"grpc_server": {"socket": str(code_socket(self.s)), "location_name": "lakehouse"}}]}
        (self.s.dagster_home / "workspace.yaml").write_text(json.dumps(workspace, indent=2) + "\n")

    def workspace(self) -> str:
        return str(self.s.dagster_home / "workspace.yaml")

    def version(self) -> str:
        return pkg_version("dagster")


def write_dagster_yaml(s: Settings) -> Path:
    """The instance's ``dagster.yaml`` in DAGSTER_HOME: infra/dagster/dagster.yaml, plus the PostgreSQL storage
    when ``dagster_storage`` says so (by default Dagster's SQLite files under DAGSTER_HOME)."""
    text = fill(INFRA / "dagster" / "dagster.yaml")
    if s.dagster_storage == "postgres":
        import yaml  # type: ignore[import-untyped]

        from lakehouse.stack.postgres import dagster_storage

        text += "\n# Runs, events and schedules in PostgreSQL (dagster_storage=postgres).\n"
        text += yaml.safe_dump({"storage": dagster_storage(s)}, sort_keys=False)
    dest = s.dagster_home / "dagster.yaml"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return dest


def code_socket(s: Settings) -> Path:
    """The Unix socket of the stack's Dagster code server (in the run directory: the owner's only)."""
    return s.run_dir / "dagster-code.sock"


class DagsterCodeServer(_Dagster):
    """The project's definitions (``orchestration.definitions``), loaded once and served to the webserver
    and the daemon over a Unix socket; it launches the runs. ``reloadRepositoryLocation`` reloads it."""

    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="dagster-code-server", timeout_s=180)

    def url(self) -> str:
        return f"unix:{code_socket(self.s)}"

    def prepare(self) -> None:
        super().prepare()
        code_socket(self.s).unlink(missing_ok=True)  # one a killed server left

    def command(self) -> list[str]:
        return [
            _bin("dagster"), "code-server", "start", "-m", "orchestration.definitions",
            "--location-name", "lakehouse", "--socket", str(code_socket(self.s)), "--log-level", "warning",
        ]  # fmt: skip

    def healthy(self) -> bool:
        if self.process() is None or not code_socket(self.s).exists():
            return False
        import grpc  # gRPC's standard health check, as `dagster api grpc-health-check` asks it
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        try:
            with grpc.insecure_channel(f"unix:{code_socket(self.s)}") as channel:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="DagsterApi"), timeout=5
                )
            return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
        except grpc.RpcError:  # not listening yet
            return False


class DagsterWebserver(_Dagster):
    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="dagster-webserver", timeout_s=180, depends_on=("dagster-code-server",))

    def port(self) -> int:
        return self.s.dagster_port

    def url(self) -> str:
        return self.s.dagster_url

    def command(self) -> list[str]:
        # Not `dagster-webserver`: the same app, served on HTTPS behind a login (orchestration/webserver.py).
        return [sys.executable, "-m", "orchestration.webserver", "-w", self.workspace()]

    def healthy(self) -> bool:
        from lakehouse.services.dagster_api import code_locations

        try:
            url = f"{self.s.dagster_url}/server_info"
            if _http_ok(url, verify=str(self.s.ca_file), auth=self.s.dagster_auth()) is None:
                return False
            return any(loc["status"] == "LOADED" for loc in code_locations(self.s))
        except Exception:
            return False


class DagsterDaemon(_Dagster):
    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="dagster-daemon", timeout_s=120, depends_on=("dagster-webserver",))

    def url(self) -> str:
        return "(no port)"

    def command(self) -> list[str]:
        return [_bin("dagster-daemon"), "run", "-w", self.workspace()]

    def healthy(self) -> bool:
        proc = self.process()
        if proc is None:
            return False
        from lakehouse.services.dagster_api import daemon_health

        try:
            return daemon_health(self.s, since=proc.create_time())
        except Exception:
            return False


def components(s: Settings) -> list[Component]:
    """Every component, in start order (each after what it depends on)."""
    return [
        *(Kafka(s, node) for node in range(1, s.kafka_brokers + 1)),
        Redis(s),
        *object_store(s),
        *spark_cluster_components(s),
        Trino(s),
        Pushgateway(s),
        Alertmanager(s),
        NodeExporter(s),
        RedisExporter(s),
        Prometheus(s),
        DashboardServer(s),
        *local_postgres(s),
        DagsterCodeServer(s),
        DagsterWebserver(s),
        DagsterDaemon(s),
    ]


def spark_cluster_components(s: Settings) -> list[Component]:
    """The stack's Spark standalone master and workers (``spark_workers``; none by default)."""
    from lakehouse.stack.spark_cluster import spark_cluster

    return spark_cluster(s)


def object_store(s: Settings) -> list[Component]:
    """The stack's S3 server (SeaweedFS), when the lake is on s3a:// and no other store is configured."""
    from lakehouse.stack.objectstore import local_objectstore

    return local_objectstore(s)


def local_postgres(s: Settings) -> list[Component]:
    """The stack's PostgreSQL: when Dagster stores in PostgreSQL and no other server is configured."""
    from lakehouse.stack.postgres import Postgres, PostgresExporter

    if s.dagster_storage != "postgres" or s.postgres_endpoint is not None:
        return []
    return [Postgres(s), PostgresExporter(s)]


def select(s: Settings, names: list[str] | None) -> list[Component]:
    allc = components(s)
    if not names:
        return allc
    known = {c.name: c for c in allc}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise StackError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [c for c in allc if c.name in names]


def up(s: Settings, names: list[str] | None = None, log: Log = print) -> dict[str, str]:
    """Start components in dependency order; return {name: 'started'|'running'}."""
    from lakehouse.stack import secrets

    os.umask(0o077)  # the services' data and logs: the owner's only
    s.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secrets.ensure(s)  # made by `make setup`; again here for a state directory wiped since
    result: dict[str, str] = {}
    for c in select(s, names):
        t0 = time.monotonic()
        log(f"{c.name:<18} starting ...")
        state = c.start(log)
        result[c.name] = state
        log(f"{c.name:<18} {state} in {time.monotonic() - t0:.1f}s at {c.url()}")
    if "trino" in result:
        # Best effort: every table Spark has created so far appears in the catalog (never fatal).
        from lakehouse.services.trino import try_sync_tables

        try_sync_tables(s, log=lambda m: log(f"      {m}"))
    return result


def down(s: Settings, names: list[str] | None = None, log: Log = print) -> dict[str, str]:
    """Stop what our pid files name, in reverse start order."""
    result: dict[str, str] = {}
    chosen = list(reversed(select(s, names)))
    # Kafka's nodes stop together: stopped one after another, the last ones lose their controller quorum
    # and each waits out its controlled shutdown (30 s, then killed) for a controller that cannot answer.
    brokers = [c for c in chosen if isinstance(c, Kafka)]
    with ThreadPoolExecutor(max_workers=max(1, len(brokers))) as pool:
        stopping: dict[str, Future[str]] = {}
        for c in chosen:
            if isinstance(c, Kafka) and not stopping:  # the first of them, in stop order: all of them now
                stopping = {b.name: pool.submit(b.stop) for b in brokers}
            how = stopping[c.name].result() if c.name in stopping else c.stop()
            result[c.name] = how
            log(f"{c.name:<18} {how}")
    return result


@dataclass
class Status:
    name: str
    state: str  # healthy | unhealthy | down | foreign (its port held by a program we did not start)
    pid: int | None
    url: str
    version: str
    rss_bytes: int
    why: str = ""  # when down: what its log says stopped it (Component.why_down), if known


def status(s: Settings) -> list[Status]:
    out = []
    for c in components(s):
        proc = c.process()
        healthy = proc is not None and c.healthy()  # never probe (with our credentials) a program we did not start
        if proc is not None:
            state = "healthy" if healthy else "unhealthy"
        else:
            port = c.port()
            state = "foreign" if port is not None and port_open(s.host, port) else "down"
        out.append(
            Status(
                name=c.name,
                state=state,
                pid=proc.pid if proc else None,
                url=c.url(),
                version=c.version() if healthy else "",
                rss_bytes=c.rss_bytes(),
                why=c.why_down() if state == "down" else "",
            )
        )
    return out


@dataclass
class StreamMemory:
    name: str  # the checkpoints it holds, e.g. "bronze, silver, gold" for `all`
    pid: int
    rss_bytes: int  # the whole process tree: the Spark driver's JVM and Python, or the fast path's launcher and Flink


def _stream_root(pid: int) -> psutil.Process:
    """The top of a stream's processes: a PySpark app holds its lock from Python, a child of spark-submit's JVM."""
    proc = psutil.Process(pid)
    with contextlib.suppress(psutil.Error):
        parent = proc.parent()
        if parent is not None and "org.apache.spark.deploy.SparkSubmit" in parent.cmdline():
            return parent
    return proc


def stream_memory(s: Settings) -> list[StreamMemory]:
    """Every running stream or batch app holding a checkpoint lock (started by Dagster, the CLI or a
    benchmark), with the resident memory of its whole process tree."""
    from lakehouse.services import streams

    held: dict[int, list[str]] = {}
    for app in streams.held_locks(s):
        holder = streams.lock_holder(s, app)
        if holder is not None:
            held.setdefault(holder, []).append(app)
    out = []
    for pid, names in held.items():
        try:
            root = _stream_root(pid)
            rss = tree_rss(root)
        except psutil.NoSuchProcess:
            continue
        out.append(StreamMemory(name=", ".join(names), pid=root.pid, rss_bytes=rss))
    return out


def tree_rss(proc: psutil.Process) -> int:
    """Resident memory of PROC and its descendants (those that end meanwhile count 0)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total
