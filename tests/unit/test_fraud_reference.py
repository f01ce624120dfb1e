"""The reference fraud rules (contracts §3), at their exact boundaries."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from lakehouse.fraud_reference import RULES, WEIGHTS, Alert, Payment, evaluate, score

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def pay(
    eid: str,
    seconds: float,
    *,
    user: str = "u-1",
    card: str = "4000000000000001",
    amount: float = 50.0,
    country: str = "DE",
) -> Payment:
    return Payment(
        event_id=eid,
        event_time=T0 + timedelta(milliseconds=round(seconds * 1000)),
        user_id=user,
        card_number=card,
        amount=amount,
        country=country,
        merchant_id="m-0001",
    )


def rules_of(alerts: dict[str, Alert], eid: str) -> list[str]:
    return alerts[eid].rules if eid in alerts else []


# --------------------------------------------------------------------------- card_testing


def test_card_testing_fires_on_the_fifth_small_payment_not_the_fourth() -> None:
    ps = [pay(f"p{i}", i * 10, amount=1.5, user=f"u{i}") for i in range(5)]  # users differ: not velocity
    alerts = evaluate(ps[:4])
    assert alerts == {}
    alerts = evaluate(ps)
    assert set(alerts) == {"p4"}
    assert alerts["p4"].rules == ["card_testing"]
    assert alerts["p4"].score == 0.6


def test_card_testing_window_is_inclusive_at_exactly_60_s() -> None:
    ps = [pay(f"p{i}", s, amount=1.0) for i, s in enumerate([0, 15, 30, 45, 60])]
    assert rules_of(evaluate(ps), "p4") == ["card_testing"]


def test_card_testing_window_excludes_60_001_s() -> None:
    ps = [pay(f"p{i}", s, amount=1.0) for i, s in enumerate([0, 15, 30, 45, 60.001])]
    assert evaluate(ps) == {}


def test_card_testing_counts_only_small_payments_and_needs_p_small() -> None:
    small = [pay(f"s{i}", i, amount=1.99) for i in range(4)]
    two = pay("two", 5, amount=2.00)  # not < 2.00: neither counted nor flagged
    assert evaluate([*small, two]) == {}
    fifth = pay("fifth", 6, amount=0.01)
    assert rules_of(evaluate([*small, two, fifth]), "fifth") == ["card_testing"]


def test_card_testing_is_per_card() -> None:
    ps = [pay(f"p{i}", i, amount=1.0, card=f"400000000000000{i % 2}") for i in range(8)]
    assert evaluate(ps) == {}  # 4 per card


def test_card_testing_counts_a_payment_at_the_same_instant_regardless_of_order() -> None:
    ps = [pay(f"p{i}", i, amount=1.0) for i in range(3)] + [pay("b", 10, amount=1.0), pay("a", 10, amount=1.0)]
    alerts = evaluate(ps)
    assert rules_of(alerts, "a") == ["card_testing"]
    assert rules_of(alerts, "b") == ["card_testing"]


# --------------------------------------------------------------------------- velocity


def test_velocity_fires_on_the_tenth_payment_within_60_s() -> None:
    ps = [pay(f"p{i:02d}", i * 5, card=f"40000000000000{i:02d}") for i in range(10)]
    assert evaluate(ps[:9]) == {}
    alerts = evaluate(ps)
    assert set(alerts) == {"p09"}
    assert alerts["p09"].rules == ["velocity"]
    assert alerts["p09"].score == 0.5


def test_velocity_window_boundaries() -> None:
    inner = [pay(f"p{i}", 1 + i, amount=40.0) for i in range(8)]
    exact = [pay("first", 0), *inner, pay("last", 60)]
    assert rules_of(evaluate(exact), "last") == ["velocity"]
    beyond = [pay("first", 0), *inner, pay("last", 60.001)]
    assert "last" not in evaluate(beyond)


def test_velocity_is_per_user() -> None:
    ps = [pay(f"p{i}", i, user=f"u{i % 2}") for i in range(18)]
    assert evaluate(ps) == {}


# --------------------------------------------------------------------------- amount_spike


def history(n: int, amount: float = 10.0, *, start: float = 0.0, step: float = 10.0) -> list[Payment]:
    return [pay(f"h{i:02d}", start + i * step, amount=amount) for i in range(n)]


def test_amount_spike_needs_five_previous_payments() -> None:
    assert evaluate([*history(4), pay("p", 100, amount=1000.0)]) == {}
    alerts = evaluate([*history(5), pay("p", 100, amount=1000.0)])
    assert alerts["p"].rules == ["amount_spike"]
    assert alerts["p"].score == 0.5


def test_amount_spike_exactly_ten_times_the_median_does_not_fire() -> None:
    assert evaluate([*history(5), pay("p", 100, amount=100.0)]) == {}
    assert rules_of(evaluate([*history(5), pay("p", 100, amount=100.01)]), "p") == ["amount_spike"]


def test_amount_spike_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    prev = [pay(f"h{i}", i * 10, amount=a) for i, a in enumerate([10.0, 10.0, 20.0, 30.0, 30.0, 30.0])]
    assert statistics.median([10.0, 10.0, 20.0, 30.0, 30.0, 30.0]) == 25.0
    assert evaluate([*prev, pay("p", 100, amount=250.0)]) == {}
    assert rules_of(evaluate([*prev, pay("p", 100, amount=250.01)]), "p") == ["amount_spike"]


def test_amount_spike_looks_at_the_previous_20_payments_only() -> None:
    old = [pay(f"a{i:02d}", i * 10, amount=1000.0) for i in range(20)]
    recent = [pay(f"b{i:02d}", 1000 + i * 10, amount=10.0) for i in range(20)]
    alerts = evaluate([*old, *recent, pay("p", 2000, amount=101.0)])  # median of all 40 would be 505
    assert rules_of(alerts, "p") == ["amount_spike"]


def test_amount_spike_orders_ties_by_event_id() -> None:
    prev = history(4)
    # q at the same instant as p counts as "before p" only when its event_id sorts first.
    assert rules_of(evaluate([*prev, pay("a-q", 100, amount=10.0), pay("b-p", 100, amount=101.0)]), "b-p") == [
        "amount_spike"
    ]
    assert evaluate([*prev, pay("z-q", 100, amount=10.0), pay("b-p", 100, amount=101.0)]) == {}


# --------------------------------------------------------------------------- impossible_travel


def test_impossible_travel_at_exactly_600_s_fires() -> None:
    alerts = evaluate([pay("q", 0, country="DE"), pay("p", 600, country="FR")])
    assert set(alerts) == {"p"}
    assert alerts["p"].rules == ["impossible_travel"]
    assert alerts["p"].score == 0.7


def test_impossible_travel_beyond_600_s_does_not_fire() -> None:
    assert evaluate([pay("q", 0, country="DE"), pay("p", 600.001, country="FR")]) == {}


def test_impossible_travel_same_country_does_not_fire() -> None:
    assert evaluate([pay("q", 0, country="DE"), pay("p", 60, country="DE")]) == {}


def test_impossible_travel_at_the_same_instant_does_not_fire() -> None:
    assert evaluate([pay("q", 100, country="DE"), pay("p", 100, country="FR")]) == {}


def test_impossible_travel_is_per_card() -> None:
    q = pay("q", 0, country="DE", card="4000000000000001")
    p = pay("p", 60, country="FR", card="4000000000000002")
    assert evaluate([q, p]) == {}


def test_impossible_travel_finds_a_different_country_anywhere_in_the_window() -> None:
    ps = [pay("x", 0, country="FR"), pay("y", 10, country="DE"), pay("z", 20, country="DE"), pay("p", 30, country="DE")]
    alerts = evaluate(ps)
    assert set(alerts) == {"y", "z", "p"}  # x (FR) is in the window of all three


# --------------------------------------------------------------------------- combined


def test_all_four_rules_fire_together_in_the_fixed_order() -> None:
    ps = [pay(f"h{i}", i, amount=0.10, country="DE") for i in range(9)]
    ps.append(pay("p", 10, amount=1.99, country="FR"))
    alerts = evaluate(ps)
    assert alerts["p"].rules == list(RULES)
    assert alerts["p"].score == round(1 - 0.4 * 0.5 * 0.5 * 0.3, 4) == 0.97


def test_two_rules_score() -> None:
    ps = [pay(f"h{i}", i, amount=1.0, country="DE") for i in range(4)]
    ps.append(pay("p", 5, amount=1.0, country="FR"))
    alerts = evaluate(ps)
    assert alerts["p"].rules == ["card_testing", "impossible_travel"]
    assert alerts["p"].score == 0.88


def test_score_and_weights() -> None:
    assert WEIGHTS == {"card_testing": 0.6, "velocity": 0.5, "amount_spike": 0.5, "impossible_travel": 0.7}
    assert score([]) == 0.0
    assert score(["velocity", "amount_spike"]) == 0.75
    assert score(["impossible_travel", "card_testing"]) == 0.88


def test_result_does_not_depend_on_input_order_and_accepts_dicts() -> None:
    rng = random.Random(7)
    ps = [
        pay(f"e{i:04d}", rng.uniform(0, 900), user=f"u{rng.randrange(3)}", card=f"c{rng.randrange(4)}",
            amount=rng.choice([0.5, 1.5, 20.0, 40.0, 900.0]), country=rng.choice(["DE", "DE", "FR"]))
        for i in range(400)
    ]  # fmt: skip
    expected = evaluate(ps)
    assert expected  # the scenario does flag something
    for _ in range(3):
        shuffled = ps[:]
        rng.shuffle(shuffled)
        assert evaluate(shuffled) == expected
    as_dicts = [{**p.__dict__, "event_time": p.event_time.isoformat().replace("+00:00", "Z")} for p in reversed(ps)]
    assert evaluate(as_dicts) == expected


def _brute_force(ps: list[Payment]) -> dict[str, list[str]]:
    """The definitions, literally, in O(n^2)."""
    out: dict[str, list[str]] = {}
    w60, w600 = timedelta(seconds=60), timedelta(seconds=600)
    for p in ps:
        fired = []
        card = [q for q in ps if q.card_number == p.card_number]
        user = [q for q in ps if q.user_id == p.user_id]
        if p.amount < 2 and sum(q.amount < 2 and p.event_time - w60 <= q.event_time <= p.event_time for q in card) >= 5:
            fired.append("card_testing")
        if sum(p.event_time - w60 <= q.event_time <= p.event_time for q in user) >= 10:
            fired.append("velocity")
        before = sorted(
            (q for q in user if (q.event_time, q.event_id) < (p.event_time, p.event_id)),
            key=lambda q: (q.event_time, q.event_id),
        )[-20:]
        if len(before) >= 5 and p.amount > 10 * statistics.median(q.amount for q in before):
            fired.append("amount_spike")
        if any(p.event_time - w600 <= q.event_time < p.event_time and q.country != p.country for q in card):
            fired.append("impossible_travel")
        if fired:
            out[p.event_id] = fired
    return out


def test_matches_a_brute_force_reading_of_the_definitions() -> None:
    rng = random.Random(11)
    ps = []
    for i in range(600):
        t = rng.choice([rng.uniform(0, 1200), rng.randrange(0, 1200, 30)])  # many exact boundaries
        ps.append(
            pay(
                f"e{i:04d}",
                t,
                user=f"u{rng.randrange(4)}",
                card=f"c{rng.randrange(6)}",
                amount=rng.choice([0.5, 1.99, 2.0, 10.0, 12.0, 100.0, 120.0, 1500.0]),
                country=rng.choice(["DE", "DE", "DE", "FR"]),
            )
        )
    got = {eid: a.rules for eid, a in evaluate(ps).items()}
    assert got == _brute_force(ps)
    assert {r for rules in got.values() for r in rules} == set(RULES)


def test_rejects_a_repeated_event_id_and_naive_times() -> None:
    with pytest.raises(ValueError, match="occurs twice"):
        evaluate([pay("a", 0), pay("a", 1)])
    with pytest.raises(ValueError, match="timezone-aware"):
        Payment("n", datetime(2026, 1, 1), "u", "c", 1.0, "DE")
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate([{**pay("a", 0).__dict__, "event_time": "2026-01-01T00:00:00"}])


def test_scales_to_100k_payments() -> None:
    rng = random.Random(3)
    ps = [
        pay(f"e{i:06d}", i * 0.01, user=f"u{rng.randrange(20000)}", card=f"c{rng.randrange(25000)}",
            amount=rng.uniform(2.5, 20), country="DE")
        for i in range(100_000)
    ]  # fmt: skip
    import time

    t0 = time.perf_counter()
    evaluate(ps)
    assert time.perf_counter() - t0 < 10
