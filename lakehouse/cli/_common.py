"""What every `lakehouse` command module shares: the consoles, the error handler, the settings.

Imports nothing from the other command modules (they all import this).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from rich.console import Console

# Wide enough for the status table when the output is a pipe or a CI log.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
F = TypeVar("F", bound=Callable[..., Any])


def human_bytes(n: int) -> str:
    if n <= 0:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def friendly_errors(fn: F) -> F:
    """Turn the platform's known errors into a message and exit code instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from lakehouse.bench.load import BenchError
        from lakehouse.delta.session import SparkSetupError
        from lakehouse.settings import SettingsError
        from lakehouse.stack.components import StackError
        from lakehouse.stack.install import SetupError

        try:
            return fn(*args, **kwargs)
        except (SettingsError, SetupError, StackError, SparkSetupError, BenchError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def load_settings() -> Any:
    from lakehouse.settings import get_settings

    return get_settings()
