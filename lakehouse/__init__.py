"""The streaming lakehouse's library, one subpackage per role (the import contracts in pyproject.toml check the arrows).

The model, importing nothing above it (and no Spark, Redis, Kafka or Dagster):
``settings`` (all configuration), ``contracts`` (topics and JSON Schemas), ``tables`` (every
Delta table's spec), ``validation`` (the schema compiled into the validator's program),
``checks`` (the declared data-quality checks), ``fraud_reference`` (the fraud rules in Python);
beside it ``jvm`` (compiles the platform's Java sources into jars).

Above it, lowest first:

- ``delta``, ``serving``, ``generator`` (independent of each other): code run inside Spark
  (session, guards, validator, maintenance, quality, stats); the Redis key layout, writers and
  reader; the seeded event generator;
- ``services``: clients of the running services, the registry of Spark apps (spark-submit) and the
  fast path's Flink launcher;
- ``stack``: the local stack's components, installer and smoke test;
- ``bench``: the benchmarks; ``cli``: the ``lakehouse`` command, imported by nothing.

It never imports Dagster (``orchestration/``) or the Spark apps (``spark_apps/``).
"""

__version__ = "0.1.0"
