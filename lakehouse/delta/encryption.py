"""Which master key each encrypted Parquet file of the lake needs, read from the files themselves.

Parquet modular encryption (``lakehouse.spark.PiiCryptoFactory``, plaintext-footer mode) stores,
in each file's footer, the key material of every encrypted column and of the footer signature:
JSON naming the master key (``"masterKeyID"``) that wraps the file's data keys. The footer is not
encrypted, so which keys a file needs is readable without any key, and without Spark: that is
what a key rotation checks before a master key may be retired.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from typing import TYPE_CHECKING

from lakehouse.settings import Settings

if TYPE_CHECKING:
    from lakehouse.settings import LakePath
from lakehouse.storage import lake_path
from lakehouse.tables import ALL_TABLES, TableSpec

_MAGIC = b"PAR1"
_MASTER_KEY = re.compile(rb'"masterKeyID"\s*:\s*"([A-Za-z0-9_-]{1,64})"')


class NotParquetError(ValueError):
    """The file is not a plaintext-footer Parquet file (encrypted footer: ``PARE``)."""


def master_keys(file: LakePath) -> set[str]:
    """The master key ids FILE's footer names (empty: the file is not encrypted)."""
    with file.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        if size < 12:
            raise NotParquetError(f"{file}: {size} bytes is too short for Parquet")
        f.seek(size - 8)
        tail = f.read(8)
        (footer_len,) = struct.unpack("<I", tail[:4])
        if tail[4:] != _MAGIC or footer_len > size - 12:
            raise NotParquetError(f"{file}: no Parquet footer (magic {tail[4:]!r})")
        f.seek(size - 8 - footer_len)
        footer = f.read(footer_len)
    return {m.decode() for m in _MASTER_KEY.findall(footer)}


def current_key(s: Settings) -> str:
    """The id of the master key new files are encrypted with (``<secrets>/parquet-keys/current``)."""
    try:
        return (s.parquet_keys_dir / "current").read_text().strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"no Parquet master key in {s.parquet_keys_dir}: run `lakehouse setup`") from None


def encrypted_tables() -> list[TableSpec]:
    return [t for t in ALL_TABLES if t.encrypted]


def key_usage(s: Settings, tables: list[TableSpec] | None = None) -> dict[str, Counter[str]]:
    """Per table: how many Parquet files on disk need each master key ("" counts plain files).

    Every file on disk counts, including those a newer table version no longer references but
    VACUUM has not yet deleted (time travel still reads them).
    """
    out: dict[str, Counter[str]] = {}
    for spec in tables or encrypted_tables():
        root = lake_path(s, spec.path(s.lake_dir))
        usage: Counter[str] = Counter()
        files: list[LakePath] = sorted(root.rglob("*.parquet"), key=str) if root.is_dir() else []
        for file in files:
            if "_delta_log" in file.parts:
                continue
            keys = master_keys(file)
            usage.update(keys or {""})
        out[spec.full_name] = usage
    return out
