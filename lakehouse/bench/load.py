"""Load for the benchmarks: a fast producer (librdkafka) and Spark query progress read back from logs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lakehouse.clients import librdkafka_config
from lakehouse.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

    from lakehouse.generator import GeneratedRun


class BenchError(RuntimeError):
    """A benchmark could not run; the message says why."""


def producer(s: Settings, **extra: Any) -> Any:
    """A confluent-kafka producer that keeps Kafka's Java partitioner (murmur2), so keyed records land
    in the same partitions as with kafka-python and the Java clients."""
    try:
        from confluent_kafka import Producer
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise BenchError("confluent-kafka is not installed: run `make setup`") from exc
    config = {
        **librdkafka_config(s, "admin"),  # benchmark topics too: admin
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "partitioner": "murmur2_random",
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        **extra,
    }
    return Producer(config)


def produce(p: Any, topic: str, value: bytes, key: bytes | None = None, wait_s: float = 0.01, **extra: Any) -> None:
    """``p.produce``, waiting WAIT_S at a time (serving delivery reports) while the client's queue is full."""
    while True:
        try:
            p.produce(topic, value=value, key=key, **extra)
            return
        except BufferError:
            p.poll(wait_s)


@dataclass(frozen=True)
class Sent:
    records: int
    seconds: float
    failed: int

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def send_all(s: Settings, records: Iterable[tuple[str, bytes | None, bytes, int | None]]) -> Sent:
    """Send (topic, key, value, partition) records as fast as the broker takes them; wait for every ack."""
    p = producer(s)
    failed = 0

    def done(err: Any, _msg: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    n = 0
    t0 = time.perf_counter()
    for topic, key, value, partition in records:
        where = {} if partition is None else {"partition": partition}
        produce(p, topic, value, key, 0.05, on_delivery=done, **where)
        n += 1
        if n % 10_000 == 0:
            p.poll(0)
    left = p.flush(120)
    seconds = time.perf_counter() - t0
    return Sent(n, seconds, failed + left)


def send_run(s: Settings, run: GeneratedRun) -> Sent:
    """Send every record of a generated run (its own partitions kept); fail unless Kafka acknowledged all."""
    sent = send_all(s, ((r.topic, r.key, r.value, r.partition) for r in run.records))
    if sent.failed:
        raise BenchError(f"{sent.failed} records were not acknowledged by Kafka")
    return sent


def open_loop(
    rate: float, total: int, t0: float, send: Callable[[int, float], None], burst_done: Callable[[], None]
) -> float:
    """Call SEND(i, t) for each of TOTAL records at its scheduled time ``t = t0 + i / rate``; return how
    far behind its schedule the loop fell, at worst (seconds).

    Open loop: the schedule never waits for the system under test, so a producer or broker that
    falls behind adds to the measured latency instead of hiding it (no coordinated omission). The
    records due at once are sent in one burst, then BURST_DONE runs (a producer's ``poll(0)``).
    """
    behind = 0.0
    i = 0
    while i < total:
        now = time.time()
        due_n = min(total, int((now - t0) * rate) + 1)
        if due_n <= i:
            time.sleep(min(0.001, max(0.0, t0 + i / rate - now)))
            continue
        behind = max(behind, now - (t0 + i / rate))
        while i < due_n:
            send(i, t0 + i / rate)
            i += 1
        burst_done()
    return behind


# -- query progress ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    """One micro-batch of one query, from its progress line."""

    query: str
    batch_id: int
    rows: int
    start: float  # epoch seconds
    duration_s: float

    @property
    def end(self) -> float:
        return self.start + self.duration_s


def parse_progress(lines: Iterable[str]) -> list[Batch]:
    """The batches in `progress {json}` lines a Spark app prints (spark_apps._runtime.ProgressReporter)."""
    out = []
    for line in lines:
        if not line.startswith("progress {"):
            continue
        p = json.loads(line[len("progress ") :])
        if p.get("idle") or p.get("batch_duration_ms") is None:
            continue
        ts = datetime.fromisoformat(str(p["timestamp"]).replace("Z", "+00:00")).timestamp()
        out.append(Batch(str(p["query"]), int(p["batch_id"]), int(p["rows_in"] or 0), ts, p["batch_duration_ms"] / 1e3))
    return out


@dataclass(frozen=True)
class Rates:
    """What a set of queries did: all batches, and the steady state (each query's first batch excluded)."""

    rows: int
    batches: int
    first_batch_s: float
    steady_rows: int
    steady_s: float

    @property
    def steady_rate(self) -> float:
        return self.steady_rows / self.steady_s if self.steady_s > 0 else 0.0


def rates(batches: list[Batch], select: Callable[[Batch], bool]) -> Rates:
    """Steady-state rows/s of the selected queries, which run side by side: the rows of every batch
    after each query's first, over the wall time those batches span (first start to last end)."""
    chosen = [b for b in batches if select(b) and b.rows > 0]
    if not chosen:
        return Rates(0, 0, 0.0, 0, 0.0)
    first: dict[str, Batch] = {}
    for b in sorted(chosen, key=lambda b: b.batch_id):
        first.setdefault(b.query, b)
    steady = [b for b in chosen if b is not first[b.query]]
    span = (max(b.end for b in steady) - min(b.start for b in steady)) if steady else 0.0
    return Rates(
        rows=sum(b.rows for b in chosen),
        batches=len(chosen),
        first_batch_s=max(b.duration_s for b in first.values()),
        steady_rows=sum(b.rows for b in steady),
        steady_s=span,
    )


def cdf_chart(
    series: list[tuple[str, list[float], bool]],
    path: Path,
    title: str,
    xlabel: str,
    target: float | None = None,
) -> None:
    """Latency distributions as CDFs on a log x axis, one line per (LABEL, VALUES, DASHED) in SERIES
    (series without values are left out); TARGET, if given, as a dotted vertical line. Written to PATH."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for label, values, dashed in series:
        if not values:
            continue
        v = sorted(values)
        ax.plot(v, [(i + 1) / len(v) for i in range(len(v))], "--" if dashed else "-", label=label)
    if target is not None:
        ax.axvline(target, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of probes")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
