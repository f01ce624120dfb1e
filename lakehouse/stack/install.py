"""`lakehouse setup`: everything the local stack needs, installed idempotently.

Each step prints its name and duration; a step that cannot finish raises
``SetupError`` with a message that names the missing piece. JVM artifacts are
resolved by Maven (cached in ~/.m2) from the poms in ``infra/jvm/`` and copied
into ``<state_dir>/jvm/``; a stamp file per component (the hash of its pom)
makes a rerun skip what is already in place.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lakehouse.jvm import JavaBuildError
from lakehouse.settings import PROJECT_ROOT, Settings, SettingsError, child_env

JVM_POMS = PROJECT_ROOT / "infra" / "jvm"
APT_PACKAGES = {  # binary on PATH -> Debian package that provides it
    "redis-server": "redis-server",
    "prometheus": "prometheus",
    "prometheus-pushgateway": "prometheus-pushgateway",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "prometheus-redis-exporter": "prometheus-redis-exporter",
    "prometheus-postgres-exporter": "prometheus-postgres-exporter",
    "mvn": "maven",
    "chromium": "chromium",  # headless browser for the Dagster UI test and the README screenshot
    # PostgreSQL's server (Dagster's storage in the cluster profile; lakehouse.stack.postgres). Debian keeps the
    # server off PATH: pg_ctlcluster (postgresql-common, which the package brings) says it is installed.
    "pg_ctlcluster": "postgresql",
}
#: Trino plugins the platform loads (password-authenticators: for the authentication
#: that comes later). Fewer plugins also means a faster start and a smaller heap.
TRINO_PLUGINS = ("delta-lake", "password-authenticators")
#: Bumped when the way the Trino directory is assembled changes, so caches are rebuilt.
TRINO_LAYOUT = 4
_JAR_VERSION = re.compile(r"-\d[^-]*(-[0-9A-Za-z.]+)?\.jar$")


def _no_default_postgres_cluster() -> None:
    """Debian's postgresql package creates and starts a cluster of its own (port 5432, as a system service)
    unless told not to: the stack runs its own server and wants nothing else running."""
    conf = Path("/etc/postgresql-common/createcluster.conf")
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            "# lakehouse `make setup`: the stack runs its own PostgreSQL (lakehouse.stack.postgres)\n"
            "create_main_cluster = false\n"
        )


class SetupError(RuntimeError):
    """A setup step failed; the message names what is missing and how to get it."""


@dataclass
class StepResult:
    name: str
    seconds: float
    detail: str


Log = Callable[[str], None]


def _run(cmd: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise SetupError(f"{what}: `{cmd[0]}` is not installed") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise SetupError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc.stdout


_DOWNLOADED = re.compile(r"Downloaded from [^:]+: (\S+) \(([\d.,]+) (B|kB|KB|MB|GB) at")
_DOWNLOADING = re.compile(r"Downloading from [^:]+: (\S+)")
_UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}


class DownloadMeter:
    """Counts what Maven downloads (its transfer lines) and says so while it happens: every large
    file as it starts (a 500 MB tarball would look like a hang) and a running total every few seconds."""

    LARGE_HINT = (".tar.gz", ".zip")

    def __init__(self, log: Log, what: str, every_s: float = 5.0) -> None:
        self.log, self.what, self.every_s = log, what, every_s
        self.files = 0
        self.bytes = 0.0
        self._last = time.monotonic()

    def feed(self, line: str) -> None:
        done = _DOWNLOADED.search(line)
        if done:
            self.files += 1
            self.bytes += float(done.group(2).replace(",", "")) * _UNITS[done.group(3)]
            if time.monotonic() - self._last >= self.every_s:
                self._last = time.monotonic()
                self.log(f"      {self.what}: {self.files} files, {self.bytes / 1e6:,.1f} MB downloaded so far")
            return
        starting = _DOWNLOADING.search(line)
        if starting and starting.group(1).endswith(self.LARGE_HINT):
            self.log(f"      downloading {starting.group(1).rsplit('/', 1)[-1]} (large; Maven reports it when done)")

    def summary(self) -> str:
        return (
            "nothing downloaded (cached)"
            if not self.files
            else (f"downloaded {self.bytes / 1e6:,.1f} MB in {self.files} files")
        )


def _run_streaming(cmd: list[str], what: str, on_line: Callable[[str], None], env: dict[str, str] | None = None) -> str:
    """`_run`, reading the output as it comes (stderr merged) and handing each line to ON_LINE."""
    try:
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except FileNotFoundError as exc:
        raise SetupError(f"{what}: `{cmd[0]}` is not installed") from exc
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        on_line(line)
    code = proc.wait()
    if code != 0:
        errors = [ln for ln in lines if "ERROR" in ln] or lines
        tail = "\n".join("".join(errors).strip().splitlines()[-15:])
        raise SetupError(f"{what} failed (exit {code}): {' '.join(cmd)}\n{tail}")
    return "".join(lines)


def _stamp_ok(stamp: Path, key: str) -> bool:
    return stamp.exists() and stamp.read_text().strip() == key


def _hash_files(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def pom_property(pom: Path, name: str) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(pom).getroot()  # noqa: S314 - our own pom from infra/jvm
    node = root.find(f"m:properties/m:{name}", ns)
    if node is None or not node.text:
        raise SetupError(f"{pom} has no <{name}> property")
    return node.text.strip()


def jar_base_name(filename: str) -> str:
    """``jackson-core-2.13.5.jar`` -> ``jackson-core``: the artifact without its version."""
    return _JAR_VERSION.sub("", filename)


def jars_not_in(candidates: Iterable[str], provided: Iterable[str]) -> list[str]:
    """The candidate jars whose artifact the runtime does not already provide.

    Spark ships its own Hadoop, Jackson, Parquet, Scala and logging jars; a second,
    older copy of any of them on ``spark.jars`` would shadow or clash with them.
    """
    have = {jar_base_name(p) for p in provided}
    return sorted(c for c in candidates if jar_base_name(c) not in have)


class Setup:
    def __init__(self, settings: Settings, log: Log = print) -> None:
        self.s = settings
        self.log = log
        self._apt_updated = False
        self.downloads: list[DownloadMeter] = []

    # -- steps --------------------------------------------------------------
    def steps(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("python packages", self.check_python),
            ("java 17 (kafka, spark)", self.check_java17),
            ("java 25 (trino)", self.check_java25),
            ("debian packages", self.apt_packages),
            ("kafka broker jars", self.kafka_jars),
            ("kafka tools jars", self.kafka_tools_jars),
            ("kafka metrics agent (jmx exporter)", self.kafka_metrics_jar),
            ("spark connector jars", self.spark_jars),
            ("spark s3a connector jars (object storage)", self.spark_s3_jars),
            ("spark operators (java)", self.spark_ops),
            ("flink jars (fast path engine)", self.flink_jars),
            ("fast path job (java)", self.fastpath_job),
            ("trino server + delta lake plugin", self.trino_server),
            ("trino cli", self.trino_cli),
            ("state directories", self.state_dirs),
            ("secrets (CA, certificates, passwords)", self.secrets),
        ]

    def run(self) -> list[StepResult]:
        results: list[StepResult] = []
        total = time.monotonic()
        for i, (name, fn) in enumerate(self.steps(), 1):
            self.log(f"[{i}/{len(self.steps())}] {name} ...")
            t0 = time.monotonic()
            try:
                detail = fn()
            except SettingsError as exc:
                raise SetupError(f"step '{name}': {exc}") from None
            except SetupError as exc:
                raise SetupError(f"step '{name}': {exc}") from None
            dt = time.monotonic() - t0
            results.append(StepResult(name, dt, detail))
            self.log(f"      ok in {dt:5.1f}s  {detail}")
        fetched = sum(m.bytes for m in self.downloads)
        files = sum(m.files for m in self.downloads)
        got = f"downloaded {fetched / 1e6:,.1f} MB in {files} files" if files else "nothing downloaded"
        self.log(f"setup complete in {time.monotonic() - total:.1f}s ({got}); state in {self.s.state_dir}")
        return results

    def check_python(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        missing, found = [], []
        for pkg in ("pyspark", "delta-spark", "dagster", "dagster-webserver", "kafka-python", "redis", "trino"):
            try:
                found.append(f"{pkg} {version(pkg)}")
            except PackageNotFoundError:
                missing.append(pkg)
        if missing:
            raise SetupError(f"Python packages missing: {', '.join(missing)}; run `pip install -e .` (make setup does)")
        return ", ".join(found[:3]) + ", ..."

    def _java_major(self, java_home: Path) -> int:
        java = java_home / "bin" / "java"
        if not java.exists():
            raise SetupError(f"no java executable at {java}")
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False).stderr
        m = re.search(r'version "(\d+)', out)
        if not m:
            raise SetupError(f"cannot read the version of {java}: {out.strip()[:200]}")
        return int(m.group(1))

    def check_java17(self) -> str:
        home = self.s.java17()
        major = self._java_major(home)
        if major < 17:
            raise SetupError(f"Kafka 4 and Spark 4 need Java 17+, found {major} at {home} (set LAKEHOUSE_JAVA17_HOME)")
        return f"Java {major} at {home}"

    def check_java25(self) -> str:
        home = self.s.java25()
        major = self._java_major(home)
        if major < 24:
            raise SetupError(f"Trino 476 needs Java 24+, found {major} at {home} (set LAKEHOUSE_JAVA25_HOME)")
        return f"Java {major} at {home}"

    def apt_packages(self) -> str:
        missing = sorted({pkg for binary, pkg in APT_PACKAGES.items() if shutil.which(binary) is None})
        if not missing:
            return f"{', '.join(APT_PACKAGES.values())} present"
        if os.geteuid() != 0:
            raise SetupError(
                f"missing Debian packages: {' '.join(missing)}. Not root, so not installing them: "
                f"run `sudo apt-get install -y {' '.join(missing)}` and rerun `make setup`"
            )
        if shutil.which("apt-get") is None:
            raise SetupError(
                f"missing Debian packages: {' '.join(missing)}. There is no `apt-get` here to install them: "
                "install them with this system's package manager (names may differ outside Debian and Ubuntu) "
                "and rerun `make setup`"
            )
        env = child_env(DEBIAN_FRONTEND="noninteractive")
        if "postgresql" in missing:
            _no_default_postgres_cluster()
        if not self._apt_updated:
            _run(["apt-get", "update", "-qq"], "apt-get update", env=env)
            self._apt_updated = True
        _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], "apt-get install", env=env)
        still = [pkg for binary, pkg in APT_PACKAGES.items() if pkg in missing and shutil.which(binary) is None]
        if still:
            raise SetupError(f"apt-get installed {missing} but {still} are still not on PATH")
        return f"installed {' '.join(missing)}"

    def _mvn(self, *args: str, what: str) -> str:
        if shutil.which("mvn") is None:
            raise SetupError("Maven (`mvn`) is missing: apt-get install maven")
        env = child_env(JAVA_HOME=str(self.s.java17()))
        # Not -q: Maven's transfer lines are how setup shows what it downloads and how much.
        meter = DownloadMeter(self.log, what)
        out = _run_streaming(["mvn", "-B", "-Dstyle.color=never", *args], what, meter.feed, env=env)
        self.downloads.append(meter)
        if meter.files:
            self.log(f"      {what}: {meter.summary()}")
        return out

    def _copy_dependencies(self, pom: Path, out: Path | str, what: str) -> None:
        """Maven resolves POM's runtime dependencies (cached in ~/.m2) and copies the jars into OUT."""
        self._mvn(
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={out}",
            what=what,
        )

    def _pom_jars(self, pom_name: str, dir_name: str, version: tuple[str, str], what: str) -> str:
        """Every runtime jar of ``infra/jvm/POM_NAME`` in ``<jvm_dir>/DIR_NAME``, redone when the pom changes.

        VERSION is (label, pom property) for the step's summary, e.g. ("Kafka", "kafka.version").
        """
        pom = JVM_POMS / pom_name
        dest = self.s.jvm_dir / dir_name
        stamp = dest / ".stamp"
        key = _hash_files(pom)
        if _stamp_ok(stamp, key):
            return f"cached in {dest}"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        self._copy_dependencies(pom, dest, what)
        stamp.write_text(key)
        label, prop = version
        return f"{len(list(dest.glob('*.jar')))} jars, {label} {pom_property(pom, prop)}"

    def _java_jar(self, jar: Path, ensure: Callable[[Settings], Path], count: int) -> str:
        """A jar the platform compiles from its Java sources (COUNT of them): cached, or built by ENSURE."""
        if jar.is_file():
            return f"cached: {jar.name}"
        try:
            ensure(self.s)
        except JavaBuildError as exc:
            raise SetupError(str(exc)) from None
        return f"compiled {count} sources into {jar}"

    def kafka_jars(self) -> str:
        return self._pom_jars(
            "kafka.pom.xml", "kafka", ("Kafka", "kafka.version"), "resolving the Kafka broker from Maven Central"
        )

    def kafka_tools_jars(self) -> str:
        return self._pom_jars(
            "kafka-tools.pom.xml", "kafka-tools", ("Kafka tools", "kafka.version"), "resolving Kafka's tools"
        )

    def kafka_metrics_jar(self) -> str:
        return self._pom_jars(
            "kafka-metrics.pom.xml",
            "kafka-metrics",
            ("JMX exporter", "jmx.exporter.version"),
            "resolving Prometheus' JMX exporter agent",
        )

    def _spark_pom_jars(self, pom_name: str, dir_name: str, what: str) -> list[str]:
        """The runtime jars of ``infra/jvm/POM_NAME`` that pyspark does not ship, in ``<jvm_dir>/DIR_NAME``;
        redone when the pom or pyspark changes. Returns the jars copied, [] when cached."""
        import pyspark

        pom = JVM_POMS / pom_name
        dest = self.s.jvm_dir / dir_name
        stamp = dest / ".stamp"
        pyspark_jars = Path(pyspark.__file__).parent / "jars"
        key = f"{_hash_files(pom)}-pyspark-{pyspark.__version__}"
        if _stamp_ok(stamp, key):
            return []
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        with tempfile.TemporaryDirectory(dir=self.s.state_dir) as tmp:
            self._copy_dependencies(pom, tmp, what)
            keep = jars_not_in(os.listdir(tmp), os.listdir(pyspark_jars))
            for name in keep:
                shutil.move(os.path.join(tmp, name), dest / name)
        stamp.write_text(key)
        return keep

    def spark_jars(self) -> str:
        keep = self._spark_pom_jars(
            "spark-connectors.pom.xml", "spark", "resolving the Spark Kafka and Delta connectors from Maven Central"
        )
        if not keep:
            return f"cached in {self.s.jvm_dir / 'spark'}"
        main_jars = ", ".join(n for n in keep if "delta-spark" in n or "kafka-0-10" in n)
        return f"{len(keep)} jars not already in pyspark ({main_jars})"

    def spark_s3_jars(self) -> str:
        """Hadoop's S3A connector and the two AWS SDK modules it uses (for an s3a:// lake), and Delta's
        multi-writer log store for it (``lakehouse.spark.S3ConditionalPutLogStore``, a small jar of its own)."""
        from lakehouse.delta import ops as spark_ops

        keep = self._spark_pom_jars(
            "spark-s3.pom.xml", "spark-s3", "resolving Hadoop's S3A connector and the AWS SDK's S3 client"
        )
        try:
            logstore = spark_ops.ensure_s3(self.s)
        except JavaBuildError as exc:
            raise SetupError(str(exc)) from None
        if not keep:
            return f"cached in {self.s.jvm_dir / 'spark-s3'}; log store {logstore.name}"
        size = sum((self.s.jvm_dir / "spark-s3" / n).stat().st_size for n in keep)
        hadoop = pom_property(JVM_POMS / "spark-s3.pom.xml", "hadoop.version")
        return f"{len(keep)} jars, {size / 1e6:.1f} MB (hadoop-aws {hadoop}); log store {logstore.name}"

    def spark_ops(self) -> str:
        """The platform's own Spark operators (spark_apps/jvm + jvm/core), compiled against pyspark's jars."""
        from lakehouse.delta import ops as spark_ops

        return self._java_jar(spark_ops.jar_path(self.s), spark_ops.ensure, len(spark_ops.sources()))

    def flink_jars(self) -> str:
        return self._pom_jars(
            "flink.pom.xml",
            "flink",
            ("Flink", "flink.version"),
            "resolving Flink and its Kafka connector from Maven Central",
        )

    def fastpath_job(self) -> str:
        """The fraud fast path's Flink job (fastpath/jvm + jvm/core), compiled against Flink's jars."""
        from lakehouse.services import flink

        return self._java_jar(flink.jar_path(self.s), flink.ensure_jar, len(flink.sources()))

    def trino_server(self) -> str:
        pom = JVM_POMS / "trino.pom.xml"
        version = pom_property(pom, "trino.version")
        home = trino_home(self.s, version)
        stamp = home / ".stamp"
        key = f"{_hash_files(pom)}-{'+'.join(TRINO_PLUGINS)}-layout{TRINO_LAYOUT}"
        if _stamp_ok(stamp, key) and all((home / "plugin" / p).is_dir() for p in TRINO_PLUGINS):
            return f"cached in {home}"
        shutil.rmtree(home, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=self.s.state_dir) as tmp:
            # dependency:copy, not copy-dependencies: the tarball already holds its jars,
            # and its pom's transitive plugin zips are not all served.
            self._mvn(
                "dependency:copy",
                f"-Dartifact=io.trino:trino-server-core:{version}:tar.gz",
                f"-DoutputDirectory={tmp}",
                what=f"resolving trino-server-core {version} from Maven Central",
            )
            core = Path(tmp) / f"trino-server-core-{version}.tar.gz"
            self.log(f"      unpacking {core.name}")
            _extract_tar(core, home, strip=1)
            plugin_root = home / "plugin"
            for extra in plugin_root.iterdir():
                if extra.is_dir() and extra.name not in TRINO_PLUGINS:
                    shutil.rmtree(extra)
            sources = self._plugins(version, Path(tmp), plugin_root)
        stamp.write_text(key)
        return f"Trino {version} in {home}; plugins {', '.join(TRINO_PLUGINS)} from {', '.join(sorted(set(sources)))}"

    def _plugins(self, version: str, tmp: Path, plugin_root: Path) -> list[str]:
        sources = [f"io.trino:trino-server-core:{version}:tar.gz"]
        unserved = []
        for name in TRINO_PLUGINS:
            if (plugin_root / name).is_dir():  # shipped in the core tarball
                continue
            artifact = f"io.trino:trino-{name}:{version}:zip"
            try:
                self._mvn("dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={tmp}", what=artifact)
            except SetupError:
                unserved.append(name)
                continue
            with zipfile.ZipFile(tmp / f"trino-{name}-{version}.zip") as zf:
                _extract_zip_stripped(zf, plugin_root / name)
            sources.append(artifact)
        if unserved:
            full = f"io.trino:trino-server:{version}:tar.gz"
            self.log(f"      plugin zips not served for {', '.join(unserved)}; taking them from {full}")
            self._mvn(
                "dependency:copy",
                f"-Dartifact={full}",
                f"-DoutputDirectory={tmp}",
                what=f"resolving trino-server {version} (for its plugins)",
            )
            archive = tmp / f"trino-server-{version}.tar.gz"
            prefixes = tuple(f"trino-server-{version}/plugin/{name}/" for name in unserved)
            _extract_tar(archive, plugin_root, strip=2, member_prefix=prefixes)
            archive.unlink()
            for name in unserved:
                if not any((plugin_root / name).glob("*.jar")):
                    raise SetupError(f"no {name} plugin jars in trino-server-{version}.tar.gz")
            sources.append(full)
        return sources

    def trino_cli(self) -> str:
        """The Trino CLI, the executable jar io.trino:trino-cli:<version>:executable (runs on Java 11+)."""
        version = pom_property(JVM_POMS / "trino.pom.xml", "trino.version")
        jar = trino_cli_jar(self.s, version)
        if jar.is_file() and zipfile.is_zipfile(jar):
            return f"cached: {jar}"
        jar.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.s.state_dir) as tmp:
            self._mvn(
                "dependency:copy",
                f"-Dartifact=io.trino:trino-cli:{version}:jar:executable",
                f"-DoutputDirectory={tmp}",
                what=f"resolving trino-cli {version} from Maven Central",
            )
            shutil.move(os.path.join(tmp, jar.name), jar)
        jar.chmod(0o755)
        return f"Trino CLI {version}: {jar.name} (`lakehouse connect engineer` shows how to log in with it)"

    def state_dirs(self) -> str:
        local_lake = [] if isinstance(self.s.lake_root, str) else [self.s.lake_dir]  # a bucket: made by `up`
        for d in (self.s.state_dir, self.s.logs_dir, self.s.run_dir, *local_lake, self.s.dagster_home):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.s.state_dir, 0o700)  # card numbers sit in Kafka's segments under it: the owner's only
        return f"{self.s.state_dir} (0700)"

    def secrets(self) -> str:
        from lakehouse.stack import secrets

        return secrets.ensure(self.s)


