"""The stack's secrets, made once per state directory: a local CA, a server certificate for the
loopback names, and a random password or key per principal (``lakehouse.settings.SECRETS``).

Everything lives in ``Settings.secrets_dir``: the directory ``0700``, each file ``0600``, written
atomically. ``ensure`` is idempotent: it creates what is missing and re-issues the server
certificate when it no longer chains to the CA or is within 30 days of expiry; it never replaces
an existing password or key (the services' credentials and every card token depend on them; to
rotate one, see docs/security.md). Nothing here prints a secret: the summary names files only.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lakehouse.settings import (
    CA_CERT,
    CA_KEY,
    FLINK_KEYSTORE,
    FLINK_TRUSTSTORE,
    SECRETS,
    SERVER_BUNDLE,
    SERVER_CERT,
    SERVER_KEY,
    Settings,
    write_private,
)

#: The names the server certificate is valid for: the loopback host names every local service binds.
LOOPBACK_DNS = ("localhost",)
LOOPBACK_IPS = ("127.0.0.1", "::1")
CA_DAYS = 3650
SERVER_DAYS = 825  # the longest lifetime clients accept for a server certificate
RENEW_BEFORE = timedelta(days=30)
#: The services' certificate's subject: Kafka's controller listener knows its peers by it (a super user).
SERVER_COMMON_NAME = "lakehouse local services"


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8: the form every consumer here reads (OpenSSL for Redis, Kafka's PEM key store, Trino).
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Issued:
    """A key and its certificate, PEM."""

    key_pem: bytes
    cert_pem: bytes

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def make_ca(common_name: str = "lakehouse local CA", days: int = CA_DAYS) -> Issued:
    """A self-signed CA (EC P-256) allowed to sign server and client certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(_key_pem(key), _cert_pem(cert))


def issue(ca: Issued, common_name: str, days: int = SERVER_DAYS) -> Issued:
    """A certificate signed by CA for the loopback names, usable by a server and as a client certificate
    (Kafka's controller listener authenticates its peers with it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    san = [x509.DNSName(n) for n in LOOPBACK_DNS] + [x509.IPAddress(ipaddress.ip_address(a)) for a in LOOPBACK_IPS]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(_key_pem(key), _cert_pem(cert))


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):  # InvalidSignature is not a ValueError
        return False
    return True


def _server_needs_issue(d: Path, ca: Issued) -> str | None:
    """Why the server certificate must be (re)issued, or None."""
    cert_path, key_path = d / SERVER_CERT, d / SERVER_KEY
    if not cert_path.exists() or not key_path.exists():
        return "missing"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if not _signed_by(cert, ca.cert):
        return "not signed by the current CA"
    if cert.not_valid_after_utc - datetime.now(UTC) < RENEW_BEFORE:
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    return None


# --------------------------------------------------------------------------- Parquet master keys
PARQUET_KEY_PREFIX = "pii-"


def parquet_keys(s: Settings) -> list[str]:
    """The ids of the Parquet master keys present, oldest first (``pii-1``, ``pii-2``, ...)."""
    d = s.parquet_keys_dir
    ids = [p.stem for p in d.glob(f"{PARQUET_KEY_PREFIX}*.key")] if d.is_dir() else []
    return sorted(ids, key=lambda i: int(i.removeprefix(PARQUET_KEY_PREFIX)))


def current_parquet_key(s: Settings) -> str:
    """The id of the master key new Parquet files are encrypted with."""
    from lakehouse.delta.encryption import current_key

    return current_key(s)


def new_parquet_key(s: Settings) -> str:
    """Make the next master key version (256 random bits) and make it current; return its id.

    Files already written keep naming the key they were encrypted with, so the older keys stay
    until every such file is rewritten (``lakehouse maintain --rekey``) and then may be retired.
    """
    d = s.parquet_keys_dir
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    known = parquet_keys(s)
    key_id = f"{PARQUET_KEY_PREFIX}{int(known[-1].removeprefix(PARQUET_KEY_PREFIX)) + 1 if known else 1}"
    write_private(d / f"{key_id}.key", base64.b64encode(secrets.token_bytes(32)))
    tmp = d / "current.tmp"
    write_private(tmp, key_id.encode())
    os.replace(tmp, d / "current")  # readers see the old id or the new one, never half a file
    return key_id


def retire_parquet_key(s: Settings, key_id: str) -> None:
    """Delete master key KEY_ID (never the current one): files still encrypted with it become unreadable."""
    if key_id == current_parquet_key(s):
        raise ValueError(f"{key_id} is the current Parquet master key; rotate first (`lakehouse keys rotate`)")
    path = s.parquet_keys_dir / f"{key_id}.key"
    if key_id not in parquet_keys(s):
        raise ValueError(f"no Parquet master key {key_id} in {s.parquet_keys_dir}; present: {parquet_keys(s)}")
    path.unlink()


def _java_stores(s: Settings) -> None:
    """The server key and chain, and the CA, as PKCS#12 stores for Flink's SSL (it takes Java key stores
    only), both locked with the ``flink_keystore`` password."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    d = s.secrets_dir
    password = s.secret("flink_keystore").get_secret_value().encode()
    key = serialization.load_pem_private_key((d / SERVER_KEY).read_bytes(), password=None)
    chain = x509.load_pem_x509_certificates((d / SERVER_CERT).read_bytes())
    ca = x509.load_pem_x509_certificate((d / CA_CERT).read_bytes())
    locked = serialization.BestAvailableEncryption(password)
    keystore = pkcs12.serialize_key_and_certificates(b"server", key, chain[0], chain[1:], locked)  # type: ignore[arg-type]
    truststore = pkcs12.serialize_java_truststore([pkcs12.PKCS12Certificate(ca, b"lakehouse-ca")], locked)
    write_private(d / FLINK_KEYSTORE, keystore)
    write_private(d / FLINK_TRUSTSTORE, truststore)


