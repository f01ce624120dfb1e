"""Table statistics from the Delta log agree with a Spark count, through appends, deletes, MERGE and OPTIMIZE."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.delta.log_stats import log_stats, table_properties


def _agrees(spark: SparkSession, path: Path) -> str:
    st = log_stats(path)
    assert st is not None
    df = spark.read.format("delta").load(str(path))
    assert st.rows == df.count()
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
    assert detail is not None
    assert (st.files, st.size_bytes) == (detail["numFiles"], detail["sizeInBytes"])
    return st.how


def test_rows_files_and_bytes_match_spark_after_every_kind_of_commit(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "t"
    spark.range(0, 1000).selectExpr("id", "id % 7 AS k").write.format("delta").save(str(path))
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    assert _agrees(spark, path) == "checksum"
    spark.range(1000, 1500).selectExpr("id", "id % 7 AS k").write.format("delta").mode("append").save(str(path))
    spark.sql(f"DELETE FROM delta.`{path}` WHERE k = 3")  # deletion vectors: rows gone, files kept
    assert _agrees(spark, path) == "checksum"
    spark.range(1400, 1600).selectExpr("id", "id % 5 AS k").createOrReplaceTempView("updates")
    spark.sql(
        f"MERGE INTO delta.`{path}` t USING updates u ON t.id = u.id "
        "WHEN MATCHED THEN UPDATE SET k = u.k WHEN NOT MATCHED THEN INSERT *"
    )
    spark.sql(f"OPTIMIZE delta.`{path}`")
    assert _agrees(spark, path) == "checksum"


def test_without_checksums_the_json_log_is_replayed(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "t"
    spark.range(0, 300).write.format("delta").save(str(path))
    spark.range(300, 350).write.format("delta").mode("append").save(str(path))
    spark.sql(f"DELETE FROM delta.`{path}` WHERE id < 10")
    for crc in (path / "_delta_log").glob("*.crc"):
        crc.unlink()
    assert _agrees(spark, path) == "log replay"


def test_what_the_log_cannot_say_is_left_to_spark(tmp_path: Path) -> None:
    assert log_stats(tmp_path / "nothing") is None
    log = tmp_path / "t" / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000000.json").write_text(
        '{"commitInfo":{"timestamp":1}}\n{"add":{"path":"a.parquet","size":10,"dataChange":true}}\n'
    )
    assert log_stats(tmp_path / "t") is None  # a file without statistics: no row count from the log


def test_table_properties_from_the_newest_checksum_equal_describe_detail(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "t"
    spark.range(0, 10).write.format("delta").save(str(path))
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.checkpointInterval' = '7', 'x.y' = 'a b')")
    spark.sql(f"ALTER TABLE delta.`{path}` UNSET TBLPROPERTIES ('x.y')")
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
    assert detail is not None
    assert table_properties(path) == dict(detail["properties"]) == {"delta.checkpointInterval": "7"}
    (path / "_delta_log" / "00000000000000000002.crc").unlink()  # the newest commit's: an older one would lie
    assert table_properties(path) is None
    assert table_properties(tmp_path / "nothing") is None
