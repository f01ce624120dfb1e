"""spark_apps.fraud.evaluate (Spark window functions) against lakehouse.fraud_reference, the exact definitions.

The boundary scenarios are those of tests/unit/test_fraud_reference.py. Every scenario gets its own users and
cards, so all of them run in ONE Spark job; the randomized comparison is a second one.
The reference keys cards by ``card_number``, Spark by ``card_token``: the token here is a 1:1 function of it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from pyspark.sql import functions as F

from lakehouse.fraud_reference import RULES, Payment, evaluate, score
from spark_apps import fraud
from tests.unit.test_fraud_reference import T0, pay

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SCHEMA = (
    "event_id string, event_time timestamp, user_id string, card_token string, amount double, country string, "
    "merchant_id string"
)


def token(card_number: str) -> str:
    return f"tok:{card_number}"


def spark_alerts(spark: SparkSession, payments: list[Payment]) -> dict[str, tuple[list[str], float]]:
    """{event_id: (rules, score)} of the payments Spark flags (one job). Unflagged ones must score 0."""
    rows = [
        (p.event_id, p.event_time, p.user_id, token(p.card_number), p.amount, p.country, p.merchant_id)
        for p in payments
    ]
    out = fraud.evaluate(spark.createDataFrame(rows, SCHEMA)).select("event_id", "rules", "score").collect()
    assert len(out) == len(payments)
    flagged = {}
    for r in out:
        if r["rules"]:
            flagged[r["event_id"]] = (list(r["rules"]), r["score"])
        else:
            assert r["rules"] == [], r
            assert r["score"] == 0.0, r
    return flagged


def reference_alerts(payments: list[Payment]) -> dict[str, tuple[list[str], float]]:
    return {eid: (a.rules, a.score) for eid, a in evaluate(payments).items()}


def test_spark_and_reference_constants_agree() -> None:
    from lakehouse import fraud_reference as ref

    assert fraud.RULES == RULES
    assert fraud.WEIGHTS == ref.WEIGHTS
    assert fraud.SMALL_AMOUNT == ref.CARD_TESTING_AMOUNT
    assert fraud.CARD_TESTING_MIN == ref.CARD_TESTING_MIN_COUNT
    assert fraud.VELOCITY_MIN == ref.VELOCITY_MIN_COUNT
    assert (fraud.SPIKE_FACTOR, fraud.SPIKE_HISTORY, fraud.SPIKE_MIN_HISTORY) == (
        ref.SPIKE_FACTOR,
        ref.SPIKE_HISTORY,
        ref.SPIKE_MIN_HISTORY,
    )
    us = timedelta(microseconds=1)
    windows = {"card_testing": fraud.WINDOW_US, "velocity": fraud.WINDOW_US, "travel": fraud.TRAVEL_US}
    assert windows == {
        "card_testing": ref.CARD_TESTING_WINDOW // us,
        "velocity": ref.VELOCITY_WINDOW // us,
        "travel": ref.TRAVEL_WINDOW // us,
    }


# --------------------------------------------------------------------------- boundary scenarios


def history(n: int, amount: float = 10.0, *, start: float = 0.0, step: float = 10.0) -> list[Payment]:
    return [pay(f"h{i:02d}", start + i * step, amount=amount) for i in range(n)]


@dataclass(frozen=True)
class Scenario:
    name: str
    payments: list[Payment]
    expected: dict[str, list[str]]  # the complete set of flagged payments and their rules


def _small(n: int) -> list[Payment]:
    return [pay(f"s{i}", i, amount=1.99) for i in range(n)]


_ct5 = [pay(f"p{i}", i * 10, amount=1.5, user=f"u{i}") for i in range(5)]
_vel10 = [pay(f"p{i:02d}", i * 5, card=f"40000000000000{i:02d}") for i in range(10)]
_vel_inner = [pay(f"p{i}", 1 + i, amount=40.0) for i in range(8)]
_even = [pay(f"h{i}", i * 10, amount=a) for i, a in enumerate([10.0, 10.0, 20.0, 30.0, 30.0, 30.0])]
_old = [pay(f"a{i:02d}", i * 10, amount=1000.0) for i in range(20)]
_recent = [pay(f"b{i:02d}", 1000 + i * 10, amount=10.0) for i in range(20)]

SCENARIOS = [
    Scenario("card_testing-fourth-small", _ct5[:4], {}),
    Scenario("card_testing-fifth-small", _ct5, {"p4": ["card_testing"]}),
    Scenario(
        "card_testing-exactly-60s",
        [pay(f"p{i}", s, amount=1.0) for i, s in enumerate([0, 15, 30, 45, 60])],
        {"p4": ["card_testing"]},
    ),
    Scenario("card_testing-60.001s", [pay(f"p{i}", s, amount=1.0) for i, s in enumerate([0, 15, 30, 45, 60.001])], {}),
    Scenario("card_testing-2.00-is-not-small", [*_small(4), pay("two", 5, amount=2.00)], {}),
    Scenario(
        "card_testing-fifth-after-2.00",
        [*_small(4), pay("two", 5, amount=2.00), pay("fifth", 6, amount=0.01)],
        {"fifth": ["card_testing"]},
    ),
    Scenario(
        "card_testing-per-card", [pay(f"p{i}", i, amount=1.0, card=f"400000000000000{i % 2}") for i in range(8)], {}
    ),
    Scenario(
        "card_testing-same-instant",
        [pay(f"p{i}", i, amount=1.0) for i in range(3)] + [pay("b", 10, amount=1.0), pay("a", 10, amount=1.0)],
        {"a": ["card_testing"], "b": ["card_testing"]},
    ),
    Scenario("velocity-ninth", _vel10[:9], {}),
    Scenario("velocity-tenth", _vel10, {"p09": ["velocity"]}),
    Scenario("velocity-exactly-60s", [pay("first", 0), *_vel_inner, pay("last", 60)], {"last": ["velocity"]}),
    Scenario("velocity-60.001s", [pay("first", 0), *_vel_inner, pay("last", 60.001)], {}),
    Scenario("velocity-per-user", [pay(f"p{i}", i, user=f"u{i % 2}") for i in range(18)], {}),
    Scenario("spike-four-previous", [*history(4), pay("p", 100, amount=1000.0)], {}),
    Scenario("spike-five-previous", [*history(5), pay("p", 100, amount=1000.0)], {"p": ["amount_spike"]}),
    Scenario("spike-exactly-10x", [*history(5), pay("p", 100, amount=100.0)], {}),
    Scenario("spike-10x-plus-a-cent", [*history(5), pay("p", 100, amount=100.01)], {"p": ["amount_spike"]}),
    Scenario("spike-even-median-exact", [*_even, pay("p", 100, amount=250.0)], {}),
    Scenario("spike-even-median-above", [*_even, pay("p", 100, amount=250.01)], {"p": ["amount_spike"]}),
    Scenario("spike-previous-20-only", [*_old, *_recent, pay("p", 2000, amount=101.0)], {"p": ["amount_spike"]}),
    Scenario(
        "spike-tie-earlier-id-counts",
        [*history(4), pay("a-q", 100, amount=10.0), pay("b-p", 100, amount=101.0)],
        {"b-p": ["amount_spike"]},
    ),
    Scenario(
        "spike-tie-later-id-does-not", [*history(4), pay("z-q", 100, amount=10.0), pay("b-p", 100, amount=101.0)], {}
    ),
    Scenario(
        "travel-exactly-600s",
        [pay("q", 0, country="DE"), pay("p", 600, country="FR")],
        {"p": ["impossible_travel"]},
    ),
    Scenario("travel-600.001s", [pay("q", 0, country="DE"), pay("p", 600.001, country="FR")], {}),
    Scenario("travel-same-country", [pay("q", 0, country="DE"), pay("p", 60, country="DE")], {}),
    Scenario("travel-same-instant", [pay("q", 100, country="DE"), pay("p", 100, country="FR")], {}),
    Scenario(
        "travel-per-card",
        [pay("q", 0, country="DE", card="4000000000000001"), pay("p", 60, country="FR", card="4000000000000002")],
        {},
    ),
    Scenario(
        "travel-anywhere-in-window",
        [pay("x", 0, country="FR"), pay("y", 10, country="DE"), pay("z", 20, country="DE"), pay("p", 30, country="DE")],
        {"y": ["impossible_travel"], "z": ["impossible_travel"], "p": ["impossible_travel"]},
    ),
    Scenario(
        "all-four-rules",
        [*[pay(f"h{i}", i, amount=0.10, country="DE") for i in range(9)], pay("p", 10, amount=1.99, country="FR")],
        {
            **{f"h{i}": ["card_testing"] for i in range(4, 9)},
            "p": list(RULES),
        },
    ),
    Scenario(
        "two-rules",
        [*[pay(f"h{i}", i, amount=1.0, country="DE") for i in range(4)], pay("p", 5, amount=1.0, country="FR")],
        {"p": ["card_testing", "impossible_travel"]},
    ),
]


def isolate(s: Scenario) -> list[Payment]:
    """The scenario's payments with ids, users and cards of their own (ids keep their relative order)."""
    return [
        replace(
            p,
            event_id=f"{s.name}/{p.event_id}",
            user_id=f"{s.name}/{p.user_id}",
            card_number=f"{s.name}/{p.card_number}",
        )
        for p in s.payments
    ]


