"""A streaming query's checkpoint, checked before the query starts: what a failure left, repaired where
that is provably safe, and stopped on with a plain message where it is not.

Spark writes a checkpoint's logs one file per micro-batch (``offsets/N``: what batch N reads;
``commits/N``: batch N is done), each whole or not at all on a local filesystem (written to a
temporary file, then renamed). Damage therefore shows in the newest files: a disk that filled or a
machine that died while one was written, or a person or tool that touched them. Spark's own errors
for that name neither the file nor a way out ("Unexpected end-of-input in field name"), and some
of what it leaves stops a query for good. This module handles each case by what is safe:

- **a first batch that never started** (temporary offsets files, no batch anywhere): removed; nothing
  was read or written for a batch that has no id (Spark 4 would refuse to start:
  ``STATE_STORE_CHECKPOINT_LOCATION_NOT_EMPTY``);
- **the newest commit unreadable, its offsets readable**: the commit is removed, and Spark runs that
  batch again over exactly the same offsets, which every sink here writes idempotently (Delta's
  ``txnAppId``/``txnVersion``, the serving stream's markers);
- **the newest offsets unreadable**: not repaired. If the batch's commit exists, the next batch's
  start is lost with it; if not, its sink may still have written it, and a batch planned anew under
  the same id would be skipped by that sink as done (records lost) or overlap it (duplicated).
  The query stops with ``CheckpointDamagedError`` naming the file and the runbook's recovery
  (docs/runbook.md, "A damaged checkpoint");
- **older files unreadable**: Spark reads only the newest, so they are reported, not fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lakehouse.delta.log_check import UnreadableText, read_text
from lakehouse.storage import rmtree

#: Exit code of an app that stopped on a checkpoint it cannot safely repair (EX_NOINPUT).
CHECKPOINT_DAMAGED = 66


class CheckpointDamagedError(RuntimeError):
    """A checkpoint file the query needs cannot be read, and removing it could lose or duplicate records."""

    def __init__(self, root: Path, problems: list[str]) -> None:
        self.root = root
        self.problems = problems
        super().__init__(
            f"the checkpoint {root} is damaged: {'; '.join(problems)}. Starting the query could lose or "
            "duplicate records, so it stays stopped: see docs/runbook.md, 'A damaged checkpoint', for how to "
            "tell whether its sink wrote that batch and what to do either way"
        )


def _batches(d: Path) -> list[int]:
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def unreadable(path: Path, *, offsets: bool) -> str | None:
    """Why Spark could not read the log file PATH (an ``offsets`` file when OFFSETS, else a commit), or None.

    The format: a version line (``v1``), then one JSON document per line; an offsets file has the batch's
    metadata and one line per source, ``-`` for a source with no offset yet."""
    try:
        text = read_text(path)
    except UnreadableText as e:
        return f"{path.name}: {e}"
    lines = text.split("\n")
    if not text.strip():
        return f"{path.name}: empty"
    if not (lines[0].startswith("v") and lines[0][1:].isdigit()):
        return f"{path.name}: no version line (starts {lines[0][:20]!r})"
    body = [line for line in lines[1:] if line]
    if not body:
        return f"{path.name}: a version line and nothing else"
    for i, line in enumerate(body, start=2):
        if offsets and i > 2 and line == "-":
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError as e:
            return f"{path.name}: line {i} is not JSON ({e.msg} at column {e.colno})"
    return None


def _first_batch_leftovers(root: Path) -> list[Path]:
    """What a query whose first micro-batch failed before writing its offsets left (see
    ``clear_failed_first_batch``); nothing when any batch exists."""
    offsets, commits = root / "offsets", root / "commits"
    if not root.is_dir() or _batches(offsets) or _batches(commits):
        return []
    found = [p for d in (offsets, commits, root / "state") if d.is_dir() for p in sorted(d.rglob("*")) if p.is_file()]
    if _query_id_problem(root) == "unreadable":
        found.append(root / "metadata")
    return found


def _query_id_problem(root: Path) -> str | None:
    """``missing`` or ``unreadable`` when the checkpoint's ``metadata`` (the query's id) is, else None."""
    try:
        json.loads((root / "metadata").read_text())["id"]
    except FileNotFoundError:
        return "missing"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OSError):
        return "unreadable"
    return None


def clear_failed_first_batch(root: Path) -> list[str]:
    """Remove what a query whose first micro-batch failed before writing its offsets left; the paths removed.

    A query with no batch in its offset log must, since Spark 4, find its ``offsets``, ``commits`` and
    ``state`` directories empty. A write of ``offsets/0`` that failed (a full disk, a killed driver)
    leaves its temporary file (``.0.<uuid>.tmp`` and its ``.crc``). A checkpoint with any batch in
    ``offsets`` or ``commits`` is left as it is, as is ``sources/`` (a Kafka source's initial offsets)
    and a readable ``metadata`` (the query's id); an unreadable ``metadata`` is removed (Spark writes a
    new one, and no batch was ever written under the old id).
    """
    found = _first_batch_leftovers(root)
    for d in (root / "offsets", root / "commits", root / "state"):
        if any(p.is_relative_to(d) for p in found):
            rmtree(d)
    if root / "metadata" in found:
        (root / "metadata").unlink()
    return [str(p.relative_to(root)) for p in found]


@dataclass(frozen=True)
class Diagnosis:
    """A checkpoint as ``prepare`` finds it: what it would repair (each a path under it, and why), what
    stops the query (``problems``), and damage Spark does not read again (``warnings``)."""

    root: Path
    latest_batch: int | None
    latest_commit: int | None
    repairs: list[str]
    problems: list[str]
    warnings: list[str]
    torn_commit: Path | None = None


def diagnose(root: Path) -> Diagnosis:
    """The checkpoint ROOT, read only (see the module for what is repaired and what is not)."""
    offsets, commits = root / "offsets", root / "commits"
    offset_ids, commit_ids = _batches(offsets), _batches(commits)
    latest_commit = commit_ids[-1] if commit_ids else None
    if not offset_ids:
        leftovers = [f"{p.relative_to(root)}: a first batch that never started" for p in _first_batch_leftovers(root)]
        return Diagnosis(root, None, latest_commit, leftovers, [], [])
    repairs: list[str] = []
    problems: list[str] = []
    warnings: list[str] = []
    torn_commit: Path | None = None
    newest = offset_ids[-1]
    bad_offsets = unreadable(offsets / str(newest), offsets=True)
    if bad_offsets:
        state = "its commit exists" if newest in commit_ids else "it has no commit"
        problems.append(f"offsets/{bad_offsets} (batch {newest}; {state})")
    if latest_commit is not None:
        bad_commit = unreadable(commits / str(latest_commit), offsets=False)
        if bad_commit and not bad_offsets:  # batch `newest` runs (again) from the offsets, as after a crash
            torn_commit = commits / str(latest_commit)
            repairs.append(
                f"commits/{bad_commit}: removed; batch {newest} runs again over its recorded offsets "
                "(every sink here writes a batch idempotently)"
            )
        elif bad_commit:
            problems.append(f"commits/{bad_commit}")
    if id_problem := _query_id_problem(root):
        problems.append(f"metadata: {id_problem} (the query's id, which its sinks know it by)")
    for d, ids, is_offsets in ((offsets, offset_ids[:-1], True), (commits, commit_ids[:-1], False)):
        for n in ids[-3:]:  # Spark keeps older batches as history and reads only the newest
            bad = unreadable(d / str(n), offsets=is_offsets)
            if bad:
                warnings.append(f"{d.name}/{bad} (an older batch Spark does not read again)")
    return Diagnosis(root, newest, latest_commit, repairs, problems, warnings, torn_commit)


def prepare(root: Path) -> Diagnosis:
    """Check the checkpoint ROOT before its query starts: repair what is safe (see the module), raise
    ``CheckpointDamagedError`` for what is not; the diagnosis (its ``repairs`` done, its ``warnings`` to show)."""
    d = diagnose(root)
    if d.problems:
        raise CheckpointDamagedError(root, d.problems)
    if d.latest_batch is None:
        clear_failed_first_batch(root)
    elif d.torn_commit is not None:
        d.torn_commit.unlink()
        d.torn_commit.with_name(f".{d.torn_commit.name}.crc").unlink(missing_ok=True)
    return d


def queries(checkpoint_dir: Path) -> list[Path]:
    """Every query checkpoint under CHECKPOINT_DIR (``<app>/<query>``), sorted."""
    if not checkpoint_dir.is_dir():
        return []
    return sorted({p.parent for name in ("metadata", "offsets", "commits") for p in checkpoint_dir.glob(f"*/*/{name}")})
