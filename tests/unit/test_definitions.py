from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

from lakehouse.contracts import TOPICS
from orchestration.definitions import defs

ROOT = Path(__file__).resolve().parents[2]


def test_code_location_has_the_kafka_topics_as_external_assets() -> None:
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {f"kafka/{t.name}" for t in TOPICS} <= keys
    spec = defs.resolve_assets_def(dg.AssetKey(["kafka", "payments"])).specs_by_key[dg.AssetKey(["kafka", "payments"])]
    assert spec.group_name == "kafka"
    assert spec.metadata["key"] == "user_id"


def test_dagster_definitions_validate_passes() -> None:
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_table_is_an_asset_with_lineage_and_its_column_schema() -> None:
    from lakehouse.tables import ALL_TABLES

    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    public = [t for t in ALL_TABLES if not t.internal]
    assert {f"{t.layer}/{t.name}" for t in public} <= keys
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["bronze", "payments"])).parent_keys == {dg.AssetKey(["kafka", "payments"])}
    assert graph.get(dg.AssetKey(["silver", "iot"])).parent_keys == {dg.AssetKey(["bronze", "iot"])}
    assert graph.get(dg.AssetKey(["gold", "fraud_alerts"])).parent_keys == {dg.AssetKey(["silver", "payments"])}
    for t in public:
        node = graph.get(dg.AssetKey([t.layer, t.name]))
        assert node.group_name == t.layer
        columns = node.metadata["dagster/column_schema"].columns
        assert [c.name for c in columns] == t.column_names