def ensure(s: Settings) -> str:
    """Create whatever secret is missing in ``s.secrets_dir``; return a one-line summary (no values)."""
    d = s.secrets_dir
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    made: list[str] = []
    for name, filename in SECRETS.items():
        path = d / filename
        if not path.exists():
            write_private(path, secrets.token_urlsafe(32).encode())  # 256 bits
            made.append(name)
    ca_cert, ca_key = d / CA_CERT, d / CA_KEY
    if not ca_cert.exists() or not ca_key.exists():
        ca = make_ca()
        write_private(ca_key, ca.key_pem)
        write_private(ca_cert, ca.cert_pem)
        made.append("CA")
    else:
        ca = Issued(ca_key.read_bytes(), ca_cert.read_bytes())
    why = _server_needs_issue(d, ca)
    if why is not None:
        server = issue(ca, SERVER_COMMON_NAME)
        write_private(d / SERVER_KEY, server.key_pem)
        write_private(d / SERVER_CERT, server.cert_pem + ca.cert_pem)  # the chain, as servers present it
        write_private(d / SERVER_BUNDLE, server.key_pem + server.cert_pem + ca.cert_pem)
        made.append(f"server certificate ({why})")
    elif not (d / SERVER_BUNDLE).exists():
        write_private(d / SERVER_BUNDLE, (d / SERVER_KEY).read_bytes() + (d / SERVER_CERT).read_bytes())
    if why is not None or not (d / FLINK_KEYSTORE).exists() or not (d / FLINK_TRUSTSTORE).exists():
        _java_stores(s)
    if not (s.parquet_keys_dir / "current").exists():
        made.append(f"Parquet master key {new_parquet_key(s)}")
    for path in d.iterdir():  # whatever an older version or a hand left wider
        if path.is_file() and path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    expires = x509.load_pem_x509_certificate((d / SERVER_CERT).read_bytes()).not_valid_after_utc
    head = f"created {', '.join(made)}" if made else "all present"
    return f"{head}; server certificate valid to {expires:%Y-%m-%d}; in {d}"
