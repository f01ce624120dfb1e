"""One real stack for the whole integration session, of its own.

The session runs on a stack that is not the user's: its own state directory
(``<state_dir>/test-stack``: lake, Kafka log, Redis data, Dagster home, secrets, logs) and its own
ports (each the user's plus ``lakehouse.stack.test_stack.PORT_SHIFT``), sharing only the JVM
artifacts setup downloaded. So
`make test` on a machine where someone works leaves their stack, lake, Redis and Dagster instance as
they were (and their load cannot fail the tests).

The fixture starts what is not already running (``lakehouse up``), reuses what is (a test stack
left by an interrupted session), and at the end stops only what it started, then checks that
nothing it started is still alive: `up` -> tests -> `down` leaves no process behind.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import pytest
from pyspark.sql import SparkSession

from lakehouse.settings import Settings, get_settings, restore_env
from lakehouse.stack import components as stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that delete records from the stack's topics run last: a checkpoint another test made
    before them, resumed after, would find its next records gone (as after Kafka's retention)."""
    items.sort(key=lambda item: item.get_closest_marker("deletes_kafka_records") is not None)


@pytest.fixture(scope="session", autouse=True)
def own_stack() -> Iterator[Settings]:
    """Point the whole session (this process and every process it starts, through the environment)
    at the test stack's state and ports (``lakehouse.stack.test_stack``), and make its state
    directory and secrets."""
    from lakehouse.stack import test_stack
    from lakehouse.stack.install import Setup

    user = get_settings()
    try:
        saved = test_stack.apply(user)
    except ValueError as e:
        pytest.exit(str(e), returncode=2)
    s = get_settings()
    setup = Setup(s, log=print)
    shift = test_stack.port_shift(user)
    print(f"integration tests: own stack in {setup.state_dirs()}, ports +{shift}; {setup.secrets()}")
    yield s
    restore_env(saved)


class StandInPagerDuty:
    """PagerDuty's Events API v2 on loopback: records every event Alertmanager posts (202, as PagerDuty)."""

    def __init__(self) -> None:
        events = self.events = []  # type: list[tuple[float, dict[str, Any]]]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                events.append((time.time(), json.loads(body)))
                reply = b'{"status": "success", "message": "Event processed"}'
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v2/enqueue"
        threading.Thread(target=self.server.serve_forever, name="stand-in-pagerduty", daemon=True).start()

    def received(self, action: str, since: float, **match: str) -> list[dict[str, Any]]:
        """Events of ACTION (trigger, resolve) received after SINCE whose summary contains each MATCH value."""
        return [
            e
            for at, e in self.events
            if at >= since
            and e.get("event_action") == action
            and all(v in str(e.get("payload", {}).get("summary", "")) for v in match.values())
        ]


@pytest.fixture(scope="session")
def pager(own_stack: Settings) -> Iterator[StandInPagerDuty]:
    """The stand-in PagerDuty the stack's Alertmanager pages during the session (LAKEHOUSE_PAGERDUTY_URL)."""
    stand_in = StandInPagerDuty()
    before = os.environ.get("LAKEHOUSE_PAGERDUTY_URL")
    os.environ["LAKEHOUSE_PAGERDUTY_URL"] = stand_in.url
    get_settings.cache_clear()
    yield stand_in
    if before is None:
        os.environ.pop("LAKEHOUSE_PAGERDUTY_URL", None)
    else:
        os.environ["LAKEHOUSE_PAGERDUTY_URL"] = before
    get_settings.cache_clear()
    s = get_settings()
    if stack.Alertmanager(s).process() is not None:  # one the session reused: give it its own URL back
        with contextlib.suppress(stack.StackError):
            stack.Alertmanager(s).start(print)
    stand_in.server.shutdown()


@pytest.fixture(scope="session")
def lakehouse_stack(pager: StandInPagerDuty) -> Iterator[Settings]:
    s = get_settings()
    states = stack.up(s, log=print)
    started = [name for name, state in states.items() if state == "started"]
    dagster = ("dagster-code-server", "dagster-webserver", "dagster-daemon")
    reused_dagster = [n for n in dagster if states.get(n) == "running"]
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


@pytest.fixture(scope="session")
def spark(lakehouse_stack: Settings) -> Iterator[SparkSession]:
    """One local Spark session for the whole run, to read the Delta tables the tests produced.

    Code the tests call in-process (``lakehouse.stack.smoke``) gets this session from ``getOrCreate``
    and must leave it running: it stops only a session it started itself. Local mode on the cluster
    profile too: the tests' reader is the oracle, and on the standalone cluster it would hold the
    workers' cores the apps under test need."""
    from lakehouse.delta.session import build_spark_session

    session = build_spark_session("integration-tests", lakehouse_stack, master="local[2]")
    yield session
    session.stop()


