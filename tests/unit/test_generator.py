"""The event generator: reproducible, contract-valid, and its ground truth tells the truth."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from lakehouse.cli.generate import generate as generate_command
from lakehouse.contracts import NORMAL_RANGES, schema, topic
from lakehouse.generator import (
    FRAUD_PATTERNS,
    INVALID_KINDS,
    GeneratedRun,
    GeneratorConfig,
    GeneratorError,
    ProduceError,
    Record,
    default_partition,
    generate,
    load_ground_truth,
    merge_ground_truths,
    produce,
    write_ground_truth,
)

START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")

FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    """RFC 3339 date-time (jsonschema only checks it with the optional rfc3339-validator, not installed here)."""
    if not isinstance(value, str):
        return True
    if not RFC3339.match(value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return True


VALIDATORS = {
    t: jsonschema.Draft202012Validator(schema(t), format_checker=FORMATS) for t in ("payments", "clickstream", "iot")
}


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def contract_errors(r: Record, now: datetime) -> list[str]:
    """Why a record is invalid under the contract (§1): schema errors, or an event_time > 1 day in the future."""
    try:
        r.value.decode("utf-8")
    except UnicodeDecodeError:
        return ["not utf-8"]
    try:
        value = json.loads(r.value)
    except ValueError:
        return ["not json"]
    except RecursionError:  # nested past Python's limit as past Jackson's
        return ["too deep"]
    if not isinstance(value, dict):
        return ["not an object"]
    errors = [e.message for e in VALIDATORS[r.topic].iter_errors(value)]
    if not errors and parse(value["event_time"]) > now + timedelta(days=1):
        errors.append("event_time in the future")
    return errors


FULL = GeneratorConfig(  # explicit numbers: the tests below count them
    seed=7,
    count=3000,
    start_time=START,
    fraud_card_testing=2,
    fraud_velocity=2,
    fraud_amount_spike=2,
    fraud_impossible_travel=2,
    anomalies=12,
    duplicates=40,
    out_of_order=0.1,
    late=15,
    invalid=36,
)


@pytest.fixture(scope="module")
def full() -> GeneratedRun:
    return generate(FULL)


def values(r: Record) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(r.value)
    return parsed


# --------------------------------------------------------------------------- determinism


def test_same_config_gives_byte_identical_output(full: GeneratedRun) -> None:
    again = generate(GeneratorConfig(**{**FULL.__dict__}))
    assert again.records == full.records
    assert json.dumps(again.truth.to_json()) == json.dumps(full.truth.to_json())
    other = generate(GeneratorConfig(**{**FULL.__dict__, "seed": 8}))
    assert [r.value for r in other.records] != [r.value for r in full.records]


def test_event_ids_are_seeded_uuid4(full: GeneratedRun) -> None:
    ids = [r.event_id for r in full.records if r.kind in ("valid", "late")]
    assert len(ids) == len(set(ids))
    for eid in ids[:200]:
        assert eid is not None
        assert uuid.UUID(eid).version == 4


def test_throttle_does_not_change_the_bytes(full: GeneratedRun) -> None:
    assert generate(GeneratorConfig(**{**FULL.__dict__, "throttle": True})).records == full.records


# --------------------------------------------------------------------------- counts


def test_every_fault_scales_each_injection_with_the_count_and_takes_overrides() -> None:
    small = GeneratorConfig.every_fault(100, start_time=START)
    assert small.fraud_instances == dict.fromkeys(FRAUD_PATTERNS, 1)  # at least one of each pattern
    assert (small.anomalies, small.duplicates, small.invalid, small.late) == (0, 1, 0, 0)
    big = GeneratorConfig.every_fault(24_000, seed=3, rate=50.0, start_time=START, late=7)
    assert big.fraud_instances == dict.fromkeys(FRAUD_PATTERNS, 20)
    assert (big.anomalies, big.duplicates, big.invalid, big.out_of_order) == (150, 400, 200, 0.05)
    assert (big.count, big.seed, big.rate, big.late) == (24_000, 3, 50.0, 7)
    assert GeneratorConfig.every_fault(2400, invalid=0).invalid == 0  # an override replaces the default
    run = generate(GeneratorConfig.every_fault(1200, start_time=START))
    assert Counter(r.kind for r in run.records)["invalid"] == 10


def test_counts_per_kind_match_the_config(full: GeneratedRun) -> None:
    kinds = Counter(r.kind for r in full.records)
    fraud_events = 2 * (6 + 11 + 9 + 2)
    assert kinds["valid"] == 3000 + fraud_events + 12
    assert kinds["duplicate"] == 40
    assert kinds["late"] == 15
    assert kinds["invalid"] == 36
    assert Counter(r.invalid_kind for r in full.records if r.kind == "invalid") == dict.fromkeys(INVALID_KINDS, 3)

    total = full.truth.summary["total"]
    assert total["sent"] == len(full.records) == sum(kinds.values())
    assert total["valid_unique"] == kinds["valid"] + kinds["late"]
    assert total["on_time_unique"] == kinds["valid"]
    assert total["duplicates"] == 40
    assert total["late"] == 15
    assert total["invalid_total"] == 36
    assert total["invalid"] == dict.fromkeys(INVALID_KINDS, 3)
    assert total["anomalies"] == 12
    assert total["out_of_order"] == round(0.1 * kinds["valid"])
    per_topic = [full.truth.summary[t] for t in ("payments", "clickstream", "iot")]
    for key in ("sent", "valid_unique", "duplicates", "late", "invalid_total", "anomalies"):
        assert sum(s[key] for s in per_topic) == total[key]
    assert {len(v) for v in full.truth.injected["fraud_patterns"].values()} == {2}
    assert len(full.truth.injected["anomalies"]) == 12
    assert len(full.truth.records) == len(full.records)


def test_topic_mix_is_40_40_20() -> None:
    run = generate(GeneratorConfig(count=5000, start_time=START))
    share = Counter(r.topic for r in run.records)
    assert abs(share["payments"] / 5000 - 0.4) < 0.03
    assert abs(share["clickstream"] / 5000 - 0.4) < 0.03
    assert abs(share["iot"] / 5000 - 0.2) < 0.03


def test_count_wins_over_duration_and_duration_scales_with_rate() -> None:
    assert GeneratorConfig(duration_s=10, rate=50, start_time=START).normal_count == 500
    assert GeneratorConfig(count=7, duration_s=10, rate=50, start_time=START).normal_count == 7
    assert GeneratorConfig(start_time=START).normal_count == 1000
    run = generate(GeneratorConfig(duration_s=10, rate=50, start_time=START))
    assert len(run.records) == 500
    assert run.end_time - run.start_time == timedelta(seconds=10)
    assert max(parse(r.event_time or "") for r in run.records) < START + timedelta(seconds=10)


def test_default_start_time_puts_every_event_in_the_recent_past() -> None:
    before = datetime.now(UTC)
    run = generate(GeneratorConfig(count=400, rate=100, fraud_impossible_travel=1))
    times = [parse(r.event_time or "") for r in run.records]
    assert max(times) <= datetime.now(UTC)
    assert min(times) >= before - timedelta(minutes=4)  # stretched to the 3-minute travel pattern


def test_topic_selection() -> None:
    run = generate(GeneratorConfig(count=300, topics=("iot",), invalid=18, start_time=START))
    assert {r.topic for r in run.records} == {"iot"}
    kinds = Counter(r.invalid_kind for r in run.records if r.kind == "invalid")
    assert "bad_pattern" not in kinds  # iot has no pattern-constrained field
    assert sum(kinds.values()) == 18
    assert set(kinds) == set(INVALID_KINDS) - {"bad_pattern"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"topics": ("iot",), "fraud_velocity": 1}, "payments"),
        ({"topics": ("payments",), "anomalies": 1}, "iot"),
        ({"topics": ("orders",)}, "orders"),
        ({"out_of_order": 1.5}, "fraction"),
        ({"rate": 0}, "rate"),
        ({"count": 0, "duplicates": 3}, "duplicates"),
        ({"start_time": datetime(2026, 1, 1)}, "timezone"),
        ({"late": -1}, "late"),
    ],
)
def test_bad_configs_are_clear_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(GeneratorError, match=message):
        GeneratorConfig(**{"start_time": START, **changes})


# --------------------------------------------------------------------------- contract validity


def test_valid_records_satisfy_the_contract(full: GeneratedRun) -> None:
    now = full.end_time
    for r in full.records:
        if r.kind == "invalid":
            continue
        assert contract_errors(r, now) == [], (r.kind, r.value)
        v = values(r)
        assert ISO_MS.match(v["event_time"]), v["event_time"]
        assert r.event_id == v["event_id"]
        assert r.event_time == v["event_time"]
        assert r.key == str(v[topic(r.topic).key_field]).encode("utf-8")


def test_realistic_values(full: GeneratedRun) -> None:
    valid = [values(r) for r in full.records if r.kind == "valid"]
    payments = [v for v in valid if "card_number" in v]
    normal = [json.loads(r.value) for r in full.records if r.kind == "valid" and r.topic == "payments" and not r.flags]
    assert all(re.fullmatch(r"u-\d{5}", v["user_id"]) for v in normal)
    assert all(re.fullmatch(r"\d{16}", v["card_number"]) for v in payments)
    assert all(re.fullmatch(r"m-\d{4}", v["merchant_id"]) for v in payments)
    assert {v["currency"] for v in payments} <= {"EUR", "USD", "GBP"}
    assert min(v["amount"] for v in normal) >= 2.50
    assert 20 < sorted(v["amount"] for v in normal)[len(normal) // 2] < 80  # median around 40
    cards: dict[str, set[str]] = {}
    countries: dict[str, set[str]] = {}
    for v in normal:
        cards.setdefault(v["user_id"], set()).add(v["card_number"])
        countries.setdefault(v["user_id"], set()).add(v["country"])
    assert max(len(c) for c in cards.values()) <= 2
    assert max(len(c) for c in countries.values()) == 1
    clicks = [v for v in valid if "session_id" in v]
    assert {v["event_type"] for v in clicks} == {"page_view", "click", "add_to_cart", "purchase", "search"}
    assert {"/", "/cart", "/checkout"} <= {v["page"] for v in clicks}
    assert any(v["page"].startswith("/product/") for v in clicks)
    iot = [v for v in valid if "device_id" in v]
    assert all(re.fullmatch(r"dev-\d{4}", v["device_id"]) for v in iot)
    assert {v["sensor_type"] for v in iot} == set(NORMAL_RANGES)


def test_some_events_carry_an_unknown_extra_field(full: GeneratedRun) -> None:
    extra = [r for r in full.records if r.kind == "valid" and "experiment" in values(r)]
    assert 0.005 < len(extra) / 3000 < 0.05
    assert all("extra_field" in r.flags for r in extra)
    assert full.truth.summary["total"]["extra_fields"] >= len(extra)


def test_invalid_records_fail_and_name_their_field(full: GeneratedRun) -> None:
    now = full.end_time
    invalid = [r for r in full.records if r.kind == "invalid"]
    for r in invalid:
        errors = contract_errors(r, now)
        assert errors, (r.invalid_kind, r.value)
        if r.invalid_kind in ("not_json", "not_object"):
            assert r.field is None
            assert errors[0] in ("not json", "not an object")
            assert r.event_id is None
            continue
        if r.invalid_kind in ("not_utf8", "too_deep"):  # the record as a whole: not text, past the parser
            assert r.field is None
            assert errors == [{"not_utf8": "not utf-8", "too_deep": "too deep"}[r.invalid_kind]]
            continue
        assert r.field is not None
        value = values(r)
        if r.invalid_kind == "future_time":
            assert r.field == "event_time"
            assert parse(value["event_time"]) >= full.start_time + timedelta(days=3)
            continue
        found = list(VALIDATORS[r.topic].iter_errors(value))
        assert any(r.field in e.path or (e.validator == "required" and repr(r.field) in e.message) for e in found), (
            r.invalid_kind,
            r.field,
            [(list(e.path), e.message) for e in found],
        )
    too_long = [r for r in invalid if r.invalid_kind == "too_long"]
    assert all(len(values(r)["event_id"]) == 65 for r in too_long)


# --------------------------------------------------------------------------- delivery faults


def test_duplicates_share_event_id_and_bytes_and_half_change_partition(full: GeneratedRun) -> None:
    first: dict[str, tuple[int, Record]] = {}
    for i, r in enumerate(full.records):
        if r.kind == "valid" and r.event_id:
            first[r.event_id] = (i, r)
    dups = [(i, r) for i, r in enumerate(full.records) if r.kind == "duplicate"]
    assert len(dups) == 40
    moved = 0
    for i, d in dups:
        assert d.event_id in first
        j, orig = first[d.event_id]
        assert j < i, "a duplicate is sent after its original"
        assert d.value == orig.value
        assert d.key == orig.key
        assert d.topic == orig.topic
        if d.partition is not None:
            assert d.key is not None
            assert d.partition == (default_partition(d.key, FULL.partitions) + 1) % FULL.partitions
            moved += 1
    assert moved == 20


def test_out_of_order_stays_within_5_minutes_of_event_time(full: GeneratedRun) -> None:
    high = datetime.min.replace(tzinfo=UTC)
    displaced = 0
    for r in full.records:
        if r.kind in ("invalid", "late"):
            continue
        t = parse(r.event_time or "")
        assert high - t < timedelta(minutes=5), r
        if high > t:
            displaced += 1
        high = max(high, t)
    assert displaced > 0
    ooo = [r for r in full.records if "out_of_order" in r.flags]
    assert len(ooo) == full.truth.summary["total"]["out_of_order"] > 0


def test_late_events_are_20_to_60_minutes_early_and_sent_last(full: GeneratedRun) -> None:
    kinds = [r.kind for r in full.records]
    assert kinds[-15:] == ["late"] * 15
    assert "late" not in kinds[:-15]
    for r in full.records[-15:]:
        age = full.start_time - parse(r.event_time or "")
        assert timedelta(minutes=20) <= age <= timedelta(minutes=60)
        assert contract_errors(r, full.end_time) == []


def test_keys_follow_the_contract(full: GeneratedRun) -> None:
    for r in full.records:
        if r.kind != "invalid":
            assert r.key == values(r)[topic(r.topic).key_field].encode()


# --------------------------------------------------------------------------- injections


def test_each_fraud_pattern_raises_its_rule_and_nothing_else_is_flagged(full: GeneratedRun) -> None:
    alerts = full.truth.expected_fraud_alerts
    injected = full.truth.injected["fraud_patterns"]
    pattern_ids = {eid for instances in injected.values() for ids in instances for eid in ids}
    for name in FRAUD_PATTERNS:
        assert len(injected[name]) == 2
        for ids in injected[name]:
            fired = [alerts[eid] for eid in ids if eid in alerts]
            assert any(name in a["rules"] for a in fired), (name, fired)
            assert all(a["rules"] == [name] for a in fired), (name, fired)
    assert set(alerts) <= pattern_ids
    flagged = Counter(rule for a in alerts.values() for rule in a["rules"])
    assert flagged == {"card_testing": 2 * 2, "velocity": 2 * 2, "amount_spike": 2, "impossible_travel": 2}
    assert {a["score"] for a in alerts.values()} <= {0.6, 0.5, 0.7}


def test_fraud_pattern_shapes(full: GeneratedRun) -> None:
    by_id = {r.event_id: values(r) for r in full.records if r.kind == "valid"}
    for ids in full.truth.injected["fraud_patterns"]["card_testing"]:
        evs = [by_id[i] for i in ids]
        assert len(evs) == 6
        assert len({e["card_number"] for e in evs}) == 1
        assert all(e["amount"] < 2 for e in evs)
        times = sorted(parse(e["event_time"]) for e in evs)
        assert times[-1] - times[0] <= timedelta(seconds=40)
    for ids in full.truth.injected["fraud_patterns"]["impossible_travel"]:
        a, b = (by_id[i] for i in ids)
        assert a["card_number"] == b["card_number"]
        assert a["country"] != b["country"]
        assert parse(b["event_time"]) - parse(a["event_time"]) == timedelta(minutes=3)
    all_users = [v["user_id"] for v in by_id.values() if "card_number" in v]
    for name, instances in full.truth.injected["fraud_patterns"].items():
        for ids in instances:
            users = {by_id[i]["user_id"] for i in ids}
            assert len(users) == 1, name
            assert all_users.count(users.pop()) == len(ids), f"{name} user is fresh"


def test_normal_traffic_alone_raises_no_alert() -> None:
    run = generate(GeneratorConfig(seed=1, count=5000, start_time=START))
    assert run.truth.expected_fraud_alerts == {}
    assert len(run.truth.payments) > 1500


def test_anomalies_are_outside_the_normal_range_and_everything_else_inside(full: GeneratedRun) -> None:
    anomalies = 0
    for r in full.records:
        if r.topic != "iot" or r.kind not in ("valid", "late"):
            continue
        v = values(r)
        lo, hi = NORMAL_RANGES[v["sensor_type"]]
        inside = lo <= v["value"] <= hi
        if "anomaly" in r.flags:
            anomalies += 1
            assert not inside, v
            assert r.event_id in full.truth.injected["anomalies"]
        else:
            assert inside, v
        assert 0 <= v["battery_pct"] <= 100
    assert anomalies == 12


# --------------------------------------------------------------------------- ground truth


def test_truth_round_trips_through_json(full: GeneratedRun, tmp_path: Path) -> None:
    path = write_ground_truth(full.truth, tmp_path / "sub" / "truth.json")
    data = json.loads(path.read_text())
    assert set(data) >= {"runs", "summary", "injected", "expected_fraud_alerts", "records", "payments"}
    rec = data["records"][0]
    assert set(rec) == {
        "seq",
        "run",
        "topic",
        "key",
        "partition",
        "event_id",
        "event_time",
        "kind",
        "invalid_kind",
        "field",
        "injected",
    }
    assert load_ground_truth(path).to_json() == full.truth.to_json()
    assert data["runs"][0]["start_time"] == "2026-11-26T10:00:00.000Z"


def test_merge_with_a_late_only_run(full: GeneratedRun) -> None:
    late_run = generate(GeneratorConfig(seed=FULL.seed, count=0, late=25, start_time=START))
    assert {r.kind for r in late_run.records} == {"late"}
    merged = merge_ground_truths([full.truth, late_run.truth])
    total = merged.summary["total"]
    assert total["sent"] == len(full.records) + 25
    assert total["late"] == 15 + 25
    assert total["valid_unique"] == full.truth.summary["total"]["valid_unique"] + 25
    assert total["duplicates"] == 40
    # late payments are judged too, but these are normal traffic: no rule fires, no verdict changes
    assert merged.expected_fraud_alerts == full.truth.expected_fraud_alerts
    assert [r["run"] for r in merged.records] == [0] * len(full.records) + [1] * 25
    assert len(merged.runs) == 2

    # The same run sent twice: the second copy is all duplicates.
    twice = merge_ground_truths([full.truth, full.truth])
    assert twice.summary["total"]["valid_unique"] == full.truth.summary["total"]["valid_unique"]
    assert twice.summary["total"]["duplicates"] == 40 + full.truth.summary["total"]["valid_unique"] + 40
    assert twice.expected_fraud_alerts == full.truth.expected_fraud_alerts


def test_merge_recomputes_alerts_over_the_combined_population() -> None:
    a = generate(GeneratorConfig(seed=3, count=200, fraud_impossible_travel=1, start_time=START))
    b = generate(GeneratorConfig(seed=3, count=200, fraud_velocity=1, start_time=START))
    merged = merge_ground_truths([a.truth, b.truth])
    assert set(merged.expected_fraud_alerts) == set(a.truth.expected_fraud_alerts) | set(b.truth.expected_fraud_alerts)


# --------------------------------------------------------------------------- produce (fake producer)


class FakeFuture:
    def __init__(self, exception: Exception | None = None, done: bool = True) -> None:
        self.is_done = done
        self.exception = exception


class FakeProducer:
    def __init__(self, partitions: int = 6, fail: set[int] | None = None, raise_on: set[int] | None = None) -> None:
        self.partitions = partitions
        self.fail = fail or set()
        self.raise_on = raise_on or set()
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []
        self.config: dict[str, Any] = {}
        self.flushed = self.closed = False

    def __call__(self, **config: Any) -> FakeProducer:
        self.config = config
        return self

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def send(self, topic: str, value: bytes, key: bytes | None, partition: int | None) -> FakeFuture:
        n = len(self.sent)
        self.sent.append((topic, key, value, partition))
        if n in self.raise_on:
            from kafka.errors import KafkaTimeoutError

            raise KafkaTimeoutError("metadata not available")
        if n in self.fail:
            return FakeFuture(RuntimeError("broker said no"))
        if n == 3 and self.fail:
            return FakeFuture(done=False)
        return FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        self.flushed = True

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def fake_settings(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Settings of a private state directory (its own secrets) naming a broker that does not exist."""
    from lakehouse.settings import Settings
    from lakehouse.stack import secrets

    s = Settings(_env_file=None, state_dir=tmp_path_factory.mktemp("state"), kafka_bootstrap_servers="fake-broker:9092")  # type: ignore[call-arg]
    secrets.ensure(s)
    return s


