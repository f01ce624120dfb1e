"""`lakehouse bench latency`: produce -> Redis under an open-loop load, against a minimal Kafka -> Redis query.

For each rate: a fresh lake; the continuous pipeline (`lakehouse stream run all --continuous`)
and the serving stream (`serving --continuous`) start on it; then an **open-loop** producer
sends the generator's normal traffic mix at exactly that rate: record *i* is due at
``t0 + i / rate`` and latency is measured from that **scheduled** time, so a producer or
broker that falls behind adds to the latency instead of hiding it (no coordinated omission).

Probes ride along with the traffic:

- **merchant minute**: once a second a payment to a merchant of its own (``m-probe-…``); it
  is visible when Redis has ``merchant:{merchant}:minute:{window}``;
- **fraud alert**: every five seconds a card-testing burst (five payments under 2.00 on a new
  card, 100 ms apart); the fifth fires the rule, and it is visible when Redis has its alert
  (``fraud:alert:{event_id}``, written with the ``fraud:alerts`` stream entry).

A poller checks Redis every 20 ms. Probes sent during the warm-up are not counted; a probe not
visible 120 s after the load ends counts as lost. The **baseline** runs the same load and probes
through ``spark_apps/bench_floor.py redis`` — one Kafka -> Redis ``foreachBatch`` query with a 0 s
trigger — whose probes are visible at ``bench:seen:{event_id}``.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lakehouse import serving
from lakehouse.bench.apps import start_app
from lakehouse.bench.load import BenchError, cdf_chart, open_loop, parse_progress, produce, producer
from lakehouse.generator import TOPIC_NAMES, GeneratorConfig, generate
from lakehouse.services import streams
from lakehouse.services.kafka import end_offsets_json
from lakehouse.settings import Settings

POLL_S = 0.02
DRAIN_S = 120.0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Traffic:
    """Realistic records made fast: the generator's normal mix as templates, each sent with a fresh
    event_id and the scheduled time as its event_time."""

    def __init__(self, seed: int, n_templates: int = 20_000, topics: tuple[str, ...] = TOPIC_NAMES) -> None:
        run = generate(GeneratorConfig(seed=seed, count=n_templates, rate=100.0, topics=topics))
        self.templates: list[tuple[str, bytes | None, str]] = []
        for r in run.records:
            body = json.loads(r.value)
            body["event_id"], body["event_time"] = "@ID@", "@T@"
            text = json.dumps(body).replace("%", "%%").replace('"@ID@"', '"%s"').replace('"@T@"', '"%s"')
            self.templates.append((r.topic, r.key, text))

    def record(self, i: int, t: float, run: str) -> tuple[str, bytes | None, bytes]:
        topic, key, text = self.templates[i % len(self.templates)]
        return topic, key, (text % (f"{run}-{i}", _iso(t))).encode()


def _payment(eid: str, t: float, user: str, card: str, merchant: str, amount: float) -> bytes:
    return json.dumps(
        {
            "event_id": eid,
            "event_time": _iso(t),
            "user_id": user,
            "card_number": card,
            "merchant_id": merchant,
            "amount": amount,
            "currency": "EUR",
            "country": "DE",
        }
    ).encode()


@dataclass
class Probe:
    kind: str  # merchant | alert
    key: str  # the Redis key that shows it
    due: float  # scheduled send time (epoch s)
    counted: bool  # after the warm-up
    seen: float | None = None


@dataclass
class Load:
    """The open-loop producer and the Redis poller of one phase."""

    s: Settings
    rate: float
    warmup_s: float
    duration_s: float
    run: str
    baseline: bool
    traffic: Traffic
    probes: list[Probe] = field(default_factory=list)
    sent: int = 0
    behind_s: float = 0.0  # how far the producer fell behind its schedule, at worst

    def _visible_key(self, kind: str, eid: str, merchant: str, t: float) -> str:
        if self.baseline:
            return f"bench:seen:{eid}"
        if kind == "merchant":
            return serving.merchant_minute_key(merchant, int(t // 60) * 60)
        return serving.fraud_alert_marker_key(eid)

    def produce(self) -> None:
        p = producer(self.s, **{"linger.ms": 1})
        total = int(self.rate * (self.warmup_s + self.duration_s))
        t0 = time.time() + 0.5
        counted_from = t0 + self.warmup_s
        next_merchant, next_alert, k = t0, t0 + 2.5, 0

        def send(i: int, t: float) -> None:
            nonlocal next_merchant, next_alert, k
            topic, key, value = self.traffic.record(i, t, self.run)
            self._send(p, topic, key, value)
            while next_merchant <= t:  # one merchant probe a second, at its own scheduled time
                k += 1
                m, eid, user = f"m-probe-{self.run}-{k}", f"probe-{self.run}-m{k}", f"u-probe-{self.run}-m{k}"
                payment = _payment(eid, next_merchant, user, f"5{k:015d}", m, 10.0)
                self._send(p, "payments", user.encode(), payment)
                self.probes.append(
                    Probe(
                        "merchant",
                        self._visible_key("merchant", eid, m, next_merchant),
                        next_merchant,
                        next_merchant >= counted_from,
                    )
                )
                next_merchant += 1.0
            while next_alert <= t:  # a card-testing burst every 5 s; the fifth payment fires
                k += 1
                user, card = f"u-probe-{self.run}-{k}", f"4{k:015d}"
                for j in range(5):
                    tj = next_alert + 0.1 * j
                    eid = f"probe-{self.run}-a{k}-{j}"
                    self._send(p, "payments", user.encode(), _payment(eid, tj, user, card, "m-probe-shop", 1.0))
                last = f"probe-{self.run}-a{k}-4"
                due = next_alert + 0.4
                self.probes.append(Probe("alert", self._visible_key("alert", last, "", due), due, due >= counted_from))
                next_alert += 5.0

        self.behind_s = open_loop(self.rate, total, t0, send, lambda: p.poll(0))
        p.flush(60)

    def _send(self, p: Any, topic: str, key: bytes | None, value: bytes) -> None:
        produce(p, topic, value, key)
        self.sent += 1

    def poll(self, stop: threading.Event) -> None:
        client = serving.connect(self.s, role="admin")  # bench:seen:* keys
        try:
            while True:
                pending = [pr for pr in list(self.probes) if pr.seen is None]
                if pending:
                    pipe = client.pipeline(transaction=False)
                    for pr in pending:
                        pipe.exists(pr.key)
                    found = pipe.execute()
                    now = time.time()
                    for pr, hit in zip(pending, found, strict=True):
                        if hit:
                            pr.seen = now
                elif stop.is_set():
                    return
                if stop.is_set() and time.time() > self._drain_until:
                    return
                time.sleep(POLL_S)
        finally:
            client.close()

    _drain_until: float = 0.0

    def run_phase(self) -> None:
        stop = threading.Event()
        poller = threading.Thread(target=self.poll, args=(stop,), daemon=True)
        poller.start()
        self.produce()
        self._drain_until = time.time() + DRAIN_S
        stop.set()
        poller.join()


@dataclass(frozen=True)
class Percentiles:
    count: int
    lost: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


def percentiles(values: list[float], lost: int) -> Percentiles:
    if not values:
        return Percentiles(0, lost, None, None, None, None)
    v = sorted(values)

    def pct(q: float) -> float:
        return round(v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))], 3)

    return Percentiles(len(v), lost, pct(0.50), pct(0.95), pct(0.99), round(v[-1], 3))


@dataclass
class Phase:
    rate: float
    system: str  # pipeline | baseline
    merchant: Percentiles
    alert: Percentiles | None
    producer_behind_s: float
    sent: int
    latencies: dict[str, list[float]]
    batches: dict[str, Any] = field(default_factory=dict)


def _latencies(load: Load, kind: str) -> tuple[list[float], int]:
    chosen = [p for p in load.probes if p.kind == kind and p.counted]
    return [p.seen - p.due for p in chosen if p.seen is not None], sum(1 for p in chosen if p.seen is None)


def _batch_facts(lines: list[str]) -> dict[str, Any]:
    """Per layer: median duration of idle-ish (<= 100 rows) and ~1k-row micro-batches, and the Kafka lag trend."""
    batches = parse_progress(lines)
    out: dict[str, Any] = {}
    for layer in streams.STREAMS:
        mine = [b for b in batches if b.query.startswith(layer + "_")]
        small = sorted(b.duration_s for b in mine if b.rows <= 100)
        around_1k = sorted(b.duration_s for b in mine if 500 <= b.rows <= 2000)
        out[layer] = {
            "batches": len(mine),
            "median_s_le_100_rows": small[len(small) // 2] if small else None,
            "median_s_500_2000_rows": around_1k[len(around_1k) // 2] if around_1k else None,
            "median_rows": sorted(b.rows for b in mine)[len(mine) // 2] if mine else None,
        }
    lags = []
    for line in lines:
        if line.startswith("progress {") and '"kafka_lag"' in line:
            p = json.loads(line[9:])
            if p.get("query", "").startswith("bronze_") and p.get("kafka_lag") is not None:
                lags.append((p["timestamp"], p["kafka_lag"]))
    if lags:
        half = len(lags) // 2
        out["bronze_kafka_lag"] = {
            "first_half_max": max(v for _, v in lags[:half] or lags),
            "second_half_max": max(v for _, v in lags[half:]),
        }
    return out


def _wait_for_line(log: Path, needle: str, proc: Any, timeout: float) -> None:
    """Wait until the app's log has a line containing NEEDLE (e.g. "queries started")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{log.name}: the app exited ({proc.returncode}) before it started; see {log}")
        text = log.read_text(errors="replace") if log.exists() else ""
        if needle in text:
            return
        time.sleep(1.0)
    raise BenchError(f"no {needle!r} in {log} after {timeout:.0f}s")


