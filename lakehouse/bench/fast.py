"""`lakehouse bench latency --path fast`: payment -> fraud alert readable in Redis, through the fast path.

For each rate, on a fresh lake, with the micro-batch pipeline running beside it (``all`` and
``serving``, continuous, as in production), three consumers read the same ``payments`` topic at
the same time:

- the **fast path** (``lakehouse stream run fastpath``: the Flink job, on a private checkpoint
  directory, from the topic's end offsets);
- the **floor**, the machine's baseline in the same run: one Python process that reads each
  payment (confluent-kafka, no batching delay) and writes one Redis command (``XADD``) for a probe
  (``lakehouse.bench.engines.floor``);
- the pipeline itself, whose load is part of the conditions, not measured here
  (``lakehouse bench latency`` measures it).

An **open-loop** producer sends the generator's payments at exactly RATE (record *i* is due at
``t0 + i / rate``), and every ``PROBE_EVERY_S`` a card-testing burst on a new card (five payments
under 2.00, 50 ms apart, each sent at its own scheduled time); the fifth fires ``card_testing``.
Latency is from the fifth payment's scheduled send time to the moment a reader blocked on
``XREAD`` receives its ``fraud:alerts`` entry with ``path = fast`` (the floor: its own stream's
entry), so neither a producer that falls behind nor polling hides any delay. Probes due during the
warm-up are not counted; a counted probe not seen ``DRAIN_S`` after the load ends counts as lost.
The fast path's JVM resident memory is sampled during the run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from lakehouse import serving
from lakehouse.bench.apps import start_app
from lakehouse.bench.latency import Percentiles, _iso, _wait_for_line, percentiles
from lakehouse.bench.load import BenchError, cdf_chart, open_loop, produce, producer
from lakehouse.generator import GeneratorConfig, generate
from lakehouse.services import fastpath, streams
from lakehouse.services.kafka import end_offsets_json
from lakehouse.serving import keys
from lakehouse.settings import Settings

PROBE_EVERY_S = 0.1
BURST = 5  # card_testing fires on the fifth payment under 2.00 within 60 s
BURST_GAP_S = 0.05
DRAIN_S = 30.0
READY_TIMEOUT_S = 240.0


@dataclass
class Result:
    rate: float
    fast: Percentiles
    floor: Percentiles
    producer_behind_s: float
    sent: int
    fast_rss_mb_max: float | None
    latencies: dict[str, list[float]] = field(default_factory=dict)
    # Per consumer, (seconds since the first counted probe was due, latency s), for the chart over time.
    timeline: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    error: str | None = None
    beside: bool = True  # the micro-batch pipeline ran beside the fast path


def _payment(eid: str, t: float, user: str, card: str, amount: float, probe: bool) -> bytes:
    body: dict[str, Any] = {
        "event_id": eid,
        "event_time": _iso(t),
        "user_id": user,
        "card_number": card,
        "merchant_id": "m-probe-shop",
        "amount": amount,
        "currency": "EUR",
        "country": "DE",
    }
    if probe:
        body["probe"] = eid  # the floor writes records that carry one
    return json.dumps(body).encode()


class Payments:
    """The generator's payments as templates, each sent with a fresh event_id, the scheduled time as
    event_time, and a user (and that user's card) spread over ``rate * USER_SPAN_S`` users, so a user
    pays about once per ``USER_SPAN_S`` whatever the rate: the generator's own pool (10,000 users) would
    make nearly every payment a velocity alert at 5,000/s, which is not what a payments stream looks like."""

    USER_SPAN_S = 120

    def __init__(self, rate: float, seed: int = 17, n_templates: int = 20_000) -> None:
        run = generate(GeneratorConfig(seed=seed, count=n_templates, rate=100.0, topics=("payments",)))
        self.users = max(10_000, int(rate * self.USER_SPAN_S))
        self.templates: list[tuple[str, tuple[str, ...]]] = []
        names = ("event_id", "event_time", "user_id", "card_number")
        for r in run.records:
            body = json.loads(r.value)
            for name in names:
                body[name] = f"@{name}@"
            text = json.dumps(body).replace("%", "%%")
            order = tuple(sorted(names, key=lambda n: text.index(f'"@{n}@"')))
            for name in names:
                text = text.replace(f'"@{name}@"', '"%s"')
            self.templates.append((text, order))

    def record(self, i: int, t: float, run: str) -> tuple[str, bytes, bytes]:
        u = (i * 7_919) % self.users  # a stride prime to the pool: consecutive payments, different users
        user = f"u-b{u:07d}"
        values = {"event_id": f"{run}-{i}", "event_time": _iso(t), "user_id": user, "card_number": f"4{u:015d}"}
        text, order = self.templates[i % len(self.templates)]
        return "payments", user.encode(), (text % tuple(values[k] for k in order)).encode()


@dataclass
class _Run:
    s: Settings
    rate: float
    stamp: str
    floor_stream: str
    traffic: Payments
    due: dict[str, float] = field(default_factory=dict)  # probe event_id -> scheduled send time
    counted: set[str] = field(default_factory=set)
    fast_seen: dict[str, float] = field(default_factory=dict)
    floor_seen: dict[str, float] = field(default_factory=dict)
    sent: int = 0
    behind_s: float = 0.0
    bursts: int = 0

    def all_seen(self) -> bool:
        return self.counted <= self.fast_seen.keys() and self.counted <= self.floor_seen.keys()

    def read(self, stop: threading.Event) -> None:
        """Block on both streams; note when each probe's entry arrives (fast: path=fast entries only)."""
        r = serving.connect(self.s, role="admin")  # the floor's bench:* stream too
        last: dict[Any, Any] = {serving.FRAUD_ALERTS_STREAM: "$", self.floor_stream: "$"}
        try:
            while not stop.is_set():
                replies: Any = r.xread(last, block=50, count=10_000) or []
                for stream, entries in replies:
                    now = time.time()
                    name = stream.decode() if isinstance(stream, bytes) else stream
                    for entry_id, fields in entries:
                        last[name] = entry_id
                        if name == self.floor_stream:
                            self.floor_seen.setdefault(fields.get("probe", ""), now)
                        elif fields.get("path") == keys.FAST_PATH:
                            self.fast_seen.setdefault(fields.get("event_id", ""), now)
        finally:
            r.close()

    def burst(self, t: float, counted: bool) -> list[tuple[float, bytes, bytes]]:
        """One card-testing burst starting at T: (due, key, value) of its five payments."""
        self.bursts += 1
        k = self.bursts
        user, card = f"u-fp-{self.stamp}-{k}", f"4{self.stamp[-6:]}{k:09d}"
        out = []
        for j in range(BURST):
            tj = t + BURST_GAP_S * j
            eid = f"fp-{self.stamp}-{k}-{j}"
            probe = j == BURST - 1
            out.append((tj, user.encode(), _payment(eid, tj, user, card, 1.0, probe)))
            if probe:
                self.due[eid] = tj
                if counted:
                    self.counted.add(eid)
        return out

    def wait_ready(self, procs: dict[str, subprocess.Popen[bytes]], logs: dict[str, Path]) -> float:
        """A burst a second until one is seen through both the fast path and the floor."""
        p = producer(self.s, **{"linger.ms": 0})
        t0 = time.time()
        try:
            while time.time() - t0 < READY_TIMEOUT_S:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        raise BenchError(f"{name} exited ({proc.returncode}) before it was ready; see {logs[name]}")
                for _, key, value in self.burst(time.time(), counted=False):
                    p.produce("payments", value=value, key=key)
                p.flush(10)
                time.sleep(1.0)
                if any(e in self.fast_seen for e in self.due) and any(e in self.floor_seen for e in self.due):
                    return time.time() - t0
        finally:
            p.flush(10)
        raise BenchError(f"the fast path or the floor saw no probe within {READY_TIMEOUT_S:.0f}s; see {logs}")

    def load(self, warmup_s: float, duration_s: float) -> None:
        p = producer(self.s, **{"linger.ms": 1})
        total = int(self.rate * (warmup_s + duration_s))
        t0 = time.time() + 0.5
        counted_from = t0 + warmup_s
        pending: list[tuple[float, bytes, bytes]] = []
        next_burst = t0

        def send(i: int, t: float) -> None:
            nonlocal next_burst
            topic, key, value = self.traffic.record(i, t, f"fp{self.stamp}")
            self._send(p, topic, key, value)
            while next_burst <= t:
                pending.extend(self.burst(next_burst, next_burst >= counted_from))
                next_burst += PROBE_EVERY_S
            while pending and pending[0][0] <= t:  # each probe payment at its own scheduled time
                _, k, v = pending.pop(0)
                self._send(p, "payments", k, v)

        self.behind_s = open_loop(self.rate, total, t0, send, lambda: p.poll(0))
        for _, k, v in pending:
            self._send(p, "payments", k, v)
        p.flush(60)

    def _send(self, p: Any, topic: str, key: bytes | None, value: bytes) -> None:
        produce(p, topic, value, key)
        self.sent += 1


def _latencies(run: _Run, seen: dict[str, float]) -> tuple[list[float], int]:
    chosen = [e for e in run.counted]
    return [seen[e] - run.due[e] for e in chosen if e in seen], sum(1 for e in chosen if e not in seen)


def _timeline(run: _Run, seen: dict[str, float]) -> list[tuple[float, float]]:
    counted = sorted(run.counted, key=run.due.__getitem__)
    if not counted:
        return []
    t0 = run.due[counted[0]]
    return [(round(run.due[e] - t0, 3), round(seen[e] - run.due[e], 4)) for e in counted if e in seen]


def _sample_rss(pid_of: Callable[[], int | None], stop: threading.Event, out: list[float]) -> None:
    while not stop.wait(1.0):
        pid = pid_of()
        if pid is None:
            continue
        try:
            out.append(psutil.Process(pid).memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            continue


def _jvm_pid(proc: subprocess.Popen[bytes]) -> int | None:
    try:
        for child in psutil.Process(proc.pid).children(recursive=True):
            if fastpath.MAIN_CLASS in " ".join(child.cmdline()):
                return int(child.pid)
    except psutil.NoSuchProcess:
        return None
    return None


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 60.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _child_env(s: Settings) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")} | s.to_env()


def run_rate(
    base: Settings,
    rate: float,
    warmup_s: float,
    duration_s: float,
    work: Path,
    log: Callable[[str], None],
    beside: bool = True,
) -> Result:
    stamp = f"{int(rate)}{int(time.time()) % 1_000_000:06d}"
    offsets = end_offsets_json(base)
    s = base.model_copy(
        update={
            "lake_root": work / "lake",
            "kafka_starting_offsets": offsets,
            "checkpoint_root": work / "checkpoints",
            "fastpath_start": json.dumps({"payments": json.loads(offsets)["payments"]}),
        }
    )
    work.mkdir(parents=True, exist_ok=True)
    logs = {n: work / f"{n}.log" for n in ("pipeline", "serving", "fastpath", "floor")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    run = _Run(s, rate, stamp, f"bench:fastpath-floor:{stamp}", Payments(rate))
    stop = threading.Event()
    reader = threading.Thread(target=run.read, args=(stop,), daemon=True)
    rss: list[float] = []
    sampler = threading.Thread(target=_sample_rss, args=(lambda: _jvm_pid(procs["fastpath"]), stop, rss), daemon=True)
    try:
        if beside:
            procs["pipeline"] = start_app(s, "all", ["--continuous"], logs["pipeline"])
            _wait_for_line(logs["pipeline"], "queries started", procs["pipeline"], 600)
            procs["serving"] = start_app(s, "serving", ["--continuous"], logs["serving"])
            _wait_for_line(logs["serving"], "queries started", procs["serving"], 600)
        env = _child_env(s)
        for name, cmd in (
            ("fastpath", [str(Path(sys.executable).parent / "lakehouse"), "stream", "run", fastpath.NAME]),
            ("floor", [sys.executable, "-m", "lakehouse.bench.engines", "floor", "payments", run.floor_stream]),
        ):
            with logs[name].open("w") as out:
                procs[name] = subprocess.Popen(
                    cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
        reader.start()
        sampler.start()
        ready = run.wait_ready({n: procs[n] for n in ("fastpath", "floor")}, logs)
        log(
            f"  {'pipeline, ' if beside else ''}fast path and floor up (probes through in {ready:.0f}s); "
            f"{warmup_s:.0f}s warm-up, then {duration_s:.0f}s at {rate:,.0f} payments/s"
        )
        run.load(warmup_s, duration_s)
        deadline = time.time() + DRAIN_S
        while time.time() < deadline and not (
            run.counted <= run.fast_seen.keys() and run.counted <= run.floor_seen.keys()
        ):
            time.sleep(0.5)
    finally:
        stop.set()
        for name in ("fastpath", "floor"):
            _stop(procs.get(name))
        for name in ("serving", "pipeline"):
            if name in procs:
                streams.stop_gracefully(procs[name], timeout=120)
        r = serving.connect(base, role="admin")
        try:
            r.delete(run.floor_stream)
        finally:
            r.close()
    f, f_lost = _latencies(run, run.fast_seen)
    b, b_lost = _latencies(run, run.floor_seen)
    result = Result(
        rate,
        percentiles(f, f_lost),
        percentiles(b, b_lost),
        round(run.behind_s, 3),
        run.sent,
        round(max(rss), 1) if rss else None,
        {"fast path": f, "floor": b},
        {"fast path": _timeline(run, run.fast_seen), "floor": _timeline(run, run.floor_seen)},
        beside=beside,
    )
    log(f"  fast path p99 {_ms(result.fast.p99)}, floor p99 {_ms(result.floor.p99)}, behind {run.behind_s:.2f}s")
    shutil.rmtree(work / "lake", ignore_errors=True)
    return result


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f} ms"


def main(
    s: Settings,
    rates: list[float],
    warmup_s: float,
    duration_s: float,
    out: Path,
    log: Callable[[str], None] = print,
    beside: bool = True,
) -> list[Result]:
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for rate in rates:
        where = f"beside the pipeline on {s.spark_master}" if beside else "alone: no pipeline"
        log(f"rate {rate:,.0f} payments/s (fast path {where})")
        work = s.state_dir / "bench" / f"fastpath-{int(rate)}"
        shutil.rmtree(work, ignore_errors=True)
        results.append(run_rate(s, rate, warmup_s, duration_s, work, log, beside))
    payload = {
        "benchmark": "latency --path fast",
        "master": s.spark_master,
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "probe_every_s": PROBE_EVERY_S,
        "pipeline_beside": beside,
        "results": [{k: v for k, v in asdict(r).items() if k not in ("latencies", "timeline")} for r in results],
    }
    (out / "latency-fast.json").write_text(json.dumps(payload, indent=2))
    chart(results, out / "latency-fast.png")
    return results


def table(results: list[Result]) -> str:
    lines = [
        "| payments/s | pipeline beside | consumer | n | p50 ms | p95 ms | p99 ms | max ms | lost | p99 vs floor "
        "| producer behind s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for name, pc in (("fast path", r.fast), ("floor", r.floor)):
            ratio = (
                (f"{pc.p99 / r.floor.p99:.1f}x" if pc.p99 is not None and r.floor.p99 else "-")
                if name == "fast path"
                else "1.0x"
            )
            cells = [
                f"{r.rate:,.0f}",
                "yes" if r.beside else "no",
                name,
                str(pc.count),
                *(("-" if v is None else f"{v * 1000:.1f}") for v in (pc.p50, pc.p95, pc.p99, pc.max)),
                str(pc.lost),
                ratio,
                f"{r.producer_behind_s:.2f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(results: list[Result], path: Path) -> None:
    """PATH: the latency distributions; PATH's stem + ``-timeline``: each probe's latency against when it
    was due (a backlog that drains and one that grows look alike in a distribution)."""
    beside = "pipeline running beside" if all(r.beside for r in results) else "no pipeline beside"
    cdf_chart(
        [
            (f"{r.rate:,.0f}/s {name}", [x * 1000 for x in values], name == "floor")
            for r in results
            for name, values in r.latencies.items()
        ],
        path,
        f"Fraud alert latency: fast path vs the floor, {beside}",
        "scheduled send -> alert readable in Redis, ms (log); dotted: the 100 ms target",
        target=100,
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for r in results:
        for name, points in r.timeline.items():
            if points:
                ax.plot(
                    [t for t, _ in points],
                    [v * 1000 for _, v in points],
                    "--" if name == "floor" else "-",
                    lw=0.9,
                    label=f"{r.rate:,.0f}/s {name}",
                )
    ax.axhline(100, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("probe due, s after the warm-up")
    ax.set_ylabel("latency, ms (log); dotted: 100 ms")
    ax.set_title(f"Fraud alert latency over the run, {beside}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path.with_name(path.stem + "-timeline.png"), dpi=110)
    plt.close(fig)
