"""Reference implementation of the fraud rules of the data contract (CONTRACTS.md §3).

Pure Python, no Spark: the streaming implementation of ``gold.fraud_alerts`` is
tested against this module, and the event generator uses it to compute the
expected alerts of a run. The definitions below are the exact ones.

Population
    Payments with ``event_id`` (str), ``event_time`` (timezone-aware datetime,
    millisecond precision, UTC), ``user_id``, ``card_number`` (str), ``amount``
    (float), ``country`` (str) and ``merchant_id``. Only valid payments and the first
    occurrence of each ``event_id`` (late payments included: they are judged too): the
    caller passes only those (``evaluate`` rejects a repeated ``event_id``).

Order within a key (card or user)
    By ``(event_time, event_id)``. The result never depends on the input order.

card_testing
    ``p.amount < 2.00`` AND the number of payments ``q`` on the same
    ``card_number`` with ``q.amount < 2.00`` and
    ``p.event_time - 60 s <= q.event_time <= p.event_time`` (``p`` itself
    included, both ends inclusive) is ``>= 5``.

velocity
    The number of payments ``q`` by the same ``user_id`` with
    ``p.event_time - 60 s <= q.event_time <= p.event_time`` (``p`` included, both
    ends inclusive) is ``>= 10``.

amount_spike
    ``prev`` = the (up to) 20 payments of the same user immediately before ``p``
    in ``(event_time, event_id)`` order; ``len(prev) >= 5`` AND
    ``p.amount > 10 * median(prev amounts)`` (``statistics.median``: the mean of
    the two middle values for an even count). Exactly 10x does not fire.

impossible_travel
    There is a payment ``q`` on the same ``card_number`` with
    ``p.event_time - 600 s <= q.event_time < p.event_time`` (strictly before; a
    ``q`` at the same instant as ``p`` does not count) and
    ``q.country != p.country``.

rules
    The names of the rules that fired, in the fixed order of :data:`RULES`.

score
    ``1 - prod(1 - WEIGHTS[r] for r in rules)``, rounded to 4 decimals, with
    weights card_testing 0.6, velocity 0.5, amount_spike 0.5,
    impossible_travel 0.7.

``evaluate`` sorts each key's payments once and uses bisection over the sorted
event times, so it is O(n log n) overall (fine for hundreds of thousands).
"""

from __future__ import annotations

import statistics
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

#: Rule names, in the order they are listed in an alert.
RULES: tuple[str, ...] = ("card_testing", "velocity", "amount_spike", "impossible_travel")

#: Weight of each rule in the combined score.
WEIGHTS: dict[str, float] = {"card_testing": 0.6, "velocity": 0.5, "amount_spike": 0.5, "impossible_travel": 0.7}

CARD_TESTING_AMOUNT = 2.00
CARD_TESTING_MIN_COUNT = 5
CARD_TESTING_WINDOW = timedelta(seconds=60)
VELOCITY_MIN_COUNT = 10
VELOCITY_WINDOW = timedelta(seconds=60)
SPIKE_HISTORY = 20
SPIKE_MIN_HISTORY = 5
SPIKE_FACTOR = 10.0
TRAVEL_WINDOW = timedelta(seconds=600)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Payment:
    """The fields of a payment the rules look at."""

    event_id: str
    event_time: datetime
    user_id: str
    card_number: str
    amount: float
    country: str
    merchant_id: str = ""

    def __post_init__(self) -> None:
        if self.event_time.tzinfo is None or self.event_time.utcoffset() is None:
            raise ValueError(f"event_time must be timezone-aware, got {self.event_time!r} (event {self.event_id})")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> Payment:
        """From a dict (e.g. a parsed event): ``event_time`` may be an aware datetime or an ISO-8601 string."""
        return cls(
            event_id=str(m["event_id"]),
            event_time=parse_time(m["event_time"]),
            user_id=str(m["user_id"]),
            card_number=str(m["card_number"]),
            amount=float(m["amount"]),
            country=str(m["country"]),
            merchant_id=str(m.get("merchant_id", "")),
        )


