"""The stack's secrets: made once, private, and a server certificate clients can verify."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

from cryptography import x509

from lakehouse.settings import SECRETS, Settings
from lakehouse.stack import secrets


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_makes_every_secret_private_once(tmp_path: Path) -> None:
    s = Settings(_env_file=None, state_dir=tmp_path)  # type: ignore[call-arg]
    summary = secrets.ensure(s)
    assert "created" in summary
    assert _mode(s.secrets_dir) == 0o700
    files = sorted(p for p in s.secrets_dir.rglob("*") if p.is_file())
    assert {p.name for p in files} >= set(SECRETS.values()) | {
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "server-bundle.pem",
        "pii-1.key",  # the first Parquet master key, current
        "current",
    }
    assert all(_mode(p) == 0o600 for p in files), [(p.name, oct(_mode(p))) for p in files]
    assert _mode(s.parquet_keys_dir) == 0o700
    values = {name: s.secret(name).get_secret_value() for name in SECRETS}
    assert len(set(values.values())) == len(SECRETS)  # one random value each
    assert all(len(v) >= 43 for v in values.values())  # 256 bits, URL-safe base64
    for value in values.values():
        assert value not in summary
    before = {p.name: p.read_bytes() for p in files}
    assert secrets.ensure(s).startswith("all present")
    assert {p.name: p.read_bytes() for p in sorted(s.secrets_dir.rglob("*")) if p.is_file()} == before  # kept


def test_the_server_certificate_names_the_loopback_hosts_and_chains_to_the_ca(tmp_path: Path) -> None:
    s = Settings(_env_file=None, state_dir=tmp_path)  # type: ignore[call-arg]
    secrets.ensure(s)
    chain = x509.load_pem_x509_certificates((s.secrets_dir / "server.pem").read_bytes())
    ca = x509.load_pem_x509_certificate(s.ca_file.read_bytes())
    assert chain[1] == ca
    chain[0].verify_directly_issued_by(ca)
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_new_ca_gets_a_new_server_certificate_and_wider_modes_are_narrowed(tmp_path: Path) -> None:
    s = Settings(_env_file=None, state_dir=tmp_path)  # type: ignore[call-arg]
    secrets.ensure(s)
    password = s.secret("redis_admin").get_secret_value()
    s.ca_file.unlink()
    (s.secrets_dir / "pii-hmac.key").chmod(0o644)
    summary = secrets.ensure(s)
    assert "server certificate (not signed by the current CA)" in summary
    x509.load_pem_x509_certificate((s.secrets_dir / "server.pem").read_bytes()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(s.ca_file.read_bytes())
    )
    assert _mode(s.secrets_dir / "pii-hmac.key") == 0o600
    assert s.secret("redis_admin").get_secret_value() == password  # passwords are never replaced


def test_trinos_password_file_holds_bcrypt_hashes_of_each_users_password(tmp_path: Path) -> None:
    import bcrypt

    from lakehouse.settings import TRINO_USERS
    from lakehouse.stack.components import trino_password_db

    s = Settings(_env_file=None, state_dir=tmp_path)  # type: ignore[call-arg]
    secrets.ensure(s)
    text = trino_password_db(s)
    lines = dict(line.split(":", 1) for line in text.splitlines())
    assert list(lines) == list(TRINO_USERS)
    for user, hashed in lines.items():
        password = s.secret(f"trino_{user}").get_secret_value()
        assert password not in text
        assert hashed.startswith("$2y$10$")  # the prefix Trino reads; cost 10
        assert bcrypt.checkpw(password.encode(), ("$2b$" + hashed[4:]).encode())
        assert not bcrypt.checkpw(b"not-the-password", ("$2b$" + hashed[4:]).encode())


def test_trinos_access_rules_are_valid_json_for_any_catalog_name() -> None:
    import json
    from string import Template

    from lakehouse.stack.components import INFRA

    rules = json.loads(Template((INFRA / "trino" / "rules.json").read_text()).substitute(catalog="lake2"))
    assert {"catalogs", "schemas", "tables", "procedures", "queries", "system_information"} <= set(rules)
    # The raw columns: masked for the engineer (encrypted at rest, Trino holds no key), refused to the others.
    engineer = [r for r in rules["tables"] if r.get("user") == "engineer"]
    masked = {
        (r.get("schema"), r.get("table"), c["name"]) for r in engineer for c in r.get("columns", []) if "mask" in c
    }
    assert masked == {("bronze", None, "value"), ("silver", "quarantine", "raw_value")}
    assert engineer[-1] == {"user": "engineer", "privileges": engineer[-1]["privileges"]}  # then everything else
    others = next(r for r in rules["tables"] if r.get("table") == "quarantine" and r.get("user") != "engineer")
    assert others["columns"] == [{"name": "raw_value", "allow": False}]


def test_the_web_config_of_prometheus_and_the_pushgateway_holds_hashes_only(tmp_path: Path) -> None:
    import bcrypt
    import yaml

    from lakehouse.stack.components import web_config

    s = Settings(_env_file=None, state_dir=tmp_path)  # type: ignore[call-arg]
    secrets.ensure(s)
    path = web_config(s, tmp_path / "web.yml", ("admin", "scraper"))
    assert _mode(path) == 0o600
    conf = yaml.safe_load(path.read_text())
    assert conf["tls_server_config"]["cert_file"] == str(s.secrets_dir / "server.pem")
    assert set(conf["basic_auth_users"]) == {"admin", "scraper"}
    for user, hashed in conf["basic_auth_users"].items():
        password = s.secret(f"prometheus_{user}").get_secret_value()
        assert password not in path.read_text()
        assert bcrypt.checkpw(password.encode(), hashed.encode())
