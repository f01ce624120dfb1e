"""The four fraud rules of contracts §3 as Spark window functions (pure; no I/O).

Definitions (identical to ``lakehouse.fraud_reference``, which the tests compare against):

- ``card_testing``: amount < 2.00 and at least 5 payments under 2.00 on the same card with
  event_time in [t - 60 s, t] (the payment itself included).
- ``velocity``: at least 10 payments by the same user with event_time in [t - 60 s, t].
- ``amount_spike``: at least 5 previous payments of the user and amount > 10 x the median
  of the (up to) 20 previous ones, "previous" in (event_time, event_id) order.
- ``impossible_travel``: a payment on the same card with event_time in [t - 10 min, t)
  from a different country.

score = 1 - prod(1 - weight) over the rules that fired, rounded to 4 decimals.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

RULES = ("card_testing", "velocity", "amount_spike", "impossible_travel")
WEIGHTS = {"card_testing": 0.6, "velocity": 0.5, "amount_spike": 0.5, "impossible_travel": 0.7}
SMALL_AMOUNT = 2.00
CARD_TESTING_MIN = 5
VELOCITY_MIN = 10
SPIKE_FACTOR = 10.0
SPIKE_HISTORY = 20
SPIKE_MIN_HISTORY = 5
# Event times keep microseconds (silver parses up to nanoseconds, stores micros): compare in micros.
WINDOW_US = 60_000_000
TRAVEL_US = 600_000_000


def evaluate(payments: DataFrame) -> DataFrame:
    """Adds ``rules`` (array, in RULES order, empty when none fired) and ``score`` to each payment.

    Needs columns event_id, event_time, user_id, card_token, amount, country. Every payment
    is judged against all the others in ``payments``: pass the full context (state + batch).
    """
    ts = F.unix_micros(F.col("event_time"))
    p = payments.withColumn("_ts", ts)
    small = (F.col("amount") < SMALL_AMOUNT).cast("int")
    by_card_60s = Window.partitionBy("card_token").orderBy("_ts").rangeBetween(-WINDOW_US, 0)
    by_user_60s = Window.partitionBy("user_id").orderBy("_ts").rangeBetween(-WINDOW_US, 0)
    prev20 = Window.partitionBy("user_id").orderBy("_ts", "event_id").rowsBetween(-SPIKE_HISTORY, -1)
    by_card_10m_before = Window.partitionBy("card_token").orderBy("_ts").rangeBetween(-TRAVEL_US, -1)

    # median() takes no window frame: sort the previous amounts and pick the middle.
    history = F.sort_array(F.collect_list("amount").over(prev20))
    n = F.size(history)
    half = (n / 2).cast("int")
    median = F.when(n % 2 == 1, F.element_at(history, half + 1)).otherwise(
        (F.element_at(history, half) + F.element_at(history, half + 1)) / 2
    )
    fired: dict[str, Column] = {
        "card_testing": (F.col("amount") < SMALL_AMOUNT) & (F.sum(small).over(by_card_60s) >= CARD_TESTING_MIN),
        "velocity": F.count(F.lit(1)).over(by_user_60s) >= VELOCITY_MIN,
        "amount_spike": (n >= SPIKE_MIN_HISTORY) & (F.col("amount") > SPIKE_FACTOR * median),
        "impossible_travel": F.size(F.array_remove(F.collect_set("country").over(by_card_10m_before), F.col("country")))
        > 0,
    }
    flags = [F.when(F.coalesce(fired[r], F.lit(False)), F.lit(r)) for r in RULES]
    rules = F.filter(F.array(*flags), lambda x: x.isNotNull())
    score = F.lit(1.0)
    for r in RULES:
        score = score * F.when(F.array_contains(rules, r), F.lit(1.0 - WEIGHTS[r])).otherwise(F.lit(1.0))
    return p.withColumn("rules", rules).withColumn("score", F.round(F.lit(1.0) - score, 4)).drop("_ts")
