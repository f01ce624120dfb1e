"""Fault scenarios against the real stack: inject the fault under load, recover, then account exactly.

Each scenario runs on a private lake (its own checkpoints, reading Kafka from the offsets the topics
had when it began), so it judges only what it produced, and leaves the stack's lake alone:

- ``kill-driver``: the pipeline's Spark driver SIGKILLed (its whole process group: JVM and Python, as
  the kernel's OOM killer would) N times in a row while a producer keeps sending; restarted each time
  from its checkpoint, as a supervisor does. Odd kills come after the driver committed a new
  micro-batch, at a random moment of the next; even ones at a random moment of its first micro-batch,
  which redoes the batch the kill before interrupted (a crash while recovering from a crash).
- ``kafka-restart``: the broker SIGKILLed under a running stream and restarted 10 s later; the
  producer pauses while it is down (a producer's own retries are not what is tested); a stream that
  gave up while the broker was away is restarted, as a supervisor does, and says so.
- ``poison-flood``: a burst of poison under a running stream (bytes that are not UTF-8, JSON nested
  past the parser's limit, every other invalid kind, records at the broker's size limit): the
  stream keeps going; quarantine holds each invalid record with its reason, silver the big valid ones.

Scenarios can run one after another on one private lake (``lakehouse chaos kill-driver
poison-flood``). Then the stream drains what is left (available-now), the serving stream pushes gold
into a private Redis (a ``redis-server`` configured as the stack's, on a free port, so its keys are
this lake's alone) and ``lakehouse.chaos.accounting`` checks bronze = produced, silver + quarantine +
duplicates = bronze, gold = recomputation, alerts = reference and Redis = gold.
``lakehouse chaos SCENARIO`` runs one; tests/integration/test_chaos.py runs each.
"""

from __future__ import annotations

import inspect
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.chaos.accounting import Accounting, account
from lakehouse.contracts import TOPICS
from lakehouse.delta.log_stats import log_stats
from lakehouse.generator import GeneratorConfig, GroundTruth, generate, merge_ground_truths, produce
from lakehouse.services import streams
from lakehouse.services.kafka import end_offsets_json
from lakehouse.services.topics import checkpoint_positions
from lakehouse.settings import Settings
from lakehouse.stack.components import Redis, free_port
from lakehouse.storage import lake_path
from lakehouse.tables import QUARANTINE

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

Log = Callable[[str], None]


class ChaosError(RuntimeError):
    """A scenario could not run as designed (not a finding about the data: that is the accounting)."""


@dataclass
class Outcome:
    scenario: str
    accounting: Accounting
    events: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exact(self) -> bool:
        return self.accounting.exact


