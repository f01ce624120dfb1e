"""Card numbers at rest: the bronze `value` and quarantine `raw_value` Parquet columns are encrypted
(``lakehouse.spark.PiiCryptoFactory`` + ``FileKms``), other tables are not, and a master key can be
rotated, the older files re-encrypted, and the old key retired without losing a row.

Every test uses its own key directory (never the stack's): the session's Hadoop configuration is
pointed at it for the test, and Parquet's key caches are emptied around it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

from lakehouse.delta import maintenance as m
from lakehouse.delta.encryption import key_usage, master_keys
from lakehouse.delta.tables import ensure_table
from lakehouse.settings import Settings
from lakehouse.stack import secrets
from lakehouse.tables import BRONZE, QUARANTINE, SILVER

CANARY = "4929175817351234"  # a card number that appears nowhere else
KEY_DIR = "lakehouse.parquet.key.dir"


def _clear_key_caches(spark: SparkSession) -> None:
    spark._jvm.org.apache.parquet.crypto.keytools.KeyToolkit.removeCacheEntriesForAllTokens()  # type: ignore[union-attr]


@pytest.fixture
def keyed(spark: SparkSession, tmp_path: Path) -> Iterator[Settings]:
    """Settings with a private state directory (lake and keys), the session encrypting with its keys."""
    s = Settings(state_dir=tmp_path / "state")
    secrets.new_parquet_key(s)
    previous = spark.conf.get(KEY_DIR, None)
    spark.conf.set(KEY_DIR, str(s.parquet_keys_dir))  # SQL settings reach the Hadoop configuration of each job
    _clear_key_caches(spark)
    yield s
    _clear_key_caches(spark)
    if previous is None:
        spark.conf.unset(KEY_DIR)
    else:
        spark.conf.set(KEY_DIR, previous)


def _bronze_rows(spark: SparkSession, n: int, day: date, first_offset: int = 0) -> DataFrame:
    rows = [
        (
            f"u-{i}",
            json.dumps({"event_id": f"e-{first_offset + i}", "card_number": CANARY, "amount": i}),
            "payments",
            0,
            first_offset + i,
            datetime(2026, 12, 1, 12, 0),
            datetime(2026, 12, 1, 12, 0),
            day,
        )
        for i in range(n)
    ]
    return spark.createDataFrame(
        rows,
        "key string, value string, topic string, partition int, offset long, kafka_timestamp timestamp, "
        "ingested_at timestamp, ingest_date date",
    )


def _write_bronze(spark: SparkSession, s: Settings, df: DataFrame) -> str:
    """Append DF to bronze.payments, created as the bronze stream creates it (append-only, its statistics)."""
    ensure_table(spark, BRONZE["payments"], s.lake_dir)
    path = BRONZE["payments"].path(s.lake_dir)
    df.write.format("delta").mode("append").save(path)
    return path


def _data_files(path: str) -> list[Path]:
    return [f for f in Path(path).rglob("*.parquet") if "_delta_log" not in f.parts]


def _everything_under(path: str) -> bytes:
    return b"".join(f.read_bytes() for f in Path(path).rglob("*") if f.is_file())


def test_card_numbers_are_encrypted_in_bronze_and_quarantine_only(spark: SparkSession, keyed: Settings) -> None:
    s = keyed
    bronze = _write_bronze(spark, s, _bronze_rows(spark, 50, date(2026, 12, 1)))
    quarantine = QUARANTINE.path(s.lake_dir)
    ensure_table(spark, QUARANTINE, s.lake_dir)
    spark.createDataFrame(
        [
            (
                "payments",
                0,
                7,
                json.dumps({"card_number": CANARY + "x"}),
                "card_number: the value (withheld) ...",
                datetime(2026, 12, 1, 12, 0),
            )
        ],
        "topic string, partition int, offset long, raw_value string, error string, quarantined_at timestamp",
    ).write.format("delta").mode("append").save(quarantine)
    # A table without encrypted columns, with the canary in an ordinary column: the control that shows
    # the byte search below finds a card number where one is in clear.
    plain = SILVER["payments"].path(s.lake_dir)
    spark.createDataFrame([(CANARY, 1)], "note string, n int").write.format("delta").save(plain)

    assert CANARY.encode() not in _everything_under(bronze)  # data files and the Delta log (no statistics)
    assert CANARY.encode() not in _everything_under(quarantine)
    assert CANARY.encode() in _everything_under(plain)
    assert {frozenset(master_keys(f)) for f in _data_files(bronze) + _data_files(quarantine)} == {frozenset({"pii-1"})}
    assert {frozenset(master_keys(f)) for f in _data_files(plain)} == {frozenset()}
    # Spark, holding the key, reads them back whole.
    values = {r.value for r in spark.read.format("delta").load(bronze).select("value").collect()}
    assert len(values) == 50
    assert all(CANARY in v for v in values)
    assert spark.read.format("delta").load(quarantine).first()["raw_value"] == json.dumps({"card_number": CANARY + "x"})


def test_without_its_master_key_the_column_is_unreadable(spark: SparkSession, keyed: Settings) -> None:
    s = keyed
    bronze = _write_bronze(spark, s, _bronze_rows(spark, 5, date(2026, 12, 1)))
    key = s.parquet_keys_dir / "pii-1.key"
    hidden = key.rename(key.with_suffix(".away"))
    _clear_key_caches(spark)
    try:
        with pytest.raises(Exception, match=r"Parquet master key pii-1 is not in"):
            spark.read.format("delta").load(bronze).select("value").collect()
    finally:
        hidden.rename(key)
        _clear_key_caches(spark)


def _commit_actions(path: str, version: int) -> list[dict[str, object]]:
    log = Path(path) / "_delta_log" / f"{version:020d}.json"
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_rotate_rekey_vacuum_retire(spark: SparkSession, keyed: Settings) -> None:
    s = keyed
    bronze = _write_bronze(spark, s, _bronze_rows(spark, 40, date(2026, 11, 30)))
    _write_bronze(spark, s, _bronze_rows(spark, 40, date(2026, 12, 1), first_offset=40))
    props = spark.sql(f"DESCRIBE DETAIL delta.`{bronze}`").first()["properties"]
    assert props["delta.appendOnly"] == "true"  # the rewrite below must be allowed on an append-only table
    before = sorted(spark.read.format("delta").load(bronze).collect())

    assert secrets.new_parquet_key(s) == "pii-2"
    assert secrets.current_parquet_key(s) == "pii-2"
    _write_bronze(spark, s, _bronze_rows(spark, 10, date(2026, 12, 1), first_offset=80))  # written under pii-2
    usage = key_usage(s, [BRONZE["payments"]])["bronze.payments"]
    assert usage["pii-1"] > 0
    assert usage["pii-2"] > 0
    everything = sorted(spark.read.format("delta").load(bronze).collect())
    assert len(everything) == 90

    # Retiring a key files still need is refused.
    with pytest.raises(ValueError, match="current"):
        secrets.retire_parquet_key(s, "pii-2")

    result = m.rekey(spark, BRONZE["payments"], s.lake_dir, "pii-2")
    assert result.metrics["partitions_rewritten"] == 2
    assert result.metrics["files_not_on_current_key"] == 0
    # The rewrite changed no data: every file it added says so, so streams reading bronze skip it.
    version = result.metrics["commit_version"]
    assert isinstance(version, int)
    adds = [a["add"] for a in _commit_actions(bronze, version) if "add" in a]
    assert adds
    assert all(a["dataChange"] is False for a in adds)
    assert sorted(spark.read.format("delta").load(bronze).collect()) == everything
    assert sorted(r for r in everything if r.offset < 80) == before

    # The replaced files are still on disk (time travel) until VACUUM removes them.
    assert key_usage(s, [BRONZE["payments"]])["bronze.payments"]["pii-1"] > 0
    m.vacuum(spark, BRONZE["payments"], s.lake_dir, retention_hours=0, force=True)
    assert key_usage(s, [BRONZE["payments"]])["bronze.payments"]["pii-1"] == 0
    secrets.retire_parquet_key(s, "pii-1")
    assert secrets.parquet_keys(s) == ["pii-2"]
    _clear_key_caches(spark)  # no cached copy of pii-1 may help the read below
    assert sorted(spark.read.format("delta").load(bronze).collect()) == everything
    # Nothing left to do: a second rekey rewrites nothing.
    assert m.rekey(spark, BRONZE["payments"], s.lake_dir, "pii-2").metrics["files_rewritten"] == 0


def test_key_files_are_private_and_ids_increase(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path / "state")
    ids = [secrets.new_parquet_key(s) for _ in range(3)]
    assert ids == ["pii-1", "pii-2", "pii-3"]
    assert secrets.parquet_keys(s) == ids
    assert oct(s.parquet_keys_dir.stat().st_mode & 0o777) == "0o700"
    for key_id in ids:
        f = s.parquet_keys_dir / f"{key_id}.key"
        assert oct(f.stat().st_mode & 0o777) == "0o600"
        assert len(base64.b64decode(f.read_bytes())) == 32  # AES-256
    with pytest.raises(ValueError, match="no Parquet master key pii-9"):
        secrets.retire_parquet_key(s, "pii-9")
