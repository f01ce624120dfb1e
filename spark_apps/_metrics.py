"""Prometheus metrics of a streaming app, pushed by the app itself (whoever launched it).

Every driver that runs queries (``main_for``, ``pipeline``) exports, per query, to the
stack's pushgateway under ``job="lakehouse_stream", app=<app>``:

=================================================  ==========  =====================================
``lakehouse_stream_input_rows_total``              counter     rows the query read
``lakehouse_stream_output_rows_total``             counter     rows its sink wrote
``lakehouse_stream_batches_total``                 counter     micro-batches that ran
``lakehouse_stream_batch_duration_seconds``        histogram   trigger-to-commit time of a batch
``lakehouse_stream_kafka_lag_records``             gauge       records behind Kafka's end offsets
``lakehouse_stream_delta_files_behind``            gauge       Delta source files not read yet
``lakehouse_stream_state_rows``                    gauge       rows in the query's state store
``lakehouse_stream_watermark_delay_seconds``       gauge       wall clock minus the event-time watermark
``lakehouse_stream_event_latency_seconds``         histogram   ``since="event_time"``: event to commit
                                                               (refine); ``since="kafka"``: broker
                                                               append to bronze commit (bronze)
``lakehouse_stream_rows_total``                    counter     ``kind=`` silver, quarantined, late,
                                                               duplicate, future (what refine sorted)
``lakehouse_stream_last_progress_timestamp_seconds`` gauge     last batch or idle heartbeat
``lakehouse_stream_heartbeat_timestamp_seconds``   gauge       the driver is alive (pushed every 10 s)
=================================================  ==========  =====================================

Counters start at 0 in each driver process; ``rate()`` and ``increase()`` handle the reset of a
restart. A driver that ends (stopped, finished, failed) deletes its group, so a stopped stream never
looks alive with its last values; a driver that is killed leaves a heartbeat that ages, which the
``LakehouseStreamDown`` alert watches.

Latencies are measured without an extra Spark job: the sink's own aggregation (refine's facts;
bronze's ``observe``) counts rows per fine age bucket relative to a reference instant, and the
export shifts them by the time from that instant to the commit. Each row lands in the first
Prometheus bucket that holds its fine bucket's upper edge plus the shift, so percentiles are never
reported lower than they were (at most one fine step, x1.25, higher).

A pushgateway that is down costs a warning a minute, never a batch: pushes run on their own thread.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from lakehouse.services import streams
from lakehouse.settings import Settings, SettingsError

if TYPE_CHECKING:
    from pyspark.sql import Column

PUSH_JOB = streams.METRICS_PUSH_JOB
disable_created_metrics()  # no `_created` series beside each counter: Prometheus' text format does not need them

#: Fine age buckets (upper edges, seconds) the sinks count rows in: 10 ms x 1.25^i, up to ~2 days.
FINE_EDGES_S: tuple[float, ...] = tuple(0.01 * 1.25**i for i in range(86))
#: The exported histogram's buckets (seconds).
LATENCY_BUCKETS_S: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400)
BATCH_BUCKETS_S: tuple[float, ...] = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
#: Facts a sink records (``record_batch``) exported as ``lakehouse_stream_rows_total{kind=...}``.
ROW_KINDS = {
    "silver_rows": "silver",
    "quarantined": "quarantined",
    "late_rows": "late",
    "late_copies": "duplicate",
    "future_event_times": "future",
}


# -- measuring, inside the sinks ------------------------------------------------------------
def age_bucket_aggs(ts: Column, ref_us: Column | int, prefix: str, where: Column | None = None) -> list[Column]:
    """Aggregations counting rows (where WHERE holds) per fine age bucket: ``<prefix>_<i>`` = rows
    with ``ref - ts <= FINE_EDGES_S[i]`` (cumulative), plus ``<prefix>_n`` and ``<prefix>_sum_us``."""
    from pyspark.sql import functions as F

    ref = F.lit(ref_us) if isinstance(ref_us, int) else ref_us
    age = ref - F.unix_micros(ts)
    keep = ts.isNotNull() if where is None else (where & ts.isNotNull())
    aggs = [F.count_if(keep & (age <= F.lit(int(e * 1e6)))).alias(f"{prefix}_{i}") for i, e in enumerate(FINE_EDGES_S)]
    aggs += [F.count_if(keep).alias(f"{prefix}_n"), F.sum(F.when(keep, age)).alias(f"{prefix}_sum_us")]
    return aggs


@dataclass(frozen=True)
class AgeSample:
    """Rows per cumulative fine age bucket at a reference instant, and their total age."""

    cumulative: tuple[int, ...]
    count: int
    sum_s: float

    @classmethod
    def from_row(cls, row: Mapping[str, Any], prefix: str) -> AgeSample:
        n = int(row.get(f"{prefix}_n") or 0)
        cum = tuple(int(row.get(f"{prefix}_{i}") or 0) for i in range(len(FINE_EDGES_S)))
        return cls(cum, n, float(row.get(f"{prefix}_sum_us") or 0) / 1e6)

    def shifted(self, shift_s: float, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> tuple[list[int], float]:
        """Cumulative counts per exported bucket and the sum, for latencies ``age + shift_s``.

        A row counts under bucket B only if its fine bucket's upper edge plus the shift fits in B.
        """
        out = []
        for b in buckets:
            j = bisect.bisect_right(FINE_EDGES_S, b - shift_s) - 1  # largest fine edge <= b - shift
            out.append(self.cumulative[j] if j >= 0 else 0)
        return out, self.sum_s + self.count * max(0.0, shift_s)


# What the sinks measured, by (query, batch id): picked up with the batch's progress.
_LATENCY: dict[tuple[str, int], dict[str, tuple[AgeSample, float]]] = {}


def record_latency(query: str, batch_id: int, since: str, sample: AgeSample, ref_s: float) -> None:
    """SAMPLE (ages at REF_S, epoch seconds) of QUERY's batch; the commit is now."""
    if sample.count:
        _LATENCY.setdefault((query, batch_id), {})[since] = (sample, time.time() - ref_s)


