"""Progress displays of the CLI: a catch-up's bars (remaining lag, ETA) from the app's progress lines.

On a terminal each query gets a bar; in a log (CI, a pipe) a line per batch says the same in words.
The app's other output passes through untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from lakehouse.cli._common import console
from lakehouse.services.catchup import CatchupTracker, QueryProgress, parse_step


def _eta(q: QueryProgress) -> str:
    eta = q.eta_s()
    if q.behind == 0:
        return "caught up"
    if eta is None:
        return "ETA -"
    return f"ETA {eta:.0f}s" if eta < 120 else f"ETA {eta / 60:.1f}min"


def describe(q: QueryProgress) -> str:
    """One line for a log: what was read, what is behind, the ETA."""
    behind = f"{q.behind:,} {q.unit} behind"
    return f"catch-up {q.query}: {q.read:,} rows read, {behind} ({q.fraction:.0%}), {_eta(q)}"


@contextlib.contextmanager
def catchup_display(title: str) -> Iterator[Callable[[str], None]]:
    """A line handler for ``streams.run(on_line=...)`` that draws the catch-up while it runs."""
    if not console.is_terminal:
        tracker = CatchupTracker(lambda q: console.print(describe(q), highlight=False))

        def plain(line: str) -> None:
            if not tracker.feed(line):
                console.print(line, highlight=False, markup=False)

        yield plain
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def update(q: QueryProgress) -> None:
        if q.query not in tasks:
            tasks[q.query] = progress.add_task(q.query, total=max(q.total, 1), detail="")
        detail = f"{q.read:,} rows read · {q.behind:,} {q.unit} behind · {_eta(q)}"
        progress.update(tasks[q.query], total=max(q.total, 1), completed=q.done, detail=detail)

    tracker = CatchupTracker(update)

    def line(text: str) -> None:
        if not tracker.feed(text):
            progress.console.print(text, highlight=False, markup=False)

    console.print(f"[bold]{title}[/]")
    with progress:
        yield line


class StepLines:
    """Feed it an app's stdout lines (``on_line``); ``finished()`` once the app succeeded."""

    def __init__(self, progress: Progress | None = None, title: str = "") -> None:
        self.progress = progress
        self.task: TaskID | None = None
        if progress is not None:
            self.task = progress.add_task(title, total=None, detail="starting Spark")

    def __call__(self, text: str) -> None:
        step = parse_step(text)
        if self.progress is None or self.task is None:
            console.print(text, highlight=False, markup=False)
        elif step is None:
            self.progress.console.print(text, highlight=False, markup=False)
        else:
            i, n, what = step
            self.progress.update(self.task, total=n, completed=i - 1, detail=what)

    def finished(self) -> None:
        if self.progress is not None and self.task is not None:
            total = self.progress.tasks[self.task].total or 1
            self.progress.update(self.task, total=total, completed=total, detail="done")


@contextlib.contextmanager
def steps_display(title: str) -> Iterator[StepLines]:
    """A line handler for a batch app that prints step lines (``lakehouse.services.catchup.step_line``):
    on a terminal a bar of the steps done, the current one and the time so far; in a log every line as
    it comes (the step lines are words already)."""
    if not console.is_terminal:
        yield StepLines()
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with progress:
        yield StepLines(progress, title)
