"""`lakehouse bench security`: what TLS, authentication and encryption at rest cost, against the same
work without them, measured in the same run.

- **Kafka**: two private brokers started for the run, configured as the stack's (same template, heap,
  partitions), one with its security (SASL_SSL, SCRAM-SHA-512, the authorizer) and one PLAINTEXT.
  Kafka's own ``ProducerPerformance`` (acks=all) and ``ConsumerPerformance`` run against each, as
  Kafka's benchmarks do: records/s and the producer's latency percentiles.
- **Redis**: two private ``redis-server`` processes with the stack's configuration (persistence
  included), one as the stack's (TLS only, ACL users; the client logs in as ``writer``) and one
  plaintext without a password. redis-py, as the serving stream uses it: pipelined writes of the
  serving layout (HSET + EXPIRE, 100 per pipeline) and single reads (HGETALL) one after another.
- **The pipeline**: `lakehouse bench throughput`'s catch-up (bronze then refine) over the same backlog,
  read from each of the two brokers (``kafka_security=plaintext`` for the plain one): the throughput
  benchmark before and after Kafka's security, in the same run.
- **Parquet encryption at rest**: one Spark session writes the same bronze-like rows to a Delta table
  whose ``value`` column is encrypted (a ``bronze/payments`` directory) and to one that is plain, then
  reads every value back.

Rounds alternate plain and secured so the machine's drift hits both alike (the Parquet part first
writes and reads each side once untimed); reported are each side's median and the ratio secured /
plain (for throughput below 1 means slower, for times above 1).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lakehouse.clients import java_config
from lakehouse.contracts import TOPICS
from lakehouse.settings import Settings, child_env
from lakehouse.stack.components import Kafka, Redis, StackError, free_port, port_open

Log = Callable[[str], None]


@dataclass
class Measure:
    """One quantity measured both ways: its values per round, plain and secured."""

    area: str
    name: str
    unit: str
    higher_is_better: bool
    plain: list[float] = field(default_factory=list)
    secured: list[float] = field(default_factory=list)

    @property
    def plain_median(self) -> float:
        return statistics.median(self.plain) if self.plain else float("nan")

    @property
    def secured_median(self) -> float:
        return statistics.median(self.secured) if self.secured else float("nan")

    @property
    def ratio(self) -> float:
        """secured / plain, of the medians."""
        return self.secured_median / self.plain_median if self.plain_median else float("nan")

    @property
    def cost_pct(self) -> float:
        """How much worse secured is, in percent of plain (negative: better)."""
        worse = (1 / self.ratio - 1) if self.higher_is_better else (self.ratio - 1)
        return 100 * worse

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "plain_median": self.plain_median,
            "secured_median": self.secured_median,
            "ratio": self.ratio,
            "cost_pct": self.cost_pct,
        }


# --------------------------------------------------------------------------- Kafka
_PRODUCED = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, "
    r"(\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th"
)


class _BenchKafka(Kafka):
    """A private broker configured exactly as the stack's (its own ports, storage and name)."""

    def __init__(self, s: Settings, name: str) -> None:
        super().__init__(s)
        self.name = name


