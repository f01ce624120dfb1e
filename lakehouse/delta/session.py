"""The one place a SparkSession is built: every Spark app and test calls ``build_spark_session``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.settings import PROJECT_ROOT, Settings, get_settings, write_private
from lakehouse.tables import encrypted_columns

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


LOG4J2 = PROJECT_ROOT / "infra" / "spark" / "log4j2.properties"


class SparkSetupError(RuntimeError):
    """The connector jars are missing or the session could not start."""


def connector_jars(s: Settings) -> list[Path]:
    """The Kafka and Delta connector jars cached by `make setup` (infra/jvm/spark-connectors.pom.xml),
    and the platform's own operators (``lakehouse.delta.ops``, compiled here if the sources changed)."""
    from lakehouse.delta.ops import SparkOpsBuildError, ensure, ensure_s3

    jars = sorted((s.jvm_dir / "spark").glob("*.jar"))
    names = " ".join(j.name for j in jars)
    if "delta-spark" not in names or "spark-sql-kafka" not in names:
        raise SparkSetupError(
            f"the Spark Delta/Kafka connector jars are not in {s.jvm_dir / 'spark'}: run `make setup`"
        )
    if s.lake_on_s3:
        s3 = sorted((s.jvm_dir / "spark-s3").glob("*.jar"))
        if not any(j.name.startswith("hadoop-aws-") for j in s3):
            raise SparkSetupError(
                f"the lake is on s3a:// but Hadoop's S3A connector is not in {s.jvm_dir / 'spark-s3'}: run `make setup`"
            )
        jars += s3
    try:
        jars.append(ensure(s))
        if s.lake_on_s3:
            jars.append(ensure_s3(s))
    except SparkOpsBuildError as exc:
        raise SparkSetupError(str(exc)) from None
    return jars


def standalone(master: str) -> bool:
    """Whether MASTER is a Spark standalone master (``spark://``), which needs the shared secret given."""
    return master.startswith("spark://")


def secret_conf_dir(s: Settings) -> Path:
    """A SPARK_CONF_DIR (in the secrets directory, 0700) whose ``spark-defaults.conf`` (0600) holds the
    standalone cluster's shared secret: master, workers and drivers read it from there, so it is never on a
    command line (pyspark hands a session's options to spark-submit as arguments). Executors get it from
    their worker through the environment, as Spark does."""
    conf_dir = s.secrets_dir / "spark-conf"
    secret = s.secret("spark_auth").get_secret_value()
    text = f"spark.authenticate true\nspark.authenticate.secret {secret}\n"
    write_private(conf_dir / "spark-defaults.conf", text.encode())
    return conf_dir


#: Where an executor unpacks the code archive (``spark.archives``' fragment), put on its PYTHONPATH.
CODE_DIR = "lakehouse-code"