def run_rate(
    base: Settings,
    rate: float,
    warmup_s: float,
    duration_s: float,
    baseline_s: float,
    work: Path,
    traffic: Traffic,
    log: Callable[[str], None],
) -> list[Phase]:
    phases = []
    stamp = f"{int(rate)}-{int(time.time())}"
    # -- the pipeline --
    s = base.model_copy(update={"lake_root": work / "lake", "kafka_starting_offsets": end_offsets_json(base)})
    pipe_log, serve_log = work / "pipeline.log", work / "serving.log"
    pipeline = start_app(s, "all", ["--continuous"], pipe_log)
    serving_proc = None
    try:
        # Serving reads the gold tables: start it once refine has created them (its queries started).
        _wait_for_line(pipe_log, "queries started", pipeline, 600)
        serving_proc = start_app(s, "serving", ["--continuous"], serve_log)
        _wait_for_line(serve_log, "queries started", serving_proc, 600)
        log(f"  pipeline up; {warmup_s:.0f}s warm-up, then {duration_s:.0f}s at {rate:,.0f} events/s")
        load = Load(s, rate, warmup_s, duration_s, f"p{stamp}", False, traffic)
        load.run_phase()
    finally:
        for proc in (serving_proc, pipeline):
            if proc is not None:
                streams.stop_gracefully(proc, timeout=120)
    m, m_lost = _latencies(load, "merchant")
    a, a_lost = _latencies(load, "alert")
    lines = pipe_log.read_text(errors="replace").splitlines() + serve_log.read_text(errors="replace").splitlines()
    phases.append(
        Phase(
            rate,
            "pipeline",
            percentiles(m, m_lost),
            percentiles(a, a_lost),
            round(load.behind_s, 3),
            load.sent,
            {"merchant": m, "alert": a},
            _batch_facts(lines),
        )
    )
    last = phases[-1]
    log(f"  pipeline   merchant p99 {last.merchant.p99}s  alert p99 {last.alert.p99 if last.alert else None}s")
    shutil.rmtree(work / "lake", ignore_errors=True)
    # -- the baseline: Kafka -> Redis, nothing else --
    sb = base.model_copy(update={"lake_root": work / "floor"})
    floor_log = work / "floor.log"
    total = warmup_s + baseline_s
    floor = start_app(
        sb,
        "bench_floor",
        ["redis", "--seconds", str(total + 90), "--starting-offsets", end_offsets_json(base)],
        floor_log,
    )
    try:
        _wait_for_line(floor_log, "floor_redis started", floor, 600)
        load_b = Load(sb, rate, warmup_s, baseline_s, f"b{stamp}", True, traffic)
        load_b.run_phase()
    finally:
        streams.stop_gracefully(floor, timeout=60)
    mb, mb_lost = _latencies(load_b, "merchant")
    ab, ab_lost = _latencies(load_b, "alert")
    phases.append(
        Phase(
            rate,
            "baseline",
            percentiles(mb + ab, mb_lost + ab_lost),
            None,
            round(load_b.behind_s, 3),
            load_b.sent,
            {"any": mb + ab},
        )
    )
    log(f"  baseline   p99 {phases[-1].merchant.p99}s")
    shutil.rmtree(work / "floor", ignore_errors=True)
    return phases


