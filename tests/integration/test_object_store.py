"""The cluster profile's lake is on the object store, and what it needs from it holds (`make test-cluster`).

- The data lives in the bucket: the stack's tables and checkpoints are objects under s3a://<bucket>/lake,
  and nothing of the lake is on the local disk; Trino reads the same tables from S3 and counts what Spark
  counts.
- The store lets in only who it should: anonymous and wrongly signed requests are refused, Trino's
  identity writes nowhere but its metastore, the internal servers' HTTP ports refuse unsigned requests.
- One writer at a time: Delta's commit of version N is a conditional put (a second create of the same
  commit file fails as Delta expects from a lost race), two drivers appending to one table at once
  lose nothing, and the stream lease admits one driver per checkpoint across machines.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from lakehouse.settings import PROJECT_ROOT, Settings, child_env
from lakehouse.storage import filesystem, parse_s3a
from lakehouse.tables import BRONZE, GOLD, SILVER

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.cluster_profile


@pytest.fixture(autouse=True)
def _on_s3(lakehouse_stack: Settings) -> None:
    if not lakehouse_stack.lake_on_s3:
        pytest.fail("run by `make test-cluster` (LAKEHOUSE_PROFILE=cluster: the lake on s3a://), not on the local one")


def _scratch(s: Settings) -> str:
    """A private prefix of the stack's bucket for one test."""
    assert isinstance(s.lake_root, str)
    return f"s3a://{parse_s3a(s.lake_root).bucket}/tests/{uuid.uuid4().hex[:12]}"


def test_the_stacks_tables_and_checkpoints_live_in_the_bucket_and_trino_reads_them_there(
    stack_lake: Settings, spark: SparkSession
) -> None:
    from lakehouse.services import trino

    s = stack_lake
    assert isinstance(s.lake_root, str)
    loc = parse_s3a(s.lake_root)
    fs = filesystem(s)
    for spec in (BRONZE["payments"], SILVER["payments"], GOLD["merchant_minute"]):
        key = f"{loc.bucket}/{loc.prefix}/{spec.relative_path}"
        commits = [k for k in fs.ls(f"{key}/_delta_log", refresh=True) if k.endswith(".json")]
        parquet = [k for k in fs.find(key) if k.endswith(".parquet")]
        assert commits, f"{spec.full_name}: no commit under s3a://{key}"
        assert parquet, f"{spec.full_name}: no data file under s3a://{key}"
    offsets = fs.find(f"{loc.bucket}/{loc.prefix}/_checkpoints/bronze")
    assert any("/offsets/" in k for k in offsets), "bronze's checkpoint is not in the bucket"
    assert not (s.state_dir / "lake").exists(), "part of the lake is on the local disk"
    report = trino.sync_tables(s)
    assert report.skipped is None, report.skipped  # Trino's catalog is on this lake (its metastore in the bucket)
    assert not report.failed, report.failed
    for spec in (BRONZE["payments"], SILVER["payments"], GOLD["merchant_minute"]):
        by_spark = spark.read.format("delta").load(spec.path(s.lake_dir)).count()
        (by_trino,) = trino.query(s, f"SELECT count(*) FROM {s.trino_catalog}.{spec.full_name}")[0]
        assert by_trino == by_spark > 0, spec.full_name


def test_the_store_refuses_anonymous_wrongly_signed_and_out_of_scope_requests(lakehouse_stack: Settings) -> None:
    import s3fs

    s = lakehouse_stack
    assert isinstance(s.lake_root, str)
    bucket = parse_s3a(s.lake_root).bucket
    ca = str(s.ca_file)
    assert requests.get(f"{s.s3_url}/{bucket}?list-type=2", verify=ca, timeout=10).status_code == 403
    with pytest.raises(requests.exceptions.SSLError):  # TLS only, and a client must trust the stack's CA
        requests.get(f"{s.s3_url}/{bucket}", timeout=10)

    def client(key: str, secret: str) -> s3fs.S3FileSystem:
        return s3fs.S3FileSystem(
            key=key, secret=secret, endpoint_url=s.s3_url, skip_instance_cache=True,
            client_kwargs={"verify": ca, "region_name": s.s3_region},
        )  # fmt: skip

    wrong = client(s.s3_access_key, "not-the-secret")
    with pytest.raises(PermissionError):
        wrong.ls(bucket, refresh=True)
    reader = client(s.s3_trino_access_key, s.secret("s3_trino").get_secret_value())
    assert reader.ls(bucket, refresh=True)  # Trino reads and lists the lake...
    with pytest.raises(PermissionError):  # ...and writes nowhere in it...
        reader.pipe_file(f"{bucket}/lake/bronze/payments/_delta_log/99999999999999999999.json", b"{}")
    marker = f"{bucket}/lake/_trino_metastore/_test_{uuid.uuid4().hex[:8]}"
    reader.pipe_file(marker, b"{}")  # ...but its own metastore
    reader.rm_file(marker)
    # The servers behind the S3 API take only requests signed with the store's own key.
    ports = s.object_store_ports()
    for role in ("filer", "volume"):
        r = requests.get(f"http://{s.host}:{ports[role]}/buckets/{bucket}/lake/", timeout=10)
        assert r.status_code == 401, f"{role}: {r.status_code} {r.text[:200]}"