def code_archive(s: Settings) -> Path:
    """The project's Python packages (``lakehouse``, ``spark_apps``, their data files too) as one zip for a
    cluster's executors, made once per version of the code under <state_dir>/spark-dist. A version is told by
    each file's path, size and modification time (a stat per file on every start, not a read)."""
    import contextlib
    import hashlib
    import zipfile

    packages = [PROJECT_ROOT / "lakehouse", PROJECT_ROOT / "spark_apps"]
    files = sorted(f for pkg in packages for f in pkg.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(PROJECT_ROOT)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    dest = s.state_dir / "spark-dist" / f"lakehouse-code-{digest.hexdigest()[:12]}.zip"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for f in files:
                z.write(f, f.relative_to(PROJECT_ROOT))
        tmp.replace(dest)
        # Older versions: the newest few stay (an app still running may serve its executors one of them).
        with contextlib.suppress(FileNotFoundError):  # another process cleaning up at the same moment
            older = sorted(dest.parent.glob("lakehouse-code-*.zip"), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in older[KEEP_ARCHIVES:]:
                old.unlink(missing_ok=True)
    return dest


#: Code archives kept in <state_dir>/spark-dist (the newest).
KEEP_ARCHIVES = 5


def spark_conf(s: Settings, app_name: str, master: str | None = None) -> dict[str, str]:
    """Spark configuration for the platform; also what `spark-submit --conf` gets for cluster runs."""
    master = master or s.spark_master
    return {
        "spark.app.name": app_name,
        "spark.master": master,
        "spark.jars": ",".join(str(j) for j in connector_jars(s)),
        "spark.driver.memory": s.spark_driver_memory,
        "spark.ui.enabled": str(s.spark_ui_enabled).lower(),
        "spark.driver.host": s.host,
        "spark.driver.bindAddress": s.host,
        # A driver out of memory exits (status 3) instead of limping on: its run fails and the
        # supervisor restarts it, rather than a half-dead stream that never commits again.
        "spark.driver.extraJavaOptions": " ".join(
            [
                f"-Dlog4j2.configurationFile={LOG4J2}",
                "-XX:+ExitOnOutOfMemoryError",
                *_s3_jvm_options(s),
                s.spark_driver_java_options,
            ]
        ).strip(),
        "spark.ui.showConsoleProgress": "false",
        # Shuffle and spill files, broadcast blocks and the driver's file server under the state directory,
        # one directory per process, instead of /tmp: a driver killed outright (SIGKILL, OOM killer) leaves its
        # scratch behind, and the next session sweeps what dead processes left (``sweep_scratch``).
        "spark.local.dir": str(scratch_dir(s)),
        **platform_conf(s),
        **(_s3_conf(s) if s.lake_on_s3 else {}),
        **(_standalone_conf(s) if standalone(master) else {}),
    }


def _s3_jvm_options(s: Settings) -> list[str]:
    from lakehouse.storage import jvm_options

    return jvm_options(s) if s.lake_on_s3 else []


def _s3_conf(s: Settings) -> dict[str, str]:
    """An s3a:// lake: S3A's endpoint and credentials, Delta's multi-writer log store; executors get the
    credentials file and trust store by system property, as the driver does."""
    from lakehouse.storage import hadoop_conf

    return {
        **hadoop_conf(s),
        "spark.executor.extraJavaOptions": " ".join(["-XX:+ExitOnOutOfMemoryError", *_s3_jvm_options(s)]),
    }


def platform_conf(s: Settings) -> dict[str, str]:
    """What every app needs wherever it runs (this machine, a standalone cluster, Kubernetes): Delta, the
    security of Spark's own traffic, the encryption of card numbers at rest, streaming state and the sizes.
    ``spark_conf`` adds where the jars and the driver are; the Kubernetes manifests add the cluster's."""
    return {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(s.spark_shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        # Spark's own connections (driver, executors, block transfers) authenticated and encrypted, and
        # what it spills or shuffles to disk encrypted (docs/security.md). In local mode Spark makes the
        # shared secret itself; a standalone master needs one given (``secret_conf_dir``).
        "spark.authenticate": "true",
        "spark.network.crypto.enabled": "true",
        "spark.io.encryption.enabled": "true",
        # Card numbers at rest: the columns that may hold one in clear (bronze `value`, quarantine `raw_value`)
        # are Parquet-encrypted (AES-GCM, 256-bit keys wrapped with a master key from the secrets directory);
        # every other column and file is plain. Reading needs only the KMS: the wrapped keys are in each file.
        "spark.hadoop.parquet.crypto.factory.class": "lakehouse.spark.PiiCryptoFactory",
        "spark.hadoop.parquet.encryption.kms.client.class": "lakehouse.spark.FileKms",
        "spark.hadoop.lakehouse.parquet.key.dir": str(s.parquet_keys_dir),
        "spark.hadoop.lakehouse.parquet.encrypted.columns": encrypted_columns(),
        # Never print a Kafka login line (its password is a file reference, but the line names the file).
        "spark.redaction.regex": "(?i)secret|password|token|access[.]?key|jaas",
        # Delta reads its log with this many tasks (default 50): far too many for 2 cores.
        "spark.databricks.delta.snapshotPartitions": str(s.spark_shuffle_partitions),
        # Delta: a stream restart must find its own state; never silently drop the Delta log.
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.sql.streaming.stopGracefullyOnShutdown": "true",
        # Streaming state (dedup ids, fraud context) in RocksDB, not on the JVM heap; each batch
        # uploads only its changes (changelog checkpointing), so a commit costs what the batch wrote.
        "spark.sql.streaming.stateStore.providerClass": (
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
        ),
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # Let a query look for new data every 50 ms when idle instead of every 10 ms: the latency
        # cost is tiny, and nine idle queries polling Kafka and Delta logs eat a core of two.
        "spark.sql.streaming.pollingDelay": "50ms",
        **({} if s.spark_codegen else _INTERPRETED),
    }


def _standalone_conf(s: Settings) -> dict[str, str]:
    """What an app on a standalone cluster needs beyond local mode: executors' size (one core each), the
    cores it may hold (so the streams run side by side instead of the first one holding every worker),
    this interpreter on the executors, and the code."""
    import sys

    return {
        "spark.executor.memory": s.spark_executor_memory,
        "spark.executor.cores": "1",
        "spark.cores.max": str(s.spark_app_cores),
        "spark.pyspark.python": sys.executable,
        # The code, unpacked by each executor into its directory and put on its Python workers' path; not
        # spark.submit.pyFiles, which puts the zip first on the driver's path too (whose checkout has the
        # infra files beside the packages that a zip has not).
        "spark.archives": f"{code_archive(s)}#{CODE_DIR}",
        "spark.executorEnv.PYTHONPATH": CODE_DIR,
    }


def scratch_dir(s: Settings, pid: int | None = None) -> Path:
    """Spark's scratch directory (``spark.local.dir``) of process PID (this one by default)."""
    return s.state_dir / "spark-scratch" / str(os.getpid() if pid is None else pid)


def sweep_scratch(s: Settings) -> list[Path]:
    """Remove the scratch directories of processes that no longer run; return them.

    A driver that exits cleanly removes its own files; one killed outright leaves them (gigabytes over a
    fault test's ten kills). Named by the Python process' pid, a directory is its own as long as that
    process lives; a pid reused since by another process keeps its directory until that one ends too.
    """
    import shutil

    import psutil

    root = s.state_dir / "spark-scratch"
    removed: list[Path] = []
    for d in root.iterdir() if root.is_dir() else ():
        if d.name.isdigit() and int(d.name) != os.getpid() and not psutil.pid_exists(int(d.name)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


#: Expressions interpreted, no whole-stage Java code: a cold driver's first batches spent more time in
#: generating and compiling code (Spark's CodeFormatter and Janino, on a JIT not yet warm) than in
#: running it; over 900 events `stream run all --available-now` took 60 s instead of 78.
_INTERPRETED = {"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}


def build_spark_session(
    app_name: str,
    settings: Settings | None = None,
    master: str | None = None,
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """A SparkSession with Delta's SQL extensions and the cached Kafka/Delta jars.

    ``master`` defaults to ``settings.spark_master`` (``local[2]``); pass a cluster URL
    to run the same code against a cluster. Spark runs on the Java 17 from settings.
    """
    from pyspark.sql import SparkSession

    from lakehouse.delta import cds as spark_cds

    s = settings or get_settings()
    # pyspark passes this configuration to the spark-submit that starts its JVM: the driver's
    # options, the class archive among them (written by a spark-submit run, never by a session here).
    s = spark_cds.with_options(s, spark_cds.driver_options(s))
    # pyspark starts its JVM with JAVA_HOME from the process environment; Spark 4 needs 17+.
    os.environ["JAVA_HOME"] = str(s.java17())
    # Bind the driver to the configured loopback address instead of guessing an interface.
    os.environ["SPARK_LOCAL_IP"] = s.host
    if standalone(master or s.spark_master):
        os.environ["SPARK_CONF_DIR"] = str(secret_conf_dir(s))
    sweep_scratch(s)
    scratch_dir(s).mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder
    for key, value in {**spark_conf(s, app_name, master), **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
