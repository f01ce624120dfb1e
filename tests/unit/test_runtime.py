from __future__ import annotations

import shutil
from pathlib import Path

from lakehouse.settings import Settings
from spark_apps._runtime import checkpoint, checkpoint_epoch, parse_args


def test_checkpoint_epoch_is_stable_and_changes_with_a_new_checkpoint(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    first = checkpoint_epoch(s, "gold", "payments")
    assert first == checkpoint_epoch(s, "gold", "payments")
    assert first != checkpoint_epoch(s, "gold", "iot")
    shutil.rmtree(checkpoint(s, "gold", "payments"))
    assert checkpoint_epoch(s, "gold", "payments") != first


def test_modes() -> None:
    assert parse_args("bronze", ["--available-now"]).available_now
    assert not parse_args("bronze", ["--continuous"]).available_now
    assert not parse_args("bronze", []).available_now
    assert parse_args("bronze", ["--master", "spark://h:7077"]).master == "spark://h:7077"