def test_a_delta_commit_is_a_conditional_put_so_a_second_writer_of_version_n_loses(
    lakehouse_stack: Settings, spark: SparkSession
) -> None:
    """The log store's primitive, called as Delta calls it: create version N unless it exists."""
    jvm = spark._jvm  # type: ignore[attr-defined]
    assert jvm is not None
    conf = spark._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    assert spark.conf.get("spark.delta.logStore.s3a.impl") == "lakehouse.spark.S3ConditionalPutLogStore"
    store = jvm.lakehouse.spark.S3ConditionalPutLogStore(conf)
    path = jvm.org.apache.hadoop.fs.Path(f"{_scratch(lakehouse_stack)}/_delta_log/00000000000000000000.json")

    def actions(*lines: str):  # type: ignore[no-untyped-def]
        out = jvm.java.util.ArrayList()
        for line in lines:
            out.add(line)
        return out.iterator()

    store.write(path, actions('{"commitInfo":{"by":"first"}}'), False, conf)
    with pytest.raises(Exception, match="FileAlreadyExistsException"):
        store.write(path, actions('{"commitInfo":{"by":"second"}}'), False, conf)
    assert [str(x) for x in list(store.read(path, conf))] == ['{"commitInfo":{"by":"first"}}']  # not replaced
    store.write(path, actions('{"commitInfo":{"by":"replaced"}}'), True, conf)  # overwrite: checkpoints
    assert [str(x) for x in list(store.read(path, conf))] == ['{"commitInfo":{"by":"replaced"}}']


_APPENDER = textwrap.dedent(
    """
    import sys
    from lakehouse.delta.session import build_spark_session
    from lakehouse.settings import get_settings

    table, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spark = build_spark_session(f"appender-{who}", get_settings(), master="local[1]")
    for i in range(n):
        spark.createDataFrame([(who, i)], "who STRING, i INT").write.format("delta").mode("append").save(table)
    print("done", flush=True)
    spark.stop()
    """
)


def test_two_drivers_appending_to_one_table_at_once_lose_no_commit(
    lakehouse_stack: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    s = lakehouse_stack
    table = f"{_scratch(s)}/race"
    spark.createDataFrame([("init", 0)], "who STRING, i INT").write.format("delta").save(table)
    script = tmp_path / "appender.py"
    script.write_text(_APPENDER)
    n = 8
    env = child_env(**s.to_env(), PYTHONPATH=str(PROJECT_ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), table, who, str(n)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for who in ("a", "b")
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
        assert "done" in out, out[-3000:]
    rows = spark.read.format("delta").load(table)
    counts = {r["who"]: r["count"] for r in rows.groupBy("who").count().collect()}
    assert counts == {"init": 1, "a": n, "b": n}
    versions = sorted(r["version"] for r in spark.sql(f"DESCRIBE HISTORY delta.`{table}`").collect())
    assert versions == list(range(2 * n + 1))  # one commit per append, none overwritten


def test_the_stream_lease_admits_one_driver_per_checkpoint_and_takes_over_from_a_dead_one(
    lakehouse_stack: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakehouse.services import lease as lease_mod
    from lakehouse.services.lease import Holder, LeaseTakenError, S3Lease

    s = lakehouse_stack
    root = f"{_scratch(s)}/_checkpoints/bronze"
    first = S3Lease(s, root)
    first.acquire()
    try:
        h = S3Lease(s, root).holder()
        assert h is not None
        assert h.pid == os.getpid()
        with pytest.raises(LeaseTakenError, match=f"pid {os.getpid()} on {socket.gethostname()}"):
            S3Lease(s, root).acquire()
    finally:
        first.release()
    assert S3Lease(s, root).holder() is None
    # A driver of this machine killed outright: its lease names a pid that is gone, taken over at once.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = S3Lease(s, root)
    stale._put(Holder(7, socket.gethostname(), dead.pid, "gone", time.time()), create=True)
    taker = S3Lease(s, root)
    taker.acquire()
    assert taker.mine is not None
    assert taker.mine.generation == 8
    assert S3Lease(s, root)._generations() == [8]  # the dead driver's generation is cleared
    # The holder finds a newer generation at renewal (it was frozen past the TTL and another took over):
    # it is told to stop (SIGTERM, a graceful stop), not left writing beside the new one.
    signals: list[int] = []
    monkeypatch.setattr(lease_mod.os, "kill", lambda pid, sig: signals.append(sig))
    taker._stop.set()
    assert taker._thread is not None
    taker._thread.join()
    S3Lease(s, root)._put(Holder(9, "elsewhere", 1, "other", time.time()), create=True)
    taker._stop.clear()
    monkeypatch.setattr(lease_mod, "RENEW_S", 0.1)
    taker._renew()
    assert signals == [15]
    doc = json.loads(filesystem(s).cat_file(taker._key(9)))
    assert doc["host"] == "elsewhere"  # the new holder's lease is untouched
