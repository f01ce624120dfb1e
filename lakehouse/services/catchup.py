"""How far a catch-up (``--available-now``, replay, rebuild) has come, from the app's progress lines.

Every micro-batch a streaming app prints ``progress {json}`` (``spark_apps._runtime.ProgressReporter``):
its rows read and what is still behind (Kafka records for Kafka queries, unread Delta files for Delta
queries). A :class:`CatchupTracker` turns those lines into, per query, how much is done, how much
is left and an ETA at the rate so far; the CLI draws it (``lakehouse.cli.progress``).

A batch app (replay, the Redis rebuild) works through a known list of steps (a table each) and says
when it starts each one with a :func:`step_line` (``[replay] step 3/8: silver.iot``): words in a log
or Dagster's event log, a bar in the CLI (:func:`parse_step`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PREFIX = "progress "
_STEP = re.compile(r"\[(?P<app>[\w-]+)\] step (?P<i>\d+)/(?P<n>\d+): (?P<what>.*)")


def step_line(app: str, i: int, n: int, what: str) -> str:
    """The line a batch app prints as it starts step I (1-based) of N."""
    return f"[{app}] step {i}/{n}: {what}"


def parse_step(line: str) -> tuple[int, int, str] | None:
    """(I, N, what) of a :func:`step_line`, else None."""
    m = _STEP.fullmatch(line.strip())
    return (int(m["i"]), int(m["n"]), m["what"]) if m else None


@dataclass
class QueryProgress:
    query: str
    unit: str = "records"  # what ``behind`` counts: Kafka "records" or Delta "files"
    read: int = 0  # rows read so far
    behind: int = 0  # still to read, in ``unit``
    most_behind: int = 0  # the most ``behind`` ever was (Delta: the whole backlog in files)
    batches: int = 0
    started: float = field(default_factory=lambda: time.monotonic())
    updated: float = field(default_factory=lambda: time.monotonic())

    @property
    def total(self) -> int:
        """What the catch-up has to do, in ``unit``: read plus behind (records), or the backlog (files)."""
        return self.read + self.behind if self.unit == "records" else self.most_behind

    @property
    def done(self) -> int:
        return self.read if self.unit == "records" else self.most_behind - self.behind

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left at the average rate so far; None before the first batch that made progress."""
        elapsed = (now or self.updated) - self.started
        if self.done <= 0 or elapsed <= 0:
            return None
        return (self.total - self.done) * elapsed / self.done


class CatchupTracker:
    """Feeds on an app's stdout lines; calls ON_UPDATE(query progress) for each progress line."""

    def __init__(self, on_update: Callable[[QueryProgress], None] | None = None) -> None:
        self.queries: dict[str, QueryProgress] = {}
        self.on_update = on_update

    def feed(self, line: str) -> bool:
        """True if LINE was a progress line (consumed), False if it is the app's own output."""
        if not line.startswith(PREFIX):
            return False
        try:
            msg = json.loads(line[len(PREFIX) :])
        except ValueError:
            return False
        name = str(msg.get("query") or "")
        if not name:
            return True
        if name not in self.queries:
            self.queries[name] = QueryProgress(name)
        q = self.queries[name]
        lag, files = msg.get("kafka_lag"), msg.get("delta_files_behind")
        if isinstance(lag, int):
            q.unit, q.behind = "records", lag
        elif q.unit == "files" or isinstance(files, int) or not isinstance(lag, int):
            q.unit, q.behind = "files", int(files or 0)
        q.most_behind = max(q.most_behind, q.behind)
        if not msg.get("idle"):
            q.read += int(msg.get("rows_in") or 0)
            q.batches += 1
        q.updated = time.monotonic()
        if self.on_update is not None:
            self.on_update(q)
        return True
