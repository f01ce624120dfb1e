"""Seeded, reproducible event generator for the three contract topics, with ground truth.

``generate(cfg)`` is pure: from a :class:`GeneratorConfig` it builds the ordered
list of Kafka records to send and the :class:`GroundTruth` of the run (what every
record is, the expected counts per topic and the fraud alerts the platform must
raise). The same config gives byte-identical output. Sending them is
``lakehouse.generator.produce``, the package's only I/O.

Time line
    Normal events are spaced ``1/rate`` seconds of event time apart from
    ``start_time``; the topic of each slot is drawn with weights payments 40,
    clickstream 40, iot 20 (among the selected topics). Fraud pattern instances
    and anomalies are placed at random inside the run; the run is stretched to
    the longest injected pattern when that is longer than the normal traffic.
    Records are sent in event-time order, except the ``out_of_order`` ones (sent
    up to 5 minutes of event time later), duplicates (resent less than 5 minutes
    of event time after their original's event time, never before the original)
    and the ``late`` events (20 to 60 minutes before ``start_time``, sent last).

Normal traffic never fires a fraud rule: amounts are at least 2.50 and within a
factor 9 of each other per user (no card_testing, no amount_spike), each user has
one country (no impossible_travel) and the user pool is large enough that no user
pays 10 times in a minute (no velocity).

World (users, cards, merchants, devices) derives from ``seed`` alone, so two runs
with the same seed share it; everything else (event ids, times, amounts) derives
from the whole config, so two different runs never share an event id.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse import fraud_reference
from lakehouse.contracts import TOPICS

if TYPE_CHECKING:
    pass

TOPIC_NAMES: tuple[str, ...] = tuple(t.name for t in TOPICS)
TOPIC_WEIGHTS: dict[str, int] = {"payments": 40, "clickstream": 40, "iot": 20}

FRAUD_PATTERNS: tuple[str, ...] = ("card_testing", "velocity", "amount_spike", "impossible_travel")
INVALID_KINDS: tuple[str, ...] = (
    "not_json",
    "not_object",
    "missing_required",
    "wrong_type",
    "out_of_range",
    "bad_enum",
    "bad_pattern",
    "bad_datetime",
    "future_time",
    "too_long",
    "not_utf8",
    "too_deep",
)
RECORD_KINDS: tuple[str, ...] = ("valid", "duplicate", "invalid", "late")

#: Event-time span of each fraud pattern instance (ms).
PATTERN_SPAN_MS: dict[str, int] = {
    "card_testing": 40_000,
    "velocity": 50_000,
    "amount_spike": 100_000,
    "impossible_travel": 180_000,
}
#: Out-of-order and duplicate records are sent at most this much event time after their own event time.
MAX_DISPLACEMENT_MS = 5 * 60_000 - 1
DUPLICATE_DELAY_MS = 30_000
LATE_MIN_MS = 20 * 60_000
LATE_MAX_MS = 60 * 60_000
FUTURE_OFFSET_MS = 3 * 24 * 3600_000
EXTRA_FIELD_SHARE = 0.02
TRUTH_FORMAT = 1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_COUNTRIES: dict[str, tuple[str, float, float]] = {  # country -> (currency, lat, lon)
    "DE": ("EUR", 51.2, 10.4),
    "FR": ("EUR", 46.6, 2.2),
    "ES": ("EUR", 40.4, -3.7),
    "IT": ("EUR", 42.8, 12.6),
    "NL": ("EUR", 52.1, 5.3),
    "IE": ("EUR", 53.4, -8.2),
    "GB": ("GBP", 54.0, -2.0),
    "US": ("USD", 39.8, -98.6),
    "PL": ("EUR", 52.1, 19.4),
    "SE": ("EUR", 60.1, 18.6),
}
_CATEGORIES = (
    "grocery",
    "electronics",
    "fashion",
    "travel",
    "restaurants",
    "fuel",
    "entertainment",
    "health",
    "home",
    "digital",
)
_CHANNELS = ("web", "pos", "mobile")
_DEVICES = ("desktop", "mobile", "tablet")
_SENSORS: dict[str, tuple[str, float, float, float, float, float]] = {
    # sensor -> (unit, baseline low, baseline high, noise sd, safe low, safe high); safe band is inside NORMAL_RANGES
    "temperature": ("C", 15.0, 28.0, 1.5, -5.0, 45.0),
    "humidity": ("%", 30.0, 70.0, 4.0, 5.0, 95.0),
    "pressure": ("hPa", 990.0, 1030.0, 3.0, 950.0, 1050.0),
    "vibration": ("mm/s", 1.0, 8.0, 1.5, 0.1, 30.0),
}
_ANOMALY_BANDS: dict[str, tuple[tuple[float, float], ...]] = {
    "temperature": ((61.0, 120.0), (-60.0, -31.0)),
    "humidity": ((101.0, 140.0), (-20.0, -1.0)),
    "pressure": ((700.0, 860.0), (1095.0, 1200.0)),
    "vibration": ((51.0, 250.0),),
}
_FIRMWARE = ("1.4.2", "1.5.0", "2.0.1")
_EXPERIMENTS = ("a", "b")
_CATEGORY_PAGES = ("/category/shoes", "/category/phones", "/category/books", "/category/garden")
_REFERRERS = ("https://www.google.com/", "https://www.bing.com/", "https://news.example.com/", None)

#: For each invalid kind and topic: the field it violates (None: the record as a whole).
_INVALID_FIELDS: dict[str, dict[str, str | None]] = {
    "not_json": {"payments": None, "clickstream": None, "iot": None},
    "not_object": {"payments": None, "clickstream": None, "iot": None},
    "missing_required": {"payments": "amount", "clickstream": "event_type", "iot": "value"},
    "wrong_type": {"payments": "amount", "clickstream": "duration_ms", "iot": "value"},
    "out_of_range": {"payments": "amount", "clickstream": "duration_ms", "iot": "battery_pct"},
    "bad_enum": {"payments": "channel", "clickstream": "event_type", "iot": "sensor_type"},
    "bad_pattern": {"payments": "country", "clickstream": "country"},  # iot has no pattern-constrained field
    "bad_datetime": {"payments": "event_time", "clickstream": "event_time", "iot": "event_time"},
    "future_time": {"payments": "event_time", "clickstream": "event_time", "iot": "event_time"},
    "too_long": {"payments": "event_id", "clickstream": "event_id", "iot": "event_id"},
    # Poison: bytes a parser must refuse without falling over (the record as a whole is invalid).
    "not_utf8": {"payments": None, "clickstream": None, "iot": None},
    "too_deep": {"payments": None, "clickstream": None, "iot": None},
}
#: An ``oversized`` record's value: just under the 1 MiB a Kafka client sends in one request and a
#: broker accepts by default (``max.request.size``, ``message.max.bytes``).
OVERSIZED_BYTES = 1_000_000
#: ``too_deep``'s nesting: past the 1,000 levels Jackson's (and Python's) parsers allow by default.
TOO_DEEP_LEVELS = 5_000


class GeneratorError(ValueError):
    """A generator configuration that cannot work, explained in one message."""


# --------------------------------------------------------------------------- config


@dataclass
class GeneratorConfig:
    """What to generate. ``count`` wins over ``duration_s``; neither: 1000 normal events.

    ``start_time`` defaults to now minus the run's span, so every event time is in the
    recent past; it is resolved (and truncated to milliseconds) on construction, which
    keeps :func:`generate` pure.
    """

    seed: int = 42
    rate: float = 200.0
    count: int | None = None
    duration_s: float | None = None
    topics: tuple[str, ...] = TOPIC_NAMES
    start_time: datetime | None = None
    throttle: bool = False
    fraud_card_testing: int = 0
    fraud_velocity: int = 0
    fraud_amount_spike: int = 0
    fraud_impossible_travel: int = 0
    anomalies: int = 0
    duplicates: int = 0
    out_of_order: float = 0.0
    late: int = 0
    invalid: int = 0
    #: Valid events padded with an unknown field to OVERSIZED_BYTES: records at the broker's size limit.
    oversized: int = 0
    #: Partition count assumed for duplicates sent to "the next" partition; produce() re-maps when the topic differs.
    partitions: int = 6

    def __post_init__(self) -> None:
        if not (isinstance(self.rate, int | float) and math.isfinite(self.rate) and self.rate > 0):
            raise GeneratorError(f"rate must be a positive number of events per second, got {self.rate!r}")
        if self.count is not None and self.count < 0:
            raise GeneratorError(f"count must be >= 0, got {self.count}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise GeneratorError(f"duration_s must be > 0, got {self.duration_s}")
        topics = tuple(self.topics)
        unknown = [t for t in topics if t not in TOPIC_NAMES]
        if unknown or not topics:
            raise GeneratorError(
                f"topics must be a non-empty subset of {', '.join(TOPIC_NAMES)}; got {', '.join(topics) or 'none'}"
            )
        self.topics = tuple(t for t in TOPIC_NAMES if t in topics)  # canonical order, no repeats
        for name in ("fraud_card_testing", "fraud_velocity", "fraud_amount_spike", "fraud_impossible_travel"):
            if getattr(self, name) < 0:
                raise GeneratorError(f"{name} must be >= 0")
        for name in ("anomalies", "duplicates", "late", "invalid", "oversized"):
            if getattr(self, name) < 0:
                raise GeneratorError(f"{name} must be >= 0")
        if not 0.0 <= self.out_of_order <= 1.0:
            raise GeneratorError(f"out_of_order is a fraction between 0 and 1, got {self.out_of_order}")
        if self.partitions < 1:
            raise GeneratorError(f"partitions must be >= 1, got {self.partitions}")
        if self.fraud_total and "payments" not in self.topics:
            raise GeneratorError("fraud patterns are payments: add 'payments' to the topics")
        if self.anomalies and "iot" not in self.topics:
            raise GeneratorError("anomalies are iot readings: add 'iot' to the topics")
        if self.duplicates and self.normal_count + self.fraud_events + self.anomalies == 0:
            raise GeneratorError("duplicates need events to duplicate: count (or injections) must be > 0")
        if self.start_time is None:
            now = datetime.now(UTC)
            self.start_time = now - timedelta(milliseconds=self.span_ms)
        if self.start_time.tzinfo is None or self.start_time.utcoffset() is None:
            raise GeneratorError(f"start_time must be timezone-aware (UTC), got {self.start_time.isoformat()}")
        st = self.start_time.astimezone(UTC)
        self.start_time = st.replace(microsecond=st.microsecond // 1000 * 1000)

    @classmethod
    def every_fault(cls, count: int, **overrides: Any) -> GeneratorConfig:
        """COUNT normal events plus every injection the generator knows, scaled with COUNT.

        Per 1,200 events one instance of each fraud pattern (at least one), per 160 an iot
        anomaly, per 60 a duplicate, per 120 an invalid record, and 5 % sent out of order;
        no late events (they need a ``start_time`` far enough back). OVERRIDES set any other
        field or replace a default, e.g. ``every_fault(2400, seed=11, late=25)``. The demo,
        the pipeline tests and the benchmarks share this mix.
        """
        k = max(1, count // 1200)
        mix: dict[str, Any] = {
            "fraud_card_testing": k,
            "fraud_velocity": k,
            "fraud_amount_spike": k,
            "fraud_impossible_travel": k,
            "anomalies": count // 160,
            "duplicates": count // 60,
            "out_of_order": 0.05,
            "invalid": count // 120,
        }
        return cls(count=count, **{**mix, **overrides})

    @property
    def normal_count(self) -> int:
        """Number of normal events (count wins over duration_s; default 1000)."""
        if self.count is not None:
            return self.count
        if self.duration_s is not None:
            return round(self.duration_s * self.rate)
        return 1000

    @property
    def fraud_instances(self) -> dict[str, int]:
        return {
            "card_testing": self.fraud_card_testing,
            "velocity": self.fraud_velocity,
            "amount_spike": self.fraud_amount_spike,
            "impossible_travel": self.fraud_impossible_travel,
        }

    @property
    def fraud_total(self) -> int:
        return sum(self.fraud_instances.values())

    @property
    def fraud_events(self) -> int:
        per_instance = {"card_testing": 6, "velocity": 11, "amount_spike": 9, "impossible_travel": 2}
        return sum(n * per_instance[p] for p, n in self.fraud_instances.items())

    @property
    def span_ms(self) -> int:
        """Event-time length of the run: the normal traffic, stretched to the longest injected pattern."""
        if self.count is None and self.duration_s is not None:
            normal = round(self.duration_s * 1000)
        else:
            normal = math.ceil(self.normal_count * 1000 / self.rate)
        patterns = [PATTERN_SPAN_MS[p] + 1000 for p, n in self.fraud_instances.items() if n]
        return max([normal, *patterns])

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["topics"] = list(self.topics)
        d["start_time"] = _fmt_dt(self._start())
        return d

    def _start(self) -> datetime:
        assert self.start_time is not None  # resolved in __post_init__
        return self.start_time

    def fingerprint(self) -> str:
        """Everything that shapes the generated bytes (not ``throttle``, which only paces sending)."""
        d = self.as_dict()
        d.pop("throttle")
        if not d.get("oversized"):
            d.pop("oversized", None)  # added later: runs without any keep the bytes they had
        return json.dumps(d, sort_keys=True)


# --------------------------------------------------------------------------- records and truth


@dataclass(frozen=True)
class Record:
    """One Kafka record to send, with what it is."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None  # explicit partition, or None: the producer's key hash decides
    event_id: str | None
    kind: str  # valid | duplicate | invalid | late
    invalid_kind: str | None = None
    field: str | None = None
    flags: tuple[str, ...] = ()  # injected pattern names: card_testing ... impossible_travel, anomaly, out_of_order
    event_time: str | None = None


