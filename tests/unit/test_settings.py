from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from lakehouse.cli.app import main
from lakehouse.settings import ENV_PREFIX, Settings, SettingsError, child_env, load_settings


def test_defaults_are_the_conventional_ports_on_loopback() -> None:
    s = load_settings()
    assert (s.kafka_port, s.redis_port, s.trino_port, s.dagster_port, s.prometheus_port, s.pushgateway_port) == (
        9092,
        6379,
        8080,
        3000,
        9090,
        9091,
    )
    assert s.host == "127.0.0.1"
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.lake_dir == (s.state_dir / "lake").resolve()


def test_environment_variables_with_the_prefix_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}KAFKA_PORT", "19092")
    monkeypatch.setenv(f"{ENV_PREFIX}STATE_DIR", str(tmp_path))
    monkeypatch.setenv(f"{ENV_PREFIX}SPARK_MASTER", "spark://10.0.0.5:7077")
    s = load_settings()
    assert s.kafka_port == 19092
    assert s.state_dir == tmp_path
    assert s.spark_master == "spark://10.0.0.5:7077"
    assert s.bootstrap_servers == "127.0.0.1:19092"


def test_clients_reach_the_local_stack_unless_an_endpoint_says_elsewhere() -> None:
    local = Settings(_env_file=None, redis_port=16379, trino_port=18080)  # type: ignore[call-arg]
    assert local.redis_address == ("127.0.0.1", 16379)
    assert (local.trino_url, local.trino_address) == ("https://127.0.0.1:18080", ("127.0.0.1", 18080))
    assert local.dagster_url == "https://127.0.0.1:3000"
    remote = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_endpoint="redis.internal:6380",
        trino_endpoint="https://trino.internal:8443/",
        dagster_endpoint="https://dagster.internal:443",
        pushgateway_endpoint="https://metrics.internal:9091",
    )
    assert remote.host == "127.0.0.1"  # what the local stack binds stays loopback
    assert remote.redis_address == ("redis.internal", 6380)
    assert remote.redis_where == "redis.internal:6380"
    assert (remote.trino_url, remote.trino_address) == ("https://trino.internal:8443", ("trino.internal", 8443))
    assert remote.dagster_url == "https://dagster.internal:443"
    assert remote.pushgateway_url == "https://metrics.internal:9091"
    assert remote.prometheus_url == "https://127.0.0.1:9090"  # not set: the local one


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("trino_endpoint", "http://trino.internal:8080", "every service speaks TLS"),
        ("trino_endpoint", "https://trino.internal", "https://HOST:PORT"),
        ("dagster_endpoint", "https://dagster.internal:3000/graphql", "no path"),
        ("redis_endpoint", "redis.internal", "HOST:PORT"),
        ("redis_endpoint", "rediss://redis.internal:6379", "HOST:PORT"),
        ("redis_endpoint", "redis.internal:99999", "HOST:PORT"),
    ],
)
def test_a_malformed_endpoint_is_refused_naming_the_form(field: str, value: str, says: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=re.escape(says)):
        Settings(_env_file=None, **{field: value})  # type: ignore[call-arg]


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"{ENV_PREFIX}REDIS_PORT=16379\n{ENV_PREFIX}TRINO_HEAP=2g\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.redis_port == 16379
    assert s.trino_heap == "2g"


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("KAFKA_PORT", "not-a-port", f"{ENV_PREFIX}KAFKA_PORT"),
        ("REDIS_PORT", "70000", f"{ENV_PREFIX}REDIS_PORT"),
        ("HOST", "0.0.0.0", "loopback only"),  # noqa: S104 - the value under test
        ("TRINO_HEAP", "lots", f"{ENV_PREFIX}TRINO_HEAP"),
        ("DAGSTER_PORT", "9092", "clashes with LAKEHOUSE_KAFKA_PORT"),
        ("NO_SUCH_SETTING", "1", f"{ENV_PREFIX}NO_SUCH_SETTING"),
    ],
)
def test_bad_settings_raise_a_message_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}{var}", value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert expected in str(err.value)