@dataclass(frozen=True)
class Alert:
    """A flagged payment: the rules that fired (in :data:`RULES` order) and the combined score."""

    event_id: str
    rules: list[str]
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"rules": list(self.rules), "score": self.score}


def parse_time(value: datetime | str) -> datetime:
    """An aware datetime from a datetime or an ISO-8601 string with a zone ('Z' accepted)."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"event_time must be timezone-aware, got {value!r}")
    return dt.astimezone(UTC)


def score(rules: Iterable[str]) -> float:
    """``1 - prod(1 - w_r)`` over the fired rules, rounded to 4 decimals."""
    fired = set(rules)
    keep = 1.0
    for rule in RULES:
        if rule in fired:
            keep *= 1.0 - WEIGHTS[rule]
    return round(1.0 - keep, 4)


def _micros(dt: datetime) -> int:
    return (dt - _EPOCH) // _US


def _count_in_window(times: list[int], t: int, width: int) -> int:
    """How many of the sorted ``times`` lie in ``[t - width, t]`` (both ends inclusive)."""
    return bisect_right(times, t) - bisect_left(times, t - width)


def evaluate(payments: Iterable[Payment | Mapping[str, Any]]) -> dict[str, Alert]:
    """Apply the four rules; return ``{event_id: Alert}`` for the flagged payments only."""
    items = [p if isinstance(p, Payment) else Payment.from_mapping(p) for p in payments]
    seen: set[str] = set()
    for p in items:
        if p.event_id in seen:
            raise ValueError(f"event_id {p.event_id!r} occurs twice: pass the first occurrence of each event only")
        seen.add(p.event_id)

    micros = {p.event_id: _micros(p.event_time) for p in items}

    def order(p: Payment) -> tuple[int, str]:
        return micros[p.event_id], p.event_id

    by_card: dict[str, list[Payment]] = defaultdict(list)
    by_user: dict[str, list[Payment]] = defaultdict(list)
    for p in items:
        by_card[p.card_number].append(p)
        by_user[p.user_id].append(p)

    fired: dict[str, set[str]] = defaultdict(set)

    ct_width = CARD_TESTING_WINDOW // _US
    tr_width = TRAVEL_WINDOW // _US
    for group in by_card.values():
        group.sort(key=order)
        # card_testing: small payments only, counted in the inclusive 60 s window ending at p.
        small = [micros[p.event_id] for p in group if p.amount < CARD_TESTING_AMOUNT]
        for p in group:
            t = micros[p.event_id]
            if p.amount < CARD_TESTING_AMOUNT and _count_in_window(small, t, ct_width) >= CARD_TESTING_MIN_COUNT:
                fired[p.event_id].add("card_testing")
        # impossible_travel: any q in [t - 600 s, t) with another country. run_start[k] is the first
        # index of the run of equal countries that contains k, so [lo, hi) is one country iff
        # run_start[hi - 1] <= lo.
        times = [micros[p.event_id] for p in group]
        run_start: list[int] = []
        for k, p in enumerate(group):
            same = k > 0 and group[k - 1].country == p.country
            run_start.append(run_start[k - 1] if same else k)
        for p in group:
            t = micros[p.event_id]
            lo = bisect_left(times, t - tr_width)
            hi = bisect_left(times, t)
            if hi <= lo:
                continue
            last = hi - 1
            if group[last].country != p.country or run_start[last] > lo:
                fired[p.event_id].add("impossible_travel")

    v_width = VELOCITY_WINDOW // _US
    for group in by_user.values():
        group.sort(key=order)
        times = [micros[p.event_id] for p in group]
        for k, p in enumerate(group):
            if _count_in_window(times, times[k], v_width) >= VELOCITY_MIN_COUNT:
                fired[p.event_id].add("velocity")
            if k >= SPIKE_MIN_HISTORY:
                prev = [q.amount for q in group[max(0, k - SPIKE_HISTORY) : k]]
                if p.amount > SPIKE_FACTOR * statistics.median(prev):
                    fired[p.event_id].add("amount_spike")

    alerts: dict[str, Alert] = {}
    for event_id in sorted(fired):
        rules = [r for r in RULES if r in fired[event_id]]
        alerts[event_id] = Alert(event_id=event_id, rules=rules, score=score(rules))
    return alerts
