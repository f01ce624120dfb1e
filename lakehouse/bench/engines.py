"""`lakehouse bench engines`: which stream engine the fraud fast path should run on, measured here.

Each candidate reads payments from a Kafka topic of its own and, for every payment that carries a
``probe`` field, writes one Redis command (``XADD`` to a stream of its own). Nothing else: no
rules, no state. What is measured is what the engine itself adds between Kafka and Redis.

- ``floor`` (the baseline, in the same run): a minimal consumer, one Python process with
  librdkafka (confluent-kafka) and redis-py, the least any engine can do on this machine;
- ``flink``: a Flink 2.2 job (``fastpath/jvm/src/lakehouse/fastpath/PassThrough.java``): Kafka
  source, JSON parse, one keyed exchange (``keyBy(user_id)``), a Redis sink; one JVM (a per-job
  MiniCluster), parallelism 1, network buffers flushed every 5 ms;
- ``spark-rtm``: Spark 4.2's real-time mode (``trigger(realTime=...)``,
  ``spark_apps/bench_rtm.py``): Kafka source, filter, a ``foreach`` writer; stateless only.

The load is **open loop**: payment *i* is due at ``t0 + i / rate`` and latency is measured from
that scheduled time to the moment a reader blocked on ``XREAD`` receives the probe's entry, so a
producer or broker that falls behind adds to the latency instead of hiding it. Every
``probe_every``-th payment is a probe. Probes due during the warm-up are not counted; a counted
probe not seen 15 s after the load ends counts as lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lakehouse.bench.latency import Percentiles, Traffic, percentiles
from lakehouse.bench.load import BenchError, cdf_chart, open_loop, produce, producer
from lakehouse.clients import java_config, librdkafka_config
from lakehouse.services import flink, streams
from lakehouse.settings import Settings, child_env

CANDIDATES = ("floor", "flink", "spark-rtm")
DRAIN_S = 15.0
READY_TIMEOUT_S = 240.0


@dataclass
class Result:
    candidate: str
    rate: float
    latency_s: Percentiles
    sent: int
    producer_behind_s: float
    ready_s: float  # from start to the first probe seen
    error: str | None = None
    latencies: list[float] = field(default_factory=list, repr=False)


def _topic(candidate: str, stamp: str) -> str:
    return f"bench.engines.{candidate.replace('-', '_')}.{stamp}"


def _create_topic(s: Settings, name: str) -> None:
    from kafka.admin import NewTopic

    from lakehouse.services.kafka import admin

    client = admin(s)
    try:
        client.create_topics([NewTopic(name, num_partitions=s.kafka_partitions, replication_factor=1)])
    finally:
        client.close()


def _delete_topic(s: Settings, name: str) -> None:
    from lakehouse.services.kafka import admin

    client = admin(s)
    try:
        client.delete_topics([name])
    except Exception as exc:  # cleanup only: a leftover bench topic is harmless
        print(f"note: could not delete the bench topic {name}: {exc}", file=sys.stderr)
    finally:
        client.close()


def _redis(s: Settings) -> Any:
    from lakehouse.serving import connect

    return connect(s, role="admin", socket_timeout=30.0)  # bench:* keys


def _command(s: Settings, candidate: str, topic: str, out: str) -> list[str]:
    if candidate == "floor":
        return [sys.executable, "-m", "lakehouse.bench.engines", "floor", topic, out]
    if candidate == "flink":
        args = [
            f"bootstrap={s.bootstrap_servers}",
            f"topic={topic}",
            f"group=bench-engines-{topic}",
            f"redis_host={s.redis_address[0]}",
            f"redis_port={s.redis_address[1]}",
            "redis_user=admin",  # bench:* keys are no serving keys
            f"redis_password_file={s.secret_file('redis_admin')}",
            f"redis_ca_file={s.ca_file}",
            f"out={out}",
            "buffer_timeout_ms=5",
            "parallelism=1",
            *(f"kafka.{k}={v}" for k, v in java_config(s, "admin").items() if k != "bootstrap.servers"),
        ]
        return flink.java_command(s, "lakehouse.fastpath.PassThrough", args)
    if candidate == "spark-rtm":
        # Real-time mode holds one task per Kafka partition for the whole batch: enough cores for all.
        master = f"local[{s.kafka_partitions + 2}]"
        return streams.spark_submit(s, "bench_rtm", ["--topic", topic, "--out", out], master)
    raise BenchError(f"unknown candidate {candidate!r}; choose from {', '.join(CANDIDATES)}")


def _env(s: Settings, candidate: str) -> dict[str, str]:
    if candidate == "spark-rtm":
        return streams.submit_env(s)
    return child_env()


@dataclass
class _Run:
    """One candidate at one rate: the open-loop producer and the XREAD reader."""

    s: Settings
    topic: str
    out: str
    rate: float
    probe_every: int
    traffic: Traffic
    due: dict[str, float] = field(default_factory=dict)
    counted: set[str] = field(default_factory=set)
    seen: dict[str, float] = field(default_factory=dict)
    sent: int = 0
    behind_s: float = 0.0

    def record(self, p: Any, i: int, t: float, probe: str | None, counted: bool) -> None:
        _, key, value = self.traffic.record(i, t, self.topic)
        if probe is not None:
            body = json.loads(value)
            body["probe"] = probe
            value = json.dumps(body).encode()
            self.due[probe] = t
            if counted:
                self.counted.add(probe)
        produce(p, self.topic, value, key, 0.005)
        self.sent += 1

    def read(self, stop: threading.Event) -> None:
        client = _redis(self.s)
        last = "0-0"
        try:
            while not stop.is_set():
                reply = client.xread({self.out: last}, count=1000, block=200)
                now = time.time()
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        probe = fields.get("probe")
                        if probe is not None and probe not in self.seen:
                            self.seen[probe] = now
        finally:
            client.close()

    def wait_ready(self, proc: subprocess.Popen[bytes], log: Path) -> float:
        """Send a probe every 200 ms until one comes back: the candidate is consuming."""
        p = producer(self.s, **{"linger.ms": 1})
        t0 = time.time()
        i = 0
        while time.time() - t0 < READY_TIMEOUT_S:
            if proc.poll() is not None:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                raise BenchError(f"the candidate exited ({proc.returncode}) before it consumed anything:\n{tail}")
            self.record(p, i, time.time(), f"ready-{i}", counted=False)
            p.flush(5)
            i += 1
            deadline = time.time() + 0.2
            while time.time() < deadline:
                if any(k.startswith("ready-") for k in self.seen):
                    return time.time() - t0
                time.sleep(0.01)
        raise BenchError(f"no probe came back within {READY_TIMEOUT_S:.0f}s; see {log}")

    def load(self, warmup_s: float, duration_s: float) -> None:
        p = producer(self.s, **{"linger.ms": 1})
        total = int(self.rate * (warmup_s + duration_s))
        t0 = time.time() + 0.2
        counted_from = t0 + warmup_s

        def send(i: int, t: float) -> None:
            probe = f"p{i}" if i % self.probe_every == 0 else None
            self.record(p, 1_000_000 + i, t, probe, t >= counted_from)

        self.behind_s = open_loop(self.rate, total, t0, send, lambda: p.poll(0))
        p.flush(60)


def run_candidate(
    s: Settings,
    candidate: str,
    rate: float,
    warmup_s: float,
    duration_s: float,
    probe_every: int,
    traffic: Traffic,
    work: Path,
    log: Callable[[str], None],
) -> Result:
    stamp = f"{int(rate)}-{int(time.time())}"
    topic, out = _topic(candidate, stamp), f"bench:engines:{candidate}:{stamp}"
    _create_topic(s, topic)
    run = _Run(s, topic, out, rate, probe_every, traffic)
    stop = threading.Event()
    reader = threading.Thread(target=run.read, args=(stop,), daemon=True)
    reader.start()
    app_log = work / f"{candidate}-{stamp}.log"
    with app_log.open("wb") as f:
        proc = subprocess.Popen(
            _command(s, candidate, topic, out), stdout=f, stderr=subprocess.STDOUT, env=_env(s, candidate)
        )
    try:
        ready = run.wait_ready(proc, app_log)
        log(f"  {candidate}: consuming after {ready:.1f}s; {warmup_s:.0f}s warm-up, {duration_s:.0f}s at {rate:,.0f}/s")
        run.load(warmup_s, duration_s)
        deadline = time.time() + DRAIN_S
        while time.time() < deadline and not run.counted <= run.seen.keys():
            time.sleep(0.1)
        if proc.poll() is not None:
            raise BenchError(f"{candidate} exited ({proc.returncode}) during the load; see {app_log}")
    except BenchError as exc:
        return Result(candidate, rate, percentiles([], 0), run.sent, run.behind_s, 0.0, str(exc))
    finally:
        stop.set()
        reader.join(5)
        streams.stop_gracefully(proc, 60)
        _delete_topic(s, topic)
        client = _redis(s)
        client.delete(out)
        client.close()
    values = [run.seen[p] - run.due[p] for p in run.counted if p in run.seen]
    lost = sum(1 for p in run.counted if p not in run.seen)
    return Result(
        candidate, rate, percentiles(values, lost), run.sent, round(run.behind_s, 3), round(ready, 1), None, values
    )


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:,.0f}"


def table(results: list[Result]) -> str:
    floor = {r.rate: r for r in results if r.candidate == "floor" and r.error is None}
    lines = [
        f"{'rate/s':>8} {'candidate':<10} {'n':>6} {'lost':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'p99 vs floor':>13} {'behind s':>9}"
    ]
    for r in results:
        if r.error:
            lines.append(f"{r.rate:>8,.0f} {r.candidate:<10} failed: {r.error.splitlines()[0]}")
            continue
        lat = r.latency_s
        base = floor.get(r.rate)
        ratio = f"{lat.p99 / base.latency_s.p99:.1f}x" if base is not None and lat.p99 and base.latency_s.p99 else "-"
        lines.append(
            f"{r.rate:>8,.0f} {r.candidate:<10} {lat.count:>6} {lat.lost:>5} {_fmt_ms(lat.p50):>8} "
            f"{_fmt_ms(lat.p95):>8} {_fmt_ms(lat.p99):>8} {_fmt_ms(lat.max):>8} {ratio:>13} {r.producer_behind_s:>9.3f}"
        )
    return "\n".join(lines)


def chart(results: list[Result], path: Path) -> Path | None:
    """Latency distribution (CDF, log scale) per candidate and rate."""
    cdf_chart(
        [(f"{r.candidate} @ {r.rate:,.0f}/s", [x * 1000 for x in r.latencies], False) for r in results if not r.error],
        path,
        "Fast path engine study: Kafka -> engine -> Redis, open-loop load",
        "scheduled send -> readable in Redis (ms, log scale); dotted: the 100 ms target",
        target=100,
    )
    return path


def main(
    s: Settings,
    rates: list[float],
    candidates: list[str],
    warmup_s: float,
    duration_s: float,
    probe_every: int,
    out: Path,
    seed: int = 7,
    log: Callable[[str], None] = print,
) -> list[Result]:
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown:
        raise BenchError(f"unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(CANDIDATES)}")
    if "floor" not in candidates:
        candidates = ["floor", *candidates]  # the baseline is always measured in the same run
    out.mkdir(parents=True, exist_ok=True)
    work = out / "engines-work"
    work.mkdir(exist_ok=True)
    traffic = Traffic(seed, n_templates=20_000, topics=("payments",))
    results = []
    for rate in rates:
        for candidate in candidates:
            log(f"{candidate} at {rate:,.0f} payments/s")
            results.append(run_candidate(s, candidate, rate, warmup_s, duration_s, probe_every, traffic, work, log))
    report = {
        "bench": "engines",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "probe_every": probe_every,
        "results": [{k: v for k, v in asdict(r).items() if k != "latencies"} for r in results],
    }
    (out / "engines.json").write_text(json.dumps(report, indent=1) + "\n")
    chart(results, out / "engines.png")
    log(table(results))
    return results


# -- the floor candidate, run as its own process ------------------------------------------------
def floor(topic: str, stream: str) -> int:
    """Consume TOPIC from its end; XADD each probe to STREAM. Stops on SIGTERM."""
    import signal

    from confluent_kafka import Consumer

    from lakehouse.settings import get_settings

    s = get_settings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer = Consumer(
        {
            **librdkafka_config(s, "admin"),  # benchmark topics and groups: admin
            "group.id": f"bench-floor-{stream}",  # a group per run: never resume an earlier run's position
            "auto.offset.reset": "latest",
            "enable.auto.commit": True,
            "fetch.wait.max.ms": 5,
        }
    )
    consumer.subscribe([topic])
    r = _redis(s)
    marker = b'"probe"'
    try:
        while not stop.is_set():
            msg = consumer.poll(0.1)  # returns as soon as a record is there: no batching delay
            if msg is None or msg.error():
                continue
            value = msg.value()
            if value is not None and marker in value:
                r.xadd(stream, {"probe": json.loads(value)["probe"]})
    finally:
        consumer.close()
        r.close()
    return 0


if __name__ == "__main__":  # python -m lakehouse.bench.engines floor TOPIC STREAM
    if len(sys.argv) != 4 or sys.argv[1] != "floor":
        print("usage: python -m lakehouse.bench.engines floor TOPIC STREAM", file=sys.stderr)
        sys.exit(2)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(floor(sys.argv[2], sys.argv[3]))
