from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from lakehouse.settings import Settings
from lakehouse.stack import install as bootstrap
from lakehouse.stack.install import JVM_POMS, Setup, SetupError, _extract_tar, jar_base_name, jars_not_in, pom_property


@pytest.mark.parametrize(
    ("jar", "base"),
    [
        ("jackson-core-2.13.5.jar", "jackson-core"),
        ("delta-spark_4.2_2.13-4.4.0.jar", "delta-spark_4.2_2.13"),
        ("zstd-jni-1.5.7-3.jar", "zstd-jni"),
        ("hadoop-client-api-3.5.0.jar", "hadoop-client-api"),
        ("scala-parallel-collections_2.13-1.2.0.jar", "scala-parallel-collections_2.13"),
    ],
)
def test_jar_base_name_drops_the_version(jar: str, base: str) -> None:
    assert jar_base_name(jar) == base


def test_jars_already_in_spark_are_not_added_twice() -> None:
    provided = ["jackson-core-2.21.2.jar", "scala-library-2.13.18.jar", "hadoop-client-api-3.5.0.jar"]
    candidates = ["jackson-core-2.13.5.jar", "delta-spark_4.2_2.13-4.4.0.jar", "scala-library-2.13.17.jar"]
    assert jars_not_in(candidates, provided) == ["delta-spark_4.2_2.13-4.4.0.jar"]


def test_pinned_jvm_versions_match_the_python_wheels() -> None:
    from importlib.metadata import version

    pom = (JVM_POMS / "spark-connectors.pom.xml").read_text()
    spark, delta = version("pyspark"), version("delta-spark")
    assert pom_property(JVM_POMS / "spark-connectors.pom.xml", "spark.version") == spark
    assert pom_property(JVM_POMS / "spark-connectors.pom.xml", "delta.version") == delta
    assert f"delta-spark_{'.'.join(spark.split('.')[:2])}_2.13" in pom
    assert pom_property(JVM_POMS / "kafka.pom.xml", "kafka.version").startswith("4.")


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tf.addfile(info, io.BytesIO(data))


def test_extract_follows_hard_links_to_files_outside_the_selection(tmp_path: Path) -> None:
    archive = tmp_path / "server.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        _add(tf, "server-1/lib/guice.jar", b"guice bytes")
        _add(tf, "server-1/plugin/other/x.jar", b"x")
        _add(tf, "server-1/plugin/delta/own.jar", b"own")
        link = tarfile.TarInfo("server-1/plugin/delta/guice.jar")
        link.type = tarfile.LNKTYPE
        link.linkname = "server-1/lib/guice.jar"
        tf.addfile(link)
    dest = tmp_path / "plugins"
    _extract_tar(archive, dest, strip=2, member_prefix=("server-1/plugin/delta/",))
    assert sorted(p.name for p in (dest / "delta").iterdir()) == ["guice.jar", "own.jar"]
    assert (dest / "delta" / "guice.jar").read_bytes() == b"guice bytes"
    assert not (dest / "other").exists()


def test_extract_refuses_paths_outside_the_destination(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        _add(tf, "top/../../escape.txt", b"no")
    with pytest.raises(SetupError, match="outside"):
        _extract_tar(archive, tmp_path / "out", strip=1)


def test_missing_debian_packages_without_root_name_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bootstrap.shutil, "which", lambda b: None if b in ("prometheus", "mvn") else "/usr/bin/" + b)
    monkeypatch.setattr(bootstrap.os, "geteuid", lambda: 1000)
    with pytest.raises(SetupError) as err:
        Setup(Settings(state_dir=tmp_path)).apt_packages()
    assert "maven prometheus" in str(err.value)
    assert "sudo apt-get install" in str(err.value)


def test_a_failed_step_names_the_step(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    setup = Setup(Settings(state_dir=tmp_path), log=lambda _m: None)

    def boom() -> str:
        raise SetupError("mvn is missing")

    monkeypatch.setattr(setup, "steps", lambda: [("maven", boom)])
    with pytest.raises(SetupError, match="step 'maven': mvn is missing"):
        setup.run()
