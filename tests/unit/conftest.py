"""Unit-test fixtures: one local SparkSession for the whole run (no Kafka, Redis or Trino)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """A local SparkSession built the platform's way (Delta extensions, UTC), sized for small test frames."""
    from lakehouse.delta.session import build_spark_session
    from lakehouse.settings import get_settings

    session = build_spark_session(
        "unit-tests",
        get_settings(),
        extra_conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.databricks.delta.snapshotPartitions": "1",
        },
    )
    yield session
    session.stop()
