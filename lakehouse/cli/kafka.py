"""`lakehouse kafka …`: topics, one topic's partitions and settings, the newest records, and lag.

Everything runs as the broker's admin principal over SASL_SSL (as `lakehouse up` does). Card numbers
in records are masked (last four digits kept), as everywhere a person reads them.
Kafka's own tools (`kafka-topics`, `kafka-consumer-groups`, ...) are installed by setup under
`<state_dir>/jvm/kafka-tools/`; `lakehouse connect engineer` prints a client configuration for them.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from lakehouse.cli._common import console, friendly_errors, human_bytes, load_settings


def _call(s: Any, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
    from kafka.errors import KafkaError

    from lakehouse.services.topics import UnknownTopicError

    try:
        return fn(*args, **kw)
    except UnknownTopicError as e:
        raise click.ClickException(str(e)) from None
    except (KafkaError, OSError) as e:
        raise click.ClickException(
            f"{what}: Kafka at {s.bootstrap_servers} did not answer ({type(e).__name__}: {e}); "
            "`lakehouse status` (start it with `lakehouse up kafka`)"
        ) from None


@click.group()
def kafka() -> None:
    """Kafka as an operator sees it: `topics`, `describe TOPIC`, `tail TOPIC`, `lag`.

    \b
      lakehouse kafka topics              every topic: partitions, replicas, records, bytes, retention
      lakehouse kafka describe payments   per partition: leader, in-sync replicas, offsets, bytes; configs
      lakehouse kafka tail payments -n 5  the newest records (card numbers masked)
      lakehouse kafka lag                 how far each stream (checkpoint) and group is behind
    """


def _retention(t: Any) -> str:
    parts = []
    if t.retention_bytes is not None:
        parts.append(f"{human_bytes(t.retention_bytes)}/partition")
    ms = int(t.configs.get("retention.ms", "-1"))
    if ms >= 0:
        parts.append(f"{ms / 86_400_000:g} d" if ms >= 86_400_000 else f"{ms / 3_600_000:g} h")
    return ", ".join(parts) or "unlimited"


@kafka.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly_errors
def topics(as_json: bool) -> None:
    """Every topic: partitions, replication, records held, bytes on disk, retention and how full it is.

    "fullest" is the largest partition's share of retention.bytes: at 100 % the broker starts deleting
    the oldest segments, read or not.
    """
    from lakehouse.services import topics as t

    s = load_settings()
    infos = _call(s, "listing topics", t.describe, s)
    if as_json:
        click.echo(json.dumps(t.as_json(infos), indent=2))
        return
    table = Table(title=f"Kafka topics at {s.bootstrap_servers}", title_justify="left")
    for col in ("topic", "partitions", "replicas", "records", "on disk", "retention", "fullest"):
        table.add_column(col, justify="left" if col in ("topic", "retention") else "right")
    for info in infos:
        ratio = info.fullest_partition_ratio
        table.add_row(
            info.name,
            str(len(info.partitions)),
            str(info.replication),
            f"{info.records:,}",
            human_bytes(info.size_bytes),
            _retention(info),
            "-" if ratio is None else f"{ratio:.1%}",
        )
    console.print(table)


@kafka.command()
@click.argument("topic")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--all-configs", is_flag=True, help="Every config, not only those set on the topic or the broker.")
@friendly_errors
def describe(topic: str, as_json: bool, all_configs: bool) -> None:
    """TOPIC's partitions (leader, replicas, in-sync replicas, first and next offset, bytes) and configs."""
    from lakehouse.services import topics as t

    s = load_settings()
    (info,) = _call(s, f"describing {topic}", t.describe, s, [topic])
    if as_json:
        click.echo(json.dumps(t.as_json(info), indent=2))
        return
    table = Table(title=f"{topic}: {info.records:,} records, {human_bytes(info.size_bytes)}", title_justify="left")
    for col in ("partition", "leader", "replicas", "in sync", "first offset", "next offset", "records", "on disk"):
        table.add_column(col, justify="right")
    for p in info.partitions:
        isr = ",".join(map(str, p.isr))
        table.add_row(
            str(p.partition),
            str(p.leader),
            ",".join(map(str, p.replicas)),
            isr if set(p.isr) == set(p.replicas) else f"[red]{isr}[/]",
            f"{p.start:,}",
            f"{p.end:,}",
            f"{p.records:,}",
            human_bytes(p.size_bytes),
        )
    console.print(table)
    shown = dict(sorted(info.configs.items()))
    if not all_configs:
        shown = {
            k: v for k, v in shown.items() if k.startswith(("retention.", "cleanup.", "min.insync", "max.message"))
        }
    conf = Table(title="configs" + ("" if all_configs else " (retention, cleanup, sizes; --all-configs for all)"))
    conf.add_column("name")
    conf.add_column("value")
    for k, v in shown.items():
        conf.add_row(k, v)
    console.print(conf)


@kafka.command()
@click.argument("topic")
@click.option("-n", "count", type=click.IntRange(1, 10_000), default=10, show_default=True, help="Records to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record (JSON Lines).")
@friendly_errors
def tail(topic: str, count: int, as_json: bool) -> None:
    """The newest COUNT records of TOPIC over all its partitions, oldest first (card numbers masked)."""
    from lakehouse.services import topics as t

    s = load_settings()
    records = _call(s, f"reading {topic}", t.tail, s, topic, count)
    if as_json:
        for r in records:
            click.echo(json.dumps(t.as_json(r)))
        return
    if not records:
        console.print(f"{topic} holds no records")
        return
    for r in records:
        console.print(
            f"[dim]{r.timestamp:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f" p{r.partition}@{r.offset} key={r.key}[/]",
            highlight=False,
        )
        console.print(r.value, highlight=False, markup=False, soft_wrap=True)


@kafka.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--partitions", is_flag=True, help="One row per partition.")
@friendly_errors
def lag(as_json: bool, partitions: bool) -> None:
    """How many records each reader is behind the end of each contract topic.

    \b
    checkpoint  a stream query, from the offsets of its last committed micro-batch (what Spark
                really processed; `<app>/<query>` under <lake>/_checkpoints)
    group       a consumer group's committed offsets: the fast path, and the groups each Spark
                driver commits its progress to after every batch (spark-kafka-lakehouse-<app>)
    """
    from lakehouse.services import topics as t

    s = load_settings()
    lags = _call(s, "reading lag", t.all_lags, s)
    if as_json:
        click.echo(json.dumps(t.as_json(lags), indent=2))
        return
    if not lags:
        console.print("no stream checkpoint and no consumer group has read the contract topics yet")
        return
    table = Table(title="lag: records behind each topic's end", title_justify="left")
    for col in ("reader", "from", "topic", *(["partition"] if partitions else []), "behind", "last commit"):
        table.add_column(col, justify="right" if col in ("behind", "partition") else "left")
    for entry in lags:
        when = f"{entry.committed_at:%Y-%m-%d %H:%M:%S}" if entry.committed_at else ""
        if partitions and entry.behind is not None:
            for p, n in sorted(entry.behind.items()):
                table.add_row(entry.who, entry.source, entry.topic, str(p), f"{n:,}", when)
        else:
            total = "nothing committed" if entry.total is None else f"{entry.total:,}"
            table.add_row(entry.who, entry.source, entry.topic, *([""] if partitions else []), total, when)
    console.print(table)
