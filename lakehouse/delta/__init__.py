"""Spark-side table code, run inside a Spark driver: the session, guards, validator, maintenance, quality, stats.

- ``session``: :func:`build_spark_session`, the one way every app, job and test gets Spark + Delta;
- ``ops``: builds the platform's Java operators (``spark_apps/jvm``) against pyspark's jars;
- ``cds``: the driver's class-data-sharing archive (faster JVM start);
- ``guards``: Delta conflict retry and bronze protection, used by every writer;
- ``validator``: the silver validator as Spark columns (the program of ``lakehouse.validation``);
- ``maintenance``: OPTIMIZE / Z-order, VACUUM, checkpoints; ``quality``: the Great Expectations
  checks; ``stats``: table sizes for ``lakehouse tables``.

May import pyspark and delta at the top, and the model (``lakehouse.settings``, ``contracts``,
``tables``, ``validation``); never the services, the stack, the CLI or Dagster.
"""