@dataclass
class GroundTruth:
    """What a run (or several merged runs) sent and what the platform must make of it. JSON-serialisable."""

    runs: list[dict[str, Any]]
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    injected: dict[str, Any]
    payments: list[dict[str, Any]]
    expected_fraud_alerts: dict[str, dict[str, Any]]
    format: int = TRUTH_FORMAT

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "runs": self.runs,
            "summary": self.summary,
            "injected": self.injected,
            "expected_fraud_alerts": self.expected_fraud_alerts,
            "records": self.records,
            "payments": self.payments,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroundTruth:
        return cls(
            runs=data["runs"],
            records=data["records"],
            summary=data["summary"],
            injected=data["injected"],
            payments=data["payments"],
            expected_fraud_alerts=data["expected_fraud_alerts"],
            format=data.get("format", TRUTH_FORMAT),
        )

    def write(self, path: str | Path) -> Path:
        return write_ground_truth(self, path)


@dataclass(frozen=True)
class GeneratedRun:
    config: GeneratorConfig
    records: list[Record]
    truth: GroundTruth
    start_time: datetime
    end_time: datetime


def write_ground_truth(truth: GroundTruth, path: str | Path) -> Path:
    """Write the truth as JSON (parent directories created); return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(truth.to_json(), indent=1) + "\n", encoding="utf-8")
    tmp.replace(p)
    return p


def load_ground_truth(path: str | Path) -> GroundTruth:
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return GroundTruth.from_json(data)


# --------------------------------------------------------------------------- helpers


def _fmt_ms(ms: int) -> str:
    return _fmt_dt(_EPOCH + timedelta(milliseconds=ms))


def _fmt_dt(dt: datetime) -> str:
    dt = dt.astimezone(UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def _to_ms(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def default_partition(key: bytes, partitions: int) -> int:
    """The partition kafka-python's (and Java's) default partitioner picks for a keyed record."""
    from kafka.partitioner.default import murmur2

    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


def _luhn_card(rng: random.Random, prefix: str) -> str:
    n = 15 - len(prefix)
    digits = prefix + str(rng.randrange(10**n)).zfill(n)
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # doubled positions, counted from the (future) check digit
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return digits + str((10 - total % 10) % 10)


def _base_amount(rng: random.Random) -> float:
    """A user's typical spend: lognormal around 40, within [7.50, 2000]."""
    return min(2000.0, max(7.5, rng.lognormvariate(math.log(40.0), 0.8)))