def take_latency(query: str, batch_id: int) -> dict[str, tuple[AgeSample, float]]:
    return _LATENCY.pop((query, batch_id), {})


#: Name of the observation bronze attaches to its stream (``observe``), read back from the progress.
KAFKA_OBSERVATION = "kafka_latency"


def observed_latency(progress: Mapping[str, Any]) -> dict[str, tuple[AgeSample, float]]:
    """The Kafka-append ages bronze observed in this batch, shifted by the batch's run time.

    The ages are relative to the batch's ``current_timestamp()``, fixed when the batch was
    planned just after its trigger fired; the whole trigger-to-commit time is added, which
    can only overstate.
    """
    observed = (progress.get("observedMetrics") or {}).get(KAFKA_OBSERVATION)
    if not isinstance(observed, Mapping) or progress.get("idle"):
        return {}
    sample = AgeSample.from_row(observed, "k")
    if not sample.count:
        return {}
    duration_ms = (progress.get("durationMs") or {}).get("triggerExecution") or 0
    return {"kafka": (sample, float(duration_ms) / 1000)}


# -- exporting --------------------------------------------------------------------------------
@dataclass
class _Hist:
    buckets: list[int]
    count: int = 0
    sum_s: float = 0.0


@dataclass(eq=False)  # registries key collectors by identity
class _LatencyCollector(Collector):
    """``lakehouse_stream_event_latency_seconds`` from bulk bucket counts (prometheus_client's
    Histogram observes one value at a time)."""

    hists: dict[tuple[str, str, str], _Hist] = field(default_factory=dict)

    def add(self, labels: tuple[str, str, str], cumulative: list[int], count: int, sum_s: float) -> None:
        h = self.hists.setdefault(labels, _Hist([0] * len(LATENCY_BUCKETS_S)))
        h.buckets = [a + b for a, b in zip(h.buckets, cumulative, strict=True)]
        h.count += count
        h.sum_s += sum_s

    def collect(self) -> Iterator[HistogramMetricFamily]:
        fam = HistogramMetricFamily(
            "lakehouse_stream_event_latency_seconds",
            "Time from an event (since=event_time) or its Kafka append (since=kafka) to the commit of its batch",
            labels=["app", "query", "since"],
        )
        for labels, h in sorted(self.hists.items()):
            bounds = [(_fmt(b), c) for b, c in zip(LATENCY_BUCKETS_S, h.buckets, strict=True)]
            fam.add_metric(list(labels), [*bounds, ("+Inf", h.count)], h.sum_s)
        yield fam


def _fmt(b: float) -> str:
    return str(float(b))


