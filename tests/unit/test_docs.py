"""The documents stay true: their shell examples that need no running service are executed and
compared, and the settings reference in docs/configuration.md is the one the code generates."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = "\n".join(p.read_text() for p in DOCS)
LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")

# ```text blocks: "$ VAR=value lakehouse ..." followed by the expected output lines.
_EXAMPLES = re.findall(r"^\$ ((?:LAKEHOUSE_\w+=\S+ )+lakehouse [^\n]*)\n((?:(?!\$ |```)[^\n]*\n)+)", TEXT, re.M)


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


def test_the_settings_reference_is_generated_from_the_code() -> None:
    from lakehouse.settings import reference_markdown

    doc = (ROOT / "docs" / "configuration.md").read_text()
    begin = doc.index("-->\n", doc.index("<!-- settings reference")) + len("-->\n")
    end = doc.index("<!-- end of settings reference -->")
    assert doc[begin:end] == reference_markdown(), (
        "run `lakehouse config --reference` and paste it into docs/configuration.md"
    )


def test_every_document_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{doc.name})" in readme, doc.name


def test_relative_links_in_the_documents_resolve() -> None:
    for doc in DOCS:
        for target in re.findall(r"\]\((?!https?:|#)([^)#\s]+)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name}: {target}"
