"""Launching the Spark apps with spark-submit, the same way locally and against a cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lakehouse.settings import PROJECT_ROOT, Settings, child_env
from lakehouse.spark import spark_conf

APPS = {"bronze": "bronze.py", "silver": "silver.py", "gold": "gold.py", "all": "pipeline.py"}


def app_path(name: str) -> Path:
    if name not in APPS:
        raise ValueError(f"unknown stream {name!r}; choose one of {', '.join(APPS)}")
    return PROJECT_ROOT / "spark_apps" / APPS[name]


def submit_command(s: Settings, name: str, available_now: bool, master: str | None = None) -> list[str]:
    """The spark-submit command line for one app, with the platform's jars and configuration."""
    conf = spark_conf(s, f"lakehouse-{name}", master)
    cmd = [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master",
        conf.pop("spark.master"),
        "--jars",
        conf.pop("spark.jars"),
        "--driver-memory",
        conf.pop("spark.driver.memory"),
    ]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += [str(app_path(name)), "--available-now" if available_now else "--continuous"]
    return cmd


def submit_env(s: Settings) -> dict[str, str]:
    """The driver runs this interpreter (the project's venv) on Java 17, bound to loopback."""
    return child_env(
        **s.to_env(),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        JAVA_HOME=str(s.java17()),
        SPARK_LOCAL_IP=s.host,
        PYTHONPATH=str(PROJECT_ROOT),
    )


def run(s: Settings, name: str, available_now: bool, master: str | None = None) -> int:
    """Run an app in the foreground; return its exit code."""
    proc = subprocess.run(submit_command(s, name, available_now, master), env=submit_env(s), check=False)
    return proc.returncode