def test_redacted_hides_secrets() -> None:
    s = Settings(pii_hmac_key="super-secret-key")  # type: ignore[arg-type]
    shown = s.redacted()
    assert shown["pii_hmac_key"] == "********"
    assert "super-secret-key" not in repr(shown)


@pytest.mark.parametrize("environment", ["ci", "prod"])
@pytest.mark.parametrize("key", ["local-dev-only-change-me", "short-key-31-characters-long-xx"])
def test_a_development_or_short_pii_key_is_refused_outside_local(
    monkeypatch: pytest.MonkeyPatch, environment: str, key: str
) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}ENVIRONMENT", environment)
    monkeypatch.setenv(f"{ENV_PREFIX}PII_HMAC_KEY", key)
    with pytest.raises(SettingsError, match="development or short key"):
        load_settings()
    monkeypatch.setenv(f"{ENV_PREFIX}PII_HMAC_KEY", "k" * 32)
    assert load_settings().secret("pii_hmac_key").get_secret_value() == "k" * 32
    monkeypatch.setenv(f"{ENV_PREFIX}ENVIRONMENT", "local")
    monkeypatch.setenv(f"{ENV_PREFIX}PII_HMAC_KEY", key)
    assert load_settings().secret("pii_hmac_key").get_secret_value() == key  # a developer's own machine may use one


def test_secrets_come_from_their_files_and_a_missing_one_is_named(tmp_path: Path) -> None:
    s = Settings(_env_file=None, state_dir=tmp_path)  # type: ignore[call-arg]
    with pytest.raises(
        SettingsError, match=r"secret 'redis_writer' is missing: no .*redis-writer.password; `make setup`"
    ):
        s.secret("redis_writer")
    s.secrets_dir.mkdir()
    s.secret_file("redis_writer").write_text("pw-from-the-file\n")
    assert s.secret("redis_writer").get_secret_value() == "pw-from-the-file"
    s.secret_file("pii_hmac_key").write_text("key-from-the-file")
    assert s.secret("pii_hmac_key").get_secret_value() == "key-from-the-file"
    assert s.model_copy(update={"pii_hmac_key": SecretStr("injected")}).secret("pii_hmac_key").get_secret_value() == (
        "injected"
    )
    with pytest.raises(KeyError, match="unknown secret 'nope'"):
        s.secret("nope")


def test_no_secret_is_handed_down_to_a_child(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}PII_HMAC_KEY", "do-not-inherit-me")
    s = load_settings()
    assert "do-not-inherit-me" not in s.to_env().values()
    assert f"{ENV_PREFIX}PII_HMAC_KEY" not in child_env()
    assert child_env(EXTRA="1")["EXTRA"] == "1"


