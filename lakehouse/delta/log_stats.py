"""Rows, files, bytes and the latest version of a Delta table from its transaction log: no Spark, no scan.

Delta records each data file's row count in the ``add`` action's statistics (``numRecords``), and
after every commit a checksum file (``<version>.crc``) with the table's size, file count and, for
tables of a modest number of files, every live ``add`` (``allFiles``). So:

1. the newest commit's ``.crc`` with ``allFiles``: rows = the sum of their ``numRecords``
   (minus the rows their deletion vectors delete);
2. otherwise, when the log has no Parquet checkpoint yet: replay the JSON commits (adds minus removes);
3. otherwise ``None``: the caller counts with Spark (what a Parquet checkpoint needs a Parquet reader for).

A file written without statistics makes the row count unknowable this way: ``None`` too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakehouse.settings import LakePath


@dataclass(frozen=True)
class LogStats:
    rows: int
    files: int
    size_bytes: int
    version: int
    modified: datetime | None
    how: str  # "checksum" or "log replay"


def _rows(add: dict[str, Any]) -> int | None:
    raw = add.get("stats")
    if not raw:
        return None
    try:
        n = json.loads(raw).get("numRecords")
    except ValueError:
        return None
    if not isinstance(n, int):
        return None
    dv = add.get("deletionVector") or {}
    return n - int(dv.get("cardinality") or 0)


def _commit_time(log: LakePath, version: int) -> datetime | None:
    path = log / f"{version:020d}.json"
    try:
        with path.open() as f:
            for line in f:
                info = json.loads(line).get("commitInfo")
                if info and "timestamp" in info:
                    return datetime.fromtimestamp(info["timestamp"] / 1000, UTC)
    except (OSError, ValueError):
        return None
    return datetime.fromtimestamp(path.stat().st_mtime, UTC) if path.exists() else None


def _versions(log: LakePath) -> list[int]:
    """The versions of the JSON commits in the ``_delta_log`` directory LOG, oldest first."""
    return sorted(int(p.stem) for p in log.glob("[0-9]*.json") if p.stem.isdigit()) if log.is_dir() else []


def log_stats(table_dir: LakePath) -> LogStats | None:
    """The table's statistics from its log, or None when only a scan (or a Parquet reader) can tell."""
    log = table_dir / "_delta_log"
    versions = _versions(log)
    if not versions:
        return None
    version = versions[-1]
    modified = _commit_time(log, version)
    crc = log / f"{version:020d}.crc"
    if crc.exists():
        try:
            doc = json.loads(crc.read_text())
        except ValueError:
            doc = {}
        files = doc.get("allFiles")
        if isinstance(files, list) and len(files) == doc.get("numFiles"):
            rows = [_rows(f) for f in files]
            known = [r for r in rows if r is not None]
            if len(known) == len(rows):
                return LogStats(
                    sum(known),
                    int(doc["numFiles"]),
                    int(doc["tableSizeBytes"]),
                    version,
                    modified,
                    "checksum",
                )
    if (log / "_last_checkpoint").exists() or any(log.glob("*.checkpoint*.parquet")) or versions[0] != 0:
        return None
    live: dict[str, dict[str, Any]] = {}
    for v in versions:
        with (log / f"{v:020d}.json").open() as f:
            for line in f:
                action = json.loads(line)
                if "add" in action:
                    live[action["add"]["path"]] = action["add"]
                elif "remove" in action:
                    live.pop(action["remove"]["path"], None)
    counted = [_rows(a) for a in live.values()]
    known = [r for r in counted if r is not None]
    if len(known) != len(counted):
        return None
    size = sum(int(a.get("size") or 0) for a in live.values())
    return LogStats(sum(known), len(live), size, version, modified, "log replay")


def table_properties(table_dir: LakePath) -> dict[str, str] | None:
    """The table's properties (``TBLPROPERTIES``) as of its newest commit, from that commit's checksum
    file: no Spark job. None when the newest commit has no readable checksum (the caller asks Delta)."""
    log = table_dir / "_delta_log"
    versions = _versions(log)
    if not versions:
        return None
    try:
        doc = json.loads((log / f"{versions[-1]:020d}.crc").read_text())
    except (OSError, ValueError):
        return None
    config = (doc.get("metadata") or {}).get("configuration") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        return None
    return {str(k): str(v) for k, v in config.items()}
