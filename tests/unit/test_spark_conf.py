from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.delta.session import SparkSetupError, spark_conf
from lakehouse.settings import Settings


def test_missing_connector_jars_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SparkSetupError, match="make setup"):
        spark_conf(Settings(state_dir=tmp_path), "x")


def _with_jars(tmp_path: Path) -> Path:
    """A state directory with (empty) connector jars where setup puts them; the jars' directory."""
    jars = tmp_path / "jvm" / "spark"
    jars.mkdir(parents=True)
    for name in ("delta-spark_4.2_2.13-4.4.0.jar", "spark-sql-kafka-0-10_2.13-4.2.0.jar"):
        (jars / name).write_bytes(b"")
    return jars


def test_conf_has_delta_extensions_jars_and_the_given_master(tmp_path: Path) -> None:
    jars = _with_jars(tmp_path)
    s = Settings(state_dir=tmp_path)
    conf = spark_conf(s, "app")
    assert conf["spark.master"] == "local[2]"
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    assert str(jars / "delta-spark_4.2_2.13-4.4.0.jar") in conf["spark.jars"].split(",")
    assert spark_conf(s, "app", master="spark://10.1.2.3:7077")["spark.master"] == "spark://10.1.2.3:7077"
    # a driver out of memory must exit (a failed run the supervisor restarts), not limp on
    assert "-XX:+ExitOnOutOfMemoryError" in conf["spark.driver.extraJavaOptions"].split()


def test_code_generation_is_on_unless_a_setting_turns_it_off(tmp_path: Path) -> None:
    _with_jars(tmp_path)
    s = Settings(state_dir=tmp_path)
    on = spark_conf(s, "app")  # Spark's defaults: code generation, whole-stage
    assert "spark.sql.codegen.factoryMode" not in on
    assert "spark.sql.codegen.wholeStage" not in on
    off = spark_conf(s.model_copy(update={"spark_codegen": False}), "app")
    assert off["spark.sql.codegen.factoryMode"] == "NO_CODEGEN"
    assert off["spark.sql.codegen.wholeStage"] == "false"


def test_spark_scratch_is_per_process_under_the_state_dir_and_dead_processes_scratch_is_swept(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    from lakehouse.delta.session import scratch_dir, sweep_scratch

    _with_jars(tmp_path)
    s = Settings(state_dir=tmp_path)
    assert spark_conf(s, "app")["spark.local.dir"] == str(tmp_path / "spark-scratch" / str(os.getpid()))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dirs = {pid: scratch_dir(s, pid) for pid in (int(dead.stdout), alive.pid, os.getpid())}
        for d in dirs.values():
            (d / "blockmgr-1").mkdir(parents=True)
            (d / "blockmgr-1" / "shuffle_0_0_0.data").write_bytes(b"x" * 1024)
        (tmp_path / "spark-scratch" / "not-a-pid").mkdir()  # not ours to judge: kept
        assert sweep_scratch(s) == [dirs[int(dead.stdout)]]
        assert not dirs[int(dead.stdout)].exists()
        assert dirs[alive.pid].exists()
        assert dirs[os.getpid()].exists()
        assert (tmp_path / "spark-scratch" / "not-a-pid").exists()
    finally:
        alive.kill()
        alive.wait()
    assert sweep_scratch(s) == [dirs[alive.pid]]


def test_a_standalone_master_gets_executors_sized_the_code_shipped_and_its_secret_from_a_private_file(
    tmp_path: Path,
) -> None:
    import stat
    import zipfile

    from lakehouse.delta.session import secret_conf_dir

    _with_jars(tmp_path)
    s = Settings(_env_file=None, state_dir=tmp_path, profile="cluster", lake_root=tmp_path / "lake")  # type: ignore[call-arg]
    conf = spark_conf(s, "app")
    assert conf["spark.master"] == "spark://127.0.0.1:7077"
    assert (conf["spark.executor.memory"], conf["spark.executor.cores"], conf["spark.cores.max"]) == ("1g", "1", "2")
    # the three streams fit side by side on the cluster profile's workers, two cores each
    assert s.spark_workers * s.spark_worker_cores >= 3 * int(conf["spark.cores.max"])
    archive, _, unpacked = conf["spark.archives"].partition("#")
    assert conf["spark.executorEnv.PYTHONPATH"] == unpacked  # where each executor unpacks it
    names = zipfile.ZipFile(archive).namelist()
    assert "lakehouse/__init__.py" in names
    assert "lakehouse/contracts/payments.schema.json" in names  # the packages' data files too
    assert "spark_apps/refine.py" in names
    assert spark_conf(s, "app")["spark.archives"] == conf["spark.archives"]  # made once per code version
    # The shared secret is in no option (pyspark puts them on spark-submit's command line) but in a 0600 file.
    (tmp_path / "secrets").mkdir(mode=0o700)
    (tmp_path / "secrets" / "spark-auth.secret").write_text("s3cr3t-value")
    assert not any("s3cr3t-value" in v for v in conf.values())
    defaults = secret_conf_dir(s) / "spark-defaults.conf"
    assert defaults.read_text() == "spark.authenticate true\nspark.authenticate.secret s3cr3t-value\n"
    assert stat.S_IMODE(defaults.stat().st_mode) == 0o600
    assert "spark.archives" not in spark_conf(Settings(_env_file=None, state_dir=tmp_path), "app")  # type: ignore[call-arg]


def test_an_s3a_lake_gets_s3a_delta_s_conditional_log_store_and_credentials_by_file_only(tmp_path: Path) -> None:
    import stat

    from lakehouse.delta.session import _s3_conf, _s3_jvm_options
    from lakehouse.stack import secrets

    s = Settings(_env_file=None, state_dir=tmp_path, profile="cluster", object_store_port=18333)  # type: ignore[call-arg]
    secrets.ensure(s)
    conf = _s3_conf(s)
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "https://127.0.0.1:18333"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    # every writer commits through the conditional-put store: two drivers cannot both write version N
    assert conf["spark.delta.logStore.s3a.impl"] == "lakehouse.spark.S3ConditionalPutLogStore"
    options = _s3_jvm_options(s)
    assert all(o in conf["spark.executor.extraJavaOptions"].split() for o in options)  # executors as the driver
    creds = next(o.split("=", 1)[1] for o in options if o.startswith("-Daws.sharedCredentialsFile="))
    secret = s.secret("s3_lakehouse").get_secret_value()
    assert secret in Path(creds).read_text()
    assert stat.S_IMODE(Path(creds).stat().st_mode) == 0o600
    assert not any(secret in v for v in conf.values())
    assert not any(secret in o for o in options)
    store = next(o.split("=", 1)[1] for o in options if o.startswith("-Djavax.net.ssl.trustStore="))
    from cryptography.hazmat.primitives.serialization import pkcs12

    trusted = pkcs12.load_pkcs12(Path(store).read_bytes(), None)
    names = {c.friendly_name for c in trusted.additional_certs}
    assert b"lakehouse-ca" in names  # the stack's CA...
    assert len(names) > 100  # ...and the public ones
    local = Settings(_env_file=None, state_dir=tmp_path)  # type: ignore[call-arg]
    assert not local.lake_on_s3
    assert _s3_jvm_options(local) == []
