"""The deploy templates (infra/deploy) agree with the platform they deploy: checkov (`make lint`) checks
their security; these check that the CloudWatch alarms mirror real Prometheus rules, runbook sections
and metrics, and that names the code fixes (consumer groups, topics) are the ones the templates use."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from lakehouse.contracts import TOPICS
from lakehouse.services.topics import spark_group

ROOT = Path(__file__).resolve().parents[2]
AWS = ROOT / "infra" / "deploy" / "terraform" / "aws"


def _rules() -> set[str]:
    doc = yaml.safe_load((ROOT / "infra" / "prometheus" / "rules" / "lakehouse.rules.yml").read_text())
    return {rule["alert"] for group in doc["groups"] for rule in group["rules"] if "alert" in rule}


def test_every_alarm_names_a_prometheus_rule_and_a_runbook_section() -> None:
    alarms = (AWS / "cloudwatch.tf").read_text()
    named = set(re.findall(r"\b(Lakehouse[A-Z][A-Za-z]+)\b", alarms))
    assert named, "the alarms name no Prometheus rule"
    assert named <= _rules(), f"alarms name rules that do not exist: {named - _rules()}"
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in (ROOT / "docs" / "runbook.md").read_text().splitlines()
        if line.startswith("#")
    }
    anchors = set(re.findall(r"runbook\}#([a-z0-9-]+)", alarms)) | {r.lower() for r in named}
    missing = {a for a in anchors if a not in headings and not a.startswith("${")}
    # The Redis alarms share LakehouseRedisMemoryHigh's section, as the rules do.
    assert missing <= {"lakehouseredisfull", "lakehouseredisevicting"}, f"no runbook section for {missing}"


def test_the_platform_metrics_the_alarms_read_are_ones_the_platform_exports() -> None:
    alarms = (AWS / "cloudwatch.tf").read_text()
    metrics = set(re.findall(r"\b(lakehouse_[a-z_]+)\b", alarms))
    assert metrics
    code = "".join(
        p.read_text()
        for d in ("lakehouse", "spark_apps", "orchestration", "infra/prometheus")
        for p in (ROOT / d).rglob("*")
        if p.suffix in (".py", ".yml") and p.is_file()
    )
    assert {m for m in metrics if m not in code} == set()


def test_kafka_names_in_the_templates_are_the_platforms() -> None:
    tf = (AWS / "cloudwatch.tf").read_text() + (AWS / "iam.tf").read_text() + (AWS / "msk.tf").read_text()
    assert f'"Consumer Group" = "{spark_group("bronze")}"' in tf
    assert '"spark-kafka-*"' in tf or "/spark-kafka-*" in tf
    for topic in TOPICS:
        assert f'"{topic.name}"' in tf
    assert "min.insync.replicas=2" in tf
    assert "default.replication.factor=3" in tf


def test_the_strimzi_manifests_are_the_ones_the_code_generates() -> None:
    from lakehouse.stack.deploy import kafka_manifests

    committed = (ROOT / "infra" / "deploy" / "kubernetes" / "kafka.yaml").read_text()
    assert committed == kafka_manifests(), (
        "regenerate: python -m lakehouse.stack.deploy > infra/deploy/kubernetes/kafka.yaml"
    )


def test_every_principal_gets_exactly_its_local_acls_on_strimzi() -> None:
    from lakehouse.services.kafka import acls
    from lakehouse.stack.deploy import cluster_settings, topics, users

    spelled = {"Read": "READ", "Write": "WRITE", "Describe": "DESCRIBE", "IdempotentWrite": "IDEMPOTENT_WRITE"}
    granted = set()
    for user in users():
        for rule in user["spec"].get("authorization", {}).get("acls", []):
            r = rule["resource"]
            key = (
                ("BROKER", "LITERAL", "kafka-cluster")
                if r["type"] == "cluster"
                else (r["type"].upper(), {"literal": "LITERAL", "prefix": "PREFIXED"}[r["patternType"]], r["name"])
            )
            granted |= {(user["metadata"]["name"], *key, spelled[op]) for op in rule["operations"]}
    assert granted == set(acls())
    s = cluster_settings()
    made = {
        (t["metadata"]["name"], t["spec"]["replicas"], t["spec"]["config"]["min.insync.replicas"]) for t in topics(s)
    }
    assert made == {(t.name, 3, "2") for t in TOPICS}


def test_dagsters_helm_values_are_generated_and_queue_runs_as_the_local_instance_does() -> None:
    from lakehouse.stack.deploy import dagster_values, dagster_values_yaml

    committed = (ROOT / "infra" / "deploy" / "kubernetes" / "dagster-values.yaml").read_text()
    assert committed == dagster_values_yaml(), (
        "regenerate: python -m lakehouse.stack.deploy dagster > infra/deploy/kubernetes/dagster-values.yaml"
    )
    local = yaml.safe_load((ROOT / "infra" / "dagster" / "dagster.yaml").read_text())["run_coordinator"]["config"]
    queue = dagster_values()["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queue["tagConcurrencyLimits"] == local["tag_concurrency_limits"]
    assert queue["maxConcurrentRuns"] == local["max_concurrent_runs"]
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    (location,) = dagster_values()["dagster-user-deployments"]["deployments"]
    assert location["dagsterApiGrpcArgs"] == ["--module-name", workspace["module_name"]]
    assert dagster_values()["postgresql"]["enabled"] is False  # an external database; no password in values

    def keys(node: object) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for v in node.values() for k in keys(v)}
        return {k for v in node for k in keys(v)} if isinstance(node, list) else set()

    secrets = {k for k in keys(dagster_values()) if "password" in k.lower()}
    assert secrets == {"generatePostgresqlPasswordSecret"}  # no password among the values


def test_trinos_helm_values_are_generated_with_the_local_access_rules() -> None:
    import json
    from string import Template

    from lakehouse.stack.deploy import cluster_settings, trino_values, trino_values_yaml

    committed = (ROOT / "infra" / "deploy" / "kubernetes" / "trino-values.yaml").read_text()
    assert committed == trino_values_yaml(), (
        "regenerate: python -m lakehouse.stack.deploy trino > infra/deploy/kubernetes/trino-values.yaml"
    )
    values = yaml.safe_load(committed)
    catalog = cluster_settings().trino_catalog
    local = Template((ROOT / "infra" / "trino" / "rules.json").read_text()).substitute(catalog=catalog)
    assert json.loads(values["accessControl"]["rules"]["rules.json"]) == json.loads(local)
    assert "connector.name=delta_lake" in values["catalogs"][catalog]
    assert values["server"]["config"]["authenticationType"] == "PASSWORD"
    assert values["server"]["config"]["https"]["enabled"] is True
    # The service account the values create is the one Terraform's role trusts.
    iam = (AWS / "iam.tf").read_text()
    assert '"system:serviceaccount:lakehouse:${each.value}"' in iam
    assert f'trino = "{trino_values()["serviceAccount"]["name"]}"' in iam


def test_the_spark_apps_on_kubernetes_are_generated_with_the_local_apps_configuration() -> None:
    from lakehouse.delta.session import platform_conf
    from lakehouse.services.streams import STREAMS
    from lakehouse.stack.deploy import spark_apps_manifests, spark_settings

    committed = (ROOT / "infra" / "deploy" / "kubernetes" / "spark-apps.yaml").read_text()
    assert committed == spark_apps_manifests(), (
        "regenerate: python -m lakehouse.stack.deploy spark > infra/deploy/kubernetes/spark-apps.yaml"
    )
    docs = [d for d in yaml.safe_load_all(committed) if d]
    apps = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "SparkApplication"}
    assert set(apps) == {f"lakehouse-{name}" for name in STREAMS}
    for spec in apps.values():
        assert platform_conf(spark_settings()).items() <= spec["sparkConf"].items()  # the local apps' own
        assert spec["image"] == "REPLACED-BY-DEPLOY"  # rollout.yml sets it
        assert not any("secret" in k.lower() or "password" in k.lower() for k in spec["sparkConf"])
        assert (ROOT / spec["mainApplicationFile"].removeprefix("local:///opt/lakehouse/app/")).is_file()
    # The driver's service account is the one Terraform's Spark role trusts.
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    iam = (AWS / "iam.tf").read_text()
    assert f'spark = "{account["metadata"]["name"]}"' in iam


#: API groups Kubernetes itself serves (kubernetes-validate has their schemas; custom resources' it has not).
_CORE_GROUPS = {"", "apps", "batch", "policy", "rbac.authorization.k8s.io", "networking.k8s.io"}


def test_the_manifests_core_kinds_are_valid_kubernetes_and_an_invalid_one_is_caught() -> None:
    import kubernetes_validate
    import pytest

    checked = []
    for path in sorted((ROOT / "infra" / "deploy" / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or "kind" not in doc:
                continue  # Helm values
            group = doc["apiVersion"].rpartition("/")[0]
            if group in _CORE_GROUPS:  # not Strimzi's or the Spark operator's: no schema for those offline
                kubernetes_validate.validate(doc, "1.31", strict=True)
                checked.append(doc["kind"])
    assert sorted(checked) == ["Role", "RoleBinding", "ServiceAccount"]
    broken = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "automountToken": True}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.31", strict=True)
