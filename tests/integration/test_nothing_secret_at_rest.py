"""Nothing secret where it should not be, on the running stack.

- A card number sent through the whole pipeline (valid, and a near miss the validator quarantines)
  is found in clear only in Kafka's segments (the producers' data, outside the platform's files; a
  deployment encrypts those volumes): not in the lake (bronze and quarantine are Parquet-encrypted,
  their statistics leave the raw columns out), the checkpoints, Redis, the logs, Dagster's storage,
  Trino's or Prometheus' files, or Spark's scratch directories.
- No password or key is in any stack process's arguments or environment, in a log, or in Dagster's
  storage; the rendered configurations that hold one (Trino's internal shared secret, which Trino
  reads only from its config file; the key store password of the JMX exporter in Kafka, likewise)
  are named here, and private to the stack's owner.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
from pyspark.sql import SparkSession

from lakehouse.settings import SECRETS, Settings
from lakehouse.stack import components as stack
from tests.integration.conftest import CardCanary

#: Rendered files allowed to hold a secret in clear (relative to the state directory), and why.
ALLOWED = {
    Path("trino/etc/config.properties"): "trino_shared_secret",  # Trino reads it from its config file only
    # The JMX exporter agent (1.0.1) reads its key store's password from its config file only (0600).
    Path("kafka/jmx-exporter.yml"): "flink_keystore",
}


def _files(root: Path, skip: tuple[Path, ...] = ()) -> Iterator[Path]:
    """Every regular file under ROOT but SKIP; directories that vanish meanwhile (Kafka deletes a topic's
    directory after its deletion, a log rolls) are passed over."""
    for directory, subdirs, names in os.walk(root, onerror=lambda _: None):
        here = Path(directory)
        subdirs[:] = [d for d in subdirs if here / d not in skip]
        for name in names:
            path = here / name
            if path not in skip and path.is_file() and not path.is_symlink():
                yield path


def _holding(needle: bytes, files: Iterator[Path]) -> list[Path]:
    found = []
    for f in files:
        try:
            if needle in f.read_bytes():
                found.append(f)
        except (PermissionError, FileNotFoundError):  # a file deleted while scanning (a log rolled, a compaction)
            continue
    return found


def _spark_scratch() -> list[Path]:
    tmp = Path(tempfile.gettempdir())
    return [p for p in tmp.iterdir() if p.is_dir() and p.name.startswith(("spark-", "blockmgr-"))]


def test_a_card_number_is_in_clear_only_in_kafka(
    stack_lake: Settings, card_canary: CardCanary, spark: SparkSession
) -> None:
    s = stack_lake  # the pipeline has run over the canary's payments (sent with the stack lake's records)
    card, near_miss = card_canary.card, card_canary.near_miss
    needle = card.encode()
    kafka_dir = stack.Kafka(s).workdir
    assert _holding(needle, _files(kafka_dir)), "control: the card number was not found even in Kafka's segments"
    elsewhere = _holding(needle, _files(s.state_dir, skip=(kafka_dir, s.jvm_dir)))
    elsewhere += _holding(needle, (f for d in _spark_scratch() for f in _files(d)))
    assert elsewhere == [], f"a card number in clear outside Kafka: {[str(p) for p in elsewhere]}"

    # ... and it did arrive: silver has its token (once: deduplicated), the near miss is in quarantine with a
    # reason that does not quote it; read through the session's key.
    silver = spark.read.format("delta").load(f"{s.lake_dir}/silver/payments")
    assert silver.where("user_id = 'u-canary' AND card_last4 = '" + card[-4:] + "'").count() == 1
    quarantine = spark.read.format("delta").load(f"{s.lake_dir}/silver/quarantine")
    rows = quarantine.where(f"raw_value LIKE '%{near_miss}%'").collect()
    assert len(rows) == 1
    assert near_miss not in rows[0]["error"]
    assert rows[0]["error"].startswith("card_number: the value (withheld)")


def _secret_values(s: Settings) -> dict[str, bytes]:
    values = {name: s.secret_file(name).read_bytes().strip() for name in SECRETS if s.secret_file(name).exists()}
    values |= {f"parquet master key {f.stem}": f.read_bytes().strip() for f in s.parquet_keys_dir.glob("*.key")}
    assert values, "no secrets found: has setup run?"
    return values


def test_no_secret_in_arguments_environments_logs_or_dagster_storage(lakehouse_stack: Settings) -> None:
    s = lakehouse_stack
    values = _secret_values(s)
    procs: list[psutil.Process] = []
    for component in stack.components(s):
        proc = component.process()
        assert proc is not None, f"{component.name} is not running"
        procs += [proc, *proc.children(recursive=True)]
    leaks: list[str] = []
    for proc in procs:
        try:
            argv = "\0".join(proc.cmdline()).encode()
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            continue
        leaks += [f"argv of {proc.name()} ({proc.pid}): {n}" for n, v in values.items() if v in argv]
        leaks += [f"environment of {proc.name()} ({proc.pid}): {n}" for n, v in values.items() if v in environ]
    for name, value in values.items():
        for f in _holding(value, _files(s.state_dir, skip=(s.secrets_dir, s.jvm_dir, s.lake_dir))):
            rel = f.relative_to(s.state_dir)
            if ALLOWED.get(rel) != name:
                leaks.append(f"file {rel}: {name}")
    assert leaks == []
    assert len(procs) >= len(stack.components(s))
    # Dagster's storage (runs, event logs with each run's config, compute logs) was among the files read.
    runs_db = s.dagster_home / "history" / "runs.db"
    assert runs_db.exists(), f"no Dagster run storage at {runs_db}"
    assert s.state_dir in runs_db.parents
    # The one allowed file is private.
    for rel in ALLOWED:
        assert oct((s.state_dir / rel).stat().st_mode & 0o077) == "0o0", rel
    assert oct(s.state_dir.stat().st_mode & 0o777) == "0o700"
