"""The fast path's engine: Apache Flink jobs (``fastpath/jvm/src``) run as one JVM each.

Flink runs here as a per-job MiniCluster inside the JVM that starts the job (``java -cp
'<state>/jvm/flink/*:<fastpath jar>' <main class>``): no JobManager or TaskManager daemons, one
process to start, watch and stop, like a Spark driver in ``local[*]``. ``make setup`` fetches
Flink's jars (``infra/jvm/flink.pom.xml``) and compiles the job against them; :func:`ensure_jar`
recompiles when a source changes.
"""

from __future__ import annotations

from pathlib import Path

from lakehouse.jvm import JavaBuildError, compile_jar, javac
from lakehouse.jvm import digest as source_digest
from lakehouse.jvm import sources as java_sources
from lakehouse.settings import PROJECT_ROOT, Settings

SOURCES = PROJECT_ROOT / "fastpath" / "jvm" / "src"
#: Engine-neutral Java shared with the Spark operators (the validator, the fraud rules).
CORE = PROJECT_ROOT / "jvm" / "core" / "src"
JAR_PREFIX = "lakehouse-fastpath-"

#: What Flink 2.x needs from the JDK's modules on Java 17 (the ``env.java.opts.all`` of Flink's
#: own conf/config.yaml): Kryo and Flink's serializers reflect into these packages.
JAVA17_OPENS = (
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    *(
        f"--add-opens=java.base/{pkg}=ALL-UNNAMED"
        for pkg in (
            "java.lang",
            "java.net",
            "java.io",
            "java.nio",
            "sun.nio.ch",
            "java.lang.reflect",
            "java.text",
            "java.time",
            "java.util",
            "java.util.concurrent",
            "java.util.concurrent.atomic",
            "java.util.concurrent.locks",
        )
    ),
)


def lib_dir(s: Settings) -> Path:
    """Flink's jars and the job's dependencies, as ``make setup`` copied them."""
    return s.jvm_dir / "flink"


def jar_path(s: Settings) -> Path:
    return s.jvm_dir / "fastpath" / f"{JAR_PREFIX}{source_digest([SOURCES, CORE], _lib_version(s))}.jar"


def _lib_version(s: Settings) -> str:
    stamp = lib_dir(s) / ".stamp"
    return stamp.read_text().strip() if stamp.is_file() else "unstamped"


def ensure_jar(s: Settings) -> Path:
    """The fast path's jar for the current sources, compiled against Flink's jars if missing."""
    if not any(lib_dir(s).glob("flink-streaming-java-*.jar")):
        raise JavaBuildError(f"Flink's jars are missing from {lib_dir(s)}: run `make setup`")
    jar = jar_path(s)
    if jar.is_file():
        return jar
    compiler = javac(s.java17(), "the fast path")
    return compile_jar(compiler, [SOURCES, CORE], str(lib_dir(s) / "*"), jar, "the fast path (Flink job)")


def java_command(s: Settings, main_class: str, args: list[str], heap_mb: int = 768) -> list[str]:
    """The command line that runs MAIN_CLASS of the fast path's jar in its own JVM (Java 17)."""
    classpath = f"{lib_dir(s)}/*:{ensure_jar(s)}"
    return [
        str(s.java17() / "bin" / "java"),
        *JAVA17_OPENS,
        f"-Xmx{heap_mb}m",
        # The whole heap from the start: G1 then sizes the young generation for its pause goal at once
        # instead of collecting a small, growing heap every few hundred milliseconds.
        f"-Xms{heap_mb}m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        f"-Dlog4j2.configurationFile={PROJECT_ROOT / 'infra' / 'flink' / 'log4j2.properties'}",
        "-cp",
        classpath,
        main_class,
        *args,
    ]


def sources() -> list[Path]:
    return java_sources(SOURCES, CORE)
