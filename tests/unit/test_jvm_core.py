"""jvm/core (shared by the Spark operators and the fast path) writes Redis values byte for byte as Python does.

The classes are loaded in the session Spark fixture's JVM (they are compiled into the Spark
operators' jar); each encoding is compared with ``lakehouse.serving``'s on values chosen to hit
every branch of Python's ``repr(float)`` and on random ones.
"""

from __future__ import annotations

import json
import random
import struct
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lakehouse.serving.keys import encode_ts

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

EDGES = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.1,
    0.2 + 0.1,
    1 / 3,
    2.5,
    2.675,
    100.0,
    1234.5,
    12.34,
    99.99,
    0.9999,
    1e-4,
    1.5e-4,
    1e-5,
    1.5e-5,
    9.999e-5,
    1e15,
    1e16,
    1.5e16,
    123456789012345678.0,
    1e22,
    1e-300,
    5e-324,
    1.7976931348623157e308,
    2.2250738585072014e-308,
    0.6,
    0.8,
    0.94,
    0.97,
    0.985,
    4503599627370497.0,
]


def _core(spark: SparkSession) -> Any:
    return spark._jvm.lakehouse.core  # type: ignore[union-attr]


def test_doubles_are_encoded_as_pythons_repr(spark: SparkSession) -> None:
    enc = _core(spark).Encoding
    rng = random.Random(20261201)
    randoms = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(400)]
    money = [round(rng.uniform(0, 100_000), 2) for _ in range(400)]
    scores = [round(1 - (1 - a) * (1 - b), 4) for a in (0.6, 0.5, 0.7) for b in (0.0, 0.5, 0.7)]
    values = [v for v in EDGES + randoms + money + scores if v == v and abs(v) != float("inf")]
    got = [str(enc.pyRepr(float(v))) for v in values]
    assert got == [repr(float(v)) for v in values]


