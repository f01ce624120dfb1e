"""The integration tests' own stack: its state beside the user's, its ports shifted, nothing pointing back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lakehouse.settings import Settings, get_settings, restore_env
from lakehouse.stack import test_stack

pytestmark = pytest.mark.unit


def test_the_test_stack_has_its_own_state_and_ports_and_shares_only_the_jvm_artifacts(tmp_path: Path) -> None:
    user = Settings(state_dir=tmp_path, kafka_port=9092, dagster_port=3000)
    env = test_stack.env(user)
    assert env["LAKEHOUSE_STATE_DIR"] == str(tmp_path / "test-stack")
    assert env["LAKEHOUSE_JVM_ROOT"] == str(user.jvm_dir)
    assert env["LAKEHOUSE_KAFKA_PORT"] == "19092"
    assert env["LAKEHOUSE_DAGSTER_PORT"] == "13000"
    ports = {k: v for k, v in env.items() if k.endswith("_PORT")}
    assert len(ports) == len([n for n in Settings.model_fields if n.endswith("_port")])
    with pytest.raises(ValueError, match="no room"):
        test_stack.env(Settings(state_dir=tmp_path, redis_port=60000))


def test_a_lake_or_broker_of_the_users_environment_does_not_follow_the_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LAKEHOUSE_LAKE_ROOT", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("LAKEHOUSE_CHECKPOINT_ROOT", str(tmp_path / "elsewhere" / "cp"))
    get_settings.cache_clear()
    saved = test_stack.apply(get_settings())
    try:
        s = get_settings()
        assert s.state_dir == tmp_path / "test-stack"
        assert s.lake_dir == (tmp_path / "test-stack" / "lake").resolve()
        assert s.checkpoint_dir == s.lake_dir / "_checkpoints"  # a private lake's checkpoints follow it
        assert "LAKEHOUSE_LAKE_ROOT" not in os.environ
    finally:
        restore_env(saved)
    assert os.environ["LAKEHOUSE_LAKE_ROOT"] == str(tmp_path / "elsewhere")
    assert get_settings().state_dir == tmp_path
    get_settings.cache_clear()
