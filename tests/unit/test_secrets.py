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
    files = sorted(s.secrets_dir.iterdir())
    assert {p.name for p in files} >= set(SECRETS.values()) | {
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "server-bundle.pem",
    }
    assert all(_mode(p) == 0o600 for p in files), [(p.name, oct(_mode(p))) for p in files]
    values = {name: s.secret(name).get_secret_value() for name in SECRETS}
    assert len(set(values.values())) == len(SECRETS)  # one random value each
    assert all(len(v) >= 43 for v in values.values())  # 256 bits, URL-safe base64
    for value in values.values():
        assert value not in summary
    before = {p.name: p.read_bytes() for p in files}
    assert secrets.ensure(s).startswith("all present")
    assert {p.name: p.read_bytes() for p in sorted(s.secrets_dir.iterdir())} == before  # nothing replaced


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
