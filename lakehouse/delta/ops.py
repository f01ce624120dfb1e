"""The platform's own JVM operators for Spark (``spark_apps/jvm/src`` + ``jvm/core/src``), compiled into one jar.

The refine stream's stateful steps (exact deduplication on ``event_id`` and the fraud rules in
keyed state) are ``transformWithState`` processors written in Java: Python stateful processors
pay an Arrow round trip and a socket call per key, which on 2 cores is far slower than the rest
of the pipeline (see docs/benchmarks.md). The sources are compiled with the JDK that runs
Spark against pyspark's own jars, once per content hash, into ``<state_dir>/jvm/spark-ops/``;
``lakehouse setup`` builds it and every Spark session (``lakehouse.delta.session``) ensures it is current.
"""

from __future__ import annotations

from pathlib import Path

from lakehouse.jvm import JavaBuildError, compile_jar, javac
from lakehouse.jvm import digest as source_digest
from lakehouse.jvm import sources as java_sources
from lakehouse.settings import PROJECT_ROOT, Settings

SOURCES = PROJECT_ROOT / "spark_apps" / "jvm" / "src"
#: Engine-neutral Java shared with the fraud fast path (the validator, the fraud rules).
CORE = PROJECT_ROOT / "jvm" / "core" / "src"
JAR_PREFIX = "lakehouse-spark-ops-"
SparkOpsBuildError = JavaBuildError  # the name callers catch


def _pyspark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def sources() -> list[Path]:
    return java_sources(SOURCES, CORE)


def digest() -> str:
    """Hash of the sources and the pyspark version they compile against."""
    import pyspark

    return source_digest([SOURCES, CORE], pyspark.__version__)


def jar_dir(s: Settings) -> Path:
    return s.jvm_dir / "spark-ops"


def jar_path(s: Settings) -> Path:
    return jar_dir(s) / f"{JAR_PREFIX}{digest()}.jar"


def ensure(s: Settings) -> Path:
    """The operators' jar for the current sources, compiled if missing (a few seconds)."""
    jar = jar_path(s)
    if jar.is_file():
        return jar
    return build(s, jar)


def build(s: Settings, jar: Path) -> Path:
    compiler = javac(s.java17(), "the Spark operators")
    return compile_jar(compiler, [SOURCES, CORE], str(_pyspark_jars() / "*"), jar, "the Spark operators")


#: Delta's log store for an s3a:// lake (``lakehouse.spark.S3ConditionalPutLogStore``): its own jar, compiled
#: against Delta's storage API as well, and put on the class path only when the lake is on the object store.
S3_SOURCES = PROJECT_ROOT / "spark_apps" / "jvm" / "s3"
S3_JAR_PREFIX = "lakehouse-s3-logstore-"


def s3_jar_path(s: Settings) -> Path:
    return jar_dir(s) / f"{S3_JAR_PREFIX}{source_digest([S3_SOURCES], _delta_storage(s).name)}.jar"


def _delta_storage(s: Settings) -> Path:
    found = sorted((s.jvm_dir / "spark").glob("delta-storage-*.jar"))
    if not found:
        raise JavaBuildError(f"Delta's storage jar is not in {s.jvm_dir / 'spark'}: run `make setup`")
    return found[-1]


def ensure_s3(s: Settings) -> Path:
    """The s3a log store's jar for the current source, compiled if missing."""
    jar = s3_jar_path(s)
    if jar.is_file():
        return jar
    compiler = javac(s.java17(), "the s3a log store")
    classpath = f"{_pyspark_jars() / '*'}:{_delta_storage(s)}"
    return compile_jar(compiler, [S3_SOURCES], classpath, jar, "the s3a log store")