def _amount(rng: random.Random, base: float) -> float:
    """A normal payment of a user: within [base/3, 3*base], so no two differ by 10x (and >= 2.50)."""
    return round(min(3 * base, max(base / 3, base * rng.lognormvariate(0.0, 0.35))), 2)


@dataclass(frozen=True)
class _User:
    user_id: str
    country: str
    cards: tuple[str, ...]
    base: float


@dataclass
class _Device:
    device_id: str
    sensor_type: str
    baseline: float
    firmware: str
    battery: float
    readings: int = 0


@dataclass
class _Session:
    session_id: str
    user_id: str | None
    device: str
    country: str
    steps: list[tuple[str, str]]
    pos: int = 0
    page: str | None = None


class _World:
    """Users, merchants and devices: derived from the seed alone, each lazily from its own RNG."""

    def __init__(self, seed: int, rate: float) -> None:
        self.seed = seed
        self.n_users = max(2000, int(rate * 100))
        self.n_merchants = 500
        self.n_devices = max(50, int(rate / 2))
        self._users: dict[int, _User] = {}
        self._devices: dict[int, _Device] = {}
        self._categories: dict[int, str] = {}

    def _rng(self, what: str, i: int) -> random.Random:
        return random.Random(f"lakehouse-world|{self.seed}|{what}|{i}")  # noqa: S311 - synthetic data, not crypto

    def user(self, i: int) -> _User:
        u = self._users.get(i)
        if u is None:
            r = self._rng("user", i)
            country = r.choice(sorted(_COUNTRIES))
            cards = tuple(_luhn_card(r, "4") for _ in range(1 if r.random() < 0.7 else 2))
            u = _User(f"u-{i:05d}", country, cards, _base_amount(r))
            self._users[i] = u
        return u

    def merchant(self, i: int) -> tuple[str, str]:
        cat = self._categories.get(i)
        if cat is None:
            cat = self._rng("merchant", i).choice(_CATEGORIES)
            self._categories[i] = cat
        return f"m-{i + 1:04d}", cat

    def device(self, i: int) -> _Device:
        d = self._devices.get(i)
        if d is None:
            r = self._rng("device", i)
            sensor = tuple(_SENSORS)[i % len(_SENSORS)]
            _unit, lo, hi, _sd, _slo, _shi = _SENSORS[sensor]
            d = _Device(f"dev-{i + 1:04d}", sensor, r.uniform(lo, hi), r.choice(_FIRMWARE), r.uniform(40.0, 100.0))
            self._devices[i] = d
        return d


