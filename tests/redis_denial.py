"""Denial checks of a Redis secured as the stack secures it, shared by the unit test (a private
redis-server) and the integration test (the stack's): each first shows the legitimate credential
works, so none can pass because Redis is down."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lakehouse.serving import connect
from lakehouse.settings import Settings
from lakehouse.stack import secrets


def _raw(s: Settings, **kwargs: object) -> redis.Redis:
    """A client that tries once (redis-py retries a refused connection with back-off by default)."""
    return redis.Redis(
        host=s.host,
        port=s.redis_port,
        socket_timeout=5,
        socket_connect_timeout=5,
        retry=Retry(NoBackoff(), 0),
        **kwargs,  # type: ignore[arg-type]
    )


def refuses_strangers(s: Settings, tmp: Path) -> None:
    """No credentials, a wrong password, plaintext, and a client certificate from another CA are refused."""
    assert connect(s, role="reader").ping()
    tls = {"ssl": True, "ssl_ca_certs": str(s.ca_file)}
    with pytest.raises(redis.AuthenticationError):
        _raw(s, **tls).ping()  # `default` is off: nobody without a user name and password
    with pytest.raises(redis.AuthenticationError):
        _raw(s, username="writer", password="not-the-password", **tls).ping()
    with pytest.raises(redis.AuthenticationError):
        _raw(s, username="default", password="", **tls).ping()
    with pytest.raises(redis.ConnectionError):
        _raw(s, username="admin", password=s.secret("redis_admin").get_secret_value()).ping()  # no TLS: no port
    other = secrets.make_ca("another CA")
    client = secrets.issue(other, "a stranger")
    (tmp / "stranger.pem").write_bytes(client.cert_pem)
    (tmp / "stranger.key").write_bytes(client.key_pem)
    with pytest.raises(redis.ConnectionError):
        _raw(
            s,
            username="admin",
            password=s.secret("redis_admin").get_secret_value(),  # even with the right password
            ssl_certfile=str(tmp / "stranger.pem"),
            ssl_keyfile=str(tmp / "stranger.key"),
            **tls,
        ).ping()
    (tmp / "other-ca.pem").write_bytes(other.cert_pem)
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        _raw(s, ssl=True, ssl_ca_certs=str(tmp / "other-ca.pem")).ping()  # and clients know a false server


def _refusal(name: str, command: Callable[[], object]) -> str:
    """Redis's answer to a command that must be refused."""
    try:
        command()
    except redis.ResponseError as e:
        return str(e)
    pytest.fail(f"{name} was allowed")


def roles_do_their_job_only(s: Settings) -> None:
    """The writer writes serving keys only and runs no dangerous command; the reader only reads."""
    key = f"fraud:user:denial-{uuid.uuid4().hex}"
    writer, reader, monitor = connect(s, role="writer"), connect(s, role="reader"), connect(s, role="monitor")
    try:
        assert writer.hset(key, mapping={"alert_count": "1"}) == 1
        assert reader.hgetall(key) == {"alert_count": "1"}
        for name, command in (
            ("FLUSHALL", lambda: writer.flushall()),
            ("FLUSHDB", lambda: writer.flushdb()),
            ("CONFIG SET", lambda: writer.config_set("maxmemory", "1mb")),
            ("CONFIG GET", lambda: writer.config_get("requirepass")),
            ("REPLICAOF", lambda: writer.execute_command("REPLICAOF", "127.0.0.1", "1")),
            ("KEYS", lambda: writer.keys("*")),
            ("DEBUG", lambda: writer.execute_command("DEBUG", "SLEEP", "0")),
            ("SHUTDOWN", lambda: writer.execute_command("SHUTDOWN", "NOSAVE")),
            ("ACL SETUSER", lambda: writer.execute_command("ACL", "SETUSER", "writer", "+@all")),
            ("SET outside the serving keys", lambda: writer.set(f"other:{uuid.uuid4().hex}", "x")),
            ("reader HSET", lambda: reader.hset(key, "alert_count", "2")),
            ("reader DEL", lambda: reader.delete(key)),
            ("reader FLUSHALL", lambda: reader.flushall()),
            ("reader EVAL", lambda: reader.eval("return 1", 0)),
            ("monitor HGETALL", lambda: monitor.hgetall(key)),
            ("monitor SCAN", lambda: monitor.scan(0)),
            ("monitor CONFIG SET", lambda: monitor.config_set("maxmemory-policy", "allkeys-lru")),
            ("monitor FLUSHALL", lambda: monitor.flushall()),
        ):
            # DEBUG is refused before the ACL is asked (enable-debug-command no); the rest by the ACL
            why = _refusal(name, command)
            assert re.search(r"no permissions|DEBUG command not allowed", why), (name, why)
        assert reader.hgetall(key) == {"alert_count": "1"}  # nothing a refused command did stuck
        assert "used_memory" in monitor.info("memory")  # the exporter's user sees statistics, no key
    finally:
        writer.delete(key)
        writer.close()
        reader.close()
        monitor.close()
