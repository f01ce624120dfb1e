"""One real stack for the whole integration session.

The fixture starts what is not already running (``lakehouse up``), reuses what is,
and at the end stops only what it started, then checks that nothing it started is
still alive: `up` -> tests -> `down` leaves no process behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest
from pyspark.sql import SparkSession

from lakehouse import stack
from lakehouse.settings import Settings, get_settings


@pytest.fixture(scope="session")
def lakehouse_stack() -> Iterator[Settings]:
    s = get_settings()
    states = stack.up(s, log=print)
    started = [name for name, state in states.items() if state == "started"]
    reused_dagster = [n for n in ("dagster-daemon", "dagster-webserver") if states.get(n) == "running"]
    if reused_dagster:
        # A stack left running from before a code change would test yesterday's definitions
        # (the daemon's sensors included): restart Dagster so both processes load this checkout.
        stack.down(s, reused_dagster, log=print)
        stack.up(s, reused_dagster, log=print)
    pids = {c.name: c.process().pid for c in stack.select(s, started) if c.process() is not None}  # type: ignore[union-attr]
    yield s
    if started:
        stack.down(s, started, log=print)
        alive = {
            name: pid
            for name, pid in pids.items()
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        }
        assert alive == {}, f"processes left behind after `down`: {alive}"


@pytest.fixture(scope="module")
def spark(lakehouse_stack: Settings) -> Iterator[SparkSession]:
    """One local Spark session per test module, to read the Delta tables the tests produced."""
    from lakehouse.spark import build_spark_session

    session = build_spark_session("integration-tests", lakehouse_stack)
    yield session
    session.stop()