@pytest.fixture(scope="module")
def scenario_alerts(spark: SparkSession) -> dict[str, dict[str, tuple[list[str], float]]]:
    everything = [p for s in SCENARIOS for p in isolate(s)]
    flagged = spark_alerts(spark, everything)
    per: dict[str, dict[str, tuple[list[str], float]]] = {s.name: {} for s in SCENARIOS}
    for eid, alert in flagged.items():
        name, _, local = eid.partition("/")
        per[name][local] = alert
    return per


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_boundary_scenario(scenario_alerts: dict[str, dict[str, tuple[list[str], float]]], scenario: Scenario) -> None:
    got = scenario_alerts[scenario.name]
    assert {eid: rules for eid, (rules, _) in got.items()} == scenario.expected
    for rules, s in got.values():
        assert s == score(rules)
    # and the reference says the same, score included
    assert got == reference_alerts(scenario.payments)


def test_scores_of_the_combined_scenarios(scenario_alerts: dict[str, dict[str, tuple[list[str], float]]]) -> None:
    assert scenario_alerts["all-four-rules"]["p"] == (list(RULES), 0.97)
    assert scenario_alerts["two-rules"]["p"] == (["card_testing", "impossible_travel"], 0.88)
    assert scenario_alerts["card_testing-fifth-small"]["p4"][1] == 0.6
    assert scenario_alerts["velocity-tenth"]["p09"][1] == 0.5
    assert scenario_alerts["spike-five-previous"]["p"][1] == 0.5
    assert scenario_alerts["travel-exactly-600s"]["p"][1] == 0.7


