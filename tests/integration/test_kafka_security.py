"""The stack's Kafka refuses strangers and keeps each principal to its job (SASL_SSL, SCRAM-SHA-512,
StandardAuthorizer with no access where no ACL matches; the controller listener takes client
certificates from the local CA only). Each test first shows the legitimate credential works."""

from __future__ import annotations

import socket
import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AclBindingFilter, AdminClient, AlterConfigOpType, ConfigEntry
from confluent_kafka.admin import ConfigResource as RdConfigResource
from confluent_kafka.admin import ResourceType as RdResourceType
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError

from lakehouse.clients import librdkafka_config, python_config
from lakehouse.settings import Settings
from lakehouse.stack import secrets

FAST = {"request_timeout_ms": 8000, "bootstrap_timeout_ms": 8000}


def _admin(s: Settings, principal: str, **overrides: Any) -> KafkaAdminClient:
    return KafkaAdminClient(**{**python_config(s, principal), **FAST, **overrides})


def _refused(make: Any) -> str:
    """What refused a client: its construction or its first request must fail."""
    try:
        client = make()
        try:
            client.list_topics()
        finally:
            client.close()
    except (KafkaError, OSError, ssl.SSLError) as e:
        return f"{type(e).__name__}: {e}"
    pytest.fail("the client was let in")


def test_kafka_refuses_no_credentials_a_wrong_password_and_another_ca(
    lakehouse_stack: Settings, tmp_path: Path
) -> None:
    s = lakehouse_stack
    admin = _admin(s, "admin")
    assert "payments" in admin.list_topics()  # the legitimate credential works
    admin.close()
    refusals = {
        "plaintext": _refused(lambda: KafkaAdminClient(bootstrap_servers=s.bootstrap_servers, **FAST)),
        "TLS without SASL": _refused(
            lambda: KafkaAdminClient(
                bootstrap_servers=s.bootstrap_servers, security_protocol="SSL", ssl_cafile=str(s.ca_file), **FAST
            )
        ),
        "wrong password": _refused(lambda: _admin(s, "admin", sasl_plain_password="not-the-password")),
        "unknown user": _refused(lambda: _admin(s, "admin", sasl_plain_username="mallory")),
    }
    other = secrets.make_ca("another CA")
    (tmp_path / "other-ca.pem").write_bytes(other.cert_pem)
    refusals["a server it cannot verify"] = _refused(
        lambda: _admin(s, "admin", ssl_cafile=str(tmp_path / "other-ca.pem"))
    )
    for how, why in refusals.items():
        assert why, how


def _handshake(s: Settings, cert: Path | None, key: Path | None) -> bool:
    """True when the controller listener accepts a TLS session with this client certificate (or none)."""
    ctx = ssl.create_default_context(cafile=str(s.ca_file))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    with socket.create_connection((s.host, s.kafka_controller_port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=s.host) as tls:
                # TLS 1.3: a refused client certificate shows on the first read, not in the handshake.
                tls.settimeout(3)
                try:
                    return tls.recv(1) != b""  # a refusal arrives as an alert or a close
                except TimeoutError:
                    return True  # still open, waiting for a request: the session was accepted
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return False


def test_the_controller_listener_takes_certificates_of_the_local_ca_only(
    lakehouse_stack: Settings, tmp_path: Path
) -> None:
    s = lakehouse_stack
    ours = s.secrets_dir
    assert _handshake(s, ours / "server.pem", ours / "server.key")  # the broker's own certificate
    assert not _handshake(s, None, None)
    stranger = secrets.issue(secrets.make_ca("another CA"), "a stranger")
    (tmp_path / "c.pem").write_bytes(stranger.cert_pem)
    (tmp_path / "c.key").write_bytes(stranger.key_pem)
    assert not _handshake(s, tmp_path / "c.pem", tmp_path / "c.key")


def _grant(s: Settings, principal: str, topic: str, *ops: str) -> list[Any]:
    """ACLs letting PRINCIPAL do OPS on TOPIC (a test topic: the contract topics are not written to here,
    the pipeline tests count what is in them)."""
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType

    bindings = [
        AclBinding(
            RdResourceType.TOPIC,
            topic,
            ResourcePatternType.LITERAL,
            f"User:{principal}",
            "*",
            AclOperation[op],
            AclPermissionType.ALLOW,
        )
        for op in ops
    ]
    client = AdminClient(librdkafka_config(s, "admin"))  # held until the futures are done
    for future in client.create_acls(bindings).values():
        future.result(timeout=30)
    return bindings


def _reads(s: Settings, principal: str, topic: str) -> bool:
    """Whether PRINCIPAL fetches a record of TOPIC (one partition, one record in it) from its beginning."""
    consumer = KafkaConsumer(**python_config(s, principal), **FAST, enable_auto_commit=False)
    try:
        part = TopicPartition(topic, 0)
        consumer.assign([part])
        consumer.seek_to_beginning(part)
        return any(consumer.poll(timeout_ms=1000) for _ in range(8))
    except KafkaError:
        return False
    finally:
        consumer.close()


def test_each_principal_does_its_job_only(lakehouse_stack: Settings) -> None:
    """With an ACL a principal does what it grants; without one, nothing. And no principal but admin can
    delete, reconfigure or create topics."""
    s = lakehouse_stack
    granted, other = (f"it-acl-{uuid.uuid4().hex[:8]}" for _ in range(2))
    admin = _admin(s, "admin")
    admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in (granted, other)])
    producer_admin = KafkaProducer(**python_config(s, "admin"), acks="all")
    for t in (granted, other):
        producer_admin.send(t, b"one record").get(timeout=30)
    producer_admin.close()
    bindings = _grant(s, "producer", granted, "WRITE", "DESCRIBE")
    bindings += _grant(s, "spark", granted, "READ", "DESCRIBE")
    bindings += _grant(s, "fastpath", granted, "READ", "DESCRIBE")
    try:
        producer = KafkaProducer(**python_config(s, "producer"), acks="all", max_block_ms=8000)
        assert producer.send(granted, b"x").get(timeout=30).topic == granted  # what its ACL grants
        with pytest.raises(KafkaError):
            producer.send(other, b"x").get(timeout=30)  # no ACL: nothing
        producer.close()
        assert not _reads(s, "producer", granted)  # it may write there, not read
        for principal in ("spark", "fastpath"):
            assert _reads(s, principal, granted), principal
            assert not _reads(s, principal, other), principal

        spark = _admin(s, "spark")
        with pytest.raises(KafkaError):
            spark.delete_topics(["payments"])
        with pytest.raises(KafkaError):
            spark.create_topics([NewTopic(f"{granted}-x", num_partitions=1, replication_factor=1)])
        spark.close()
        rd = AdminClient(librdkafka_config(s, "spark"))
        done = rd.incremental_alter_configs(
            [
                RdConfigResource(
                    RdResourceType.TOPIC,
                    "payments",
                    incremental_configs=[ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET)],
                )
            ]
        )
        with pytest.raises(KafkaException, match="AUTHORIZATION_FAILED"):
            next(iter(done.values())).result(timeout=30)
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "payments")])
        assert "'retention.ms', '1'" not in repr(described)  # nothing a refused request did stuck
        assert "payments" in admin.list_topics()
    finally:
        cleaner = AdminClient(librdkafka_config(s, "admin"))
        filters = [
            AclBindingFilter(
                b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
            )
            for b in bindings
        ]
        for future in cleaner.delete_acls(filters).values():
            future.result(timeout=30)
        admin.delete_topics([granted, other])
        admin.close()
