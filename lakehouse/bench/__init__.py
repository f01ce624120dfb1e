"""`lakehouse bench`: the platform's benchmarks, each against a baseline measured in the same run.

- ``throughput``: catch-up of a seeded backlog through bronze and refine, against a minimal
  Kafka -> Delta append query (the floor Spark sets on this machine);
- ``latency``: produce -> Redis of the continuous pipeline under an open-loop load, against a
  minimal Kafka -> Redis ``foreachBatch`` query;
- ``growth``: the cost of a micro-batch on small tables and state against 10x larger ones;
- ``jvm``: a short catch-up run's wall time under several driver JVM option sets, against the
  driver with no extra options.

Each prints a table, writes JSON (and a PNG where a picture says more) under ``--out``, and
asserts nothing: numbers are for docs/benchmarks.md, not for CI.
"""
