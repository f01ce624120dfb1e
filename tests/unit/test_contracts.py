from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest

from lakehouse.contracts import TOPICS, schema, topic

SHARED = Path(__file__).resolve().parents[3] / "shared" / "contracts"
PACKAGED = Path(__file__).resolve().parents[2] / "lakehouse" / "contracts"


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no shared contracts beside the repo at {SHARED}")
@pytest.mark.parametrize("name", ["payments.schema.json", "clickstream.schema.json", "iot.schema.json", "CONTRACTS.md"])
def test_packaged_contracts_are_identical_to_shared(name: str) -> None:
    assert (PACKAGED / name).read_bytes() == (SHARED / name).read_bytes(), f"{name} drifted from shared/contracts"


def test_topics_and_keys_match_the_contract_table() -> None:
    text = (PACKAGED / "CONTRACTS.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)`[^|]*\| .*? \| (\d+) \|$", text, flags=re.M)
    assert rows, "topic table not found in CONTRACTS.md"
    assert {(name, key) for name, key, _ in rows} == {(t.name, t.key_field) for t in TOPICS}
    assert {int(p) for _, _, p in rows} == {6}


@pytest.mark.parametrize("t", [t.name for t in TOPICS])
def test_schemas_are_valid_draft_2020_12(t: str) -> None:
    jsonschema.Draft202012Validator.check_schema(schema(t))
    assert topic(t).key_field in schema(t)["required"]


def test_unknown_topic_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown topic 'orders'"):
        topic("orders")
