"""Progress displays of the CLI: a catch-up's bars (remaining lag, ETA) from the app's progress lines.

On a terminal each query gets a bar; in a log (CI, a pipe) a line per batch says the same in words.
The app's other output passes through untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from lakehouse.cli._common import console
from lakehouse.services.catchup import CatchupTracker, QueryProgress


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
