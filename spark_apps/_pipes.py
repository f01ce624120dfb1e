"""Reporting back to Dagster through Pipes, and doing nothing when Dagster did not launch us.

The Spark apps stay runnable with plain spark-submit; when Dagster launches one through
Pipes (``lakehouse`` code location, ``orchestration/defs/streaming``), the same calls
stream progress, materializations and check results back to the run. Asset keys are
written as ``"layer/name"`` (``"silver/payments"``).

Messages go through one lock: the file channel appends a line per message, and a
listener thread must never interleave with the main thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes

Severity = Literal["ERROR", "WARN"]


class Reporter:
    """A thin, thread-safe face of the Pipes context; every method is a no-op outside Dagster."""

    def __init__(self, ctx: PipesContext | None) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self._ctx is not None

    def message(self, payload: Mapping[str, Any]) -> None:
        """A custom message: the orchestrator turns each into a live AssetObservation."""
        if self._ctx is not None:
            with self._lock:
                self._ctx.report_custom_message(dict(payload))

    def materialization(self, asset_key: str, metadata: Mapping[str, Any]) -> None:
        if self._ctx is not None:
            with self._lock:
                self._ctx.report_asset_materialization(metadata=dict(metadata), asset_key=asset_key)

    def check(
        self,
        asset_key: str,
        check_name: str,
        *,
        passed: bool,
        severity: Severity = "ERROR",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if self._ctx is not None:
            with self._lock:
                self._ctx.report_asset_check(
                    check_name=check_name,
                    passed=passed,
                    severity=severity,
                    metadata=dict(metadata or {}),
                    asset_key=asset_key,
                )

    def log(self, text: str) -> None:
        """Into the Dagster run's event log when launched by Dagster; to stdout always."""
        print(text, flush=True)
        if self._ctx is not None:
            with self._lock:
                self._ctx.log.info(text)

    def step(self, app: str, i: int, n: int, what: str) -> None:
        """Step I of N starts (a batch app's progress): a line the CLI draws as a bar, and the run's log."""
        from lakehouse.services.catchup import step_line

        self.log(step_line(app, i, n, what))

    def extras(self) -> Mapping[str, Any]:
        """The ``extras`` the orchestrator passed (e.g. a backfill's date range); empty outside Dagster."""
        return dict(self._ctx.extras) if self._ctx is not None else {}


def launched_by_dagster() -> bool:
    return PipesEnvVarParamsLoader().is_dagster_pipes_process()


@contextmanager
def reporter() -> Iterator[Reporter]:
    """``with reporter() as r:`` around an app's work; closes the Pipes session on exit."""
    if not launched_by_dagster():
        yield Reporter(None)
        return
    with open_dagster_pipes() as ctx:
        yield Reporter(ctx)
