"""The dbt project parses offline, and its manifest keeps the promises of the contracts.

`dbt parse` needs no Trino: it renders every model, test and unit test against the profile
without connecting. The manifest it writes is then checked for what a reviewer would check by
hand: sources equal to the table specs, enums equal to the JSON Schemas, tests on every mart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from lakehouse.contracts import schema
from lakehouse.tables import GOLD, QUARANTINE, SILVER

ROOT = Path(__file__).resolve().parents[2]
DBT_DIR = ROOT / "dbt_project"
MARTS = {"mart_merchant_daily", "mart_page_funnel_hourly", "mart_device_health_daily"}
STAGING = {
    "stg_payments",
    "stg_clickstream",
    "stg_iot",
    "stg_merchant_minute",
    "stg_page_minute",
    "stg_device_minute",
    "stg_fraud_alerts",
}
#: (model, column) -> (topic, schema field) of every enum the models expose.
ENUM_COLUMNS = {
    ("stg_payments", "channel"): ("payments", "channel"),
    ("stg_clickstream", "event_type"): ("clickstream", "event_type"),
    ("stg_clickstream", "device_type"): ("clickstream", "device"),
    ("stg_iot", "sensor_type"): ("iot", "sensor_type"),
    ("stg_device_minute", "sensor_type"): ("iot", "sensor_type"),
    ("mart_device_health_daily", "sensor_type"): ("iot", "sensor_type"),
}


def _dbt() -> Path:
    """The dbt of the interpreter's venv (the pinned dbt-core 1.11 + dbt-trino 1.11)."""
    for candidate in (Path(sys.executable).parent / "dbt", ROOT / ".venv" / "bin" / "dbt"):
        if candidate.exists():
            return candidate
    raise AssertionError(f"no dbt beside {sys.executable} nor in {ROOT / '.venv'}: run `make setup`")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("dbt")
    env = {
        **os.environ,
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        # Nothing may connect during a parse; should something try, it must fail, not reach a live Trino.
        "LAKEHOUSE_TRINO_HOST": "127.0.0.1",
        "LAKEHOUSE_TRINO_PORT": "9",
    }
    cmd = [
        str(_dbt()),
        "parse",
        "--profiles-dir",
        str(DBT_DIR),
        "--project-dir",
        str(DBT_DIR),
        "--target-path",
        str(out / "target"),
        "--log-path",
        str(out / "logs"),
        "--no-partial-parse",
        "--warn-error",  # a deprecation or an unused config path is a defect here
    ]
    result = subprocess.run(cmd, cwd=DBT_DIR, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"dbt parse failed:\n{result.stdout}\n{result.stderr}"
    parsed: dict[str, Any] = json.loads((out / "target" / "manifest.json").read_text())
    return parsed


def _models(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}


def _tests_by_model(manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Generic data tests, keyed by the model they are attached to."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for node in manifest["nodes"].values():
        if node["resource_type"] == "test" and node.get("attached_node"):
            out[node["attached_node"].split(".")[-1]].append(node)
    return out


def test_models_are_the_expected_staging_views_and_mart_tables(manifest: dict[str, Any]) -> None:
    models = _models(manifest)
    assert set(models) == STAGING | MARTS
    for name in STAGING:
        assert models[name]["config"]["materialized"] == "view", name
        assert models[name]["schema"] == "staging", name
    for name in MARTS:
        cfg = models[name]["config"]
        assert cfg["materialized"] == "table", name
        assert (models[name]["database"], models[name]["schema"]) == ("lakehouse", "marts"), name
        # CTAS + rename: Trino's delta_lake connector cannot commit to an existing table on the
        # local file system, so CREATE OR REPLACE TABLE fails there (dbt_project.yml explains).
        assert cfg["on_table_exists"] == "rename", name
        assert not cfg["persist_docs"], f"{name}: COMMENT ON TABLE is a Delta commit, which fails on local storage"


def test_every_model_and_column_is_described(manifest: dict[str, Any]) -> None:
    for name, node in _models(manifest).items():
        assert node["description"].strip(), f"{name} has no description"
        assert node["columns"], f"{name} documents no column"
        undocumented = [c for c, col in node["columns"].items() if not col["description"].strip()]
        assert not undocumented, f"{name}: columns without description: {undocumented}"


def test_every_mart_has_a_unique_key_and_not_null_tests(manifest: dict[str, Any]) -> None:
    tests = _tests_by_model(manifest)
    for name in MARTS:
        kinds = {t["test_metadata"]["name"] for t in tests[name] if t.get("test_metadata")}
        assert {"unique", "not_null", "unique_combination_of_columns", "relationships"} <= kinds, (name, kinds)


def test_every_staging_model_tests_its_grain(manifest: dict[str, Any]) -> None:
    tests = _tests_by_model(manifest)
    for name in STAGING:
        kinds = {t["test_metadata"]["name"] for t in tests[name] if t.get("test_metadata")}
        assert kinds & {"unique", "unique_combination_of_columns"}, f"{name} has no uniqueness test"
        assert "not_null" in kinds, f"{name} has no not_null test"


def test_each_mart_has_a_unit_test(manifest: dict[str, Any]) -> None:
    unit_tests = manifest.get("unit_tests", {}).values()
    assert unit_tests, "no dbt unit test"
    tested = {u["model"] for u in unit_tests}
    assert tested == MARTS
    for u in unit_tests:
        assert u["given"], u["name"]
        assert u["expect"]["rows"], u["name"]


def test_sources_are_exactly_the_silver_and_gold_table_specs(manifest: dict[str, Any]) -> None:
    sources = {f"{s['source_name']}.{s['name']}": s for s in manifest["sources"].values()}
    specs = {s.full_name: s for s in (*SILVER.values(), QUARANTINE, *GOLD.values())}
    assert set(sources) == set(specs)
    for full_name, src in sources.items():
        assert src["schema"] == specs[full_name].layer
        assert list(src["columns"]) == specs[full_name].column_names, f"{full_name} drifted from lakehouse/tables.py"
        assert src["description"].strip(), full_name
        assert all(c["description"].strip() for c in src["columns"].values()), full_name


def test_accepted_values_are_the_json_schema_enums(manifest: dict[str, Any]) -> None:
    seen = set()
    for node in manifest["nodes"].values():
        meta = node.get("test_metadata") or {}
        if node["resource_type"] != "test" or meta.get("name") != "accepted_values":
            continue
        key = (node["attached_node"].split(".")[-1], node["column_name"])
        assert key in ENUM_COLUMNS, f"accepted_values on {key}, which maps to no schema enum"
        topic, field = ENUM_COLUMNS[key]
        assert meta["kwargs"]["values"] == schema(topic)["properties"][field]["enum"], key
        seen.add(key)
    assert seen == set(ENUM_COLUMNS), f"enums without an accepted_values test: {set(ENUM_COLUMNS) - seen}"