@dataclass
class _Event:
    seq: int
    topic: str
    key: str
    body: dict[str, Any]
    t_ms: int
    send_ms: int
    kind: str = "valid"
    flags: list[str] = field(default_factory=list)
    partition: int | None = None
    invalid_kind: str | None = None
    field: str | None = None
    raw: bytes | None = None  # value bytes, when not json.dumps(body)


class _Builder:
    def __init__(self, cfg: GeneratorConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"lakehouse-run|{cfg.seed}|{cfg.fingerprint()}")  # noqa: S311 - synthetic data
        self.world = _World(cfg.seed, cfg.rate)
        self.start_ms = _to_ms(cfg._start())
        self.span_ms = cfg.span_ms
        self.end_ms = self.start_ms + self.span_ms
        self.seq = 0
        self.sessions: list[_Session] = []
        self.topic_weights = [TOPIC_WEIGHTS[t] for t in cfg.topics]

    # -- ids and times
    def event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def random_time(self) -> int:
        return self.start_ms + self.rng.randint(0, self.span_ms)

    def event(self, topic: str, key: str, body: dict[str, Any], t_ms: int, flags: Sequence[str] = ()) -> _Event:
        tags = [*flags, "extra_field"] if "experiment" in body else list(flags)
        return _Event(self.next_seq(), topic, key, body, t_ms, t_ms, flags=tags)

    def maybe_extra(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.rng.random() < EXTRA_FIELD_SHARE:
            body["experiment"] = self.rng.choice(_EXPERIMENTS)
            body["schema_version"] = 2
        return body

    # -- payments
    def payment_body(
        self, t_ms: int, user_id: str, card: str, amount: float, country: str, *, small_merchant: bool = False
    ) -> dict[str, Any]:
        rng = self.rng
        merchant_id, category = self.world.merchant(rng.randrange(40 if small_merchant else self.world.n_merchants))
        currency, lat, lon = _COUNTRIES[country]
        return {
            "event_id": self.event_id(),
            "event_time": _fmt_ms(t_ms),
            "user_id": user_id,
            "card_number": card,
            "merchant_id": merchant_id,
            "merchant_category": category,
            "amount": amount,
            "currency": currency,
            "country": country,
            "channel": rng.choice(_CHANNELS),
            "lat": round(lat + rng.uniform(-1.0, 1.0), 4),
            "lon": round(lon + rng.uniform(-1.0, 1.0), 4),
            "schema_version": 1,
        }

    def normal_payment(self, t_ms: int) -> _Event:
        user = self.world.user(self.rng.randrange(self.world.n_users))
        card = self.rng.choice(user.cards)
        body = self.payment_body(t_ms, user.user_id, card, _amount(self.rng, user.base), user.country)
        return self.event("payments", user.user_id, self.maybe_extra(body), t_ms)

    def fresh_user(self) -> _User:
        r = self.rng
        return _User(
            f"u-x{r.getrandbits(32):08x}", r.choice(sorted(_COUNTRIES)), (_luhn_card(r, "49"),), _base_amount(r)
        )

    # -- clickstream
    def new_session(self) -> _Session:
        rng = self.rng
        user = self.world.user(rng.randrange(self.world.n_users)) if rng.random() < 0.7 else None
        country = user.country if user else rng.choice(sorted(_COUNTRIES))
        steps: list[tuple[str, str]] = []
        page = rng.choice(("/", "/", *_CATEGORY_PAGES, f"/product/{rng.randint(1, 500)}"))
        steps.append(("page_view", page))
        while len(steps) < 20 and rng.random() > 0.12:
            x = rng.random()
            if page.startswith("/product/"):
                if x < 0.3:
                    steps.append(("add_to_cart", page))
                    if rng.random() < 0.5:
                        page = "/cart"
                        steps.append(("page_view", page))
                    continue
                if x < 0.5:
                    steps.append(("click", page))
                    continue
                if x < 0.8:
                    page = f"/product/{rng.randint(1, 500)}"
                    steps.append(("page_view", page))
                    continue
                page = "/search"
                steps.append(("search", page))
            elif page == "/cart":
                if x < 0.6:
                    page = "/checkout"
                    steps.append(("page_view", page))
                else:
                    page = f"/product/{rng.randint(1, 500)}"
                    steps.append(("page_view", page))
            elif page == "/checkout":
                if x < 0.7:
                    steps.append(("purchase", page))
                break
            else:  # home, category, search
                if x < 0.5:
                    page = f"/product/{rng.randint(1, 500)}"
                    steps.append(("page_view", page))
                elif x < 0.7:
                    page = "/search"
                    steps.append(("search", page))
                elif x < 0.9:
                    steps.append(("click", page))
                else:
                    page = rng.choice(_CATEGORY_PAGES)
                    steps.append(("page_view", page))
        return _Session(
            f"s-{rng.getrandbits(64):016x}",
            user.user_id if user else None,
            rng.choice(_DEVICES),
            country,
            steps,
        )

    def click_body(self, t_ms: int, s: _Session) -> dict[str, Any]:
        event_type, page = s.steps[s.pos]
        referrer = s.page if s.page is not None else self.rng.choice(_REFERRERS)
        s.pos += 1
        s.page = page
        return {
            "event_id": self.event_id(),
            "event_time": _fmt_ms(t_ms),
            "session_id": s.session_id,
            "user_id": s.user_id,
            "event_type": event_type,
            "page": page,
            "referrer": referrer,
            "device": s.device,
            "country": s.country,
            "duration_ms": self.rng.randint(50, 60_000),
            "schema_version": 1,
        }

    def normal_click(self, t_ms: int, *, detached: bool = False) -> _Event:
        """The next event of a random open session (or of a new one); ``detached``: a one-off session."""
        rng = self.rng
        sessions = self.sessions
        if detached:
            s, idx = self.new_session(), -1
        elif not sessions or (len(sessions) < 400 and rng.random() < 0.2):
            s = self.new_session()
            sessions.append(s)
            idx = len(sessions) - 1
        else:
            idx = rng.randrange(len(sessions))
            s = sessions[idx]
        body = self.click_body(t_ms, s)
        if idx >= 0 and s.pos >= len(s.steps):  # finished: swap-remove
            last = sessions.pop()
            if idx < len(sessions):
                sessions[idx] = last
        return self.event("clickstream", s.session_id, self.maybe_extra(body), t_ms)

    # -- iot
    def iot_body(self, t_ms: int, d: _Device, value: float | None = None) -> dict[str, Any]:
        unit, _lo, _hi, sd, safe_lo, safe_hi = _SENSORS[d.sensor_type]
        if value is None:
            value = round(min(safe_hi, max(safe_lo, self.rng.gauss(d.baseline, sd))), 2)
        d.readings += 1
        return {
            "event_id": self.event_id(),
            "event_time": _fmt_ms(t_ms),
            "device_id": d.device_id,
            "sensor_type": d.sensor_type,
            "value": value,
            "unit": unit,
            "battery_pct": round(min(100.0, max(1.0, d.battery - 0.005 * d.readings)), 1),
            "firmware": d.firmware,
            "schema_version": 1,
        }

    def normal_iot(self, t_ms: int) -> _Event:
        d = self.world.device(self.rng.randrange(self.world.n_devices))
        return self.event("iot", d.device_id, self.maybe_extra(self.iot_body(t_ms, d)), t_ms)

    def normal(self, topic: str, t_ms: int, *, detached: bool = False) -> _Event:
        if topic == "payments":
            return self.normal_payment(t_ms)
        if topic == "clickstream":
            return self.normal_click(t_ms, detached=detached)
        return self.normal_iot(t_ms)

    # -- injections
    def pattern(self, name: str) -> list[_Event]:
        rng = self.rng
        user = self.fresh_user()
        card = user.cards[0]
        t0 = self.start_ms + rng.randint(0, max(0, self.span_ms - PATTERN_SPAN_MS[name]))
        if name == "card_testing":  # 6 payments under 2.00 on one card within 40 s
            offsets = [0, *sorted(rng.sample(range(1, PATTERN_SPAN_MS[name] + 1), 5))]
            amounts = [round(rng.uniform(0.5, 1.99), 2) for _ in offsets]
            countries = [user.country] * len(offsets)
        elif name == "velocity":  # 11 payments by one user (one card, one country) within 50 s
            offsets = [0, *sorted(rng.sample(range(1, PATTERN_SPAN_MS[name] + 1), 10))]
            amounts = [_amount(rng, user.base) for _ in offsets]
            countries = [user.country] * len(offsets)
        elif name == "amount_spike":  # 8 normal payments, then one > 20x their median
            offsets = [k * 10_000 + rng.randint(0, 5_000) for k in range(8)]
            amounts = [_amount(rng, user.base) for _ in offsets]
            offsets.append(90_000 + rng.randint(0, 5_000))
            amounts.append(round(statistics.median(amounts) * rng.uniform(21.0, 40.0), 2))
            countries = [user.country] * len(offsets)
        else:  # impossible_travel: two payments on one card, 3 minutes apart, two countries
            offsets = [0, 180_000]
            amounts = [_amount(rng, user.base) for _ in offsets]
            other = rng.choice([c for c in sorted(_COUNTRIES) if c != user.country])
            countries = [user.country, other]
        events = []
        for off, amount, country in zip(offsets, amounts, countries, strict=True):
            t = t0 + off
            body = self.payment_body(t, user.user_id, card, amount, country, small_merchant=name == "card_testing")
            events.append(self.event("payments", user.user_id, self.maybe_extra(body), t, flags=[name]))
        return events

    def anomaly(self) -> _Event:
        rng = self.rng
        d = self.world.device(rng.randrange(self.world.n_devices))
        lo, hi = rng.choice(_ANOMALY_BANDS[d.sensor_type])
        t = self.random_time()
        body = self.iot_body(t, d, value=round(rng.uniform(lo, hi), 2))
        return self.event("iot", d.device_id, body, t, flags=["anomaly"])

    def invalid(self, kind: str, topic: str) -> _Event:
        rng = self.rng
        t = self.random_time()
        ev = self.normal(topic, t, detached=True)
        body = ev.body
        fld = _INVALID_FIELDS[kind][topic]
        raw: bytes | None = None
        if kind == "not_json":
            raw = (
                '{"event_id": "' + body["event_id"] + '", "event_time": "' + body["event_time"] + '", broken'
            ).encode()
        elif kind == "not_object":
            raw = rng.choice([json.dumps([body["event_id"], body["event_time"]]), "42"]).encode()
        elif kind == "missing_required" and fld:
            del body[fld]
        elif kind == "wrong_type" and fld:
            body[fld] = str(body[fld])  # amount "12.5", value "21.37", duration_ms "1200"
        elif kind == "out_of_range" and fld:
            body[fld] = {"payments": -5.0, "clickstream": -1, "iot": 150.0}[topic]
        elif kind == "bad_enum" and fld:
            body[fld] = {"payments": "fax", "clickstream": "teleport", "iot": "smell"}[topic]
        elif kind == "bad_pattern":
            if topic == "payments" and rng.random() < 0.5:
                fld = "currency"
                body[fld] = "eu"
            else:
                body["country"] = "france"
        elif kind == "bad_datetime":
            body["event_time"] = rng.choice(["yesterday", "2026-13-45T25:61:00Z", "26/11/2026 10:15"])
        elif kind == "future_time":
            body["event_time"] = _fmt_ms(self.end_ms + FUTURE_OFFSET_MS + rng.randint(0, 3_600_000))
        elif kind == "too_long":
            body["event_id"] = (body["event_id"].replace("-", "") * 3)[:65]
        elif kind == "not_utf8":  # a valid record but for one Latin-1 byte: text from a mis-encoded client
            raw = _json(body)[:-1] + b',"note":"caf\xe9"}'
        elif kind == "too_deep":  # a parser that recursed would overflow its stack on it
            raw = _json(body)[:-1] + b',"tree":' + b"[" * TOO_DEEP_LEVELS + b"]" * TOO_DEEP_LEVELS + b"}"
        else:  # pragma: no cover - INVALID_KINDS is closed
            raise AssertionError(kind)
        ev.kind = "invalid"
        ev.invalid_kind = kind
        ev.field = fld
        ev.raw = raw
        ev.flags = []
        return ev

    def late_event(self) -> _Event:
        topic = self.rng.choices(self.cfg.topics, self.topic_weights)[0]
        t = self.start_ms - self.rng.randint(LATE_MIN_MS, LATE_MAX_MS)
        ev = self.normal(topic, t, detached=True)
        ev.kind = "late"
        return ev


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _value_bytes(ev: _Event) -> bytes:
    return ev.raw if ev.raw is not None else _json(ev.body)


# --------------------------------------------------------------------------- generate


def generate(cfg: GeneratorConfig) -> GeneratedRun:
    """Build the records of a run and its ground truth. Pure: the same config gives the same bytes."""
    b = _Builder(cfg)
    rng = b.rng
    topics = cfg.topics

    valid: list[_Event] = []
    for i in range(cfg.normal_count):
        t = b.start_ms + int(i * 1000 / cfg.rate)
        valid.append(b.normal(rng.choices(topics, b.topic_weights)[0], t))

    patterns: dict[str, list[list[str]]] = {p: [] for p in FRAUD_PATTERNS}
    for name, n in cfg.fraud_instances.items():
        for _ in range(n):
            evs = b.pattern(name)
            patterns[name].append([e.body["event_id"] for e in evs])
            valid.extend(evs)

    anomalies = [b.anomaly() for _ in range(cfg.anomalies)]
    valid.extend(anomalies)

    for _ in range(cfg.oversized):  # valid all the same: unknown fields are kept in silver's _extra
        ev = b.normal(rng.choices(topics, b.topic_weights)[0], b.random_time())
        ev.body["padding"] = ""
        ev.body["padding"] = "x" * (OVERSIZED_BYTES - len(_json(ev.body)))
        ev.flags = [*(f for f in ev.flags if f != "extra_field"), "extra_field", "oversized"]
        valid.append(ev)

    # Out of order: sent after events up to (just under) 5 minutes of event time later.
    n_ooo = round(cfg.out_of_order * len(valid))
    for idx in sorted(rng.sample(range(len(valid)), n_ooo)):
        ev = valid[idx]
        ev.send_ms = ev.t_ms + rng.randint(1, MAX_DISPLACEMENT_MS)
        ev.flags.append("out_of_order")

    # Duplicates: the same bytes again, after the original, about half to the next partition.
    duplicates: list[_Event] = []
    if cfg.duplicates:
        pool = sorted(valid, key=lambda e: e.seq)
        originals = (
            rng.sample(pool, cfg.duplicates) if cfg.duplicates <= len(pool) else rng.choices(pool, k=cfg.duplicates)
        )
        for j, orig in enumerate(originals):
            send = max(
                orig.send_ms, min(orig.send_ms + rng.randint(1, DUPLICATE_DELAY_MS), orig.t_ms + MAX_DISPLACEMENT_MS)
            )
            partition = None
            if j % 2 == 1:
                partition = (default_partition(orig.key.encode(), cfg.partitions) + 1) % cfg.partitions
            dup = _Event(b.next_seq(), orig.topic, orig.key, orig.body, orig.t_ms, send, "duplicate", [], partition)
            dup.raw = _value_bytes(orig)
            duplicates.append(dup)

    invalid: list[_Event] = []
    kinds = [k for k in INVALID_KINDS if any(t in _INVALID_FIELDS[k] for t in topics)]
    used: Counter[str] = Counter()
    for i in range(cfg.invalid):
        kind = kinds[i % len(kinds)]
        supporting = [t for t in topics if t in _INVALID_FIELDS[kind]]
        invalid.append(b.invalid(kind, supporting[used[kind] % len(supporting)]))
        used[kind] += 1

    late = sorted((b.late_event() for _ in range(cfg.late)), key=lambda e: (e.t_ms, e.seq))

    ordered = sorted([*valid, *duplicates, *invalid], key=lambda e: (e.send_ms, e.seq)) + late

    records = [
        Record(
            topic=ev.topic,
            key=ev.key.encode(),
            value=_value_bytes(ev),
            partition=ev.partition,
            event_id=None if ev.invalid_kind in ("not_json", "not_object") else str(ev.body.get("event_id")),
            kind=ev.kind,
            invalid_kind=ev.invalid_kind,
            field=ev.field,
            flags=tuple(ev.flags),
            event_time=None if ev.kind == "invalid" else str(ev.body["event_time"]),
        )
        for ev in ordered
    ]

    run_info = {
        "seed": cfg.seed,
        "start_time": _fmt_ms(b.start_ms),
        "end_time": _fmt_ms(b.end_ms),
        "config": cfg.as_dict(),
    }
    record_truth = [_record_truth(i, 0, r) for i, r in enumerate(records)]
    payments = [
        _payment_truth(ev.body, late=ev.kind == "late")
        for ev in sorted([*valid, *late], key=lambda e: e.seq)
        if ev.topic == "payments"
    ]
    injected = {
        "fraud_patterns": patterns,
        "anomalies": [e.body["event_id"] for e in anomalies],
    }
    truth = _build_truth([run_info], record_truth, injected, payments)
    start = _EPOCH + timedelta(milliseconds=b.start_ms)
    return GeneratedRun(cfg, records, truth, start, start + timedelta(milliseconds=b.span_ms))


def _record_truth(seq: int, run: int, r: Record) -> dict[str, Any]:
    return {
        "seq": seq,
        "run": run,
        "topic": r.topic,
        "key": r.key.decode() if r.key is not None else None,
        "partition": r.partition,
        "event_id": r.event_id,
        "event_time": r.event_time,
        "kind": r.kind,
        "invalid_kind": r.invalid_kind,
        "field": r.field,
        "injected": list(r.flags),
    }


def _payment_truth(body: dict[str, Any], *, late: bool) -> dict[str, Any]:
    keys = ("event_id", "event_time", "user_id", "card_number", "merchant_id", "amount", "country")
    return {**{k: body[k] for k in keys}, "late": late}


def _summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def empty() -> dict[str, Any]:
        return {
            "sent": 0,
            "valid_unique": 0,
            "on_time_unique": 0,
            "duplicates": 0,
            "late": 0,
            "invalid_total": 0,
            "invalid": dict.fromkeys(INVALID_KINDS, 0),
            "anomalies": 0,
            "out_of_order": 0,
            "extra_fields": 0,
        }

    out: dict[str, Any] = {t: empty() for t in TOPIC_NAMES}
    out["total"] = empty()
    for r in records:
        for s in (out[r["topic"]], out["total"]):
            s["sent"] += 1
            kind = r["kind"]
            if kind in ("valid", "late"):
                s["valid_unique"] += 1
                s["on_time_unique" if kind == "valid" else "late"] += 1
            elif kind == "duplicate":
                s["duplicates"] += 1
            else:
                s["invalid_total"] += 1
                s["invalid"][r["invalid_kind"]] += 1
            s["anomalies"] += "anomaly" in r["injected"]
            s["out_of_order"] += "out_of_order" in r["injected"]
            s["extra_fields"] += "extra_field" in r["injected"]
    return out


def expected_alerts(payments: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """fraud_reference over the given payment truths, late ones included: a payment behind the
    watermark is not added to final windows, but the fraud rules judge it (and count it as
    context) like any other, within the state horizon (``LAKEHOUSE_FRAUD_LATE_HORIZON_MINUTES``,
    an hour; the generator's late events are 20 to 60 minutes old)."""
    alerts = fraud_reference.evaluate(payments)
    return {eid: a.to_dict() for eid, a in alerts.items()}


def _build_truth(
    runs: list[dict[str, Any]],
    records: list[dict[str, Any]],
    injected: dict[str, Any],
    payments: list[dict[str, Any]],
) -> GroundTruth:
    return GroundTruth(
        runs=runs,
        records=records,
        summary=_summarize(records),
        injected=injected,
        payments=payments,
        expected_fraud_alerts=expected_alerts(payments),
    )


def merge_ground_truths(truths: Sequence[GroundTruth]) -> GroundTruth:
    """The truth of several runs sent one after the other to the same topics.

    Records keep their order (``run`` numbers them); an event id that an earlier run
    already delivered as valid or late becomes a ``duplicate``. Summary and expected
    fraud alerts are recomputed over the combined, deduplicated payments.
    """
    runs: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    payments: list[dict[str, Any]] = []
    seen_payments: set[str] = set()
    injected: dict[str, Any] = {"fraud_patterns": {p: [] for p in FRAUD_PATTERNS}, "anomalies": []}
    for truth in truths:
        run_offset = len(runs)
        runs.extend(truth.runs)
        batch_ids: set[str] = set()
        for r in truth.records:
            r2 = {**r, "seq": len(records), "run": r.get("run", 0) + run_offset}
            if r2["kind"] in ("valid", "late") and r2["event_id"] in seen:
                r2["kind"] = "duplicate"
            if r2["kind"] in ("valid", "late"):
                batch_ids.add(r2["event_id"])
            records.append(r2)
        seen |= batch_ids
        for p in truth.payments:
            if p["event_id"] not in seen_payments:
                seen_payments.add(p["event_id"])
                payments.append(p)
        for name, instances in truth.injected.get("fraud_patterns", {}).items():
            injected["fraud_patterns"].setdefault(name, []).extend(instances)
        injected["anomalies"].extend(truth.injected.get("anomalies", []))
    return _build_truth(runs, records, injected, payments)
