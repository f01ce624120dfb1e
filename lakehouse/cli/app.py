"""`lakehouse`: set up, run and inspect the streaming lakehouse on this machine.

Every command reads its settings from LAKEHOUSE_* environment variables and an
optional .env file (see `lakehouse config`). Errors are reported as one readable
message and a non-zero exit code, never as a stack trace.

This module assembles the command: each sibling module defines its commands or one group,
and only this one imports them all (``python -m lakehouse.cli`` and the ``lakehouse`` script
both run ``main`` from here).
"""

from __future__ import annotations

import os

import click

from lakehouse import __version__
from lakehouse.cli import bench, chaos, dashboards, generate, kafka, keys, serving, stack, streams, trino


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lakehouse")
def main() -> None:
    """Streaming lakehouse: Kafka -> Spark -> Delta (bronze/silver/gold) -> Redis, Trino, dbt; run by Dagster.

    \b
    Typical session:
      lakehouse setup      install what the stack needs (idempotent; `make setup` runs it)
      lakehouse up         start Kafka, Redis, Trino, Prometheus (+ pushgateway, Alertmanager), Dagster
      lakehouse status     one line per component; exit 1 if anything is down
      lakehouse connect R  how role R (producer, engineer, analyst, service) reaches each service
      lakehouse ui         a one-time link that logs a browser into the Dagster UI (--dashboard: the dashboards)
      lakehouse smoke      Spark writes a Delta table, Trino reads it back
      lakehouse demo       generated events through the whole pipeline, results shown
      lakehouse stream …   run streams (foreground) or start/stop them as Dagster runs
      lakehouse kafka …    topics, a topic's partitions, the newest records, lag
      lakehouse sql "…"    query the lake through Trino
      lakehouse serve get  read what services read from Redis
      lakehouse keys …     the master keys of the encryption at rest: list, rotate, retire
      lakehouse down       stop what `up` started

    Settings come from LAKEHOUSE_* variables and .env; `lakehouse config` shows them.
    """
    # Whatever the CLI and what it starts (the stack, Spark apps, Dagster) create is the owner's only:
    # the lake, Kafka's segments and the logs hold card numbers and tokens.
    os.umask(0o077)


for command in (
    stack.setup,
    stack.up,
    stack.down,
    stack.status,
    stack.logs,
    stack.config,
    stack.connect,
    stack.ui,
    stack.smoke,
    stack.tables,
    stack.demo,
    trino.sql,
    trino.trino,
    streams.stream,
    streams.replay,
    streams.maintain,
    streams.check,
    generate.generate,
    kafka.kafka,
    dashboards.dashboards,
    chaos.chaos,
    serving.redis,
    serving.serve,
    bench.bench,
    keys.keys,
):
    main.add_command(command)

if __name__ == "__main__":
    main()
