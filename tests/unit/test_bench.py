"""The benchmarks' arithmetic: progress lines, steady-state rates, percentiles, open-loop schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakehouse.bench.latency import Traffic, percentiles
from lakehouse.bench.load import Batch, parse_progress, rates
from lakehouse.settings import Settings


def line(query: str, batch: int, rows: int, start: str, ms: int, **extra: object) -> str:
    p = {"query": query, "batch_id": batch, "rows_in": rows, "timestamp": start, "batch_duration_ms": ms, **extra}
    return "progress " + json.dumps(p)


def test_progress_lines_become_batches_and_idle_heartbeats_are_skipped() -> None:
    lines = [
        "some log line",
        line("bronze_iot", 0, 100, "2026-11-30T10:00:00.000Z", 5000),
        line("bronze_iot", 1, 0, "2026-11-30T10:00:05.000Z", 10, idle=True),
        line("refine_iot", 0, 100, "2026-11-30T10:00:06.500Z", 1500),
    ]
    got = parse_progress(lines)
    assert [(b.query, b.batch_id, b.rows, b.duration_s) for b in got] == [
        ("bronze_iot", 0, 100, 5.0),
        ("refine_iot", 0, 100, 1.5),
    ]
    assert got[1].end - got[0].start == pytest.approx(8.0)


def test_steady_rate_excludes_each_querys_first_batch_and_spans_the_parallel_queries() -> None:
    t = 1_000.0
    batches = [
        Batch("bronze_a", 0, 1000, t, 10.0),  # first batches: warm-up, excluded
        Batch("bronze_b", 0, 500, t, 12.0),
        Batch("bronze_a", 1, 2000, t + 10, 2.0),
        Batch("bronze_b", 1, 1000, t + 12, 1.0),  # side by side with a's second batch
        Batch("bronze_a", 2, 0, t + 12, 0.1),  # empty: ignored
        Batch("refine_a", 0, 3000, t + 20, 5.0),
    ]
    r = rates(batches, lambda b: b.query.startswith("bronze_"))
    assert (r.rows, r.batches, r.steady_rows) == (4500, 4, 3000)
    assert r.first_batch_s == 12.0
    assert r.steady_s == pytest.approx(3.0)  # from 1010 to 1013
    assert r.steady_rate == pytest.approx(1000.0)
    assert rates(batches, lambda b: b.query == "nothing").steady_rate == 0.0


def test_percentiles_are_nearest_rank_and_count_lost_probes() -> None:
    p = percentiles([float(x) for x in range(1, 101)], lost=3)
    assert (p.count, p.lost, p.p50, p.p95, p.p99, p.max) == (100, 3, 50.0, 95.0, 99.0, 100.0)
    assert percentiles([], lost=2).p99 is None


def test_traffic_records_are_valid_json_with_the_scheduled_time_and_a_unique_id() -> None:
    traffic = Traffic(seed=3, n_templates=50)
    seen = set()
    for i in range(120):
        topic, _key, value = traffic.record(i, 1_796_040_000.25, "r1")
        body = json.loads(value)
        assert topic in ("payments", "clickstream", "iot")
        assert body["event_time"] == "2026-11-30T12:00:00.250Z"
        seen.add(body["event_id"])
    assert len(seen) == 120


def test_jvm_bench_alternates_the_option_sets_on_the_same_records_and_reports_ratios_to_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakehouse.bench import jvm
    from lakehouse.bench.apps import AppRun
    from lakehouse.bench.load import Sent

    calls: list[tuple[str, str, str]] = []
    seconds = {"": 100.0, "-XX:A": 80.0, "-XX:B": 120.0}

    def fake_run_app(s: Settings, name: str, args: list[str], log: Path) -> AppRun:
        calls.append((s.spark_driver_java_options, str(s.lake_dir), s.kafka_starting_offsets))
        return AppRun(name, seconds[s.spark_driver_java_options], [], log)

    monkeypatch.setattr(jvm, "run_app", fake_run_app)
    monkeypatch.setattr(jvm, "end_offsets_json", lambda s: '{"payments":{"0":7}}')
    monkeypatch.setattr(jvm, "send_run", lambda s, run: Sent(records=len(run.records), seconds=1.0, failed=0))
    s = Settings(state_dir=tmp_path / "state")
    sets = {"default": "", "a": "-XX:A", "b": "-XX:B"}
    results = jvm.main(s, 120, 2, 1, sets, tmp_path / "out", log=lambda _: None)

    assert [c[0] for c in calls] == ["", "-XX:A", "-XX:B"] * 2  # alternating, rounds in order
    assert len({c[1] for c in calls}) == 6, "each run gets a fresh lake"
    assert {c[2] for c in calls} == {'{"payments":{"0":7}}'}, "every run reads the records sent before it"
    assert [(r.name, r.median_s, r.ratio) for r in results] == [
        ("default", 100.0, 1.0),
        ("a", 80.0, 0.8),
        ("b", 120.0, 1.2),
    ]
    saved = json.loads((tmp_path / "out" / "jvm.json").read_text())
    assert saved["rounds"] == 2
    assert [r["ratio"] for r in saved["results"]] == [1.0, 0.8, 1.2]
    assert "0.80x" in jvm.table(results)


def test_engine_candidates_get_no_secret_on_their_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.bench import engines
    from lakehouse.services import flink

    monkeypatch.setattr(flink, "ensure_jar", lambda s: tmp_path / "lakehouse-fastpath-x.jar")
    s = Settings(pii_hmac_key="a-pii-key-of-a-secret-manager-0123456789")  # type: ignore[arg-type]
    # The real state dir: spark-submit's jars come from `make setup`, and so do the secrets.
    secrets = [s.secret(name).get_secret_value() for name in ("redis_admin", "redis_writer", "pii_hmac_key")]
    for candidate in ("floor", "flink", "spark-rtm"):
        cmd = engines._command(s, candidate, "bench.engines.t", "bench:engines:out")
        assert not any(secret in part for part in cmd for secret in secrets), candidate
    assert f"redis_password_file={s.secret_file('redis_admin')}" in engines._command(s, "flink", "t", "out")
    assert not set(engines._env(s, "flink").values()) & set(secrets)
    flink_cmd = engines._command(s, "flink", "bench.engines.t", "bench:engines:out")
    assert "lakehouse.fastpath.PassThrough" in flink_cmd
    assert "--add-opens=java.base/java.util=ALL-UNNAMED" in flink_cmd  # Flink on Java 17
    assert f"{s.jvm_dir}/flink/*:{tmp_path / 'lakehouse-fastpath-x.jar'}" in flink_cmd
    with pytest.raises(engines.BenchError, match="unknown candidate 'pyflink'"):
        engines._command(s, "pyflink", "t", "o")


def test_engine_table_reports_each_candidates_p99_as_a_ratio_to_the_floor_of_the_same_rate() -> None:
    from lakehouse.bench import engines
    from lakehouse.bench.latency import percentiles

    floor = engines.Result("floor", 5000.0, percentiles([0.002] * 98 + [0.004, 0.010], 0), 100, 0.0, 1.0)
    fl = engines.Result("flink", 5000.0, percentiles([0.010] * 98 + [0.020, 0.050], 1), 100, 0.0, 9.0)
    bad = engines.Result("spark-rtm", 5000.0, percentiles([], 0), 0, 0.0, 0.0, "exited (1)\nstack")
    lines = engines.table([floor, fl, bad]).splitlines()
    assert lines[1].split()[:2] == ["5,000", "floor"]
    assert lines[1].split()[-2] == "1.0x"
    assert lines[2].split()[3] == "1"  # one lost probe
    assert lines[2].split()[-2] == "5.0x"  # 20 ms against the floor's 4 ms
    assert lines[3].endswith("failed: exited (1)")


def test_fast_path_payments_are_schema_valid_and_spread_users_so_few_trip_velocity() -> None:
    """The fast path bench's payments: valid for the contract, each with its own id and the scheduled
    time, and a user pays about once per USER_SPAN_S whatever the rate (no accidental velocity alerts)."""
    import jsonschema

    from lakehouse.bench.fast import Payments
    from lakehouse.contracts import schema

    rate = 5000.0
    traffic = Payments(rate, n_templates=200)
    check = jsonschema.Draft202012Validator(schema("payments"))
    users: dict[str, list[int]] = {}
    for i in range(int(rate * 10)):
        topic, key, value = traffic.record(i, 1_796_040_000.25, "r1")
        body = json.loads(value)
        assert topic == "payments"
        assert key == body["user_id"].encode()
        if i < 500:
            check.validate(body)
            assert body["event_id"] == f"r1-{i}"
            assert body["event_time"] == "2026-11-30T12:00:00.250Z"
        users.setdefault(body["user_id"], []).append(i)
    assert len(users) == int(rate * 10)  # 10 s at 5,000/s: nobody paid twice (the span is 120 s)
    assert traffic.users == int(rate * Payments.USER_SPAN_S)


def test_fast_path_table_reports_p99_as_a_ratio_to_the_floor_and_whether_the_pipeline_ran() -> None:
    from lakehouse.bench import fast

    floor = percentiles([0.005] * 98 + [0.008, 0.010], 0)
    slow = percentiles([0.040] * 98 + [0.050, 0.100], 2)
    rows = [
        fast.Result(5000.0, slow, floor, 0.1, 1000, 900.0),
        fast.Result(5000.0, slow, floor, 0.1, 1000, 800.0, beside=False),
    ]
    lines = fast.table(rows).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert cells[0][:3] == ["5,000", "yes", "fast path"]
    assert cells[0][8] == "2"
    assert cells[0][9] == "6.2x"
    assert cells[1][2:3] == ["floor"]
    assert cells[1][9] == "1.0x"
    assert cells[2][1] == "no"


def test_fast_path_timeline_is_in_due_order_and_both_charts_are_drawn(tmp_path: Path) -> None:
    from lakehouse.bench import fast

    run = fast._Run(Settings(state_dir=tmp_path), 5000.0, "x", "s", None)  # type: ignore[arg-type]
    run.due = {"a": 10.0, "b": 10.1, "c": 10.2, "early": 5.0}
    run.counted = {"c", "a", "b"}  # a set: no order of its own; "early" fell in the warm-up
    seen = {"a": 10.5, "c": 10.25, "early": 5.1}  # b never arrived
    assert fast._timeline(run, seen) == [(0.0, 0.5), (0.2, 0.05)]
    floor = percentiles([0.005] * 10, 0)
    r = fast.Result(5000.0, floor, floor, 0.1, 1000, 900.0, {"fast path": [0.5], "floor": [0.005]})
    r.timeline = {"fast path": [(0.0, 0.5), (0.2, 0.05)], "floor": [(0.0, 0.005)]}
    fast.chart([r], tmp_path / "latency-fast.png")
    assert (tmp_path / "latency-fast.png").stat().st_size > 10_000
    assert (tmp_path / "latency-fast-timeline.png").stat().st_size > 10_000
