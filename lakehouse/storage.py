"""Where the lake lives: a local directory, or a prefix of an S3 bucket (``s3a://BUCKET/PREFIX``).

Spark reaches an s3a:// lake through Hadoop's S3A connector (``lakehouse.delta.session`` configures it);
the Python side (Delta log reads, checkpoint offsets, markers, the stream locks) through an S3 path with
the operations of a local ``Path`` (``universal_pathlib`` over ``s3fs``), so most code need not know which
one it holds. ``Settings.lake_dir`` and ``Settings.checkpoint_dir`` return one or the other.

The S3 client trusts the stack's CA when the store is the stack's own SeaweedFS, the system's otherwise;
its credentials are the platform's identity (``s3_access_key`` and the secret ``s3_lakehouse``), handed to
the client in this process only.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from upath import UPath

    from lakehouse.settings import Settings

S3A = "s3a://"
#: S3's bucket naming rules (the subset every S3 implementation accepts): 3-63 of a-z, 0-9, '.', '-'.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"{S3A}{self.bucket}/{self.prefix}" if self.prefix else f"{S3A}{self.bucket}"


def parse_s3a(uri: str) -> S3Location:
    """BUCKET and PREFIX of an ``s3a://BUCKET[/PREFIX]`` URI; a ValueError saying what is wrong otherwise."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme != "s3a":
        hint = " (use s3a://, the scheme of Hadoop's S3A connector, which Spark and Delta write through)"
        raise ValueError(f"{uri!r}: only local paths and s3a://BUCKET/PREFIX URIs are supported{hint}")
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET.match(bucket):
        raise ValueError(f"{uri!r}: {bucket!r} is not a valid bucket name (3-63 characters of a-z, 0-9, '.', '-')")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ValueError(f"{uri!r}: the prefix {prefix!r} has an empty, '.' or '..' segment")
    return S3Location(bucket, prefix)


class _Hidden(str):
    """A secret as the S3 client needs it (a str), shown as *** wherever it is repr()'d: a path's storage
    options appear in its errors and reprs."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


def storage_options(s: Settings) -> dict[str, Any]:
    """s3fs' options for the platform's identity on the lake's object store."""
    verify: str | bool = str(s.ca_file) if s.s3_endpoint is None else True
    return {
        "key": s.s3_access_key,
        "secret": _Hidden(s.secret("s3_lakehouse").get_secret_value()),
        "endpoint_url": s.s3_url,
        "client_kwargs": {"region_name": s.s3_region, "verify": verify},
        # Every listing asks the store: a cached one would hide a commit another process just wrote.
        "use_listings_cache": False,
        # (No "retries" here: botocore rewrites that dict in place, and two paths of one store would then
        # differ in their options.)
        "config_kwargs": {"s3": {"addressing_style": "path"}},
    }


def s3_path(s: Settings, uri: str) -> UPath:
    """URI (s3a://BUCKET/PREFIX) as a path with a local Path's operations, as the platform's identity."""
    from upath import UPath

    parse_s3a(uri)
    path: UPath = UPath(uri, **storage_options(s))
    return path


def filesystem(s: Settings) -> Any:
    """The s3fs filesystem of the lake's object store (for what a path does not offer: conditional writes)."""
    import s3fs

    return s3fs.S3FileSystem(**storage_options(s))


def is_s3(path: object) -> bool:
    """Whether PATH (a path or a string) is on the object store."""
    return str(path).startswith(S3A)


def lake_path(s: Settings, location: str) -> Path | UPath:
    """LOCATION (a table's path as Spark is given it: local or s3a://) as a path object."""

    return s3_path(s, location) if is_s3(location) else Path(location)


#: The platform identity's credentials for the JVMs (Spark's S3A reads them through the AWS SDK's
#: profile provider, named by a system property: never on a command line or in the environment).
JVM_CREDENTIALS = "s3-lakehouse.credentials"
#: Public CAs (certifi's) and the stack's CA, for the JVMs' TLS to the store (PKCS#12, no password: it
#: holds certificates only, nothing secret).
JVM_TRUSTSTORE = "s3-truststore.p12"


def jvm_files(s: Settings) -> tuple[Path, Path]:
    """The credentials file and the trust store a Spark JVM needs for the lake's object store, written
    (0600) into the secrets directory when missing or changed; returns their paths."""
    import certifi
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

    from lakehouse.settings import write_private

    creds = s.secrets_dir / JVM_CREDENTIALS
    text = (
        "[default]\n"
        f"aws_access_key_id = {s.s3_access_key}\n"
        f"aws_secret_access_key = {s.secret('s3_lakehouse').get_secret_value()}\n"
    ).encode()
    if not creds.exists() or creds.read_bytes() != text:
        write_private(creds, text)
    store = s.secrets_dir / JVM_TRUSTSTORE
    ca = s.ca_file.read_bytes()
    if not store.exists() or store.stat().st_mtime < s.ca_file.stat().st_mtime:
        with warnings.catch_warnings():  # a few public roots have a negative serial number
            warnings.simplefilter("ignore")
            roots = x509.load_pem_x509_certificates(Path(certifi.where()).read_bytes())
        entries = [pkcs12.PKCS12Certificate(c, f"public-{i}".encode()) for i, c in enumerate(roots)]
        entries.append(pkcs12.PKCS12Certificate(x509.load_pem_x509_certificate(ca), b"lakehouse-ca"))
        write_private(store, pkcs12.serialize_java_truststore(entries, NoEncryption()))
    return creds, store


def jvm_options(s: Settings) -> list[str]:
    """System properties of a Spark JVM (driver or executor) that reads or writes the lake on S3."""
    creds, store = jvm_files(s)
    return [
        f"-Daws.sharedCredentialsFile={creds}",
        f"-Djavax.net.ssl.trustStore={store}",
        "-Djavax.net.ssl.trustStoreType=PKCS12",
    ]


def hadoop_conf(s: Settings) -> dict[str, str]:
    """S3A's configuration for the lake's store (as spark.hadoop.* keys), and Delta's log store for
    writers on several machines (``lakehouse.spark.S3ConditionalPutLogStore``)."""
    return {
        "spark.hadoop.fs.s3a.endpoint": s.s3_url,
        "spark.hadoop.fs.s3a.endpoint.region": s.s3_region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "software.amazon.awssdk.auth.credentials.ProfileCredentialsProvider"
        ),
        # A lost connection is retried for about a minute, not the default's twenty: a stream whose store is
        # gone fails its batch and is restarted by its supervisor with a clear error.
        "spark.hadoop.fs.s3a.attempts.maximum": "5",
        "spark.hadoop.fs.s3a.retry.limit": "5",
        "spark.delta.logStore.s3a.impl": "lakehouse.spark.S3ConditionalPutLogStore",
    }


def rmtree(path: Path | UPath) -> None:
    """Remove the directory PATH and everything under it, local or on the object store."""
    import shutil

    if isinstance(path, Path):
        shutil.rmtree(path)
    else:
        path.fs.rm(path.path, recursive=True)
