"""The refine sink's idempotent appends (gold.AppendLog): marked in the commit, checked after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from spark_apps.gold import AppendLog, newest_marked_batch

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _rows(spark: SparkSession, n: int):  # type: ignore[no-untyped-def]
    return spark.range(n).selectExpr("id", "'x' AS v")


def _count(spark: SparkSession, path: Path) -> int:
    return spark.read.format("delta").load(str(path)).count()


def test_a_batch_is_appended_once_even_after_a_restart(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    log = AppendLog()
    assert log.append(_rows(spark, 3), path, "w1", 0)
    assert log.append(_rows(spark, 3), path, "w1", 1)
    assert not log.append(_rows(spark, 3), path, "w1", 1)  # a retried batch: remembered in memory
    assert _count(spark, tmp_path / "t") == 6

    restarted = AppendLog()  # a new process replaying batch 1 after dying right after its commit
    assert not restarted.append(_rows(spark, 3), path, "w1", 1)
    assert restarted.append(_rows(spark, 3), path, "w1", 2)
    assert _count(spark, tmp_path / "t") == 9


def test_other_writers_and_unmarked_commits_do_not_count(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    AppendLog().append(_rows(spark, 1), path, "w1", 5)
    AppendLog().append(_rows(spark, 1), path, "w1-late", 9)  # a writer whose name extends w1's
    _rows(spark, 1).write.format("delta").mode("append").save(path)  # e.g. a replay or maintenance
    assert newest_marked_batch(spark, path, "w1", 100) == 5
    assert newest_marked_batch(spark, path, "w2", 100) == -1
    assert newest_marked_batch(spark, str(tmp_path / "missing"), "w1", 100) == -1
    assert AppendLog().append(_rows(spark, 1), path, "w1", 6)
