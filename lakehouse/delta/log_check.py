"""A Delta table's transaction log, read before a stream or a maintenance job touches the table.

Delta writes each commit (``_delta_log/<version>.json``, one JSON action per line) whole or not at all:
a temporary file renamed into place. Damage therefore comes from outside Delta: a machine that lost
power after the rename but before the file's bytes reached the disk (ext4 can leave it zero-length),
a full disk under a tool that copied the log, a person who edited it. Hadoop's checksum sidecar
(``.<version>.json.crc``) catches changed bytes, and Spark then names the file. An **empty** commit
passes every check: Delta reads it as a version without actions, and the rows of the data files it
added vanish from the table without an error (measured on Delta 4.4: a table of three appends read
20 rows instead of 30). The next commit builds on that version, and VACUUM later deletes the files
nothing references any more: silent, permanent loss.

So the commits Delta reads (those after the newest checkpoint) are read here first: each must be
UTF-8 JSON lines, one action object per line, at least one, and the versions must follow each other.
A damaged log stops the app with :data:`DELTA_LOG_DAMAGED` naming the file; nothing is repaired
automatically, because only a person can tell which recovery applies (docs/runbook.md, "A damaged
Delta commit"): the damaged commit's data files are still on disk, and a stream whose checkpoint
already counts that batch as done would never write it again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lakehouse.settings import LakePath

#: Exit code of an app that stopped on a damaged Delta log (EX_OSFILE: a file it needs is unusable).
DELTA_LOG_DAMAGED = 72

_COMMIT = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(\.[^.]+)*\.(parquet|json)$")


class DeltaLogDamagedError(RuntimeError):
    """A commit Delta would read is damaged: reading on could silently lose the rows it added."""

    def __init__(self, problems: dict[str, list[str]]) -> None:
        self.problems = problems
        listed = "; ".join(f"{table}: {', '.join(p)}" for table, p in problems.items())
        super().__init__(
            f"the Delta log of {', '.join(problems)} is damaged ({listed}). Delta would read it as a version "
            "without those rows, so nothing reads or writes the table until it is mended: see docs/runbook.md, "
            "'A damaged Delta commit'"
        )


class UnreadableText(ValueError):
    """A log file that cannot be read as UTF-8 text; the message says why."""


def read_text(path: LakePath) -> str:
    """The text of PATH, a log read line by line; raises :class:`UnreadableText` saying why it cannot be read."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnreadableText(f"not UTF-8 text (byte {e.start})") from e
    except OSError as e:
        raise UnreadableText(f"cannot be read ({e.strerror})") from e


def _commit_problem(path: LakePath) -> str | None:
    try:
        text = read_text(path)
    except UnreadableText as e:
        return f"{path.name} is {e}" if str(e).startswith("not") else f"{path.name} {e}"
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return f"{path.name} is empty"
    for i, line in enumerate(lines, start=1):
        try:
            action = json.loads(line)
        except json.JSONDecodeError as e:
            return f"{path.name} line {i} is not JSON ({e.msg} at column {e.colno})"
        if not isinstance(action, dict) or len(action) != 1:
            return f"{path.name} line {i} is not one Delta action"
    return None


def never_committed(path: LakePath) -> str | None:
    """Why the table at PATH is a creation that never committed (a ``_delta_log`` directory without a
    commit or a checkpoint, what a creation cut short, by a full disk say, leaves), else None. Delta
    takes the directory for a table and then finds none (DELTA_TABLE_NOT_FOUND) on every start after;
    with no commit nothing refers to any file, so clearing it loses nothing."""
    log = path / "_delta_log"
    if not log.is_dir():
        return None
    names = [p.name for p in log.iterdir()]
    if any(_COMMIT.match(n) or _CHECKPOINT.match(n) for n in names):
        return None
    left = ", ".join(sorted(names)[:3]) or "nothing"
    return f"its _delta_log holds no commit (a creation cut short, e.g. by a full disk; it holds {left})"


def problems(table_dir: LakePath) -> list[str]:
    """What is wrong with the commits Delta reads of the table at TABLE_DIR (none: ``[]``; no table yet: ``[]``)."""
    log = table_dir / "_delta_log"
    if not log.is_dir():
        return []
    commits: dict[int, LakePath] = {}
    checkpoint = -1
    for p in log.iterdir():
        if m := _COMMIT.match(p.name):
            commits[int(m.group(1))] = p
        elif m := _CHECKPOINT.match(p.name):
            checkpoint = max(checkpoint, int(m.group(1)))
    read = sorted(v for v in commits if v > checkpoint)
    out = []
    expected = checkpoint + 1
    for v in read:
        if v != expected:
            gap = f"commits {expected}..{v - 1} are" if v - 1 > expected else f"commit {expected} is"
            out.append(f"{gap} missing")
        expected = v + 1
        if (problem := _commit_problem(commits[v])) is not None:
            out.append(problem)
    return out


def check(tables: Iterable[tuple[str, LakePath]]) -> None:
    """Raise :class:`DeltaLogDamagedError` naming every damaged log among TABLES ((name, directory) pairs)."""
    found = {name: p for name, table_dir in tables if (p := problems(table_dir))}
    if found:
        raise DeltaLogDamagedError(found)