def small_run(**changes: Any) -> GeneratedRun:
    return generate(GeneratorConfig(**{"count": 30, "duplicates": 6, "start_time": START, **changes}))


def test_produce_sends_everything_in_order_with_explicit_partitions(fake_settings: Any) -> None:
    run = small_run()
    fake = FakeProducer()
    progress: list[tuple[int, int]] = []
    summary = produce(run, fake_settings, lambda d, t: progress.append((d, t)), producer_factory=fake)
    assert fake.config["bootstrap_servers"] == "fake-broker:9092"
    assert (fake.config["security_protocol"], fake.config["sasl_plain_username"]) == ("SASL_SSL", "producer")
    assert fake.config["acks"] == "all"
    assert fake.config["enable_idempotence"] is True
    assert fake.config["linger_ms"] == 20
    assert [(r.topic, r.key, r.value, r.partition) for r in run.records] == fake.sent
    assert summary.sent == summary.attempted == len(run.records)
    assert summary.failed == 0
    assert summary.rate > 0
    assert progress[-1] == (len(run.records), len(run.records))
    assert fake.flushed
    assert fake.closed


def test_produce_counts_every_failure(fake_settings: Any) -> None:
    run = small_run()
    fake = FakeProducer(fail={1, 5}, raise_on={7})
    summary = produce(run, fake_settings, producer_factory=fake)
    assert summary.failed == 4  # two failed futures, one raising send, one never acknowledged
    assert summary.sent == len(run.records) - 4
    assert any("broker said no" in e for e in summary.errors)
    assert any("not acknowledged" in e for e in summary.errors)
    assert any("metadata not available" in e for e in summary.errors)


