"""How each role reaches each service: endpoints, user, CA and where the password is (``lakehouse
connect ROLE``). The CLI, the demo, the tests and the benchmarks connect the same way; the settings
object is the one source of endpoints, ``Settings.secret`` the one source of passwords.

Roles (what a person or a program does, not who it is):

- ``producer``: writes events to Kafka's contract topics.
- ``engineer``: everything, including bronze and Redis administration.
- ``analyst``: reads the lake through Trino (not the raw PII columns), reads Redis.
- ``service``: an application reading gold's serving copy in Redis (and gold through Trino).

Kafka (SASL_SSL, SCRAM-SHA-512, ACLs), Redis (TLS only, ACL users), Trino (HTTPS, password
users, file-based access control: the role's name is its Trino user) and Dagster (HTTPS, Basic auth
or a one-time login link, ``lakehouse.services.dagster_guard``) are secured.
"""

from __future__ import annotations

from typing import Any

from lakehouse.clients import SASL_MECHANISM, SECURITY_PROTOCOL, java_config
from lakehouse.settings import Settings

ROLES: dict[str, str] = {
    "producer": "writes events to Kafka's contract topics",
    "engineer": "everything, including bronze and Redis administration",
    "analyst": "reads the lake through Trino without the raw PII columns; reads Redis",
    "service": "reads gold's serving copy in Redis",
}

#: The Kafka principal of each role (None: no business in Kafka; they read what the pipeline made of it).
KAFKA_PRINCIPAL: dict[str, str | None] = {"producer": "producer", "engineer": "admin", "analyst": None, "service": None}

#: The Redis ACL user of each role (None: the role has no business in Redis).
REDIS_USER: dict[str, str | None] = {"producer": None, "engineer": "admin", "analyst": "reader", "service": "reader"}

#: The Dagster user of each role: engineers operate the pipeline, analysts may look at it.
DAGSTER_USER: dict[str, str | None] = {"producer": None, "engineer": "engineer", "analyst": "viewer", "service": None}


def _password(s: Settings, secret: str, key: str, with_secrets: bool) -> dict[str, str]:
    """{KEY: the password} WITH_SECRETS, else {"password_file": where it is}."""
    if with_secrets:
        return {key: s.secret(secret).get_secret_value()}
    return {"password_file": str(s.secret_file(secret))}


def connection(s: Settings, role: str, *, with_secrets: bool) -> dict[str, dict[str, Any]]:
    """How ROLE reaches each service, keyed by service. Passwords are values only WITH_SECRETS;
    otherwise ``password_file`` says where they are."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    out: dict[str, dict[str, Any]] = {}
    principal = KAFKA_PRINCIPAL[role]
    if principal is not None:
        out["kafka"] = {
            "bootstrap_servers": s.bootstrap_servers,
            "security_protocol": SECURITY_PROTOCOL,
            "sasl_mechanism": SASL_MECHANISM,
            "sasl_username": principal,
            "ssl_cafile": str(s.ca_file),
            **_password(s, f"kafka_{principal}", "sasl_password", with_secrets),
        }
    user = REDIS_USER[role]
    if user is not None:
        out["redis"] = {
            "host": s.redis_address[0],
            "port": s.redis_address[1],
            "username": user,
            "ssl": True,
            "ssl_ca_certs": str(s.ca_file),
            **_password(s, f"redis_{user}", "password", with_secrets),
        }
    if role != "producer":
        out["trino"] = {
            "host": s.trino_address[0],
            "port": s.trino_address[1],
            "http_scheme": "https",
            "user": role,
            "catalog": s.trino_catalog,
            "verify": str(s.ca_file),
            **_password(s, f"trino_{role}", "password", with_secrets),
        }
    dagster_user = DAGSTER_USER[role]
    if dagster_user is not None:
        out["dagster"] = {
            "url": s.dagster_url,
            "user": dagster_user,
            "verify": str(s.ca_file),
            "login_link": f"lakehouse ui --user {dagster_user}",
            **_password(s, f"dagster_{dagster_user}", "password", with_secrets),
        }
    return out


def examples(s: Settings, role: str) -> dict[str, str]:
    """Ready-to-run client snippets for ROLE, by service (they read the password from its file)."""
    conn = connection(s, role, with_secrets=False)
    out: dict[str, str] = {}
    if "kafka" in conn:
        kafka = conn["kafka"]
        out["kafka (kafka-python)"] = (
            "from kafka import KafkaProducer\n"
            f"producer = KafkaProducer(bootstrap_servers={kafka['bootstrap_servers']!r}, acks='all',\n"
            f"    security_protocol={kafka['security_protocol']!r}, sasl_mechanism={kafka['sasl_mechanism']!r},\n"
            f"    sasl_plain_username={kafka['sasl_username']!r},\n"
            f"    sasl_plain_password=open({kafka['password_file']!r}).read().strip(),\n"
            f"    ssl_cafile={kafka['ssl_cafile']!r})"
        )
        out["kafka (Java client properties)"] = "\n".join(
            f"{k}={v}" for k, v in java_config(s, kafka["sasl_username"]).items()
        )
    if "redis" in conn:
        r = conn["redis"]
        out["redis (redis-py)"] = (
            "import redis\n"
            f"r = redis.Redis(host={r['host']!r}, port={r['port']}, username={r['username']!r},\n"
            f"                password=open({r['password_file']!r}).read().strip(),\n"
            f"                ssl=True, ssl_ca_certs={r['ssl_ca_certs']!r})"
        )
        out["redis (redis-cli)"] = (
            f"REDISCLI_AUTH=$(cat {r['password_file']}) redis-cli --tls --cacert {r['ssl_ca_certs']} "
            f"-h {r['host']} -p {r['port']} --user {r['username']} PING"
        )
    if "trino" in conn:
        t = conn["trino"]
        out["trino (DB-API)"] = (
            "import trino\n"
            f"conn = trino.dbapi.connect(host={t['host']!r}, port={t['port']}, user={t['user']!r},\n"
            f"    auth=trino.auth.BasicAuthentication({t['user']!r}, open({t['password_file']!r}).read().strip()),\n"
            f"    catalog={t['catalog']!r}, http_scheme='https', verify={t['verify']!r})"
        )
        out["trino (JDBC)"] = (
            f"jdbc:trino://{t['host']}:{t['port']}/{t['catalog']}?SSL=true&SSLVerification=FULL"
            f"&SSLTrustStorePath={t['verify']}&user={t['user']}  (password: the file above)"
        )
        out["trino (CLI)"] = (
            f"TRINO_PASSWORD=$(cat {t['password_file']}) java -jar {s.jvm_dir}/trino-cli-*-executable.jar "
            f"--server {s.trino_url} --user {t['user']} --password --truststore-path {t['verify']} "
            f"--catalog {t['catalog']}"
        )
    if "dagster" in conn:
        d = conn["dagster"]
        out["dagster (GraphQL over HTTPS)"] = (
            # The password goes to curl on stdin (-K-), not in its argument list; printf is a shell builtin.
            f'printf \'user = "{d["user"]}:%s"\\n\' "$(cat {d["password_file"]})" | curl -K- --cacert {d["verify"]} '
            f"-H 'Content-Type: application/json' -d '{{\"query\": \"{{ version }}\"}}' {d['url']}/graphql"
        )
    return out
