"""Unit-test fixtures: one local SparkSession for the whole run, and a private redis-server per module that
asks for one (never the stack's Kafka, Redis or Trino)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from lakehouse.serving import connect
from lakehouse.settings import Settings
from lakehouse.stack import components

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """A local SparkSession built the platform's way (Delta extensions, UTC), sized for small test frames."""
    from lakehouse.delta.session import build_spark_session
    from lakehouse.settings import get_settings

    session = build_spark_session(
        "unit-tests",
        get_settings(),
        extra_conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.databricks.delta.snapshotPartitions": "1",
        },
    )
    yield session
    session.stop()


# -- a private redis-server ---------------------------------------------------------------
def free_port() -> int:
    port = components.free_port()
    assert port != 6379
    return port


def private_redis_settings(state_dir: Path, port: int) -> Settings:
    """Settings of a private stack in STATE_DIR (its own CA, certificates and passwords) with Redis on PORT."""
    from lakehouse.stack import secrets

    s = Settings(_env_file=None, state_dir=state_dir, redis_port=port)  # type: ignore[call-arg]
    secrets.ensure(s)
    return s


def start_private_redis(s: Settings, *, persistent: bool = False) -> subprocess.Popen[bytes]:
    """redis-server configured exactly as the stack configures it (TLS only, ACL users), logging to
    ``<workdir>/redis.log``; without persistence unless PERSISTENT (the stack's append-only file then)."""
    from lakehouse.stack.components import Redis

    component = Redis(s)
    component.workdir.mkdir(parents=True, exist_ok=True)
    component.prepare()
    binary = shutil.which("redis-server")
    assert binary is not None
    ephemeral = [] if persistent else ["--save", "", "--appendonly", "no"]
    return subprocess.Popen(
        [binary, str(component.workdir / "redis.conf"), *ephemeral, "--logfile", str(component.workdir / "redis.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def answers(s: Settings, proc: subprocess.Popen[bytes], timeout_s: float = 15) -> bool:
    """Whether the private redis-server PROC answers PING (as admin) within TIMEOUT_S."""
    client = connect(s, role="admin", socket_timeout=1)
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if client.ping():
                    return True
            except redis.ConnectionError:
                time.sleep(0.05)
        return False
    finally:
        client.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings pointing at a redis-server of our own on a free loopback port, secured as the stack's is
    (TLS with a private CA, ACL users admin / writer / reader)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make setup installs it)")
    workdir = tmp_path_factory.mktemp("redis")
    for _ in range(3):  # another process may take the port between the probe and the bind
        port = free_port()
        s = private_redis_settings(workdir, port)
        proc = start_private_redis(s)
        if not answers(s, proc):
            stop(proc)
            continue
        try:
            yield s
        finally:
            stop(proc)
        return
    pytest.fail(f"redis-server did not answer PING; see {workdir}")
