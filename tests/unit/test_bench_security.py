"""`lakehouse bench security`: the ratios it reports and the tool output it reads."""

from __future__ import annotations

import math

import pytest

from lakehouse.bench.security import _PRODUCED, Measure, _consumed_rate, table
from lakehouse.stack.components import StackError


def test_cost_is_relative_to_plain_whichever_way_better_points() -> None:
    throughput = Measure(
        "kafka", "produce", "records/s", True, plain=[200.0, 100.0, 300.0], secured=[100.0, 50.0, 150.0]
    )
    assert throughput.plain_median == 200.0
    assert throughput.ratio == 0.5
    assert throughput.cost_pct == pytest.approx(100.0)  # half the throughput: the same work takes twice as long
    latency = Measure("redis", "p99", "ms", False, plain=[2.0], secured=[3.0])
    assert latency.cost_pct == pytest.approx(50.0)
    faster = Measure("parquet", "write", "s", False, plain=[2.0], secured=[1.0])
    assert faster.cost_pct == pytest.approx(-50.0)
    assert math.isnan(Measure("x", "y", "s", False).ratio)
    text = table([throughput, latency])
    assert "0.50x" in text
    assert "+100 %" in text


def test_reads_kafkas_performance_tools() -> None:
    produced = (
        "500000 records sent, 129333.2 records/sec (37.00 MB/sec), 412.31 ms avg latency, 1021.00 ms max latency, "
        "388 ms 50th, 801 ms 95th, 874 ms 99th, 990 ms 99.9th."
    )
    (m,) = _PRODUCED.findall(produced)
    assert (float(m[1]), int(m[7])) == (129333.2, 874)
    consumed = (
        "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, "
        "fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n"
        "2026-12-02 05:50:01:000, 2026-12-02 05:50:03:000, 143.0, 71.5, 500000, 250000.0, 300, 1700, 84.1, 294117.6\n"
    )
    assert _consumed_rate(consumed) == 294117.6  # fetch rate: the group's join is not the broker's speed
    with pytest.raises(StackError, match="no result"):
        _consumed_rate("WARN something\n")


def test_plaintext_kafka_is_for_the_local_benchmark_twin_only(tmp_path: object) -> None:
    from lakehouse.clients import java_config, librdkafka_config, python_config, spark_options
    from lakehouse.settings import Settings

    s = Settings(_env_file=None, kafka_security="plaintext")  # type: ignore[call-arg]
    assert python_config(s, "producer") == {"bootstrap_servers": s.bootstrap_servers, "security_protocol": "PLAINTEXT"}
    assert librdkafka_config(s, "spark")["security.protocol"] == "plaintext"
    assert "sasl.jaas.config" not in java_config(s, "admin")
    assert spark_options(s)["kafka.security.protocol"] == "PLAINTEXT"
    with pytest.raises(ValueError, match="KAFKA_SECURITY=plaintext is refused in the 'ci' environment"):
        Settings(_env_file=None, kafka_security="plaintext", environment="ci")  # type: ignore[call-arg]
    secured = Settings(_env_file=None)  # type: ignore[call-arg]
    assert secured.kafka_security == "sasl_ssl"
    assert spark_options(secured)["kafka.security.protocol"] == "SASL_SSL"
