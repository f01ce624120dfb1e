"""Clients of the running services, and the one registry of the Spark apps that are launched.

- ``kafka``: admin (topics, end offsets, readiness);
- ``trino``: queries and the registration of the Delta tables in Trino's metastore;
- ``dagster_api``: the Dagster webserver's GraphQL (launch, stop, runs, daemon health);
- ``streams``: the stream and batch apps by name, spark-submit, the single-instance locks
  and graceful stop, shared by the CLI and the Dagster launcher.

May import the model and ``lakehouse.delta.session``/``cds`` (to build spark-submit's arguments);
never the stack manager, the CLI or Dagster itself (``dagster_api`` speaks HTTP).
"""