def trino_home(settings: Settings, version: str | None = None) -> Path:
    version = version or pom_property(JVM_POMS / "trino.pom.xml", "trino.version")
    return settings.jvm_dir / f"trino-server-{version}"


def trino_cli_jar(settings: Settings, version: str | None = None) -> Path:
    """Where setup puts the Trino CLI: <state_dir>/jvm/trino-cli-<version>-executable.jar."""
    version = version or pom_property(JVM_POMS / "trino.pom.xml", "trino.version")
    return settings.jvm_dir / f"trino-cli-{version}-executable.jar"


def _safe_target(root: Path, rel: str) -> Path:
    target = (root / rel).resolve()
    if not str(target).startswith(str(root.resolve())):
        raise SetupError(f"refusing to unpack {rel!r} outside {root}")
    return target


def _extract_tar(archive: Path, dest: Path, strip: int, member_prefix: str | tuple[str, ...] = "") -> None:
    """Unpack the members under ``member_prefix``, dropping ``strip`` leading path parts.

    Trino's tarballs store a jar that several plugins share once and hard-link the other
    copies, often to a file outside the selected prefix. Seeking back to a link's target
    in a gzip stream re-reads the archive from the start, so this makes two sequential
    passes instead: one over the headers to learn which stored files the selected links
    need, one to write each stored file to every place that wants it.
    """

    def selected(m: tarfile.TarInfo) -> bool:
        return (not member_prefix or m.name.startswith(member_prefix)) and len(Path(m.name).parts) > strip

    def target_of(m: tarfile.TarInfo) -> Path:
        return _safe_target(dest, os.path.join(*Path(m.name).parts[strip:]))

    dest.mkdir(parents=True, exist_ok=True)
    wanted_by: dict[str, list[Path]] = {}
    with tarfile.open(archive, "r:gz") as tf:
        for m in tf.getmembers():
            if not selected(m):
                continue
            if m.isdir():
                target_of(m).mkdir(parents=True, exist_ok=True)
            elif m.isfile():
                wanted_by.setdefault(m.name, []).append(target_of(m))
            elif m.islnk():
                wanted_by.setdefault(m.linkname, []).append(target_of(m))
    with tarfile.open(archive, "r|gz") as tf:
        for m in tf:
            targets = wanted_by.get(m.name) if m.isfile() else None
            if not targets:
                continue
            src = tf.extractfile(m)
            assert src is not None
            first, *rest = targets
            first.parent.mkdir(parents=True, exist_ok=True)
            with src, open(first, "wb") as out:
                shutil.copyfileobj(src, out)
            os.chmod(first, m.mode & 0o777 or 0o644)
            for other in rest:
                other.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(first, other)


def _extract_zip_stripped(zf: zipfile.ZipFile, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for info in zf.infolist():
        parts = Path(info.filename).parts[1:]
        if not parts or info.is_dir():
            continue
        target = _safe_target(dest, os.path.join(*parts))
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
