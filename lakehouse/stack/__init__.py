"""The local stack on this machine: its components, their installer and the smoke test.

- ``components``: Kafka, Redis, Trino, Prometheus + pushgateway, Dagster webserver and daemon as
  :class:`Component` objects (render config, start, wait until ready, stop) and ``up``/``down``/``status``;
- ``install``: ``make setup``'s downloads (Maven artifacts, Debian packages, the Trino server), cached;
- ``smoke``: Spark writes a Delta table, Trino reads the same rows back.

May import the model, ``lakehouse.services`` and ``lakehouse.delta``; never the CLI or Dagster.
"""
