"""Spark standalone (the cluster profile's): a master and ``spark_workers`` workers, run with ``spark-class``
from the pyspark install, on loopback.

Every process of the cluster (master, workers, drivers, executors) authenticates with one shared secret
(``spark.authenticate``; the secret ``spark_auth``), read from a private SPARK_CONF_DIR
(``lakehouse.delta.session.secret_conf_dir``) and never put on a command line; RPC and block transfers are
encrypted (``spark.network.crypto.enabled``, set by every app). The master's and workers' web UIs listen on
loopback only (SPARK_LOCAL_IP) and serve no data, only the cluster's state: the stack reads the master's
``/json`` to know who is alive.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import requests

from lakehouse.delta.session import LOG4J2, secret_conf_dir
from lakehouse.settings import Settings, child_env
from lakehouse.stack.components import Component, StackError, port_open


def spark_home() -> Path:
    """The pyspark install: its ``bin/spark-class`` and ``jars`` are a Spark distribution's."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise StackError("pyspark is not installed in this environment: run `make setup`")
    return Path(spec.origin).parent


def master_state(s: Settings, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The master's view of the cluster (its web UI's /json: status, workers, applications), or None."""
    try:
        r = requests.get(f"http://{s.host}:{s.spark_master_ui_port}/json/", timeout=timeout_s)
        return r.json() if r.ok else None  # type: ignore[no-any-return]
    except (requests.RequestException, ValueError):
        return None


def alive_workers(s: Settings) -> list[dict[str, Any]]:
    state = master_state(s) or {}
    return [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]


class _SparkDaemon(Component):
    def env(self) -> dict[str, str]:
        return child_env(
            JAVA_HOME=str(self.s.java17()),
            SPARK_HOME=str(spark_home()),
            SPARK_CONF_DIR=str(secret_conf_dir(self.s)),
            SPARK_LOCAL_IP=self.s.host,
            SPARK_DAEMON_MEMORY="256m",
            # No REST submission server (port 6066, not behind spark.authenticate): apps come through the
            # authenticated RPC port only.
            # Workers delete the directories of finished apps after an hour (each holds the code archive, its
            # logs and jars: they piled up by the hundred over the tests' runs).
            SPARK_DAEMON_JAVA_OPTS=" ".join(
                [
                    f"-Dlog4j2.configurationFile={LOG4J2}",
                    "-Dspark.master.rest.enabled=false",
                    "-Dspark.worker.cleanup.enabled=true",
                    "-Dspark.worker.cleanup.interval=600",
                    "-Dspark.worker.cleanup.appDataTtl=3600",
                ]
            ),
            PYSPARK_PYTHON=sys.executable,
        )

    def spark_class(self, main: str, *args: str) -> list[str]:
        return [str(spark_home() / "bin" / "spark-class"), main, *args]

    def version(self) -> str:
        return pkg_version("pyspark")


class SparkMaster(_SparkDaemon):
    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="spark-master", timeout_s=60)

    def port(self) -> int:
        return self.s.spark_master_port

    def url(self) -> str:
        return f"spark://{self.s.host}:{self.s.spark_master_port}"

    def command(self) -> list[str]:
        return self.spark_class(
            "org.apache.spark.deploy.master.Master",
            "--host", self.s.host,
            "--port", str(self.s.spark_master_port),
            "--webui-port", str(self.s.spark_master_ui_port),
        )  # fmt: skip

    def healthy(self) -> bool:
        if not port_open(self.s.host, self.s.spark_master_port):
            return False
        return (master_state(self.s) or {}).get("status") == "ALIVE"


class SparkWorker(_SparkDaemon):
    def __init__(self, s: Settings, worker: int) -> None:
        super().__init__(s, name=f"spark-worker-{worker}", timeout_s=60, depends_on=("spark-master",))
        self.worker = worker

    def port(self) -> int:
        return self.s.spark_worker_ports(self.worker)[0]

    def command(self) -> list[str]:
        rpc, ui = self.s.spark_worker_ports(self.worker)
        return self.spark_class(
            "org.apache.spark.deploy.worker.Worker",
            "--host", self.s.host,
            "--port", str(rpc),
            "--webui-port", str(ui),
            "--cores", str(self.s.spark_worker_cores),
            "--memory", self.s.spark_worker_memory,
            "--work-dir", str(self.workdir / "work"),
            f"spark://{self.s.host}:{self.s.spark_master_port}",
        )  # fmt: skip

    def healthy(self) -> bool:
        """Registered with the master and alive there."""
        port = self.port()
        return any(w.get("port") == port for w in alive_workers(self.s))


def spark_cluster(s: Settings) -> list[Component]:
    """The standalone master and its workers, when the settings ask for workers and the apps' master is
    the stack's own."""
    if s.spark_workers == 0 or s.spark_master != f"spark://{s.host}:{s.spark_master_port}":
        return []
    return [SparkMaster(s), *(SparkWorker(s, n) for n in range(1, s.spark_workers + 1))]
