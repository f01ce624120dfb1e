"""`lakehouse keys list|rotate|retire`: the master keys of the encryption of card numbers at rest."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from lakehouse.cli._common import console, err_console, friendly_errors, load_settings


@click.group("keys")
def keys() -> None:
    """Master keys of the Parquet encryption at rest (bronze `value`, quarantine `raw_value`).

    \b
    Rotation, with the streams running:
      lakehouse keys rotate            new files are encrypted with a new master key
      lakehouse maintain --rekey       rewrite the files an older key protects (same rows)
      lakehouse maintain --vacuum      after the tables' retention (7 days): delete the replaced files
      lakehouse keys list              no file on disk names the old key any more
      lakehouse keys retire pii-1      delete it (refused while a file still needs it)
    """


@keys.command("list")
@friendly_errors
def list_keys() -> None:
    """Each master key, which is current, and how many Parquet files on disk need it, per table."""
    from lakehouse.delta.encryption import key_usage
    from lakehouse.stack import secrets

    s = load_settings()
    ids, current = secrets.parquet_keys(s), secrets.current_parquet_key(s)
    usage = key_usage(s)
    table = Table(title=f"Parquet master keys in {s.parquet_keys_dir}")
    table.add_column("table")
    for key_id in ids:
        table.add_column(key_id + (" (current)" if key_id == current else ""), justify="right")
    table.add_column("plain files", justify="right")
    for name, counts in usage.items():
        table.add_row(name, *(str(counts.get(k, 0)) for k in ids), str(counts.get("", 0)))
    console.print(table)
    missing = sorted({k for counts in usage.values() for k in counts if k and k not in ids})
    if missing:
        err_console.print(f"[bold red]files need master keys that are gone:[/] {', '.join(missing)}")
        sys.exit(1)


@keys.command("rotate")
@friendly_errors
def rotate() -> None:
    """Make a new master key current: files written from now on use it. Restart nothing.

    Spark reads the current key's id at every file it writes; the older keys stay, since the files
    they protect still need them: `lakehouse maintain --rekey` rewrites those.
    """
    from lakehouse.stack import secrets

    s = load_settings()
    old = secrets.current_parquet_key(s)
    new = secrets.new_parquet_key(s)
    console.print(f"current Parquet master key: {new} (was {old}); next: `lakehouse maintain --rekey`")


@keys.command("retire")
@click.argument("key_id")
@click.option(
    "--force", is_flag=True, help="Delete it even though files on disk still need it (they become unreadable)."
)
@friendly_errors
def retire(key_id: str, force: bool) -> None:
    """Delete master key KEY_ID once no Parquet file on disk needs it."""
    from lakehouse.delta.encryption import key_usage
    from lakehouse.stack import secrets

    s = load_settings()
    needing = {name: counts[key_id] for name, counts in key_usage(s).items() if counts.get(key_id)}
    if needing and not force:
        where = ", ".join(f"{name} ({n} files)" for name, n in needing.items())
        err_console.print(
            f"[bold red]error:[/] {key_id} still protects files on disk: {where}. Run `lakehouse maintain --rekey`, "
            "then `lakehouse maintain --vacuum` once the replaced files are past the tables' retention."
        )
        sys.exit(1)
    try:
        secrets.retire_parquet_key(s, key_id)
    except ValueError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    console.print(f"retired Parquet master key {key_id}")
