"""The refine stream's stateful steps (lakehouse.spark.Dedup, CardFraud, UserFraud) in a real streaming query.

Payments arrive over several micro-batches, in time order, out of order, duplicated and late;
the alert changes the operators emit are applied to a dict the way ``merge_alerts`` applies
them to ``gold.fraud_alerts``, and the result must equal ``lakehouse.fraud_reference`` over
every distinct payment: exact under out-of-order arrival, retractions included.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.fraud_reference import Payment, evaluate
from lakehouse.settings import get_settings
from spark_apps import refine
from tests.unit.test_fraud_reference import T0
from tests.unit.test_fraud_spark import random_payments, token

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SCHEMA = (
    "topic string, partition int, offset bigint, _error string, event_id string, event_time timestamp, "
    "user_id string, card_token string, merchant_id string, amount double, country string, ingested_at timestamp"
)


def _iso(p: Payment) -> str:
    return p.event_time.isoformat().replace("+00:00", "Z")


class Feed:
    """Micro-batches of payments through deduplicated() and judged(), collecting what comes out."""

    def __init__(self, spark: SparkSession, tmp: Path, horizon_minutes: float = 5.0) -> None:
        self.spark, self.src = spark, tmp / "in"
        self.src.mkdir()
        self.offset = 0
        self.batches: list[list[dict[str, Any]]] = []
        s = get_settings().model_copy(update={"dedup_horizon_minutes": horizon_minutes})
        rows = spark.readStream.schema(SCHEMA).option("maxFilesPerTrigger", 1).json(str(self.src))
        # Bronze's coordinates are NOT NULL; a file source makes every column nullable: put one back.
        rows = rows.withColumn("topic", F.lit("payments"))
        rows = (
            rows.withColumn("_wm_time", refine.bounded_event_time(s.max_clock_skew_s))
            .withWatermark("_wm_time", "10 minutes")
            .drop("_wm_time")
        )
        out = refine.judged(refine.deduplicated(rows, s), s)
        self.query = (
            out.writeStream.foreachBatch(self._collect)
            .option("checkpointLocation", str(tmp / "checkpoint"))
            .trigger(processingTime="0 seconds")
            .start()
        )

    def _collect(self, batch: DataFrame, _batch_id: int) -> None:
        cols = ["event_id", "_verdict", "rules", "score", "_check", "_counted", "_was_flagged", "_wm"]
        self.batches.append([r.asDict() for r in batch.select(*cols).collect()])

    def send(
        self, payments: list[Payment], *, partition: int = 0, ingested: timedelta | None = None
    ) -> list[dict[str, Any]]:
        """Write one file (one micro-batch); return the rows that came out meanwhile."""
        before = len(self.batches)
        lines = []
        for p in payments:
            self.offset += 1
            ingested_at = p.event_time + (ingested or timedelta(seconds=1))
            lines.append(
                json.dumps(
                    {
                        "topic": "payments",
                        "partition": partition,
                        "offset": self.offset,
                        "_error": None,
                        "event_id": p.event_id,
                        "event_time": _iso(p),
                        "user_id": p.user_id,
                        "card_token": token(p.card_number),
                        "merchant_id": p.merchant_id,
                        "amount": p.amount,
                        "country": p.country,
                        "ingested_at": ingested_at.isoformat().replace("+00:00", "Z"),
                    }
                )
            )
        (self.src / f"b{len(list(self.src.iterdir())):04d}.json").write_text("\n".join(lines) + "\n")
        self.query.processAllAvailable()
        return [r for batch in self.batches[before:] for r in batch]

    def rows(self) -> Iterator[dict[str, Any]]:
        for batch in self.batches:
            yield from batch

    def alerts(self) -> dict[str, tuple[list[str], float]]:
        """gold.fraud_alerts as merge_alerts would leave it: insert non-empty, update, delete when emptied."""
        table: dict[str, tuple[list[str], float]] = {}
        for r in self.rows():
            if r["_verdict"] not in ("new", "update"):
                continue
            if r["rules"]:
                table[r["event_id"]] = (list(r["rules"]), r["score"])
            else:
                table.pop(r["event_id"], None)
        return table

    def stop(self) -> None:
        self.query.stop()


def reference(payments: list[Payment]) -> dict[str, tuple[list[str], float]]:
    return {eid: (a.rules, a.score) for eid, a in evaluate(payments).items()}


@pytest.fixture
def feed(spark: SparkSession, tmp_path: Path) -> Iterator[Feed]:
    f = Feed(spark, tmp_path)
    yield f
    f.stop()


def test_in_order_batches_equal_the_reference(feed: Feed) -> None:
    ps = sorted(random_payments(7, n=900), key=lambda p: (p.event_time, p.event_id))
    for i in range(0, len(ps), 150):
        feed.send(ps[i : i + 150])
    got = feed.alerts()
    assert got == reference(ps)
    assert len(got) > 20
    assert sum(1 for r in feed.rows() if r["_verdict"] == "new") == len(ps)


def test_out_of_order_duplicated_and_late_arrivals_equal_the_reference(feed: Feed) -> None:
    """Arrival up to 4 minutes out of order, copies in later batches, and a burst 12 minutes late
    (behind the 10-minute watermark): verdicts of already-judged payments are corrected and the
    late payments are judged too."""
    rng = random.Random(11)
    ps = random_payments(8, n=900)
    arrival = sorted(ps, key=lambda p: p.event_time + timedelta(seconds=rng.uniform(0, 240)))
    late = [p for p in arrival if p.event_time < T0 + timedelta(minutes=3)][:40]
    on_time = [p for p in arrival if p not in late]
    copies = rng.sample(on_time, 30)
    for i in range(0, len(on_time), 120):
        feed.send(on_time[i : i + 120])
        feed.send([c for c in copies if c in on_time[max(0, i - 240) : i]], partition=3)
    feed.send(late, ingested=timedelta(minutes=12))
    got = feed.alerts()
    want = reference(ps)
    assert got == want
    new = [r for r in feed.rows() if r["_verdict"] == "new"]
    assert len(new) == len({r["event_id"] for r in new}) == len(ps), "every payment judged once, copies dropped"
    updates = [r for r in feed.rows() if r["_verdict"] == "update"]
    assert updates, "out-of-order arrivals changed earlier verdicts"
    late_ids = {p.event_id for p in late}
    late_rows = [r for r in new if r["event_id"] in late_ids]
    assert late_rows
    assert not any(r["_counted"] for r in late_rows), "late payments do not count in final windows"
    assert any(r["event_id"] in want for r in late_rows), "a late payment raised an alert"


def test_an_out_of_order_payment_corrects_and_retracts_earlier_verdicts(feed: Feed) -> None:
    """Ten payments in 60 s fire velocity on the tenth; a payment arriving later but timed before
    them makes the ninth the tenth too (an update that flags). A spike judged against five
    payments of 10 is retracted when five earlier payments of 100 arrive (the median rises to 55)."""
    user, card = "u-r", "4000000000000001"

    def p(eid: str, seconds: float, amount: float = 10.0) -> Payment:
        return Payment(eid, T0 + timedelta(seconds=seconds), user, card, amount, "DE", "m1")

    burst = [p(f"v{i:02d}", 5 * i) for i in range(1, 11)]
    feed.send(burst)
    assert feed.alerts() == {"v10": (["velocity"], 0.5)}
    out = feed.send([p("v00", 0)])
    (update,) = [r for r in out if r["_verdict"] == "update"]
    assert (update["event_id"], update["rules"], update["_was_flagged"]) == ("v09", ["velocity"], False)

    other = "u-s"
    history = [
        Payment(f"h{i}", T0 + timedelta(minutes=5 + i), other, "4000000000000009", 10.0, "FR", "m2") for i in range(5)
    ]
    spike = Payment("spike", T0 + timedelta(minutes=11), other, "4000000000000009", 200.0, "FR", "m2")
    feed.send([*history, spike])
    assert feed.alerts()["spike"] == (["amount_spike"], 0.5)
    earlier = [
        replace(h, event_id=f"x{i}", amount=100.0, event_time=h.event_time - timedelta(seconds=30))
        for i, h in enumerate(history)
    ]
    out = feed.send(earlier)
    (retraction,) = [r for r in out if r["event_id"] == "spike"]
    assert (retraction["_verdict"], retraction["rules"], retraction["_was_flagged"]) == ("update", [], True)
    everything = [*burst, p("v00", 0), *history, spike, *earlier]
    assert feed.alerts() == reference(everything)


def test_copies_older_than_the_dedup_horizon_are_flagged_for_a_table_check(spark: SparkSession, tmp_path: Path) -> None:
    feed = Feed(spark, tmp_path, horizon_minutes=1.0)
    try:
        a = Payment("a", T0, "u1", "4000000000000002", 20.0, "DE", "m1")
        feed.send([a])
        feed.send([replace(a, event_id="b", event_time=T0 + timedelta(minutes=30))])  # watermark -> T0 + 20 min
        out = feed.send([a], partition=5)  # a copy 30 minutes later: the dedup state has let it go
        rows = [r for r in out if r["event_id"] == "a"]
        # The fraud state still holds "a" (an hour's horizon): it knows the copy and drops it.
        assert rows == []
        feed.send([replace(a, event_id="c", event_time=T0 + timedelta(minutes=1))], partition=5)
        (c,) = [r for r in feed.rows() if r["event_id"] == "c"]
        assert c["_check"] is True, "older than watermark minus the horizon: the sink checks silver"
        assert c["_verdict"] == "new"
        assert c["_counted"] is False
    finally:
        feed.stop()


def test_bounded_event_time_ignores_a_far_future_clock(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(None, T0 + timedelta(days=1), T0), ("bad", T0, T0), (None, T0, T0)],
        "_error string, event_time timestamp, ingested_at timestamp",
    )
    out = [r[0] for r in df.select(F.unix_micros(refine.bounded_event_time(300))).collect()]
    t0 = int(T0.timestamp()) * 1_000_000
    assert out == [t0 + 300_000_000, None, t0]
