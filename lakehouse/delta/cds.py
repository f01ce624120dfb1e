"""A class-data-sharing archive for the Spark drivers: each spark-submit starts faster.

A Spark driver loads some 20 000 classes from about 300 jars before its first micro-batch,
and it does so again on every start: every catch-up run, every batch job, every test. The
JVM can map the classes one run loaded from an archive instead (CDS, JDK 13+ "dynamic
archive"). A profile of a cold ``lakehouse stream run all --available-now`` spent 12 % of
its JVM samples in class loading; with the archive that run took 120 s instead of 136-146 s
(see docs/benchmarks.md).

The first run that ends by itself (``--available-now`` or a batch app, started by
``lakehouse stream run`` or by Dagster) writes the archive as its JVM exits, which costs
it about 35 s once; every spark-submit after that maps it. The archive is keyed by the
Java and the jars: a new pyspark, connector or operator jar makes a new one. One run
writes at a time (a lock file naming its pid), and the archive appears under its final
name only after that run exited with status 0, so a run never maps half an archive.
``LAKEHOUSE_SPARK_CLASS_ARCHIVE=false`` turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from lakehouse.settings import Settings

# Writing: the JVM prints one warning per class it cannot archive (thousands of lambda forms).
_DUMP_QUIET = "-Xlog:cds*=off"


def _pyspark_jars() -> list[Path]:
    import pyspark

    return sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar"))


def archive_path(s: Settings) -> Path:
    """Where the archive for this Java and these jars lives (its name is their hash)."""
    from lakehouse.delta.session import connector_jars

    h = hashlib.sha256()
    java = Path(s.java17()).resolve()
    release = java / "release"
    h.update(str(java).encode())
    if release.is_file():
        h.update(release.read_bytes())
    for jar in [*_pyspark_jars(), *connector_jars(s)]:
        st = jar.stat()
        h.update(f"{jar.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return s.jvm_dir / "cds" / f"spark-{h.hexdigest()[:16]}.jsa"


def _archive(s: Settings) -> Path | None:
    """The archive's path, or None when it is switched off or the jars are missing (spark-submit says so)."""
    from lakehouse.delta.session import SparkSetupError, standalone

    # A standalone master's drivers have their SPARK_CONF_DIR (the shared secret) on the class path, and
    # class data sharing refuses a non-empty directory there ("Cannot have non-empty directory in paths").
    if not s.spark_class_archive or standalone(s.spark_master):
        return None
    try:
        return archive_path(s)
    except SparkSetupError:
        return None


def _mapping(path: Path | None) -> list[str]:
    """The JVM options that map the archive at PATH, when there is one (none otherwise)."""
    return [f"-XX:SharedArchiveFile={path}"] if path is not None and path.is_file() else []


def driver_options(s: Settings) -> list[str]:
    """The JVM options that map this setup's archive, when there is one (none otherwise)."""
    return _mapping(_archive(s))


def with_options(s: Settings, options: list[str]) -> Settings:
    """S with OPTIONS added to the driver's JVM options."""
    if not options:
        return s
    return s.model_copy(update={"spark_driver_java_options": " ".join([s.spark_driver_java_options, *options]).strip()})


@dataclass
class Recording:
    """The JVM options for one run, and whether that run may publish the archive it wrote."""

    options: list[str] = field(default_factory=list)
    succeeded: bool = False


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _take_lock(lock: Path) -> bool:
    """Create LOCK naming this process; False while another live process holds it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and _pid_alive(holder):
                return False
            lock.unlink(missing_ok=True)  # its writer died: take over
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


@contextlib.contextmanager
def recording(s: Settings, *, ends_by_itself: bool) -> Iterator[Recording]:
    """Options for a run launched inside the block; it writes the archive when none exists.

    Only a run that ENDS_BY_ITSELF writes one (a continuous stream would spend the 35 s at its
    stop, when a supervisor waits for it). Set ``succeeded`` once the run exited with status 0:
    the archive is published then, and thrown away otherwise.
    """
    final = _archive(s)
    rec = Recording(options=_mapping(final))
    if final is None or rec.options or not ends_by_itself:
        yield rec
        return
    lock = final.with_suffix(".lock")
    if not _take_lock(lock):
        yield rec  # another run is writing it
        return
    tmp = final.with_name(f"{final.stem}.{uuid.uuid4().hex[:8]}.tmp")
    rec.options = [f"-XX:ArchiveClassesAtExit={tmp}", _DUMP_QUIET]
    try:
        yield rec
    finally:
        try:
            if rec.succeeded and tmp.is_file() and tmp.stat().st_size > 0:
                os.replace(tmp, final)
                for old in final.parent.glob("spark-*.jsa"):
                    if old != final:  # an archive for jars or a Java that are gone
                        old.unlink(missing_ok=True)
        finally:
            tmp.unlink(missing_ok=True)
            lock.unlink(missing_ok=True)