class SmallDisk:
    """A tmpfs mounted at PATH, for the lake: shrunk to full under a running stream, then grown back.
    Mounting needs root (CAP_SYS_ADMIN); ``unavailable`` says why not, where it cannot be had."""

    def __init__(self, path: Path, size_bytes: int = 4 << 30) -> None:
        self.path = path
        self.size = size_bytes
        self.mounted = False

    @staticmethod
    def unavailable() -> str | None:
        """None where a tmpfs can be mounted here; else why not."""
        import tempfile

        if shutil.which("mount") is None:
            return "no mount command"
        with tempfile.TemporaryDirectory(prefix="lakehouse-mount-probe-") as probe:
            tried = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe], capture_output=True, text=True, check=False
            )
            if tried.returncode != 0:
                return f"mounting a tmpfs needs root (CAP_SYS_ADMIN): {tried.stderr.strip()}"
            subprocess.run(["umount", probe], check=True)
        return None

    def _mount(self, *options: str) -> None:
        done = subprocess.run(["mount", *options, self.path.as_posix()], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ChaosError(f"mount {' '.join(options)} {self.path} failed: {done.stderr.strip()}")

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs")
        self.mounted = True

    def resize(self, size_bytes: int) -> None:
        self._mount("-o", f"remount,size={size_bytes}")

    def used(self) -> int:
        return shutil.disk_usage(self.path).used

    def unmount(self) -> None:
        """Unmount, lazily when a process still holds a file there (a driver an interrupt left behind):
        the mount leaves the tree now and is freed when that process ends."""
        if self.mounted:
            done = subprocess.run(["umount", self.path.as_posix()], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", self.path.as_posix()], check=False)
            self.mounted = False


class Harness:
    """A private lake, a producer thread, and the pipeline's driver as a process to start, kill and drain."""

    def __init__(self, base: Settings, workdir: Path, log: Log = print, seed: int = 1) -> None:
        self.s = base.model_copy(
            update={
                "lake_root": workdir / "lake",
                "kafka_starting_offsets": end_offsets_json(base),
                "stream_trigger_interval": "2 seconds",
                "redis_port": free_port(),
                "redis_endpoint": None,
            }
        )
        #: The serving stream's private Redis, configured as the stack's, on the port above (its keys
        #: counted exactly); run() starts and stops it.
        self.redis = Redis(self.s, name="chaos-redis")
        self.workdir = workdir
        self.log = log
        self.rng = random.Random(seed)  # noqa: S311 (when to kill, not a secret)
        self.truths: list[GroundTruth] = []
        self.events: list[str] = []
        self._load: threading.Thread | None = None
        self._stop_load = threading.Event()
        self._pause_load = threading.Event()
        self._load_error: BaseException | None = None
        #: The continuous stream a scenario left running for the next one (None: none running).
        self.stream: subprocess.Popen[bytes] | None = None
        #: The lake's own small filesystem, where a scenario fills the disk (run() mounts it).
        self.disk: SmallDisk | None = None
        self._chunk = 0
        self._start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
        self._t0 = time.monotonic()

    def elapsed(self) -> str:
        """Seconds since the harness began, for the log: where a run's time went."""
        return f"[{time.monotonic() - self._t0:6.0f}s]"

    def note(self, text: str) -> None:
        self.events.append(text)
        self.log(f"  {self.elapsed()} {text}")

    # -- load ------------------------------------------------------------------------------
    def produce_chunk(self, count: int = 150, keep_truth: bool = True, **mix: int) -> GroundTruth:
        """One seeded chunk of every kind of record, its event times after the previous chunk's (MIX:
        generator settings beyond ``every_fault``'s, e.g. ``invalid=600``). Without KEEP_TRUTH the
        chunk is not expected in the lake (records a scenario deletes from Kafka before they are read)."""
        self._chunk += 1
        start = self._start + timedelta(seconds=40 * self._chunk)
        config = GeneratorConfig.every_fault(count, seed=1000 + self._chunk, rate=5, start_time=start, **mix)
        run = generate(config)
        sent = produce(run, self.s)
        if sent.failed:
            raise ChaosError(
                f"the producer lost {sent.failed} records of chunk {self._chunk}: the truth would be wrong"
            )
        if keep_truth:
            self.truths.append(run.truth)
        return run.truth

    def start_load(self, every_s: float = 2.0, count: int = 60) -> None:
        """A chunk of COUNT normal events (plus injections) every EVERY_S seconds: ~40 records/s, enough
        that every kill lands with records in flight, small enough that the final drain stays short."""

        self._stop_load.clear()  # a scenario after another on the same harness starts its own load
        self._pause_load.clear()

        def loop() -> None:
            try:
                while not self._stop_load.is_set():
                    if not self._pause_load.is_set():
                        self.produce_chunk(count)
                    self._stop_load.wait(every_s)
            except BaseException as e:  # reported by stop_load
                self._load_error = e

        self._load = threading.Thread(target=loop, name="chaos-load", daemon=True)
        self._load.start()

    def stop_load(self) -> None:
        self._stop_load.set()
        if self._load is not None:
            self._load.join(timeout=120)
        if self._load_error is not None:
            raise ChaosError(f"the producer failed: {self._load_error}") from self._load_error

    # -- the driver ------------------------------------------------------------------------
    def start_stream(self) -> subprocess.Popen[bytes]:
        cmd = streams.submit_command(self.s, "all", available_now=False)
        log = open(self.workdir / "driver.log", "ab")  # noqa: SIM115 (closed with the process)
        return subprocess.Popen(
            cmd,
            env=streams.submit_env(self.s),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=streams.app_preexec(self.s),
        )

    def committed(self) -> int:
        """Micro-batches committed so far over every query of the private lake."""
        return sum(self.committed_per_query().values())

    def committed_per_query(self) -> dict[str, int]:
        """Micro-batches committed so far by each query of the private lake (``app/query``)."""
        root = self.s.checkpoint_dir
        out: dict[str, int] = {}
        for commit in root.glob("*/*/commits/[0-9]*") if root.exists() else []:
            key = f"{commit.parent.parent.parent.name}/{commit.parent.parent.name}"
            out[key] = out.get(key, 0) + 1
        return out

    def wait_for_commit(self, proc: subprocess.Popen[bytes], after: int, timeout_s: float = 180) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = self.committed()
            if now > after:
                return now
            if proc.poll() is not None:
                raise ChaosError(
                    f"the driver exited ({proc.returncode}) before committing a batch: {self.driver_tail()}"
                )
            time.sleep(0.2)
        raise ChaosError(f"no micro-batch committed within {timeout_s:.0f}s: {self.driver_tail()}")

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the driver's whole process group: JVM, Python driver and workers at once."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        return streams.stop_gracefully(proc)

    def running_stream(self) -> subprocess.Popen[bytes]:
        """The stream the previous scenario left running, or a new one (one driver start saved)."""
        if self.stream is None or self.stream.poll() is not None:
            self.stream = self.start_stream()
        return self.stream

    def stop_stream(self) -> None:
        if self.stream is not None and self.stream.poll() is None:
            self.stop(self.stream)
        self.stream = None

    def drain(self) -> None:
        """Catch everything up (available-now), as the next run of a catch-up would, then serve gold:
        a fresh serving checkpoint reads each gold table's snapshot, then its changes."""
        code = streams.run(self.s, "all", available_now=True, on_line=lambda line: None)
        if code != 0:
            raise ChaosError(f"the final catch-up failed (exit {code})")
        code = streams.run(self.s, "serving", available_now=True, on_line=lambda line: None)
        if code != 0:
            raise ChaosError(f"serving gold into the private Redis failed (exit {code})")

    def quarantined(self) -> int:
        """Rows in the private lake's quarantine (from its Delta log: no Spark)."""
        stats = log_stats(lake_path(self.s, QUARANTINE.path(self.s.lake_dir)))
        return stats.rows if stats is not None else 0

    def driver_log(self) -> str:
        path = self.workdir / "driver.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_until(
        self, check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], timeout_s: float = 300
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if proc.poll() is not None:
                raise ChaosError(f"the driver exited ({proc.returncode}) before {what}: {self.driver_tail()}")
            if time.monotonic() > deadline:
                raise ChaosError(f"not {what} within {timeout_s:.0f}s: {self.driver_tail()}")
            time.sleep(0.5)

    def delete_records_before(self, offsets: Mapping[str, Mapping[int, int]]) -> None:
        """What retention does, at once: the broker deletes every record before OFFSETS (per partition)."""
        from kafka import TopicPartition

        from lakehouse.services.kafka import admin

        client = admin(self.s, timeout_ms=30_000)
        try:
            client.delete_records(
                {TopicPartition(t, p): o for t, parts in offsets.items() for p, o in parts.items() if o > 0},
                timeout_ms=30_000,
            )
        finally:
            client.close()

    def driver_tail(self, n: int = 8) -> str:
        lines = self.driver_log().splitlines()
        return " | ".join(lines[-n:])

    def truth(self) -> GroundTruth:
        return merge_ground_truths(self.truths)

    def account(self, spark: SparkSession) -> Accounting:
        return account(spark, self.s, self.truth())


# -- the scenarios ---------------------------------------------------------------------------
def _says(h: Harness, text: str, since: int) -> bool:
    """Whether the driver log says TEXT after its first SINCE characters."""
    return text in h.driver_log()[since:]


def kill_driver(h: Harness, times: int = 10) -> None:
    h.produce_chunk()
    h.start_load()
    try:
        for i in range(1, times + 1):
            said = len(h.driver_log())
            proc = h.running_stream()
            before = h.committed()
            if i % 2:
                after = h.wait_for_commit(proc, before)
                time.sleep(h.rng.uniform(0.0, 3.0))  # somewhere in the next micro-batch
                when = f"after {after - before} new batch commit(s)"
            else:
                h.wait_until(partial(_says, h, "queries started", said), "its queries started", proc, 180)
                delay = h.rng.uniform(0.0, 3.0)  # the first micro-batch, redoing what the last kill cut short
                time.sleep(delay)
                when = f"{delay:.1f} s into its first micro-batch ({h.committed() - before} new commit(s))"
            h.kill(proc)
            h.stream = None
            h.note(f"kill {i}/{times}: driver SIGKILLed {when}")
    finally:
        h.stop_load()


def kafka_restart(h: Harness, down_s: float = 10.0) -> None:
    from lakehouse.stack import components as stack

    kafka = next(c for c in stack.components(h.s) if c.name == "kafka")
    h.produce_chunk()
    proc = h.running_stream()
    h.start_load()
    try:
        h.wait_for_commit(proc, h.committed())
        h._pause_load.set()
        time.sleep(1.5)  # the chunk in flight lands
        broker = kafka.process()
        if broker is None:
            raise ChaosError("Kafka is not running (`lakehouse up kafka`)")
        os.killpg(os.getpgid(broker.pid), signal.SIGKILL)
        broker.wait(timeout=60)
        kafka.pidfile.remove()
        h.note(f"broker SIGKILLed; down for {down_s:.0f}s")
        time.sleep(down_s)
        kafka.start(lambda line: None)
        h.note("broker restarted")
        h._pause_load.clear()
        time.sleep(10)
        if proc.poll() is not None:
            why = f"exit {proc.returncode}"
            h.note(f"the stream stopped while the broker was away ({why}); restarted, as a supervisor would")
            proc = h.running_stream()
        h.wait_for_commit(proc, h.committed(), timeout_s=240)
        h.note("the stream committed again after the restart")
    finally:
        h.stop_load()


def poison_flood(h: Harness, invalid: int = 1200, oversized: int = 40) -> None:
    """A burst of poison under a running stream: every invalid kind INVALID / 12 times (bytes that are
    not UTF-8, JSON nested 5,000 deep, not JSON, wrong types, ...) and OVERSIZED records at the
    broker's size limit. The stream must keep going, quarantine each invalid record with its reason
    and keep each oversized one (valid: its padding is an unknown field, kept in ``_extra``)."""
    h.produce_chunk()
    proc = h.running_stream()
    h.start_load()
    try:
        h.wait_for_commit(proc, h.committed())
        before = h.quarantined()
        h.produce_chunk(60, invalid=invalid, oversized=oversized)
        h.note(f"flood: {invalid} invalid records of every kind and {oversized} of ~1 MB sent at once")
        # The running stream itself gets through it.
        h.wait_until(lambda: h.quarantined() >= before + invalid, "the flood was quarantined", proc)
        h.note("the running stream quarantined the flood and kept going")
    finally:
        h.stop_load()


def disk_full(h: Harness) -> None:
    """The lake's filesystem (tables and checkpoints; a tmpfs of its own) shrunk to full under a running
    stream with load: the driver must stop (exit 74) saying the disk is full and that nothing is lost;
    once the filesystem has room again, a restart resumes from the last committed batch."""
    if h.disk is None:
        raise ChaosError("disk-full needs the lake on its own filesystem: run it through lakehouse.chaos.run")
    h.produce_chunk()
    proc = h.running_stream()
    h.start_load()
    try:
        h.wait_for_commit(proc, h.committed())
        for attempt in range(10):  # the stream writes meanwhile: a size below what is used is refused
            full = h.disk.used() + (64 << 10)
            try:
                h.disk.resize(full)
                break
            except ChaosError:
                if attempt == 9:
                    raise
        h.note(f"the lake's filesystem shrunk to {full >> 20} MB: full under the running stream")
        try:
            code = proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            raise ChaosError(f"the stream kept running on a full disk for 300 s: {h.driver_tail()}") from None
        h.stream = None
        if code != streams.DISK_FULL or "no space left on the disk under" not in h.driver_log():
            raise ChaosError(f"the stream did not stop saying the disk is full (exit {code}): {h.driver_tail()}")
        h.note(f"the driver stopped with DISK_FULL ({code}) and said what to do")
        h.disk.resize(h.disk.size)
        h.note("the filesystem grown back; the stream started again")
        before = h.committed_per_query()
        proc = h.running_stream()
        # Every query, not just the first to get going: a table whose creation the full disk cut short
        # fails only the query that writes it (found so: refine's, with bronze committing fine).
        queries = 2 * len(TOPICS)  # the pipeline app: bronze and refine, one query per topic each
        h.wait_until(
            lambda: sum(n > before.get(q, 0) for q, n in h.committed_per_query().items()) >= queries,
            f"all {queries} queries committed again",
            proc,
            timeout_s=300,
        )
        h.note("the stream committed again after the disk had room")
    finally:
        h.stop_load()


def retention_outage(h: Harness) -> None:
    """The stream down while Kafka's retention deletes records it has not read (here: the broker deletes
    them on request, as retention would, every record sent during the outage). The next start must
    stop with DATA_LOST and a message naming the lost ranges, and push the page's metric; the recovery
    (``lakehouse stream skip-lost``) records exactly what was sent during the outage and gets bronze
    past the gap. The accounting then expects everything but the lost records."""
    from lakehouse.services import retention
    from lakehouse.services.kafka import end_offsets

    names = [t.name for t in TOPICS]
    h.produce_chunk()
    proc = h.running_stream()
    ends = end_offsets(h.s, names)
    h.wait_until(lambda: checkpoint_positions(h.s) == ends, "bronze caught up before the outage", proc)
    h.stop_stream()
    before = end_offsets(h.s, names)
    lost_truth = h.produce_chunk(keep_truth=False)
    gone = end_offsets(h.s, names)
    h.delete_records_before(gone)
    sent = int(lost_truth.summary["total"]["sent"])
    h.note(f"outage: {sent} records sent while the stream was down, then deleted by the broker")
    h.produce_chunk()
    proc = h.start_stream()
    code = proc.wait(timeout=300)
    if code != retention.DATA_LOST:
        raise ChaosError(f"bronze did not stop on the lost records (exit {code}): {h.driver_tail()}")
    said = h.driver_log()
    if "Kafka no longer holds" not in said or "lakehouse stream skip-lost" not in said:
        raise ChaosError(f"bronze stopped without saying what was lost and what to do: {h.driver_tail()}")
    h.note(f"bronze stopped with DATA_LOST ({code}) and named the lost ranges")
    pushed = retention.pushed_lost(h.s)
    if sum(pushed.values()) != sent:
        raise ChaosError(f"the page's metric says {pushed} records lost, {sent} were")
    h.note(f"lakehouse_kafka_records_lost pushed for the page: {pushed}")
    skipped, report = retention.skip(h.s, lambda past: streams.run(past, "bronze", available_now=True))
    want = {(t, p): (before[t][p], gone[t][p]) for t in names for p in gone[t] if gone[t][p] > before[t][p]}
    got = {(r.topic, r.partition): (r.first, r.end) for r in skipped}
    if got != want or sum(r.count for r in skipped) != sent:
        raise ChaosError(f"skip-lost recorded {got}, the outage's records were {want} ({sent} records)")
    if retention.pushed_lost(h.s):
        raise ChaosError("skip-lost left lakehouse_kafka_records_lost in the pushgateway: the page would not resolve")
    h.note(f"skip-lost recorded exactly the {sent} lost records in {report.name if report else '-'}")


SCENARIOS: dict[str, tuple[Callable[..., None], str]] = {
    "kill-driver": (kill_driver, "SIGKILL the pipeline's driver N times in a row under load (--times, default 10)"),
    "kafka-restart": (kafka_restart, "SIGKILL the Kafka broker under a running stream, restart it 10 s later"),
    "disk-full": (disk_full, "the lake's filesystem full under a running stream: stop, say so, resume (root)"),
    "retention-outage": (
        retention_outage,
        "records deleted by retention while the stream is down: stop, page, skip",
    ),
    "poison-flood": (
        poison_flood,
        "1,200 invalid records of all kinds and 40 of ~1 MB at once, under a running stream",
    ),
}


def run(
    names: str | Sequence[str], base: Settings, workdir: Path, spark: SparkSession, log: Log = print, **options: object
) -> Outcome:
    """Run the scenarios NAMES one after another on one private lake, then drain and account once
    (OPTIONS go to the scenarios that take them, e.g. ``times`` to kill-driver)."""
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise ChaosError(f"unknown scenario {', '.join(unknown) or '(none)'}; known: {', '.join(SCENARIOS)}")
    t0 = time.monotonic()
    disk = None
    if "disk-full" in names:
        why = SmallDisk.unavailable()
        if why is not None:
            raise ChaosError(f"disk-full cannot run here: {why}")
        disk = SmallDisk(workdir / "lake")
        disk.mount()
    redis: Redis | None = None
    try:
        h = Harness(base, workdir, log)
        h.disk = disk
        redis = h.redis
        shutil.rmtree(redis.workdir, ignore_errors=True)  # an earlier run's keys are not this lake's
        redis.start(log)
        for name in names:
            fn, what = SCENARIOS[name]
            log(f"{h.elapsed()} {name}: {what}")
            try:
                fn(h, **{k: v for k, v in options.items() if k in inspect.signature(fn).parameters})
            except BaseException:
                h.stop_stream()
                raise
        h.stop_stream()  # gracefully, at a batch boundary
        log(f"{h.elapsed()} draining: the pipeline catches up with everything produced (available-now)")
        h.drain()
        log(f"{h.elapsed()} accounting: bronze, silver, quarantine, gold, alerts and Redis against the truth")
        acc = h.account(spark)
        log(f"{h.elapsed()} accounted")
    finally:
        if redis is not None:
            redis.stop()
        if disk is not None:
            disk.unmount()
    return Outcome(" + ".join(names), acc, h.events, time.monotonic() - t0)