class StreamMetrics:
    """The registry one driver pushes, fed with every batch's progress (see ``ProgressReporter``)."""

    PUSH_EVERY_S = 10.0  # heartbeat while nothing happens; a batch pushes within a second

    def __init__(self, app: str, s: Settings, log: Any = print) -> None:
        self.app, self.s, self.log = app, s, log
        r = self.registry = CollectorRegistry()
        q = ["app", "query"]
        self.input_rows = Counter("lakehouse_stream_input_rows", "Rows the query read", q, registry=r)
        self.output_rows = Counter("lakehouse_stream_output_rows", "Rows the query's sink wrote", q, registry=r)
        self.batches = Counter("lakehouse_stream_batches", "Micro-batches that ran", q, registry=r)
        self.rows = Counter(
            "lakehouse_stream_rows", "Rows refine sorted, by kind (silver, quarantined, ...)", [*q, "kind"], registry=r
        )
        self.batch_duration = Histogram(
            "lakehouse_stream_batch_duration_seconds",
            "Trigger-to-commit time of a micro-batch",
            q,
            buckets=BATCH_BUCKETS_S,
            registry=r,
        )
        self.kafka_lag = Gauge(
            "lakehouse_stream_kafka_lag_records", "Records behind Kafka's end offsets", q, registry=r
        )
        self.files_behind = Gauge(
            "lakehouse_stream_delta_files_behind", "Delta source files not read yet", q, registry=r
        )
        self.state_rows = Gauge("lakehouse_stream_state_rows", "Rows in the query's state store", q, registry=r)
        self.watermark_delay = Gauge(
            "lakehouse_stream_watermark_delay_seconds", "Wall clock minus the event-time watermark", q, registry=r
        )
        self.last_progress = Gauge(
            "lakehouse_stream_last_progress_timestamp_seconds",
            "Last micro-batch or idle heartbeat of the query",
            q,
            registry=r,
        )
        self.heartbeat = Gauge(
            "lakehouse_stream_heartbeat_timestamp_seconds",
            "The driver is alive (set on every push)",
            ["app"],
            registry=r,
        )
        self.started = Gauge("lakehouse_stream_start_timestamp_seconds", "When the driver started", ["app"], registry=r)
        self.started.labels(app).set_to_current_time()
        self.latency = _LatencyCollector()
        r.register(self.latency)
        self._offsets: dict[str, dict[str, int]] = {}  # topic -> partition -> next offset (newest batch)
        self._offsets_sent: dict[str, dict[str, int]] = {}
        if "bronze" in streams.METRICS_APPS.get(app, ()):
            # Where the checkpoints start: committed even if this run reads nothing new, so the app's group
            # follows the checkpoint that another app reading it (bronze alone, pipeline) moved meanwhile.
            from lakehouse.services.topics import checkpoint_positions

            for topic, parts in checkpoint_positions(s, "bronze").items():
                self._offsets[topic] = {str(p): o for p, o in parts.items()}
        self._alive_at = time.time()  # the driver's poll loop last ran (``alive``)
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._warned = 0.0
        self._thread = threading.Thread(target=self._pusher, name=f"metrics-{app}", daemon=True)
        self._thread.start()

    # -- feeding -------------------------------------------------------------------------
    def batch(self, summary: Mapping[str, Any], latency: Mapping[str, tuple[AgeSample, float]] | None = None) -> None:
        """One progress summary (``progress_summary`` plus the sink's facts)."""
        query = str(summary.get("query") or "")
        if not query:
            return
        labels = (self.app, query)
        with self._lock:
            if not summary.get("idle"):
                self.batches.labels(*labels).inc()
                self.input_rows.labels(*labels).inc(_num(summary.get("rows_in")))
                self.output_rows.labels(*labels).inc(_num(summary.get("rows_out")))
                duration = summary.get("batch_duration_ms")
                if isinstance(duration, int | float):
                    self.batch_duration.labels(*labels).observe(duration / 1000)
                for fact, kind in ROW_KINDS.items():
                    if fact in summary:
                        self.rows.labels(*labels, kind).inc(_num(summary.get(fact)))
            lag = summary.get("kafka_lag")
            if isinstance(lag, int):
                self.kafka_lag.labels(*labels).set(lag)
            self.files_behind.labels(*labels).set(_num(summary.get("delta_files_behind")))
            if "state_rows" in summary:
                self.state_rows.labels(*labels).set(_num(summary["state_rows"]))
            wm = _epoch_s(summary.get("watermark"))
            if wm is not None:
                self.watermark_delay.labels(*labels).set(max(0.0, time.time() - wm))
            self.last_progress.labels(*labels).set_to_current_time()
            for since, (sample, shift_s) in (latency or {}).items():
                cumulative, sum_s = sample.shifted(shift_s)
                self.latency.add((self.app, query, since), cumulative, sample.count, sum_s)
        self._dirty.set()

    def alive(self) -> None:
        """The driver's main loop is running: what the heartbeat reports (not the push thread's own
        liveness, which outlives a driver stuck on a dead JVM)."""
        self._alive_at = time.time()

    def kafka_progress(self, progress: Mapping[str, Any]) -> None:
        """Remember where a batch's Kafka sources ended: committed to the app's consumer group (off the
        batch's path) so that outside lag tools see the stream. Spark resumes from its checkpoint only."""
        with self._lock:
            for src in progress.get("sources") or []:
                end = src.get("endOffset") if isinstance(src, Mapping) else None
                if isinstance(end, str):
                    try:
                        end = json.loads(end)
                    except ValueError:
                        continue
                if isinstance(end, Mapping) and str(src.get("description", "")).startswith("KafkaV2"):
                    for topic, parts in end.items():
                        if isinstance(parts, Mapping):
                            self._offsets.setdefault(str(topic), {}).update({str(p): int(o) for p, o in parts.items()})

    def commit_offsets(self) -> None:
        with self._lock:
            if self._offsets == self._offsets_sent:
                return
            offsets = {t: dict(p) for t, p in self._offsets.items()}
        from lakehouse.services.topics import commit_group_offsets, spark_group

        try:
            commit_group_offsets(self.s, spark_group(self.app), offsets)
            self._offsets_sent = offsets
        except Exception as e:
            self._warn(f"warning: Kafka progress not committed to group {spark_group(self.app)}: {e}")

    # -- pushing -------------------------------------------------------------------------
    def _pusher(self) -> None:
        while not self._closing.is_set():
            self._dirty.wait(self.PUSH_EVERY_S)
            if self._closing.is_set():
                return
            self._dirty.clear()
            self.push()
            self.commit_offsets()
            time.sleep(1.0)  # at most one push a second

    def _warn(self, message: str) -> None:
        if time.monotonic() - self._warned > 60:
            self._warned = time.monotonic()
            self.log(message)

    def push(self) -> bool:
        import requests

        with self._lock:
            self.heartbeat.labels(self.app).set(self._alive_at)
            from prometheus_client.exposition import generate_latest

            body = generate_latest(self.registry)
        try:
            resp = requests.put(
                self._group_url(), data=body, timeout=5, auth=self.s.http_auth("pusher"), verify=str(self.s.ca_file)
            )
            resp.raise_for_status()
            return True
        except (requests.RequestException, OSError, SettingsError) as e:  # never fatal to a stream
            self._warn(f"warning: metrics not pushed to {self.s.pushgateway_url}: {e}")
            return False

    def _group_url(self) -> str:
        return f"{self.s.pushgateway_url}/metrics/job/{PUSH_JOB}/app/{self.app}"

    def close(self, forget: bool = True) -> None:
        """The driver is ending: stop pushing; FORGET (a clean end) deletes its group, so a stopped stream
        never looks alive with its last values. A failed driver keeps them: its heartbeat ages and
        ``LakehouseStreamDown`` says so, until a new driver of the app replaces them."""
        import requests

        self._closing.set()
        self._dirty.set()
        self._thread.join(timeout=10)
        if not forget:
            return
        self.commit_offsets()  # where the last batch ended
        try:
            requests.delete(self._group_url(), timeout=5, auth=self.s.http_auth("pusher"), verify=str(self.s.ca_file))
        except (requests.RequestException, OSError, SettingsError) as e:
            self.log(f"warning: the metrics of {self.app} stay in the pushgateway: {e}")


@contextmanager
def exported(app: str, s: Settings, log: Any = print) -> Iterator[StreamMetrics]:
    """StreamMetrics of APP while the block runs; forgotten if it ends cleanly, kept (ageing) if it raises."""
    metrics = StreamMetrics(app, s, log)
    try:
        yield metrics
    except BaseException:
        metrics.close(forget=False)
        raise
    metrics.close(forget=True)


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else 0.0


def _epoch_s(iso: object) -> float | None:
    """Spark's ISO-8601 UTC timestamp (``2026-12-02T10:00:00.000Z``) as epoch seconds."""
    if not isinstance(iso, str) or not iso:
        return None
    from datetime import datetime

    try:
        value = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    return None if math.isnan(value) else value
