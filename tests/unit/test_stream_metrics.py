"""The metrics a streaming driver pushes: names, types, latency buckets, the push and the goodbye."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.settings import Settings
from spark_apps._metrics import (
    FINE_EDGES_S,
    LATENCY_BUCKETS_S,
    AgeSample,
    StreamMetrics,
    age_bucket_aggs,
    exported,
    observed_latency,
)


def _samples(m: StreamMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(generate_latest(m.registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def metrics(tmp_path: Path) -> Iterator[StreamMetrics]:
    # A pushgateway nobody listens on: pushes fail (and warn), the registry still works.
    s = Settings(state_dir=tmp_path, pushgateway_port=1)
    logged: list[str] = []
    m = StreamMetrics("refine", s, logged.append)
    yield m
    m._closing.set()
    m._dirty.set()


def test_counters_accumulate_over_batches_and_idle_heartbeats_count_nothing(metrics: StreamMetrics) -> None:
    for rows_in, rows_out, ms in ((100, 90, 1500), (50, 50, 500)):
        metrics.batch(
            {
                "query": "refine_payments",
                "rows_in": rows_in,
                "rows_out": rows_out,
                "batch_duration_ms": ms,
                "quarantined": rows_in - rows_out,
                "silver_rows": rows_out,
                "state_rows": 7,
            }
        )
    metrics.batch({"query": "refine_payments", "idle": True, "rows_in": 0, "rows_out": 0})
    got = _samples(metrics)
    q = (("app", "refine"), ("query", "refine_payments"))
    assert got[("lakehouse_stream_input_rows_total", q)] == 150
    assert got[("lakehouse_stream_output_rows_total", q)] == 140
    assert got[("lakehouse_stream_batches_total", q)] == 2
    assert got[("lakehouse_stream_rows_total", (*q[:1], ("kind", "quarantined"), q[1]))] == 10
    assert got[("lakehouse_stream_rows_total", (*q[:1], ("kind", "silver"), q[1]))] == 140
    assert got[("lakehouse_stream_batch_duration_seconds_count", q)] == 2
    assert got[("lakehouse_stream_batch_duration_seconds_sum", q)] == pytest.approx(2.0)
    assert got[("lakehouse_stream_batch_duration_seconds_bucket", (*q[:1], ("le", "1.0"), q[1]))] == 1
    assert got[("lakehouse_stream_state_rows", q)] == 7


def test_kafka_lag_and_watermark_delay_are_gauges_of_the_latest_batch(metrics: StreamMetrics) -> None:
    wm = (datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    metrics.batch({"query": "bronze_payments", "rows_in": 5, "kafka_lag": 1000})
    metrics.batch({"query": "bronze_payments", "rows_in": 5, "kafka_lag": 40, "watermark": wm})
    got = _samples(metrics)
    q = (("app", "refine"), ("query", "bronze_payments"))
    assert got[("lakehouse_stream_kafka_lag_records", q)] == 40
    assert 175 <= got[("lakehouse_stream_watermark_delay_seconds", q)] <= 200


def test_a_shifted_sample_never_reports_a_row_faster_than_it_was() -> None:
    # 3 rows aged 0.3 s, 4 s and 100 s at the reference; the commit came 2 s later.
    ages = [0.3, 4.0, 100.0]
    cumulative = tuple(sum(1 for a in ages if a <= e) for e in FINE_EDGES_S)
    sample = AgeSample(cumulative, 3, sum(ages))
    buckets, total = sample.shifted(2.0)
    true = [a + 2.0 for a in ages]
    for b, c in zip(LATENCY_BUCKETS_S, buckets, strict=True):
        assert c <= sum(1 for t in true if t <= b), f"bucket {b} claims {c} rows"
        # ... and at most one fine step (x1.25) slower than the truth
        assert c >= sum(1 for t in true if t * 1.25 + 0.01 <= b), f"bucket {b} lost rows"
    assert total == pytest.approx(sum(true))


def test_event_latency_is_a_prometheus_histogram(metrics: StreamMetrics) -> None:
    cumulative = tuple(1 if e >= 0.3 else 0 for e in FINE_EDGES_S)
    metrics.batch({"query": "refine_payments", "rows_in": 1}, {"event_time": (AgeSample(cumulative, 1, 0.3), 1.0)})
    got = _samples(metrics)
    base = (("app", "refine"), ("query", "refine_payments"), ("since", "event_time"))
    assert got[("lakehouse_stream_event_latency_seconds_count", base)] == 1
    assert got[("lakehouse_stream_event_latency_seconds_sum", base)] == pytest.approx(1.3)
    le = {
        b: got[("lakehouse_stream_event_latency_seconds_bucket", (*base[:1], ("le", str(float(b))), *base[1:]))]
        for b in LATENCY_BUCKETS_S
    }
    assert (le[1], le[2], le[86400]) == (0, 1, 1)


def test_age_buckets_are_counted_by_spark_in_one_aggregation(spark: SparkSession) -> None:
    ref = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    ages = [0.05, 0.05, 1.0, 30.0, 7200.0]
    df = spark.createDataFrame(
        [(ref - timedelta(seconds=a), True) for a in ages] + [(None, True), (ref, False)], "ts timestamp, ok boolean"
    )
    row = df.agg(*age_bucket_aggs(F.col("ts"), int(ref.timestamp() * 1e6), "e", where=F.col("ok"))).first()
    assert row is not None
    sample = AgeSample.from_row(row.asDict(), "e")
    assert sample.count == 5  # NULL times and rows outside WHERE are not counted
    assert sample.sum_s == pytest.approx(sum(ages))
    for i, e in enumerate(FINE_EDGES_S):
        assert sample.cumulative[i] == sum(1 for a in ages if a <= e + 1e-6), e


def test_bronze_observation_is_read_back_from_the_progress() -> None:
    row = {f"k_{i}": (1 if e >= 2 else 0) for i, e in enumerate(FINE_EDGES_S)} | {"k_n": 1, "k_sum_us": 2_000_000}
    progress = {"observedMetrics": {"kafka_latency": row}, "durationMs": {"triggerExecution": 3000}}
    (sample, shift) = observed_latency(progress)["kafka"]
    assert (sample.count, shift) == (1, 3.0)
    assert observed_latency({"observedMetrics": {}}) == {}


class _Gateway(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, bytes]]] = []

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    do_PUT = do_DELETE = _record

    def log_message(self, *args: object) -> None:
        pass


def test_the_driver_pushes_its_group_and_deletes_it_when_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    s = Settings(state_dir=tmp_path)
    monkeypatch.setattr(Settings, "http_auth", lambda self, user="admin": (user, "not-a-secret"))
    monkeypatch.setattr(
        StreamMetrics, "_group_url", lambda self: f"http://127.0.0.1:{server.server_port}/metrics/job/x/app/{self.app}"
    )
    try:
        m = StreamMetrics("bronze", s, print)
        m.batch({"query": "bronze_iot", "rows_in": 3})
        assert m.push()
        m.close()
    finally:
        server.shutdown()
    methods = [c for c, _, _ in _Gateway.seen]
    assert methods[0] == "PUT", methods
    assert methods[-1] == "DELETE", methods
    assert _Gateway.seen[0][1] == "/metrics/job/x/app/bronze"
    assert b'lakehouse_stream_input_rows_total{app="bronze",query="bronze_iot"} 3.0' in _Gateway.seen[0][2]
    assert b"lakehouse_stream_heartbeat_timestamp_seconds" in _Gateway.seen[0][2]


def test_a_failed_driver_keeps_its_metrics_so_its_heartbeat_ages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deleted: list[str] = []
    monkeypatch.setattr(StreamMetrics, "push", lambda self: True)
    monkeypatch.setattr(StreamMetrics, "commit_offsets", lambda self: None)
    monkeypatch.setattr("requests.delete", lambda url, **kw: deleted.append(url))
    s = Settings(state_dir=tmp_path)
    monkeypatch.setattr(Settings, "http_auth", lambda self, user="admin": (user, "not-a-secret"))
    with pytest.raises(RuntimeError), exported("refine", s, print):
        raise RuntimeError("the JVM died")
    assert deleted == []  # LakehouseStreamDown will see the old heartbeat
    with exported("refine", s, print):
        pass
    assert deleted == [f"{s.pushgateway_url}/metrics/job/lakehouse_stream/app/refine"]


def test_a_run_that_reads_nothing_new_still_commits_where_the_checkpoint_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bronze alone moved the shared checkpoint; the pipeline's next run, with nothing new to read, must
    still bring its own group there (else `kafka lag` shows a lag the stream does not have)."""
    import json as _json

    s = Settings(state_dir=tmp_path)
    cp = s.checkpoint_dir / "bronze" / "iot"
    (cp / "offsets").mkdir(parents=True)
    (cp / "commits").mkdir()
    (cp / "offsets" / "4").write_text('v1\n{"batchWatermarkMs":0}\n' + _json.dumps({"iot": {"0": 17, "1": 5}}))
    (cp / "commits" / "4").write_text('v1\n{"nextBatchWatermarkMs":0}')
    committed: list[tuple[str, object]] = []
    monkeypatch.setattr(
        "lakehouse.services.topics.commit_group_offsets", lambda s, group, offsets: committed.append((group, offsets))
    )
    StreamMetrics("pipeline", s, print).commit_offsets()
    assert committed == [("spark-kafka-lakehouse-pipeline", {"iot": {"0": 17, "1": 5}})]
    committed.clear()
    StreamMetrics("refine", s, print).commit_offsets()  # reads no Kafka: commits nothing
    assert committed == []
