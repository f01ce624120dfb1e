"""The platform's own JVM operators for Spark (``spark_apps/jvm/src``), compiled into one jar.

The refine stream's stateful steps (exact deduplication on ``event_id`` and the fraud rules in
keyed state) are ``transformWithState`` processors written in Java: Python stateful processors
pay an Arrow round trip and a socket call per key, which on 2 cores is far slower than the rest
of the pipeline (see docs/benchmarks.md). The sources are compiled with the JDK that runs
Spark against pyspark's own jars, once per content hash, into ``<state_dir>/jvm/spark-ops/``;
``lakehouse setup`` builds it and every Spark session (``lakehouse.delta.session``) ensures it is current.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from lakehouse.settings import PROJECT_ROOT, Settings

SOURCES = PROJECT_ROOT / "spark_apps" / "jvm" / "src"
JAR_PREFIX = "lakehouse-spark-ops-"


class SparkOpsBuildError(RuntimeError):
    """The operators could not be compiled; the message says what is missing."""


def _pyspark_jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def sources() -> list[Path]:
    return sorted(SOURCES.rglob("*.java"))


def digest() -> str:
    """Hash of the sources and the pyspark version they compile against."""
    import pyspark

    h = hashlib.sha256(pyspark.__version__.encode())
    for src in sources():
        h.update(str(src.relative_to(SOURCES)).encode())
        h.update(src.read_bytes())
    return h.hexdigest()[:12]


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
    javac = s.java17() / "bin" / "javac"
    if not javac.exists():
        found = shutil.which("javac")
        if found is None:
            raise SparkOpsBuildError(
                f"no javac at {javac} or on PATH: the Spark operators need a JDK 17 "
                "(apt-get install openjdk-17-jdk-headless, or set LAKEHOUSE_JAVA17_HOME to a JDK)"
            )
        javac = Path(found)
    files = sources()
    if not files:
        raise SparkOpsBuildError(f"no Java sources under {SOURCES}")
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spark-ops-", dir=jar.parent) as tmp:
        classes = Path(tmp) / "classes"
        cmd = [
            str(javac),
            "--release",
            "17",
            "-nowarn",
            "-encoding",
            "UTF-8",
            "-cp",
            str(_pyspark_jars() / "*"),
            "-d",
            str(classes),
            *map(str, files),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            raise SparkOpsBuildError(f"compiling the Spark operators failed:\n{tail}")
        partial = Path(tmp) / jar.name
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: lakehouse setup\n\n")
            for f in sorted(classes.rglob("*.class")):
                zf.write(f, str(f.relative_to(classes)))
        partial.replace(jar)  # atomic: a concurrent session sees the whole jar or none
    for old in jar.parent.glob(f"{JAR_PREFIX}*.jar"):
        if old != jar:
            old.unlink(missing_ok=True)
    return jar
