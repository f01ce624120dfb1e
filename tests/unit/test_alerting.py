"""Alert rules (promtool), Alertmanager's configuration (amtool) and the runbook that goes with them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lakehouse.settings import PROJECT_ROOT, Settings
from lakehouse.stack.components import alertmanager_config

RULES = PROJECT_ROOT / "infra" / "prometheus" / "rules" / "lakehouse.rules.yml"
RULE_TESTS = PROJECT_ROOT / "tests" / "prometheus" / "lakehouse.rules.test.yml"
RUNBOOK = PROJECT_ROOT / "docs" / "runbook.md"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is missing: `make setup` installs it (Debian's prometheus / prometheus-alertmanager)")
    return path


def _alerts() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_the_rules_are_valid_and_pass_their_unit_tests() -> None:
    check = subprocess.run([_tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [_tool("promtool"), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


def test_every_alert_is_unit_tested_has_a_severity_and_a_runbook_section() -> None:
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    headings = {m.lower() for m in re.findall(r"^## (\w+)$", RUNBOOK.read_text(), flags=re.MULTILINE)}
    for rule in _alerts():
        name = str(rule["alert"])
        assert name in tested, f"{name} has no promtool test"
        labels = rule.get("labels") or {}
        assert isinstance(labels, dict)
        assert labels.get("severity") in ("page", "ticket"), f"{name}: severity must be page or ticket"
        annotations = rule.get("annotations") or {}
        assert isinstance(annotations, dict)
        assert annotations.get("summary"), f"{name} has no summary"
        runbook = str(annotations.get("runbook", ""))
        assert runbook.startswith("docs/runbook.md#"), f"{name} has no runbook link"
        anchor = runbook.split("#", 1)[1]
        # The QualityCheckWarning twin shares its sibling's section.
        assert anchor in headings, f"{name}: docs/runbook.md has no section #{anchor}"


def test_a_broken_rule_fails_its_test(tmp_path: Path) -> None:
    """The promtool test can fail: the same tests against a rule with a wrong threshold."""
    broken = RULES.read_text().replace(
        "lakehouse_stream_supervisor_gave_up > 0", "lakehouse_stream_supervisor_gave_up > 9"
    )
    assert broken != RULES.read_text()
    (tmp_path / "rules.yml").write_text(broken)
    tests = RULE_TESTS.read_text().replace("../../infra/prometheus/rules/lakehouse.rules.yml", "rules.yml")
    (tmp_path / "t.yml").write_text(tests)
    out = subprocess.run([_tool("promtool"), "test", "rules", "t.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode != 0
    assert "LakehouseSupervisorGaveUp" in out.stdout + out.stderr


def _check_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    return subprocess.run([_tool("amtool"), "check-config", str(path)], capture_output=True, text=True)


def test_alertmanager_pages_to_pagerduty_and_sends_everything_to_the_webhook(tmp_path: Path) -> None:
    s = Settings(
        state_dir=tmp_path, pagerduty_url="http://127.0.0.1:9/v2/enqueue", alert_webhook_url="https://hooks.example/x"
    )
    text = alertmanager_config(s)
    out = _check_config(tmp_path, text)
    assert out.returncode == 0, out.stdout + out.stderr
    conf = yaml.safe_load(text)
    assert conf["global"]["pagerduty_url"] == "http://127.0.0.1:9/v2/enqueue"
    (page_route,) = conf["route"]["routes"]
    assert page_route == {"matchers": ['severity="page"'], "receiver": "pager"}
    receivers = {r["name"]: r for r in conf["receivers"]}
    (pd,) = receivers["pager"]["pagerduty_configs"]
    assert pd["routing_key_file"] == str(s.secret_file("pagerduty_routing_key"))  # a file, never the key
    assert pd["send_resolved"] is True
    for name in ("pager", "tickets"):
        assert receivers[name]["webhook_configs"] == [{"url": "https://hooks.example/x", "send_resolved": True}]


def test_without_a_webhook_tickets_go_nowhere_but_the_config_stays_valid(tmp_path: Path) -> None:
    text = alertmanager_config(Settings(state_dir=tmp_path))
    out = _check_config(tmp_path, text)
    assert out.returncode == 0, out.stdout + out.stderr
    receivers = {r["name"]: r for r in yaml.safe_load(text)["receivers"]}
    assert "webhook_configs" not in receivers["pager"]
    assert set(receivers["tickets"]) == {"name"}


def test_the_retention_the_near_retention_alert_assumes_is_the_brokers() -> None:
    server = (PROJECT_ROOT / "infra" / "kafka" / "server.properties").read_text()
    retention = next(line.split("=", 1)[1] for line in server.splitlines() if line.startswith("log.retention.bytes="))
    assert f"0.8 * {int(retention)}" in RULES.read_text()