def test_cli_config_prints_settings_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}PII_HMAC_KEY", "do-not-print-me")
    monkeypatch.setenv(f"{ENV_PREFIX}TRINO_PORT", "18080")
    from lakehouse.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["config", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert '"trino_port": "18080"' in result.output
    assert "do-not-print-me" not in result.output
    assert '"pii_hmac_key": "********"' in result.output


def test_cli_bad_config_is_a_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}KAFKA_PORT", "nope")
    from lakehouse.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["config"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "LAKEHOUSE_KAFKA_PORT" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


_ENV_READS = re.compile(r"os\.getenv\(|environ\.get\(|dict\(os\.environ|os\.environ\[[^\]]+\](?!\s*=)|os\.environ\)")


def test_no_other_module_reads_the_environment() -> None:
    """settings.py is the only reader of the environment (DESIGN: one settings object)."""
    root = Path(__file__).resolve().parents[2]
    offenders = [
        f"{path.relative_to(root)}: {match.group(0)}"
        for folder in ("lakehouse", "orchestration", "spark_apps")
        for path in sorted((root / folder).rglob("*.py"))
        if path != root / "lakehouse" / "settings.py"
        for match in _ENV_READS.finditer(path.read_text())
    ]
    assert offenders == []


def test_the_environment_check_catches_a_read() -> None:
    assert _ENV_READS.search('x = os.environ["HOME"]')
    assert _ENV_READS.search('os.getenv("HOME")')
    assert _ENV_READS.search("env = dict(os.environ, A='1')")
    assert not _ENV_READS.search('os.environ["JAVA_HOME"] = str(home)')


def test_to_env_round_trips_through_a_child_process_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    original = Settings(state_dir=tmp_path, kafka_port=19092, pii_hmac_key="k3y", spark_ui_enabled=True)  # type: ignore[arg-type]
    for key, value in original.to_env().items():
        monkeypatch.setenv(key, value)
    loaded = load_settings()
    assert loaded == original.model_copy(update={"pii_hmac_key": None})  # everything but the secret
    assert loaded.pii_hmac_key is None


@pytest.mark.parametrize(
    "name",
    [
        "java17_home",
        "pii_hmac_key",
        "spark_driver_java_options",
        "state_dir",
        "redis_port",
        "host",
        "environment",
        "redis_endpoint",  # a run must not send the stack's credentials to a host of its choosing
        "trino_endpoint",
    ],
)
def test_a_run_may_not_override_secrets_programs_or_endpoints(name: str) -> None:
    from lakehouse.settings import check_run_overrides

    check_run_overrides({"max_offsets_per_trigger": "500", "lake_root": "lake-b"})  # tuning and data location
    with pytest.raises(SettingsError, match=f"a run may not override {name}:") as err:
        check_run_overrides({name: "evil-value", "max_offsets_per_trigger": "500"})
    assert "evil-value" not in str(err.value)  # the value may be a secret: never echoed


def test_a_run_may_use_local_or_the_configured_master_only() -> None:
    from lakehouse.settings import check_run_master

    s = Settings(_env_file=None, spark_master="spark://10.0.0.5:7077")  # type: ignore[call-arg]
    for ok in (None, "local", "local[2]", "local[*]", "local[4,2]", "spark://10.0.0.5:7077"):
        check_run_master(ok, s)
    for bad in ("spark://attacker.example:7077", "k8s://https://x", "local[2]; rm", "yarn"):
        with pytest.raises(SettingsError, match="a run may use local"):
            check_run_master(bad, s)


def test_dagster_runs_and_the_cli_refuse_a_forbidden_override(monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg

    from orchestration.lib.config import SettingsRunConfig, SparkRunConfig

    with pytest.raises(dg.Failure, match="a run may not override java17_home"):
        SettingsRunConfig(settings={"java17_home": "evil-jdk"}).resolve()
    with pytest.raises(dg.Failure, match="a run may use local"):
        SparkRunConfig(master="spark://elsewhere:7077").resolve()
    assert SettingsRunConfig(settings={"max_offsets_per_trigger": "7"}).resolve().max_offsets_per_trigger == 7
    result = CliRunner().invoke(main, ["stream", "start", "bronze", "--set", "java17_home=/tmp/evil-jdk"])
    assert result.exit_code == 2
    assert "a run may not override java17_home" in result.output


def test_min_insync_replicas_above_the_replication_factor_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(
        ValidationError, match="KAFKA_MIN_INSYNC_REPLICAS=2 exceeds LAKEHOUSE_KAFKA_REPLICATION_FACTOR=1"
    ):
        Settings(_env_file=None, kafka_min_insync_replicas=2)  # type: ignore[call-arg]


def test_contract_topics_are_created_with_the_configured_partitions_replicas_and_min_insync(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lakehouse.services import kafka

    created: list[object] = []

    class Admin:  # kafka-python's KafkaAdminClient, as far as ensure_topics uses it
        def list_topics(self) -> list[str]:
            return ["payments"]

        def create_topics(self, topics: list[object]) -> None:
            created.extend(topics)

        def close(self) -> None:
            pass

    monkeypatch.setattr(kafka, "admin", lambda s: Admin())
    s = Settings(_env_file=None, kafka_partitions=12, profile="cluster")  # type: ignore[call-arg]
    assert kafka.ensure_topics(s) == ["clickstream", "iot"]
    got = [(t.name, t.num_partitions, t.replication_factor, t.topic_configs) for t in created]  # type: ignore[attr-defined]
    assert got == [(name, 12, 3, {"min.insync.replicas": "2"}) for name in ("clickstream", "iot")]


def test_the_cluster_profile_means_three_brokers_three_replicas_two_in_sync_unless_set_otherwise() -> None:
    from pydantic import ValidationError

    s = Settings(_env_file=None, profile="cluster")  # type: ignore[call-arg]
    assert (s.kafka_brokers, s.kafka_replication_factor, s.kafka_min_insync_replicas) == (3, 3, 2)
    assert s.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"
    assert s.kafka_node_ports(3) == (9292, 9293, 7271)
    explicit = Settings(_env_file=None, profile="cluster", kafka_min_insync_replicas=3)  # type: ignore[call-arg]
    assert (explicit.kafka_replication_factor, explicit.kafka_min_insync_replicas) == (3, 3)
    local = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (local.kafka_brokers, local.kafka_replication_factor, local.bootstrap_servers) == (1, 1, "127.0.0.1:9092")
    with pytest.raises(
        ValidationError, match="KAFKA_REPLICATION_FACTOR=3 exceeds the stack's LAKEHOUSE_KAFKA_BROKERS=1"
    ):
        Settings(_env_file=None, kafka_replication_factor=3)  # type: ignore[call-arg]
    # an external cluster's brokers are not counted here
    Settings(_env_file=None, kafka_replication_factor=3, kafka_bootstrap_servers="b1:9092")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="Kafka broker 2's client port 9192 clashes with LAKEHOUSE_REDIS_PORT"):
        Settings(_env_file=None, kafka_brokers=2, redis_port=9192)  # type: ignore[call-arg]


def test_each_kafka_node_is_configured_with_its_id_the_whole_quorum_and_the_replication_settings(
    tmp_path: Path,
) -> None:
    from lakehouse.stack.components import Kafka, components

    s = Settings(_env_file=None, state_dir=tmp_path, profile="cluster")  # type: ignore[call-arg]
    nodes = [c for c in components(s) if isinstance(c, Kafka)]
    assert [(n.name, n.port()) for n in nodes] == [("kafka", 9092), ("kafka-2", 9192), ("kafka-3", 9292)]
    conf = dict(
        line.split("=", 1)
        for line in nodes[1].render_config().read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert conf["node.id"] == "2"
    assert conf["controller.quorum.voters"] == "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293"
    assert conf["listeners"] == "SASL_SSL://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193"
    assert conf["log.dirs"] == str(tmp_path / "kafka-2" / "data")
    assert (conf["default.replication.factor"], conf["min.insync.replicas"]) == ("3", "2")
    assert conf["offsets.topic.replication.factor"] == "3"
    assert conf["unclean.leader.election.enable"] == "false"
    assert nodes[0].cluster_id() == nodes[2].cluster_id()  # one cluster: every node formatted with the same id


def test_the_cluster_profile_stack_has_three_brokers_a_spark_master_two_workers_and_postgres(tmp_path: Path) -> None:
    from lakehouse.stack.components import components

    cluster = [c.name for c in components(Settings(_env_file=None, state_dir=tmp_path, profile="cluster"))]  # type: ignore[call-arg]
    local = [c.name for c in components(Settings(_env_file=None, state_dir=tmp_path))]  # type: ignore[call-arg]
    extra = ["kafka-2", "kafka-3", "objectstore", "spark-master", "spark-worker-1", "spark-worker-2", "postgres"]
    extra += ["postgres-exporter"]
    assert [n for n in cluster if n not in local] == extra
    assert [n for n in cluster if n in local] == local  # the same services otherwise, in the same order
    assert cluster.index("postgres") < cluster.index("dagster-code-server")  # Dagster's storage first
    s = Settings(_env_file=None, profile="cluster", spark_master_port=17077)  # type: ignore[call-arg]
    assert s.spark_master == "spark://127.0.0.1:17077"
    assert s.spark_worker_ports(2) == (17079, 8092)
    # a master given explicitly is not the stack's: no standalone cluster is started for it
    elsewhere = Settings(_env_file=None, state_dir=tmp_path, profile="cluster", spark_master="spark://10.0.0.5:7077")  # type: ignore[call-arg]
    assert "spark-master" not in [c.name for c in components(elsewhere)]


@pytest.mark.parametrize("field", ["lake_root", "checkpoint_root"])
def test_the_lake_takes_a_path_or_an_s3a_uri_and_nothing_that_would_become_a_local_directory(field: str) -> None:
    from pydantic import ValidationError

    s = Settings(_env_file=None, **{field: "s3a://bucket/lake/"})  # type: ignore[call-arg]
    assert getattr(s, field) == "s3a://bucket/lake"
    assert s.lake_on_s3
    local = Settings(_env_file=None, **{field: "relative/lake"})  # type: ignore[call-arg]
    assert isinstance(getattr(local, field), Path)
    assert not local.lake_on_s3
    for uri, why in [
        ("s3://bucket/lake", "use s3a://"),
        ("gs://bucket/lake", "only local paths and s3a://BUCKET/PREFIX"),
        ("s3a://Bad_Bucket/lake", "not a valid bucket name"),
        ("s3a://bucket/a//b", "empty, '.' or '..' segment"),
        ("s3a://bucket/../up", "empty, '.' or '..' segment"),
    ]:
        with pytest.raises(ValidationError, match=why):
            Settings(_env_file=None, **{field: uri})  # type: ignore[call-arg]


@pytest.mark.parametrize("field", ["state_dir", "jvm_root"])
def test_a_uri_for_the_state_is_refused_instead_of_becoming_a_local_directory(field: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="'s3a://bucket/x' is a URI"):
        Settings(_env_file=None, **{field: "s3a://bucket/x"})  # type: ignore[call-arg]


def test_the_cluster_profile_keeps_the_lake_and_checkpoints_in_the_stacks_object_store(tmp_path: Path) -> None:
    s = Settings(_env_file=None, state_dir=tmp_path, profile="cluster", object_store_port=18333)  # type: ignore[call-arg]
    assert s.lake_root == "s3a://lakehouse/lake"
    assert s.lake_on_s3
    assert s.s3_url == "https://127.0.0.1:18333"
    assert list(s.object_store_ports().values()) == list(range(18333, 18341))
    explicit = Settings(_env_file=None, state_dir=tmp_path, profile="cluster", lake_root=tmp_path / "lake")  # type: ignore[call-arg]
    assert explicit.lake_dir == tmp_path / "lake"
    assert not explicit.lake_on_s3
    from pydantic import ValidationError

    with pytest.raises(
        ValidationError, match="the object store's master port 9090 clashes with LAKEHOUSE_PROMETHEUS_PORT"
    ):
        Settings(_env_file=None, object_store_port=9088)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="expected https://HOST"):
        Settings(_env_file=None, s3_endpoint="http://s3.example.com")  # type: ignore[call-arg]


def test_kafka_storage_formatted_for_another_quorum_is_refused_with_what_to_do(tmp_path: Path) -> None:
    from lakehouse.stack.components import VOTERS_MARKER, Kafka, StackError

    data = tmp_path / "kafka" / "data"
    data.mkdir(parents=True)
    local = Kafka(Settings(_env_file=None, state_dir=tmp_path), 1)  # type: ignore[call-arg]
    cluster = Kafka(Settings(_env_file=None, state_dir=tmp_path, profile="cluster"), 1)  # type: ignore[call-arg]
    local.check_quorum(data)  # storage of before the marker: one node, as the local profile's
    with pytest.raises(StackError, match=r"formatted for a controller quorum of the nodes 1; this stack's is 1,2,3"):
        cluster.check_quorum(data)
    (data / VOTERS_MARKER).write_text("1,2,3\n")
    cluster.check_quorum(data)
    with pytest.raises(StackError, match="LAKEHOUSE_STATE_DIR"):
        local.check_quorum(data)
