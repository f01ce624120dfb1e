"""The exact accounting every fault scenario ends with: nothing lost, nothing twice.

Against the generator's ground truth of what was produced:

- **bronze = produced**: per topic, as many bronze rows as records sent, each Kafka coordinate once;
- **silver + quarantine + duplicates = bronze**: per topic, silver holds exactly the valid events
  (each ``event_id`` once, the set the truth names), quarantine exactly the invalid records, each
  with a reason naming the field the generator broke;
- **gold = recomputation**: each minute table equals a batch recomputation over silver (minus the
  recorded late events);
- **alerts = reference**: ``gold.fraud_alerts`` equals the truth's reference alerts (rules, score);
- **Redis = gold**: the serving stream's Redis (a private one: the counts are exact) holds each
  contract key of every gold row, with gold's values, and no other (``redis_equals_gold``).

Each check returns what it found wrong, in words; an empty list means the lake is exact.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.contracts import NORMAL_RANGES, TOPICS
from lakehouse.generator import GroundTruth
from lakehouse.settings import Settings
from lakehouse.tables import BRONZE, GOLD, LATE_EVENTS, QUARANTINE, SILVER, TableSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass
class Accounting:
    """What each check found wrong (empty: exact), and the counts it compared."""

    problems: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return not any(self.problems.values())

    def summary(self) -> str:
        if self.exact:
            return "exact: " + ", ".join(f"{k} ok" for k in self.problems)
        return "; ".join(f"{k}: {'; '.join(v)}" for k, v in self.problems.items() if v)


def _read(spark: SparkSession, s: Settings, spec: TableSpec) -> DataFrame:
    return spark.read.format("delta").load(spec.path(s.lake_dir))


def bronze_equals_produced(spark: SparkSession, s: Settings, truth: GroundTruth, acc: Accounting) -> list[str]:
    out = []
    for t in TOPICS:
        df = _read(spark, s, BRONZE[t.name])
        n = df.count()
        coords = df.select("topic", "partition", "offset").distinct().count()
        sent = int(truth.summary[t.name]["sent"])
        acc.counts.setdefault(t.name, {}).update(bronze=n, sent=sent)
        if n != sent:
            out.append(f"bronze.{t.name} holds {n} rows, {sent} were produced ({n - sent:+d})")
        if coords != n:
            out.append(f"bronze.{t.name}: {n - coords} Kafka records landed more than once")
    return out


def silver_accounts_for_bronze(spark: SparkSession, s: Settings, truth: GroundTruth, acc: Accounting) -> list[str]:
    from pyspark.sql import functions as F

    out = []
    quarantine = _read(spark, s, QUARANTINE)
    for t in TOPICS:
        expected = truth.summary[t.name]
        silver = _read(spark, s, SILVER[t.name])
        n = silver.count()
        distinct = silver.select("event_id").distinct().count()
        quarantined = quarantine.where(F.col("topic") == t.name).count()
        acc.counts.setdefault(t.name, {}).update(silver=n, quarantine=quarantined)
        if distinct != n:
            out.append(f"silver.{t.name}: {n - distinct} event_ids twice")
        if n != expected["valid_unique"]:
            out.append(f"silver.{t.name} holds {n} events, {expected['valid_unique']} valid ones were produced")
        if quarantined != expected["invalid_total"]:
            out.append(f"quarantine holds {quarantined} {t.name} records, {expected['invalid_total']} were invalid")
        # Each reason names the field the generator broke ("value" for the record as a whole).
        errors = quarantine.where(F.col("topic") == t.name).select("error").collect()
        named = Counter(r[0].split(":", 1)[0] for r in errors)
        broke = Counter(r["field"] or "value" for r in truth.records if r["topic"] == t.name and r["kind"] == "invalid")
        if named != broke:
            out.append(f"quarantine reasons for {t.name} name {dict(named)}, the invalid records broke {dict(broke)}")
        want = {r["event_id"] for r in truth.records if r["topic"] == t.name and r["kind"] in ("valid", "late")}
        got = {r[0] for r in silver.select("event_id").collect()}
        if got != want:
            out.append(f"silver.{t.name}: {len(want - got)} events missing, {len(got - want)} unexpected")
    return out


def batch_gold(spark: SparkSession, s: Settings) -> dict[str, DataFrame]:
    """Gold recomputed in batch, straight from silver minus the recorded late events (plain SQL)."""
    late = _read(spark, s, LATE_EVENTS).select("event_id")
    for t in TOPICS:
        _read(spark, s, SILVER[t.name]).join(late, "event_id", "left_anti").createOrReplaceTempView(f"v_{t.name}")
    _read(spark, s, GOLD["fraud_alerts"]).createOrReplaceTempView("v_alerts")
    ranges = " OR ".join(
        f"(sensor_type = '{k}' AND (value < {lo} OR value > {hi}))" for k, (lo, hi) in NORMAL_RANGES.items()
    )
    return {
        "merchant_minute": spark.sql("""
            SELECT p.merchant_id, date_trunc('minute', p.event_time) AS window_start, count(*) AS tx_count,
                   sum(p.amount) AS amount_sum, avg(p.amount) AS amount_avg, max(p.amount) AS amount_max,
                   count(a.event_id) AS flagged_count
            FROM v_payments p LEFT JOIN v_alerts a ON a.event_id = p.event_id
            GROUP BY 1, 2"""),
        "page_minute": spark.sql("""
            SELECT page, date_trunc('minute', event_time) AS window_start,
                   count_if(event_type = 'page_view') AS views, count_if(event_type = 'click') AS clicks,
                   count_if(event_type = 'purchase') AS purchases, count(DISTINCT session_id) AS sessions
            FROM v_clickstream GROUP BY 1, 2"""),
        "device_minute": spark.sql(f"""
            SELECT device_id, sensor_type, date_trunc('minute', event_time) AS window_start, count(*) AS readings,
                   avg(value) AS value_avg, min(value) AS value_min, max(value) AS value_max,
                   count_if({ranges}) AS anomalies
            FROM v_iot GROUP BY 1, 2, 3"""),
    }


def _same(col: str, got: Any, want: Any) -> bool:
    if col == "sessions":  # an HLL estimate: within its error bound
        return bool(abs(got - want) <= 0.05 * want)
    if isinstance(want, float):
        return got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    return bool(got == want)


def gold_equals_recomputation(spark: SparkSession, s: Settings, truth: GroundTruth, acc: Accounting) -> list[str]:
    out = []
    for table, expected in batch_gold(spark, s).items():
        spec = GOLD[table]
        cols = expected.columns
        got = {tuple(r[k] for k in spec.keys): r.asDict() for r in _read(spark, s, spec).select(*cols).collect()}
        want = {tuple(r[k] for k in spec.keys): r.asDict() for r in expected.collect()}
        acc.counts.setdefault("gold", {})[table] = len(got)
        if got.keys() != want.keys():
            out.append(
                f"gold.{table}: {len(want.keys() - got.keys())} windows missing, {len(got.keys() - want.keys())} extra"
            )
        wrong = [k for k in want.keys() & got.keys() if not all(_same(c, got[k][c], want[k][c]) for c in cols)]
        if wrong:
            out.append(f"gold.{table}: {len(wrong)} windows differ from the recomputation (first: {wrong[0]})")
    return out


def alerts_equal_reference(spark: SparkSession, s: Settings, truth: GroundTruth, acc: Accounting) -> list[str]:
    got = {
        r["event_id"]: {"rules": list(r["rules"]), "score": r["score"]}
        for r in _read(spark, s, GOLD["fraud_alerts"]).collect()
    }
    acc.counts.setdefault("gold", {})["fraud_alerts"] = len(got)
    want = truth.expected_fraud_alerts
    if got == want:
        return []
    missing, extra = want.keys() - got.keys(), got.keys() - want.keys()
    differ = [k for k in want.keys() & got.keys() if got[k] != want[k]]
    return [f"fraud alerts: {len(missing)} missing, {len(extra)} unexpected, {len(differ)} with other rules or score"]


#: The values of ``device:{id}:{sensor}:latest`` besides its window.
DEVICE_VALUES = ("readings", "value_avg", "value_min", "value_max", "anomalies")


def _count(r: Any, pattern: str) -> int:
    return sum(1 for _ in r.scan_iter(match=pattern, count=1000))


def redis_equals_gold(spark: SparkSession, s: Settings, truth: GroundTruth, acc: Accounting) -> list[str]:
    """Every contract key family of Redis at ``s.redis_address`` against gold, row for row, and key counts
    equal to gold's rows (so nothing extra either): it must be a Redis only this lake's serving fed."""
    from pyspark.sql import functions as F

    from lakehouse import serving

    r = serving.connect(s, role="admin")
    client = serving.ServingClient(r)
    out: list[str] = []
    counts = acc.counts.setdefault("redis", {})

    def compare(family: str, want: dict[Any, Any], fetch: Callable[[Any], Any], pattern: str) -> None:
        wrong = [k for k, v in want.items() if fetch(k) != v]
        keys = _count(r, pattern)
        counts[family] = keys
        if wrong:
            out.append(f"redis {family}: {len(wrong)} of {len(want)} keys differ from gold (first: {wrong[0]})")
        if keys != len(want):
            out.append(f"redis {family}: {keys} keys, gold has {len(want)} rows to serve")

    merchants = _read(spark, s, GOLD["merchant_minute"]).collect()
    compare(
        "merchant minutes",
        {
            (m["merchant_id"], m["window_start"]): serving.MerchantMinute(
                **{
                    **{c: m[c] for c in serving.MERCHANT_MINUTE_COLUMNS},
                    "window_start": serving.as_utc(m["window_start"]),
                }
            )
            for m in merchants
        },
        lambda k: client.merchant_minute(*k),
        "merchant:*:minute:*",
    )

    def device(key: tuple[str, str]) -> tuple[Any, ...] | None:
        got = client.device_latest(*key)
        if got is None:
            return None
        return (got.window_start, got.readings, got.value_avg, got.value_min, got.value_max, got.anomalies)

    devices = _read(spark, s, GOLD["device_minute"])
    newest = devices.groupBy("device_id", "sensor_type").agg(F.max("window_start").alias("window_start"))
    latest = devices.join(newest, ["device_id", "sensor_type", "window_start"]).collect()
    compare(
        "device latest",
        {
            (d["device_id"], d["sensor_type"]): (serving.as_utc(d["window_start"]), *(d[c] for c in DEVICE_VALUES))
            for d in latest
        },
        device,
        "device:*:latest",
    )

    pages: dict[Any, dict[str, int]] = {}
    for p in _read(spark, s, GOLD["page_minute"]).where("views IS NOT NULL").collect():
        pages.setdefault(p["window_start"], {})[p["page"]] = p["views"]
    compare(
        "top pages",
        pages,
        lambda w: {e.page: e.views for e in client.top_pages(w, n=1_000_000).entries},
        "page:top:*",
    )

    alerts = _read(spark, s, GOLD["fraud_alerts"]).collect()
    stream: dict[str, list[Any]] = {}
    for served in client.recent_fraud_alerts(n=serving.FRAUD_ALERTS_MAXLEN):
        stream.setdefault(served.event_id, []).append(served)
    counts["fraud alerts"] = sum(len(v) for v in stream.values())
    twice = [k for k, v in stream.items() if len(v) > 1]
    if twice:
        out.append(f"redis fraud:alerts: {len(twice)} alerts more than once (first: {twice[0]})")
    extra = stream.keys() - {a["event_id"] for a in alerts}
    if extra:
        out.append(f"redis fraud:alerts: {len(extra)} alerts gold does not hold (first: {sorted(extra)[0]})")
    differ = [
        a["event_id"]
        for a in alerts
        if [
            (x.user_id, x.merchant_id, x.amount, x.score, x.rules, x.event_time)
            for x in stream.get(a["event_id"], [])[:1]
        ]
        != [
            (
                a["user_id"],
                a["merchant_id"],
                a["amount"],
                a["score"],
                tuple(a["rules"]),
                serving.as_utc(a["event_time"]),
            )
        ]
    ]
    if differ:
        out.append(
            f"redis fraud:alerts: {len(differ)} of {len(alerts)} gold alerts missing or different (first: {differ[0]})"
        )

    def user(user_id: str) -> tuple[Any, ...] | None:
        got = client.user_fraud(user_id)
        if got is None:
            return None
        return (got.alert_count, got.last_alert_event_id, got.last_score)

    per_user: dict[str, list[Any]] = {}
    for a in alerts:
        if a["user_id"] is not None:  # an alert without a user has no summary to serve
            per_user.setdefault(a["user_id"], []).append(a)
    newest_alert = {u: max(rows, key=lambda a: (a["event_time"], a["event_id"])) for u, rows in per_user.items()}
    compare(
        "user fraud summaries",
        {u: (len(per_user[u]), a["event_id"], a["score"]) for u, a in newest_alert.items()},
        user,
        "fraud:user:*",
    )
    r.close()
    return out


CHECKS: dict[str, Callable[[SparkSession, Settings, GroundTruth, Accounting], list[str]]] = {
    "bronze = produced": bronze_equals_produced,
    "silver + quarantine + duplicates = bronze": silver_accounts_for_bronze,
    "gold = recomputation": gold_equals_recomputation,
    "alerts = reference": alerts_equal_reference,
    "Redis = gold": redis_equals_gold,
}


def account(spark: SparkSession, s: Settings, truth: GroundTruth) -> Accounting:
    """Run every check against the lake of S."""
    acc = Accounting()
    for name, check in CHECKS.items():
        acc.problems[name] = check(spark, s, truth, acc)
    return acc
