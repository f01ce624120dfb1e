"""Code shared by the Dagster definitions of every domain (``orchestration/defs/``); defines no asset, job or sensor.

- ``spark``: :class:`SparkPipes`, the resource that launches a Spark app with spark-submit through Pipes;
- ``config``: the run configuration of every Spark-launching op (settings overrides, master);
- ``jobs``: a job and its schedule, as every domain declares them;
- ``metrics``: pushing stream, check, restart and run metrics to the pushgateway.

May import ``lakehouse`` (never its CLI, stack manager or benchmarks) and Dagster; never ``defs``.
"""