def main(
    s: Settings,
    rates: list[float],
    warmup_s: float,
    duration_s: float,
    baseline_s: float,
    out: Path,
    log: Callable[[str], None] = print,
) -> list[Phase]:
    out.mkdir(parents=True, exist_ok=True)
    traffic = Traffic(seed=17)
    phases: list[Phase] = []
    for rate in rates:
        log(f"rate {rate:,.0f} events/s (master {s.spark_master}, trigger {s.stream_trigger_interval})")
        work = s.state_dir / "bench" / f"latency-{int(rate)}"
        shutil.rmtree(work, ignore_errors=True)
        phases += run_rate(s, rate, warmup_s, duration_s, baseline_s, work, traffic, log)
    payload = {
        "benchmark": "latency",
        "master": s.spark_master,
        "trigger": s.stream_trigger_interval,
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "baseline_s": baseline_s,
        "phases": [{k: v for k, v in asdict(p).items() if k != "latencies"} for p in phases],
    }
    (out / "latency.json").write_text(json.dumps(payload, indent=2))
    chart(phases, out / "latency.png", s.spark_master)
    return phases


def table(phases: list[Phase]) -> str:
    lines = [
        "| rate ev/s | system | what | n | p50 s | p95 s | p99 s | max s | lost |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in phases:
        rows = (
            [("merchant minute", p.merchant), ("fraud alert", p.alert)]
            if p.system == "pipeline"
            else [("probe visible", p.merchant)]
        )
        for what, pc in rows:
            if pc is None:
                continue
            cells = (pc.count, pc.p50, pc.p95, pc.p99, pc.max, pc.lost)
            lines.append(f"| {p.rate:,.0f} | {p.system} | {what} | " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def chart(phases: list[Phase], path: Path, master: str = "local[2]") -> None:
    cdf_chart(
        [
            (f"{p.rate:,.0f}/s {p.system} {what}", values, p.system == "baseline")
            for p in phases
            for what, values in p.latencies.items()
        ],
        path,
        f"End-to-end latency, open-loop load ({master})",
        "produce (scheduled) -> visible in Redis, seconds (log)",
    )