# --------------------------------------------------------------------------- randomized comparison


def random_payments(seed: int, n: int = 3000) -> list[Payment]:
    """~n payments of 20 users / 30 cards in 15 minutes: small amounts, bursts, country switches, exact ties."""
    rng = random.Random(seed)
    users = [f"u{i:02d}" for i in range(20)]
    cards = [f"4{i:015d}" for i in range(30)]
    home = {c: rng.choice(["DE", "DE", "FR", "NL"]) for c in cards}
    owner = {c: users[i % len(users)] for i, c in enumerate(cards)}
    span_ms = 15 * 60_000
    out: list[Payment] = []

    def add(t_ms: int, card: str, amount: float, country: str | None = None, user: str | None = None) -> None:
        t_ms = min(max(t_ms, 0), span_ms)
        out.append(
            Payment(
                event_id=f"e{len(out):05d}-{rng.randrange(100):02d}",  # ids do not follow time: ties need the id
                event_time=T0 + timedelta(milliseconds=t_ms),
                user_id=user or owner[card],
                card_number=card,
                amount=amount,
                country=country or home[card],
                merchant_id=f"m{rng.randrange(5)}",
            )
        )

    def amount() -> float:
        x = rng.random()
        if x < 0.15:
            return rng.choice([0.01, 0.5, 1.0, 1.99])  # small: card testing
        if x < 0.18:
            return 2.0
        if x < 0.21:
            return rng.choice([100.0, 150.0, 500.0, 1500.0, 2500.0])  # spikes (and exact 10x of 10 / 15 / 50)
        return round(rng.choice([10.0, 15.0, 50.0, rng.uniform(5, 60)]), 2)

    while len(out) < n:
        kind = rng.random()
        card = rng.choice(cards)
        t = rng.randrange(0, span_ms)
        if rng.random() < 0.3:
            t -= t % 1000  # whole seconds: many exact 60 s / 600 s distances and same-instant ties
        if kind < 0.06:  # a card-testing burst: 4-7 tiny payments, some at the same instant
            for _ in range(rng.randint(4, 7)):
                add(t, card, rng.choice([0.5, 1.0, 1.99]))
                t += rng.choice([0, 1000, 5000, 15000, 20000])
        elif kind < 0.10:  # a velocity burst of one user, on several of their cards
            user = rng.choice(users)
            for _ in range(rng.randint(8, 12)):
                add(t, rng.choice(cards), amount(), user=user)
                t += rng.choice([0, 1000, 3000, 6000, 7000])
        elif kind < 0.105:  # a country switch on a card, sometimes exactly 600 s later
            add(t, card, amount())
            add(t + rng.choice([0, 1000, 300_000, 600_000, 600_001]), card, amount(), country="US")
        else:
            add(t, card, amount())
    return out[:n]


