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


# -- the dbt project in Dagster (orchestration/defs/dbt) ---------------------------------


@pytest.fixture(scope="module")
def defs() -> Any:
    from orchestration.definitions import defs

    return defs


def _dbt_models_def(defs: Any) -> Any:
    import dagster as dg

    return defs.resolve_assets_def(dg.AssetKey(["marts", "mart_merchant_daily"]))


def test_dbt_models_are_assets_below_the_stream_tables_they_read(defs: Any, manifest: dict[str, Any]) -> None:
    import dagster as dg

    graph = defs.resolve_asset_graph()
    models = _models(manifest)
    sources = {s["unique_id"]: dg.AssetKey([s["source_name"], s["name"]]) for s in manifest["sources"].values()}
    keys = {name: dg.AssetKey([node["schema"], name]) for name, node in models.items()}
    assert set(keys.values()) == set(_dbt_models_def(defs).keys)  # one multi-asset, every model
    for name, node in models.items():
        asset = graph.get(keys[name])
        parents = {
            sources[u] if u.startswith("source.") else keys[manifest["nodes"][u]["name"]]
            for u in node["depends_on"]["nodes"]
        }
        assert asset.parent_keys == parents, name
        assert asset.group_name == node["schema"] == ("marts" if name in MARTS else "staging"), name
        assert set(asset.kinds) == {"dbt", "trino"}, name
        assert (asset.description or "").strip(), name
    # staging reads silver and gold, and those keys are the stream assets themselves, not stubs
    upstream = {p for name in STAGING for p in graph.get(keys[name]).parent_keys}
    assert {k.path[0] for k in upstream} == {"silver", "gold"}
    for key in upstream:
        assert defs.resolve_assets_def(key).node_def.name == "refine_stream", key  # silver and gold: one stream
    assert graph.get(dg.AssetKey(["staging", "stg_merchant_minute"])).parent_keys == {
        dg.AssetKey(["gold", "merchant_minute"])
    }


def test_every_dbt_data_test_is_an_asset_check_of_its_model(defs: Any, manifest: dict[str, Any]) -> None:
    graph = defs.resolve_asset_graph()
    checks = {
        (k.asset_key.to_user_string(), k.name)
        for k in graph.asset_check_keys
        if k.asset_key.path[0] in {"staging", "marts"}
    }
    models = _models(manifest)
    expected = set()
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test":
            continue
        attached = node.get("attached_node") or "model.lakehouse." + node["config"]["meta"]["dagster"]["ref"]["name"]
        model = models[attached.split(".")[-1]]
        expected.add((f"{model['schema']}/{model['name']}", node["name"]))
    assert len(expected) >= 100
    assert checks == expected
    # the singular test reads three models; its meta attaches it to the merchant mart
    assert ("marts/mart_merchant_daily", "assert_merchant_daily_totals_match_gold") in checks
    specs = {(s.asset_key.to_user_string(), s.name): s for s in _dbt_models_def(defs).check_specs}
    severities = {
        n["name"]: n["config"]["severity"].lower() for n in manifest["nodes"].values() if n["resource_type"] == "test"
    }
    for (asset, name), spec in specs.items():
        assert spec.blocking == (severities[name] == "error"), (asset, name)
    assert not specs[
        ("marts/mart_merchant_daily", "accepted_range_mart_merchant_daily_fraud_rate__1__0")
    ].blocking  # warn


def test_dbt_marts_job_builds_the_dbt_assets_and_its_schedule_starts_switched_off(defs: Any) -> None:
    import dagster as dg
    from dagster_dbt import DbtCliResource

    repo = defs.get_repository_def()
    job = repo.get_job("dbt_marts")
    dbt_assets = _dbt_models_def(defs)
    assert job.asset_layer.executable_asset_keys == set(dbt_assets.keys)
    assert {n.name for n in job.graph.node_defs} == {"dbt_models"}
    assert job.executor_def is dg.in_process_executor
    schedule = {s.name: s for s in repo.schedule_defs}["dbt_marts_hourly"]
    assert schedule.job_name == "dbt_marts"
    assert schedule.cron_schedule == "45 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.description
    from orchestration.defs.dbt.assets import dbt_resource

    assert dbt_assets.resource_defs["dbt"].configurable_resource_cls is DbtCliResource  # bound to the asset
    dbt = dbt_resource
    assert Path(dbt.project_dir) == DBT_DIR
    assert Path(dbt.profiles_dir or "") == DBT_DIR
    assert Path(dbt.dbt_executable).is_file()  # the venv's dbt: Dagster's processes need not have it on PATH


def test_dbt_reads_the_platform_trino_settings(defs: Any) -> None:
    import re

    from lakehouse.settings import load_settings, temporary_env
    from orchestration.defs.dbt.assets import dbt_env

    s = load_settings(trino_port=8181, trino_catalog="lake2")  # the real state dir: its secrets from `make setup`
    env = dbt_env(s)
    assert env["LAKEHOUSE_TRINO_HOST"] == s.host
    assert (env["LAKEHOUSE_TRINO_PORT"], env["LAKEHOUSE_TRINO_USER"], env["LAKEHOUSE_TRINO_CATALOG"]) == (
        "8181",
        "dbt",  # it owns the marts; it may not read bronze
        "lake2",
    )
    assert env["LAKEHOUSE_TRINO_PASSWORD"] == s.secret("trino_dbt").get_secret_value()
    assert env["LAKEHOUSE_TRINO_CA"] == str(s.ca_file)
    # every variable the profile reads (bar the LAKEHOUSE_HOST fallback) is one the run sets
    read = set(re.findall(r"env_var\('(\w+)'", (DBT_DIR / "profiles.yml").read_text()))
    assert read - {"LAKEHOUSE_HOST"} <= set(env), read
    # set for the dbt subprocess only: LAKEHOUSE_TRINO_HOST is no lakehouse setting
    before = dict(os.environ)
    with temporary_env(env):
        assert os.environ["LAKEHOUSE_TRINO_PORT"] == "8181"
    assert dict(os.environ) == before


def test_a_missing_or_stale_manifest_is_rebuilt_at_load(tmp_path: Path) -> None:
    import shutil

    from dagster_dbt import DbtProject

    from orchestration.defs.dbt.project import manifest_is_stale, prepare_manifest

    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    project = DbtProject(project_dir=copy, profiles_dir=copy)
    assert manifest_is_stale(project)
    manifest_path = prepare_manifest(project)
    assert json.loads(manifest_path.read_text())["metadata"]["project_name"] == "lakehouse"
    assert not manifest_is_stale(project)
    model = copy / "models" / "marts" / "mart_merchant_daily.sql"
    later = manifest_path.stat().st_mtime + 10
    os.utime(model, (later, later))
    assert manifest_is_stale(project)