def test_timestamps_arrays_and_digests_match_the_serving_encoding(spark: SparkSession) -> None:
    enc = _core(spark).Encoding
    t0 = datetime(2026, 11, 26, 10, 15, tzinfo=UTC)
    for delta_us in (0, 1, 999_999, 123_456, -1, 86_400_000_000 * 400):
        ts = t0 + timedelta(microseconds=delta_us)
        micros = (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        assert str(enc.timestamp(micros)) == encode_ts(ts)
    rules = ["card_testing", "impossible_travel"]
    assert str(enc.stringArray(rules)) == json.dumps(rules, separators=(",", ":"))
    assert str(enc.stringArray([])) == "[]"
    from lakehouse.serving.writer import _alert_digest

    pairs = ["event_id", "e-1", "amount", "12.5", "rules", '["velocity"]', "note", "ünïcode"]
    assert str(enc.digest(pairs)) == _alert_digest(pairs)


class PerRecord:
    """CardJudge then UserJudge, one payment at a time, as the fast path's Flink functions call them:
    a card state and a user state per key, the watermark the newest event time less 10 minutes."""

    def __init__(self, spark: SparkSession, late_horizon_ms: int = 3_600_000) -> None:
        from py4j.java_gateway import get_field

        self.jvm, self.get = spark._jvm, get_field  # type: ignore[union-attr]
        self.core = self.jvm.lakehouse.core
        # every JVM name looked up once: each lookup is a Py4J round trip, and a record needs ~40 calls
        self.Pay, self.PayState = getattr(self.core, "FraudRules$Pay"), self.core.PayState
        self.CardJudge, self.UserJudge, self.Rules = self.core.CardJudge, self.core.UserJudge, self.core.FraudRules
        self.Arrival, self.ArrayList = self.UserJudge.Arrival, self.jvm.java.util.ArrayList
        self.late = late_horizon_ms
        self.cards: dict[str, Any] = {}
        self.users: dict[str, Any] = {}
        self.max_ms = 0
        self.alerts: dict[str, tuple[list[str], float]] = {}

    def _pay(self, p: Any) -> Any:
        from py4j.java_gateway import set_field

        from tests.unit.test_fraud_spark import token

        pay = self.Pay()
        t_us = (p.event_time - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        for name, value in (
            ("id", p.event_id),
            ("t", t_us),
            ("amount", float(p.amount)),
            ("country", p.country),
            ("user", p.user_id),
            ("card", token(p.card_number)),
            ("merchant", p.merchant_id),
        ):
            set_field(pay, name, value)
        return pay

    def _copy(self, x: Any) -> Any:
        from py4j.java_gateway import set_field

        pay = self.Pay()
        for name in ("id", "t", "amount", "country", "user", "card", "merchant"):
            set_field(pay, name, self.get(x, name))
        return pay

    def _items(self, obj: Any, field: str) -> list[Any]:
        """A Java list field's items by index: Py4J iterates until Java throws, and PySpark converts each
        such exception with a dozen more calls (three quarters of this test's time)."""
        items = self.get(obj, field)
        return [items.get(i) for i in range(items.size())]

    def _list(self, items: list[Any]) -> Any:
        out = self.ArrayList()
        for x in items:
            out.add(x)
        return out

    def send(self, p: Any) -> None:
        wm = max(0, self.max_ms - 600_000 - 1)  # Flink's bounded out-of-orderness: newest - delay - 1 ms
        cut = self.CardJudge.cutMicros(wm, self.late)
        card_key = p.card_number
        st = self.cards.get(card_key) or self.PayState.empty()
        o = self.CardJudge.judge(st, self._list([self._pay(p)]), cut)
        judged, changed = self._items(o, "judged"), self._items(o, "changed")
        if judged:
            self.cards[card_key] = self.get(o, "next")
        # keyBy(user): each output of the card stage goes to its own payment's user, in order
        by_user: dict[str, list[Any]] = {}
        for x, upd in [(x, True) for x in changed] + [(x, False) for x in judged]:
            # a copy: between two keyed stages Flink serializes the record, so no object is shared
            arrival = self.Arrival(self.get(x, "id"), self.get(x, "bits"), None if upd else self._copy(x))
            by_user.setdefault(self.get(x, "user"), []).append(arrival)
        for user_key, arrivals in by_user.items():
            for arrival in arrivals:  # one record at a time, as Flink delivers them
                ust = self.users.get(user_key) or self.PayState.empty()
                u = self.UserJudge.judge(ust, self._list([arrival]), wm, cut)
                nxt = self.get(u, "next")
                if nxt is None:
                    continue
                self.users[user_key] = nxt
                for ch in self._items(u, "changed"):
                    self._apply(self.get(self.get(ch, "pay"), "id"), self.get(ch, "verdict"))
                for y in self._items(u, "judged"):
                    self._apply(self.get(y, "id"), self.get(y, "bits") | self.get(y, "otherBits"))
        t_ms = (p.event_time - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        self.max_ms = max(self.max_ms, t_ms)

    def _apply(self, event_id: str, verdict: int) -> None:
        if verdict:
            rules = [str(r) for r in self.Rules.names(verdict)]
            self.alerts[event_id] = (rules, float(self.Rules.score(verdict)))
        else:
            self.alerts.pop(event_id, None)


def test_the_judges_one_record_at_a_time_equal_the_reference_in_any_order_with_copies(spark: SparkSession) -> None:
    from lakehouse.fraud_reference import RULES
    from tests.unit.test_fraud_spark import random_payments, reference_alerts

    payments = random_payments(11, n=600)
    rng = random.Random(5)
    arrival = payments + rng.sample(payments, 40)  # copies, some of them long after the original
    rng.shuffle(arrival)  # out of order within the 15-minute span: inside every horizon
    judge = PerRecord(spark)
    for p in arrival:
        judge.send(p)
    want = reference_alerts(payments)
    assert judge.alerts == want
    assert {r for rules, _ in want.values() for r in rules} == set(RULES), "a rule the scenario never fires"


def test_the_validator_without_extra_gives_the_same_verdict_and_fields(spark: SparkSession) -> None:
    """The fast path asks for no `_extra` (it has no use for unknown fields): nothing else may change."""
    from lakehouse.contracts import schema
    from lakehouse.validation import fields, program

    validator = _core(spark).RecordValidator(program(fields(schema("payments"))))
    good = {
        "event_id": "e1",
        "event_time": "2026-11-30T10:00:00.123456Z",
        "user_id": "u1",
        "card_number": "4111111111111111",
        "merchant_id": "m1",
        "amount": 12.5,
        "currency": "EUR",
        "country": "DE",
    }
    records = [
        json.dumps(good),
        json.dumps({**good, "surprise": {"nested": [1, 2]}}),  # an unknown field: only _extra differs
        json.dumps({**good, "amount": -1}),
        json.dumps({**good, "event_time": "2026-02-30T10:00:00Z"}),
        '{"event_id": "e1", "event_id": "e2"}',
        "[1, 2]",
        "not json",
    ]
    for value in records:
        full = list(validator.check(value, None))
        lean = list(validator.check(value, None, False))
        assert lean[:-1] == full[:-1], value
        assert lean[-1] is None
    assert list(validator.check(records[1], None))[-1] == '{"surprise":{"nested":[1,2]}}'
    assert validator.check(records[0], None)[0] is None  # the good record is valid


def test_poison_records_are_invalid_with_a_reason_and_never_crash_the_validator(spark: SparkSession) -> None:
    """Bytes that are not UTF-8 and JSON nested past the parser's limit: each judged, in words."""
    from lakehouse.contracts import schema
    from lakehouse.validation import fields, program

    validator = _core(spark).RecordValidator(program(fields(schema("clickstream"))))
    latin1 = b'{"event_id": "e1", "note": "caf\xe9"}'
    assert validator.check(latin1, None, True)[0] == "value: not UTF-8 text (byte 0xe9 at offset 31)"
    truncated = '{"event_id": "€'.encode()[:-1]
    assert validator.check(truncated, None, True)[0] == "value: not UTF-8 text (byte 0xe2 at offset 14)"
    deep = b'{"tree": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    reason = validator.check(deep, None, True)[0]
    assert reason.startswith("value: beyond the JSON parser's limits (Document nesting depth (1001) exceeds"), reason
    assert "StreamReadConstraints" not in reason  # Jackson's pointer to its own API is no help to a reader
    good_bytes = '{"event_id": "café"}'.encode()  # UTF-8 beyond ASCII is fine: judged on its fields
    assert "not UTF-8" not in validator.check(good_bytes, None, True)[0]