@pytest.fixture(scope="module")
def randomized(spark: SparkSession) -> tuple[list[Payment], dict[str, Any], dict[str, Any]]:
    ps = random_payments(20261126)
    return ps, spark_alerts(spark, ps), reference_alerts(ps)


def test_randomized_scenario_is_not_trivial(randomized: tuple[list[Payment], dict[str, Any], dict[str, Any]]) -> None:
    ps, _, ref = randomized
    assert len(ps) == 3000
    assert len({p.user_id for p in ps}) == 20
    assert len({p.card_number for p in ps}) == 30
    fired = {r for rules, _ in ref.values() for r in rules}
    assert fired == set(RULES)
    assert 0 < len(ref) < len(ps)
    assert len({len(rules) for rules, _ in ref.values()}) >= 3  # single and combined rules


def test_randomized_flagged_sets_are_identical(
    randomized: tuple[list[Payment], dict[str, Any], dict[str, Any]],
) -> None:
    _, got, ref = randomized
    assert set(got) - set(ref) == set()
    assert set(ref) - set(got) == set()


@pytest.mark.parametrize("rule", RULES)
def test_randomized_rule_by_rule(randomized: tuple[list[Payment], dict[str, Any], dict[str, Any]], rule: str) -> None:
    _, got, ref = randomized
    spark_fired = {eid for eid, (rules, _) in got.items() if rule in rules}
    ref_fired = {eid for eid, (rules, _) in ref.items() if rule in rules}
    assert ref_fired
    assert sorted(spark_fired ^ ref_fired) == []


def test_randomized_rules_and_scores_are_identical(
    randomized: tuple[list[Payment], dict[str, Any], dict[str, Any]],
) -> None:
    _, got, ref = randomized
    assert got == ref


def test_input_order_and_extra_columns_do_not_matter(spark: SparkSession) -> None:
    ps = random_payments(7, n=400)
    shuffled = ps[:]
    random.Random(1).shuffle(shuffled)
    rows = [
        (p.event_id, p.event_time, p.user_id, token(p.card_number), p.amount, p.country, p.merchant_id, "x")
        for p in shuffled
    ]
    df = spark.createDataFrame(rows, SCHEMA + ", other string").repartition(3)
    out = fraud.evaluate(df)
    assert out.columns == [*df.columns, "rules", "score"]
    got = {r["event_id"]: (list(r["rules"]), r["score"]) for r in out.where(F.size("rules") > 0).collect()}
    assert got == reference_alerts(ps)


# --------------------------------------------------------------------------- sub-millisecond event times


def at_micros(eid: str, us: int, **kw: Any) -> Payment:
    return replace(pay(eid, 0, **kw), event_time=T0 + timedelta(microseconds=us))


SUB_MS = [
    # card_testing: the first small payment is 60.0008 s before the fifth (outside), both in the same ms pair
    Scenario(
        "sub-ms-card-testing",
        [
            at_micros("p0", 100, amount=1.0),
            *[at_micros(f"p{i}", i * 15_000_000, amount=1.0) for i in (1, 2, 3)],
            at_micros("p4", 60_000_900, amount=1.0),
        ],
        {},
    ),
    # impossible_travel: q is 0.8 ms before p, in the same millisecond
    Scenario(
        "sub-ms-travel",
        [at_micros("q", 100_000_100, country="DE"), at_micros("p", 100_000_900, country="FR")],
        {"p": ["impossible_travel"]},
    ),
]


def test_sub_millisecond_event_times_agree_with_the_reference(spark: SparkSession) -> None:
    everything = [p for s in SUB_MS for p in isolate(s)]
    got = spark_alerts(spark, everything)
    expected = {}
    for s in SUB_MS:
        assert {eid: a.rules for eid, a in evaluate(s.payments).items()} == s.expected
        expected.update({f"{s.name}/{eid}": a for eid, a in reference_alerts(s.payments).items()})
    assert got == expected