def test_produce_remaps_explicit_partitions_to_the_real_partition_count(fake_settings: Any) -> None:
    run = small_run()
    fake = FakeProducer(partitions=3)
    produce(run, fake_settings, producer_factory=fake)
    explicit = [(key, p) for (_t, key, _v, p) in fake.sent if p is not None]
    assert explicit
    for key, p in explicit:
        assert key is not None
        assert p == (default_partition(key, 3) + 1) % 3


def test_produce_throttles_at_the_rate(fake_settings: Any) -> None:
    run = generate(GeneratorConfig(count=21, rate=200, throttle=True, start_time=START))
    t0 = time.monotonic()
    summary = produce(run, fake_settings, producer_factory=FakeProducer())
    assert time.monotonic() - t0 >= 0.095  # 20 intervals of 5 ms
    assert summary.sent == 21


def test_produce_names_the_brokers_when_they_are_unreachable(fake_settings: Any) -> None:
    from kafka.errors import KafkaTimeoutError

    def unreachable(**_: Any) -> Any:
        raise KafkaTimeoutError("Unable to bootstrap from fake-broker:9092")

    with pytest.raises(ProduceError, match="fake-broker:9092"):
        produce(small_run(), fake_settings, producer_factory=unreachable)


# --------------------------------------------------------------------------- CLI