@dataclass(frozen=True)
class CardCanary:
    """A card number the stack's lake is filled with (test_nothing_secret_at_rest looks for it in clear
    everywhere): sent valid twice (a duplicate) and as a 20-digit near miss the validator quarantines."""

    card: str
    near_miss: str

    def payment(self, number: str, n: int) -> dict[str, object]:
        return {
            "event_id": f"canary-{self.card[-6:]}-{n}",
            "event_time": "2026-12-02T05:00:00.000Z",
            "user_id": "u-canary",
            "card_number": number,
            "merchant_id": "m-canary",
            "amount": 12.5,
            "currency": "EUR",
            "country": "DE",
        }

    def send(self, s: Settings) -> None:
        from kafka import KafkaProducer

        from lakehouse.clients import python_config

        producer = KafkaProducer(**python_config(s, "producer"), acks="all")
        for n, number in ((0, self.card), (1, self.near_miss), (0, self.card)):
            producer.send("payments", json.dumps(self.payment(number, n)).encode(), key=b"u-canary")
        producer.flush(30)
        producer.close()


@pytest.fixture(scope="session")
def card_canary() -> CardCanary:
    card = "4" + "".join(secrets.choice("0123456789") for _ in range(15))
    return CardCanary(card, card + "0000")


@pytest.fixture(scope="session")
def stack_lake(lakehouse_stack: Settings, card_canary: CardCanary) -> Settings:
    """The test stack's lake (the one its Trino catalog, dbt and Redis projection read), after the
    pipeline has caught up with records produced here.

    The consumer-side tests (Trino, dbt, Redis) need the lake Trino was started on, so unlike the
    pipeline tests they cannot use a private one. On a new test stack the bronze checkpoint is new and
    starts at the offsets the topics have now, so the lake holds exactly these records; on one kept
    from an earlier session the pipeline first catches up with whatever its checkpoints have not read
    yet. Those tests assert properties that hold for any content (Trino equals Spark, Redis equals
    gold, dbt tests pass).
    """
    from datetime import UTC, datetime, timedelta

    from lakehouse.generator import GeneratorConfig, generate, produce
    from lakehouse.services import retention, streams
    from lakehouse.services.kafka import end_offsets_json

    s = lakehouse_stack.model_copy(update={"kafka_starting_offsets": end_offsets_json(lakehouse_stack)})
    holders = {app: pid for app in ("bronze", "refine") if (pid := streams.lock_holder(s, app))}
    if holders:
        pytest.fail(f"streams are running on the stack's lake ({holders}); stop them to run the consumer tests")
    start = datetime.now(UTC).replace(microsecond=0, second=0) - timedelta(minutes=40)
    run = generate(GeneratorConfig.every_fault(1500, seed=71, rate=5, start_time=start))
    assert produce(run, s).failed == 0
    card_canary.send(s)  # through the same run: one pipeline run fewer for the secrets test
    # An earlier session's retention drill (test_chaos, last) deleted records this kept lake had not
    # read: bronze would stop with DATA_LOST, rightly. Recover as the runbook says, first.
    if lost := retention.find_lost(s):
        print(f"the test stack's lake: {retention.DataLostError(lost)}; skipping them (`stream skip-lost`)")
        retention.skip(s, lambda past: streams.run(past, "bronze", available_now=True))
    with _stderr_kept() as log:
        code = streams.run(s, "all", available_now=True)
    # CI shows only the end of a failed session: the app's last words go into the message.
    ended = "\n".join(log)
    assert code == 0, f"the pipeline failed on the stack's lake (exit {code}); its stderr ended with:\n{ended}"
    return s


@contextlib.contextmanager
def _stderr_kept(lines: int = 40) -> Iterator[list[str]]:
    """File descriptor 2 (inherited by the spark-submit started inside) also kept: its last LINES."""
    tail: list[str] = []
    with tempfile.TemporaryFile() as kept:
        saved = os.dup(2)
        os.dup2(kept.fileno(), 2)
        try:
            yield tail
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            kept.seek(0)
            data = kept.read()
            os.write(2, data)  # still shown where it would have been
            tail.extend(data.decode(errors="replace").splitlines()[-lines:])
