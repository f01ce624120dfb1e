"""How each principal connects to Kafka: SASL_SSL with SCRAM-SHA-512 over TLS that trusts the local CA,
as configuration for each client library the code base uses (kafka-python, librdkafka, Java clients:
Spark's Kafka source, the fast path's Flink source). Only dictionaries: no client library is imported.

Java clients never see a password: their JAAS line names the secret's file through Kafka's
``DirectoryConfigProvider`` (``${dir:<secrets>:kafka-spark.password}``), resolved inside the client, so
neither Spark's options, its plans and logs, nor the fast path's ``job.json`` hold it. Python clients
get the value in memory, never on a command line.
"""

from __future__ import annotations

from typing import Any

from lakehouse.settings import KAFKA_PRINCIPALS, Settings

SECURITY_PROTOCOL = "SASL_SSL"
SASL_MECHANISM = "SCRAM-SHA-512"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
DIR_PROVIDER = "org.apache.kafka.common.config.provider.DirectoryConfigProvider"

#: Consumer groups: the fast path's, and the prefix Spark's Kafka source gives its own.
FASTPATH_GROUP = "lakehouse-fastpath"
SPARK_GROUP_PREFIX = "spark-kafka-"


def _check(principal: str) -> None:
    if principal not in KAFKA_PRINCIPALS:
        raise ValueError(f"unknown Kafka principal {principal!r}; known: {', '.join(KAFKA_PRINCIPALS)}")


def _plaintext(s: Settings) -> bool:
    """``kafka_security=plaintext``: a benchmark's plain twin broker (local only, see the setting)."""
    return s.kafka_security == "plaintext"


def python_config(s: Settings, principal: str) -> dict[str, Any]:
    """kafka-python keyword arguments for PRINCIPAL (KafkaProducer, KafkaConsumer, KafkaAdminClient)."""
    _check(principal)
    if _plaintext(s):
        return {"bootstrap_servers": s.bootstrap_servers, "security_protocol": "PLAINTEXT"}
    return {
        "bootstrap_servers": s.bootstrap_servers,
        "security_protocol": SECURITY_PROTOCOL,
        "sasl_mechanism": SASL_MECHANISM,
        "sasl_plain_username": principal,
        "sasl_plain_password": s.secret(f"kafka_{principal}").get_secret_value(),
        "ssl_cafile": str(s.ca_file),
        "ssl_check_hostname": True,
    }


def librdkafka_config(s: Settings, principal: str) -> dict[str, Any]:
    """confluent-kafka (librdkafka) configuration for PRINCIPAL."""
    _check(principal)
    if _plaintext(s):
        return {"bootstrap.servers": s.bootstrap_servers, "security.protocol": "plaintext"}
    return {
        "bootstrap.servers": s.bootstrap_servers,
        "security.protocol": SECURITY_PROTOCOL.lower(),
        "sasl.mechanism": SASL_MECHANISM,
        "sasl.username": principal,
        "sasl.password": s.secret(f"kafka_{principal}").get_secret_value(),
        "ssl.ca.location": str(s.ca_file),
        "ssl.endpoint.identification.algorithm": "https",
    }


def java_config(s: Settings, principal: str) -> dict[str, str]:
    """Java client properties for PRINCIPAL: the password stays in its file (see the module's doc)."""
    _check(principal)
    if _plaintext(s):
        return {"bootstrap.servers": s.bootstrap_servers, "security.protocol": "PLAINTEXT"}
    secret_file = s.secret_file(f"kafka_{principal}")
    password = f"${{dir:{secret_file.parent}:{secret_file.name}}}"  # resolved by the client from the file
    return {
        "bootstrap.servers": s.bootstrap_servers,
        "security.protocol": SECURITY_PROTOCOL,
        "sasl.mechanism": SASL_MECHANISM,
        "sasl.jaas.config": f'{SCRAM_MODULE} required username="{principal}" password="{password}";',
        "config.providers": "dir",
        "config.providers.dir.class": DIR_PROVIDER,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(s.ca_file),
        "ssl.endpoint.identification.algorithm": "https",
    }


def spark_options(s: Settings, principal: str = "spark") -> dict[str, str]:
    """Spark's Kafka source and sink options (``kafka.``-prefixed ``java_config``)."""
    return {f"kafka.{k}": v for k, v in java_config(s, principal).items()}