def test_cli_help_explains_every_option_with_defaults() -> None:
    result = CliRunner().invoke(generate_command, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--rate",
        "--count",
        "--duration",
        "--seed",
        "--topics",
        "--start-time",
        "--throttle",
        "--card-testing",
        "--velocity",
        "--amount-spike",
        "--impossible-travel",
        "--anomalies",
        "--duplicates",
        "--out-of-order",
        "--late",
        "--invalid",
        "--truth",
        "--dry-run",
    ):
        assert option in result.output
    assert "default: 200" in result.output
    assert "default: 1000" in result.output


def test_cli_dry_run_writes_the_truth_and_sends_nothing(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    args = ["--count", "200", "--seed", "5", "--start-time", "2026-11-26T10:00:00Z", "--velocity", "1"]
    result = CliRunner().invoke(generate_command, [*args, "--invalid", "10", "--truth", str(truth), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output
    data = json.loads(truth.read_text())
    assert data["summary"]["total"]["invalid_total"] == 10
    assert data["runs"][0]["config"]["seed"] == 5
    assert data["expected_fraud_alerts"]


def test_cli_bad_options_are_messages_not_tracebacks(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(generate_command, ["--topics", "orders", "--dry-run", "--truth", str(tmp_path / "t")])
    assert result.exit_code == 2
    assert "orders" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(generate_command, ["--topics", "iot", "--velocity", "1", "--dry-run"])
    assert result.exit_code == 2
    assert "payments" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_unreachable_broker_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAKEHOUSE_KAFKA_PORT", "1")  # nobody listens there
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path))
    from lakehouse.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(generate_command, ["--count", "20"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "127.0.0.1:1" in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "generator" / "truth-42.json").exists()
