"""Shared library of the streaming lakehouse: settings, contracts, Spark/Kafka/Trino helpers,
the local stack manager and the `lakehouse` CLI. It never imports Dagster."""

__version__ = "0.1.0"
