"""Java sources of the platform compiled into a jar: the Spark operators and the Flink fast path.

``compile_jar`` runs ``javac --release 17`` over a source tree against a class path and writes the
classes into one jar named after the hash of the sources and the class path's own version (so a
changed source or dependency makes a new jar and an unchanged one is reused). The jar appears
atomically: a concurrent reader sees the whole jar or none.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path


class JavaBuildError(RuntimeError):
    """Java sources could not be compiled; the message says what is missing or what failed."""


def sources(*roots: Path) -> list[Path]:
    return sorted(f for root in roots for f in root.rglob("*.java"))


def digest(roots: Iterable[Path], salt: str) -> str:
    """Hash of every source under ROOTS (path and content) and SALT (what they compile against)."""
    h = hashlib.sha256(salt.encode())
    for root in roots:
        for src in [*sources(root), *resources(root)]:
            h.update(str(src.relative_to(root)).encode())
            h.update(src.read_bytes())
    return h.hexdigest()[:12]


def resources(root: Path) -> list[Path]:
    """Files under ROOT/META-INF (service registrations) that go into the jar as they are."""
    return sorted(f for f in (root / "META-INF").rglob("*") if f.is_file())


def javac(java_home: Path, what: str) -> Path:
    """The javac of JAVA_HOME, else the one on PATH; WHAT names the build in the error."""
    found = java_home / "bin" / "javac"
    if found.exists():
        return found
    on_path = shutil.which("javac")
    if on_path is None:
        raise JavaBuildError(
            f"no javac at {found} or on PATH: {what} needs a JDK 17 "
            "(apt-get install openjdk-17-jdk-headless, or set LAKEHOUSE_JAVA17_HOME to a JDK)"
        )
    return Path(on_path)


def compile_jar(compiler: Path, roots: list[Path], classpath: str, jar: Path, what: str) -> Path:
    """Compile every source under ROOTS against CLASSPATH into JAR; drop older jars of the same prefix.

    The prefix is JAR's name up to its last ``-`` (``lakehouse-fastpath-<digest>.jar``).
    """
    files = sources(*roots)
    if not files:
        raise JavaBuildError(f"no Java sources under {', '.join(map(str, roots))}")
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="javac-", dir=jar.parent) as tmp:
        classes = Path(tmp) / "classes"
        cmd = [str(compiler), "--release", "17", "-nowarn", "-encoding", "UTF-8", "-cp", classpath, "-d", str(classes)]
        proc = subprocess.run([*cmd, *map(str, files)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            raise JavaBuildError(f"compiling {what} failed:\n{tail}")
        partial = Path(tmp) / jar.name
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: lakehouse setup\n\n")
            for f in sorted(classes.rglob("*.class")):
                zf.write(f, str(f.relative_to(classes)))
            for root in roots:
                for f in resources(root):
                    zf.write(f, str(f.relative_to(root)))
        partial.replace(jar)
    prefix = jar.name.rsplit("-", 1)[0] + "-"
    for old in jar.parent.glob(f"{prefix}*.jar"):
        if old != jar:
            old.unlink(missing_ok=True)
    return jar