class _PlainKafka(_BenchKafka):
    """The same broker with every security setting removed: PLAINTEXT listeners, no SASL, no authorizer."""

    _SECURITY = re.compile(
        r"^(sasl\.|ssl\.|listener\.name\.|config\.providers|authorizer\.|allow\.everyone|super\.users)"
    )

    def prepare(self) -> None:
        conf = self.render_config()  # the stack's own, then every security line taken out
        lines = []
        for line in conf.read_text().splitlines():
            if self._SECURITY.match(line):
                continue
            line = line.replace("SASL_SSL", "PLAINTEXT")
            if line.startswith("listener.security.protocol.map="):
                line = "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
            lines.append(line)
        conf.write_text("\n".join(lines) + "\n")
        if (self.workdir / "data" / "meta.properties").exists():
            return
        proc = subprocess.run(
            [
                self._java(),
                "-cp",
                self._classpath(),
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id=benchPlainClusterId00A",
                "-c",
                str(conf),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise StackError(f"formatting the plaintext bench broker failed: {proc.stdout}{proc.stderr}")

    def healthy(self) -> bool:
        return port_open(self.s.host, self.s.kafka_port)

    def after_start(self, log: Callable[[str], None]) -> None:
        pass


def _tools_classpath(s: Settings) -> str:
    tools = s.jvm_dir / "kafka-tools"
    if not any(tools.glob("kafka-tools-*.jar")):
        raise StackError(f"Kafka's tools are missing in {tools}: run `make setup`")
    return str(tools / "*")


def _tool(s: Settings, main: str, args: list[str], timeout_s: float = 600) -> str:
    cmd = [str(s.java17() / "bin" / "java"), "-Xmx1g", "-cp", _tools_classpath(s), main, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout_s, env=child_env())
    if proc.returncode != 0:
        raise StackError(f"{main} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


@contextmanager
def _brokers(s: Settings, log: Log) -> Iterator[dict[str, tuple[Settings, Path]]]:
    """Both private brokers, running, with the contract topics and ``bench``; yields mode -> (settings
    whose clients reach that broker, its Java client properties file)."""
    started: list[_BenchKafka] = []
    out: dict[str, tuple[Settings, Path]] = {}
    try:
        for mode, cls in (("plain", _PlainKafka), ("secured", _BenchKafka)):
            p = s.model_copy(
                update={
                    "kafka_port": free_port(),
                    "kafka_controller_port": free_port(),
                    "kafka_bootstrap_servers": None,
                    "kafka_security": "plaintext" if mode == "plain" else "sasl_ssl",
                }
            )
            broker = cls(p, f"bench-kafka-{mode}")
            shutil.rmtree(broker.workdir, ignore_errors=True)
            t0 = time.monotonic()
            broker.start(log=lambda m: None)  # the secured one creates the contract topics and their ACLs
            started.append(broker)
            props = broker.workdir / "client.properties"
            # As admin; the secured broker's password stays a file reference (DirectoryConfigProvider).
            props.write_text("".join(f"{k}={v}\n" for k, v in java_config(p, "admin").items()))
            topics = [("bench", p.kafka_partitions)]
            if mode == "plain":
                topics += [(t.name, p.kafka_partitions) for t in TOPICS]
            for topic, partitions in topics:
                _tool(
                    p,
                    "org.apache.kafka.tools.TopicCommand",
                    [
                        "--bootstrap-server", p.bootstrap_servers, "--command-config", str(props), "--create",
                        "--topic", topic, "--partitions", str(partitions), "--replication-factor", "1",
                    ],
                )  # fmt: skip
            log(f"  kafka {mode}: broker on {p.bootstrap_servers} in {time.monotonic() - t0:.1f}s")
            out[mode] = (p, props)
        yield out
    finally:
        for broker in started:
            broker.stop()
            shutil.rmtree(broker.workdir, ignore_errors=True)


def kafka(s: Settings, records: int, record_size: int, rounds: int, log: Log) -> list[Measure]:
    produce = Measure("kafka", "produce (acks=all)", "records/s", True)
    p99 = Measure("kafka", "produce latency p99", "ms", False)
    consume = Measure("kafka", "consume", "records/s", True)
    with _brokers(s, log) as brokers:
        for i in range(rounds):
            for mode in ("plain", "secured") if i % 2 == 0 else ("secured", "plain"):
                p, props = brokers[mode]
                out = _tool(
                    p,
                    "org.apache.kafka.tools.ProducerPerformance",
                    [
                        "--topic",
                        "bench",
                        "--num-records",
                        str(records),
                        "--record-size",
                        str(record_size),
                        "--throughput",
                        "-1",
                        "--producer.config",
                        str(props),
                        "--producer-props",
                        "acks=all",
                        "linger.ms=5",
                        "batch.size=65536",
                    ],
                )
                m = _PRODUCED.findall(out)
                if not m:
                    raise StackError(f"ProducerPerformance printed no summary:\n{out[-1500:]}")
                last = m[-1]
                getattr(produce, mode).append(float(last[1]))
                getattr(p99, mode).append(float(last[7]))
                out = _tool(
                    p,
                    "org.apache.kafka.tools.ConsumerPerformance",
                    [
                        "--bootstrap-server",
                        p.bootstrap_servers,
                        "--topic",
                        "bench",
                        "--messages",
                        str(records),
                        "--consumer.config",
                        str(props),
                        "--timeout",
                        "60000",
                    ],
                )
                rate = _consumed_rate(out)
                getattr(consume, mode).append(rate)
                log(
                    f"  round {i + 1} kafka {mode:<7}: produce {float(last[1]):>9,.0f}/s p99 {last[7]} ms, "
                    f"consume {rate:>9,.0f}/s"
                )
    return [produce, p99, consume]


def pipeline(s: Settings, events: int, rounds: int, log: Log) -> list[Measure]:
    """`lakehouse bench throughput`'s catch-up (bronze then refine, ``--available-now``, the same limits)
    over the same backlog, from the plain twin broker and from the secured one: Kafka's security is the
    pipeline's only difference (bronze reads Kafka; refine reads bronze)."""
    from lakehouse.bench.apps import run_app
    from lakehouse.bench.load import rates, send_run
    from lakehouse.bench.throughput import backlog
    from lakehouse.generator import generate

    bronze = Measure("pipeline", "bronze catch-up (Kafka -> Delta), steady", "records/s", True)
    refine = Measure("pipeline", "refine catch-up (bronze -> silver + gold), steady", "records/s", True)
    wall = Measure("pipeline", "catch-up wall time, bronze then refine (JVM start included)", "s", False)
    work = s.state_dir / "bench" / "security-pipeline"
    shutil.rmtree(work, ignore_errors=True)
    per_trigger = max(2_000, events // 25)
    try:
        with _brokers(s, log) as brokers:
            run = generate(backlog(events, seed=5))
            for mode, (p, _) in brokers.items():
                sent = send_run(p, run)
                log(f"  sent {sent.records:,} records to the {mode} broker ({sent.rate:,.0f}/s)")
            del run
            for i in range(rounds):
                for mode in ("plain", "secured") if i % 2 == 0 else ("secured", "plain"):
                    p, _ = brokers[mode]
                    lake = work / f"{i}-{mode}"
                    r = p.model_copy(
                        update={
                            "lake_root": lake / "lake",
                            "kafka_starting_offsets": "earliest",
                            "max_offsets_per_trigger": per_trigger,
                            "max_files_per_trigger": 6,
                        }
                    )
                    app = run_app(r, "all", ["--available-now"], lake / "pipeline.log")
                    br = rates(app.batches, lambda x: x.query.startswith("bronze_")).steady_rate
                    re = rates(app.batches, lambda x: x.query.startswith("refine_")).steady_rate
                    getattr(bronze, mode).append(br)
                    getattr(refine, mode).append(re)
                    getattr(wall, mode).append(app.seconds)
                    log(
                        f"  round {i + 1} pipeline {mode:<7}: bronze {br:>7,.0f}/s, refine {re:>6,.0f}/s, "
                        f"wall {app.seconds:5.1f}s"
                    )
                    shutil.rmtree(lake, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [bronze, refine, wall]


def _consumed_rate(out: str) -> float:
    lines = [line for line in out.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("start.time"):
            header = [h.strip() for h in line.split(",")]
            values = [v.strip() for v in lines[i + 1].split(",")]
            row = dict(zip(header, values, strict=False))
            return float(row.get("fetch.nMsg.sec") or row["nMsg.sec"])
    raise StackError(f"ConsumerPerformance printed no result:\n{out[-1500:]}")


# --------------------------------------------------------------------------- Redis
class _PlainRedis(Redis):
    """The stack's Redis configuration (persistence, memory policy) without TLS and ACL users."""

    def prepare(self) -> None:
        super().prepare()
        conf = self.workdir / "redis.conf"
        lines = [
            f"port {self.s.redis_port}" if line.startswith("port ") else line
            for line in conf.read_text().splitlines()
            if not line.startswith(("tls-", "aclfile"))
        ]
        conf.write_text("\n".join(lines) + "\n")

    def healthy(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host=self.s.host, port=self.s.redis_port, socket_timeout=1).ping())
        except redis.RedisError:
            return False


def _redis_client(p: Settings, mode: str) -> Any:
    import redis

    from lakehouse.serving import connect

    if mode == "plain":
        return redis.Redis(host=p.host, port=p.redis_port, decode_responses=True)
    return connect(p, role="writer", decode_responses=True)


def redis_bench(s: Settings, writes: int, reads: int, rounds: int, log: Log) -> list[Measure]:
    write = Measure("redis", "pipelined writes (HSET+EXPIRE, 100 per pipeline)", "writes/s", True)
    read_p50 = Measure("redis", "read latency p50 (HGETALL)", "ms", False)
    read_p99 = Measure("redis", "read latency p99 (HGETALL)", "ms", False)
    servers: dict[str, tuple[Settings, Redis]] = {}
    try:
        for mode, cls in (("plain", _PlainRedis), ("secured", Redis)):
            p = s.model_copy(update={"redis_port": free_port()})
            server = cls(p, f"bench-redis-{mode}")
            shutil.rmtree(server.workdir, ignore_errors=True)
            server.start(log=lambda m: None)
            servers[mode] = (p, server)
        for i in range(rounds):
            for mode in ("plain", "secured") if i % 2 == 0 else ("secured", "plain"):
                p, _ = servers[mode]
                client = _redis_client(p, mode)
                t0 = time.perf_counter()
                for start in range(0, writes, 100):
                    pipe = client.pipeline(transaction=False)
                    for k in range(start, min(start + 100, writes)):
                        key = f"merchant:bench-{k % 5000}:2026-12-02T05:{k % 60:02d}"
                        pipe.hset(key, mapping={"tx_count": k, "amount_sum": k * 1.5, "flagged_count": k % 7})
                        pipe.expire(key, 3600)
                    pipe.execute()
                getattr(write, mode).append(writes / (time.perf_counter() - t0))
                latencies = []
                for k in range(reads):
                    t1 = time.perf_counter()
                    client.hgetall(f"merchant:bench-{k % 5000}:2026-12-02T05:{k % 60:02d}")
                    latencies.append((time.perf_counter() - t1) * 1000)
                latencies.sort()
                getattr(read_p50, mode).append(latencies[len(latencies) // 2])
                getattr(read_p99, mode).append(latencies[int(len(latencies) * 0.99)])
                client.close()
                log(
                    f"  round {i + 1} redis {mode:<7}: {getattr(write, mode)[-1]:>9,.0f} writes/s, read p50 "
                    f"{latencies[len(latencies) // 2]:.3f} ms p99 {latencies[int(len(latencies) * 0.99)]:.3f} ms"
                )
    finally:
        for _, server in servers.values():
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)
    return [write, read_p50, read_p99]


# --------------------------------------------------------------------------- Parquet encryption
def parquet(s: Settings, rows: int, rounds: int, log: Log) -> list[Measure]:
    from pyspark.sql import functions as F

    from lakehouse.delta.encryption import master_keys
    from lakehouse.delta.session import build_spark_session

    write = Measure("parquet", f"write {rows:,} bronze rows (Delta)", "s", False)
    read = Measure("parquet", "read every value back", "s", False)
    work = s.state_dir / "bench" / "security"
    shutil.rmtree(work, ignore_errors=True)
    spark = build_spark_session("bench-security", s)
    try:
        payload = F.to_json(
            F.struct(
                F.concat(F.lit("e-"), F.col("id").cast("string")).alias("event_id"),
                F.lit("2026-12-02T05:00:00.000Z").alias("event_time"),
                F.concat(F.lit("u-"), (F.col("id") % 5000).cast("string")).alias("user_id"),
                F.concat(F.lit("4"), F.lpad((F.col("id") * 7919 % 10**15).cast("string"), 15, "0")).alias(
                    "card_number"
                ),
                F.concat(F.lit("m-"), (F.col("id") % 300).cast("string")).alias("merchant_id"),
                (F.col("id") % 10000 / 100).alias("amount"),
                F.lit("EUR").alias("currency"),
                F.lit("DE").alias("country"),
            )
        )
        df = (
            spark.range(rows)
            .select(
                F.col("id").cast("string").alias("key"),
                payload.alias("value"),
                F.lit("payments").alias("topic"),
                (F.col("id") % 6).cast("int").alias("partition"),
                F.col("id").alias("offset"),
            )
            .cache()
        )
        df.count()
        # One untimed write and read of each first: the first Delta write of a session pays for JIT and
        # class loading, which would otherwise land on whichever side goes first.
        for mode in ("secured", "plain"):
            warm = str(work / f"warm-{mode}" / ("bronze" if mode == "secured" else "plain") / "payments")
            df.write.format("delta").save(warm)
            spark.read.format("delta").load(warm).agg(F.sum(F.length("value"))).first()
        for i in range(rounds):
            for mode in ("plain", "secured") if i % 2 == 0 else ("secured", "plain"):
                # The encryption rule matches a table directory named bronze/payments; the plain twin is not one.
                path = str(work / f"{i}-{mode}" / ("bronze" if mode == "secured" else "plain") / "payments")
                t0 = time.perf_counter()
                df.write.format("delta").save(path)
                written = time.perf_counter() - t0
                t0 = time.perf_counter()
                row = spark.read.format("delta").load(path).agg(F.sum(F.length("value"))).first()
                total = int(row[0]) if row is not None else 0
                got = time.perf_counter() - t0
                # What is compared is what it claims: the secured table's files encrypted, the plain one's not.
                keys = {k for f in Path(path).glob("*.parquet") for k in master_keys(f)}
                if bool(keys) != (mode == "secured"):
                    raise StackError(f"bench: {path} should {'' if mode == 'secured' else 'not '}be encrypted: {keys}")
                getattr(write, mode).append(written)
                getattr(read, mode).append(got)
                log(f"  round {i + 1} parquet {mode:<7}: write {written:5.2f}s, read {got:5.2f}s ({total:,} bytes)")
        df.unpersist()
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    return [write, read]


# --------------------------------------------------------------------------- report
def main(
    s: Settings,
    *,
    rounds: int,
    kafka_records: int,
    redis_writes: int,
    parquet_rows: int,
    pipeline_events: int,
    parts: tuple[str, ...],
    out: Path,
    log: Log = print,
) -> list[Measure]:
    measures: list[Measure] = []
    if "parquet" in parts:
        log(f"parquet: {parquet_rows:,} rows, encrypted `value` vs plain, {rounds} rounds")
        measures += parquet(s, parquet_rows, rounds, log)
    if "redis" in parts:
        log(f"redis: {redis_writes:,} writes and {redis_writes // 10:,} reads per round, TLS+ACL vs plaintext")
        measures += redis_bench(s, redis_writes, redis_writes // 10, rounds, log)
    if "kafka" in parts:
        log(f"kafka: {kafka_records:,} records of 300 bytes per round, SASL_SSL+ACLs vs PLAINTEXT")
        measures += kafka(s, kafka_records, 300, rounds, log)
    if "pipeline" in parts:
        log(f"pipeline: catch-up of {pipeline_events:,} events from a PLAINTEXT vs a SASL_SSL broker")
        measures += pipeline(s, pipeline_events, rounds, log)
    out.mkdir(parents=True, exist_ok=True)
    (out / "security.json").write_text(
        json.dumps(
            {
                "command": f"lakehouse bench security --rounds {rounds} --kafka-records {kafka_records} "
                f"--redis-writes {redis_writes} --parquet-rows {parquet_rows} --pipeline-events {pipeline_events} "
                + " ".join(f"--part {p}" for p in parts),
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "measures": [m.to_json() for m in measures],
            },
            indent=1,
        )
        + "\n"
    )
    chart(measures, out / "security.png")
    return measures


def table(measures: list[Measure]) -> str:
    rows = [("area", "measure", "plain (median)", "secured (median)", "secured/plain", "cost")]
    for m in measures:
        rows.append(
            (
                m.area,
                m.name,
                f"{m.plain_median:,.3g} {m.unit}" if m.plain_median < 100 else f"{m.plain_median:,.0f} {m.unit}",
                f"{m.secured_median:,.3g} {m.unit}" if m.secured_median < 100 else f"{m.secured_median:,.0f} {m.unit}",
                f"{m.ratio:.2f}x",
                f"{m.cost_pct:+.0f} %",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def chart(measures: list[Measure], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{m.area}: {m.name}" for m in measures]
    costs = [m.cost_pct for m in measures]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(measures) + 1.5))
    bars = ax.barh(labels, costs, color=["#c0504d" if c > 0 else "#4f81bd" for c in costs])
    ax.bar_label(bars, labels=[f"{c:+.0f} %" for c in costs], padding=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("cost of security, % of the same work without it (same run; medians)")
    ax.set_title("TLS + authentication + encryption at rest vs plain")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
