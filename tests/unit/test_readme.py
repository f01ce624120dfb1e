"""The README's shell examples that need no running service are executed and compared."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")

# ```text blocks: "$ VAR=value lakehouse ..." followed by the expected output lines.
_EXAMPLES = re.findall(r"^\$ ((?:LAKEHOUSE_\w+=\S+ )+lakehouse [^\n]*)\n((?:(?!\$ |```)[^\n]*\n)+)", README, re.M)


def test_the_readme_has_examples_to_run() -> None:
    assert len(_EXAMPLES) >= 2


@pytest.mark.parametrize(("command", "expected"), _EXAMPLES, ids=[c for c, _ in _EXAMPLES])
def test_readme_example_prints_what_the_readme_says(command: str, expected: str) -> None:
    words = shlex.split(command)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    assignments = [w for w in words if re.match(r"LAKEHOUSE_\w+=", w)]
    env.update(dict(a.split("=", 1) for a in assignments))
    args = words[len(assignments) + 1 :]
    proc = subprocess.run(
        [LAKEHOUSE, *args], env=env, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert proc.returncode == 2
    assert proc.stderr.split() == expected.split(), proc.stderr
