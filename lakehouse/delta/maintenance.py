"""Delta table maintenance: compaction and Z-order, VACUUM, checkpoints.

Every function takes a SparkSession and a table spec (or the settings) and returns an
:class:`OpResult`: what ran, on which table, how many attempts it took and Delta's own
numbers, as a flat JSON-serialisable ``metrics`` dict (``spark_apps/maintenance.py`` turns
each into a Dagster observation).

Safe while the streams write:

- every operation retries Delta's optimistic-concurrency conflicts (matched by the Java
  exception's class name, see :func:`lakehouse.delta.guards.conflict_name`) with exponential backoff and a bounded
  number of attempts; any other error propagates unchanged;
- OPTIMIZE and VACUUM never change what a reader sees; VACUUM keeps removed files for the
  table's ``delta.deletedFileRetentionDuration`` unless explicitly forced;
- row deletes (a replay) go through :func:`lakehouse.delta.guards.assert_not_bronze` first: bronze, the raw
  record of what Kafka delivered, is never deleted from or overwritten.

Known interaction: OPTIMIZE rewrites files a concurrent gold MERGE may have read, so that
MERGE (in the refine stream, not here) can fail with ``ConcurrentAppendException``; the
stream retries its micro-batch, whose writes are idempotent.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.delta.guards import DEFAULT_RETRY, Attempts, RetryPolicy, retry_on_conflict
from lakehouse.tables import TableSpec

if TYPE_CHECKING:
    from lakehouse.settings import LakePath

__all__ = [
    "FileStats",
    "MaintenanceError",
    "MetricValue",
    "OpResult",
    "RetentionTooShortError",
    "TableNotFoundError",
    "checkpoint",
    "optimize",
    "parse_interval_hours",
    "rekey",
    "table_exists",
    "table_files",
    "table_retention_hours",
    "vacuum",
    "zorder_columns",
]

log = logging.getLogger(__name__)

MetricValue = str | int | float | bool | None

DELTA_DEFAULT_RETENTION_HOURS = 168.0  # Delta's default delta.deletedFileRetentionDuration: 1 week
_RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
_LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
_VACUUM_LOGGING = "spark.databricks.delta.vacuum.logging.enabled"
_conf_lock = threading.RLock()  # session conf changes of this module, one at a time


# -- errors -----------------------------------------------------------------------------
class MaintenanceError(RuntimeError):
    """A maintenance operation could not run or did not do what it must."""


class RetentionTooShortError(MaintenanceError, ValueError):
    """VACUUM was asked to keep removed files for less than the table's retention, without force."""


class TableNotFoundError(MaintenanceError, FileNotFoundError):
    """No Delta table at the spec's location (yet)."""


# -- results ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FileStats:
    num_files: int
    size_bytes: int


@dataclass(frozen=True)
class OpResult:
    table: str  # "gold.merchant_minute"
    asset: str  # "gold/merchant_minute"
    operation: str  # optimize | vacuum | checkpoint | prune
    attempts: int
    duration_s: float
    metrics: dict[str, MetricValue] = field(default_factory=dict)

    def message(self) -> dict[str, MetricValue]:
        """The payload of one Pipes message (the orchestrator makes it an AssetObservation)."""
        return {
            "asset": self.asset,
            "operation": self.operation,
            **self.metrics,
            "attempts": self.attempts,
            "duration_s": self.duration_s,
        }


# -- table facts ------------------------------------------------------------------------
def table_exists(spark: SparkSession, path: str) -> bool:
    return bool(DeltaTable.isDeltaTable(spark, path))


def _require(spark: SparkSession, spec: TableSpec, path: str) -> None:
    if not table_exists(spark, path):
        raise TableNotFoundError(f"{spec.full_name}: no Delta table at {path} (has its stream run yet?)")


def _detail(spark: SparkSession, path: str) -> dict[str, Any]:
    row = DeltaTable.forPath(spark, path).detail().first()
    if row is None:
        raise MaintenanceError(f"DESCRIBE DETAIL returned nothing for {path}")
    return row.asDict(recursive=True)


def _files(detail: Mapping[str, Any]) -> FileStats:
    return FileStats(num_files=int(detail["numFiles"] or 0), size_bytes=int(detail["sizeInBytes"] or 0))


def table_files(spark: SparkSession, path: str) -> FileStats:
    """Live data files and their total size in the current version (DESCRIBE DETAIL)."""
    return _files(_detail(spark, path))


def _version(spark: SparkSession, path: str) -> int:
    row = DeltaTable.forPath(spark, path).history(1).select("version").first()
    if row is None:
        raise MaintenanceError(f"no commits in {path}")
    return int(row[0])


def _commits_after(spark: SparkSession, path: str, version: int, operations: set[str]) -> list[dict[str, Any]]:
    """Commits newer than ``version`` with one of ``operations``, oldest first."""

    rows = (
        DeltaTable.forPath(spark, path)
        .history(200)
        .where((F.col("version") > version) & F.col("operation").isin(*operations))
        .orderBy("version")
        .collect()
    )
    return [r.asDict(recursive=True) for r in rows]


def _sql_path(path: str) -> str:
    return "delta.`" + path.replace("`", "``") + "`"


_INTERVAL_UNITS_H = {
    "week": 168.0,
    "day": 24.0,
    "hour": 1.0,
    "minute": 1 / 60,
    "second": 1 / 3600,
    "millisecond": 1 / 3_600_000,
    "microsecond": 1 / 3_600_000_000,
}
_INTERVAL_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(" + "|".join(_INTERVAL_UNITS_H) + r")s?\b", re.IGNORECASE)


def parse_interval_hours(value: str) -> float:
    """Hours in a Delta interval property, e.g. ``"interval 7 days"`` -> 168.0."""
    text = value.strip()
    body = re.sub(r"^interval\s+", "", text, flags=re.IGNORECASE)
    parts = _INTERVAL_PART.findall(body)
    if not parts or _INTERVAL_PART.sub("", body).strip():
        raise ValueError(f"cannot read {value!r} as an interval (expected e.g. 'interval 7 days')")
    return sum(float(n) * _INTERVAL_UNITS_H[unit.lower()] for n, unit in parts)


def table_retention_hours(spark: SparkSession, spec: TableSpec, lake_dir: LakePath) -> float:
    """The table's delta.deletedFileRetentionDuration in hours: the live table's, else the spec's, else Delta's."""
    return _retention_hours(spec, _detail(spark, spec.path(lake_dir)))


def _retention_hours(spec: TableSpec, detail: Mapping[str, Any]) -> float:
    key = "delta.deletedFileRetentionDuration"
    live = (detail.get("properties") or {}).get(key)
    declared = spec.properties.get(key)
    value = live or (declared.value if declared else None)
    return parse_interval_hours(value) if value else DELTA_DEFAULT_RETENTION_HOURS


@contextmanager
def _session_conf(spark: SparkSession, values: Mapping[str, str]) -> Iterator[None]:
    """Set session confs for the duration of one call, then put back exactly what was there."""
    with _conf_lock:
        previous = {k: spark.conf.get(k, None) for k in values}
        try:
            for k, v in values.items():
                spark.conf.set(k, v)
            yield
        finally:
            for k, old in previous.items():
                if old is None:
                    spark.conf.unset(k)
                else:
                    spark.conf.set(k, old)


def _file_metrics(before: FileStats, after: FileStats) -> dict[str, int]:
    return {
        "files_before": before.num_files,
        "files_after": after.num_files,
        "bytes_before": before.size_bytes,
        "bytes_after": after.size_bytes,
    }


def _result(spec: TableSpec, operation: str, started: float, attempts: Attempts, metrics: dict[str, Any]) -> OpResult:
    return OpResult(
        table=spec.full_name,
        asset=spec.relative_path,
        operation=operation,
        attempts=attempts.count,
        duration_s=round(time.monotonic() - started, 3),
        metrics={**metrics, "conflicts": ",".join(attempts.conflicts)},
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# -- OPTIMIZE ---------------------------------------------------------------------------
_NO_MINMAX_TYPES = ("BinaryType", "BooleanType", "ArrayType", "MapType", "StructType", "VariantType")


def zorder_columns(spark: SparkSession, spec: TableSpec, lake_dir: LakePath) -> tuple[list[str], dict[str, str]]:
    """The spec's keys Delta can Z-order the live table by, and each excluded key with the reason.

    Delta refuses partition columns, and columns it keeps no min/max statistics for: outside
    ``delta.dataSkippingStatsColumns`` when set, else beyond the first
    ``delta.dataSkippingNumIndexedCols`` (32) data columns, or of a type without min/max.
    """
    path = spec.path(lake_dir)
    return _zorder_columns(spark, spec, path, _detail(spark, path))


def _zorder_columns(
    spark: SparkSession, spec: TableSpec, path: str, detail: Mapping[str, Any]
) -> tuple[list[str], dict[str, str]]:
    props: dict[str, str] = detail.get("properties") or {}
    partitions = set(detail.get("partitionColumns") or [])
    schema = spark.read.format("delta").load(path).schema
    data_fields = [f for f in schema.fields if f.name not in partitions]
    if props.get("delta.dataSkippingStatsColumns"):
        wanted = {c.strip().strip("`") for c in props["delta.dataSkippingStatsColumns"].split(",")}
        with_stats = {f.name for f in data_fields if f.name in wanted}
        why_not = "not in delta.dataSkippingStatsColumns"
    else:
        n = int(props.get("delta.dataSkippingNumIndexedCols", "32"))
        with_stats = {f.name for f in (data_fields if n < 0 else data_fields[:n])}
        why_not = f"beyond the first {n} columns Delta collects statistics for (delta.dataSkippingNumIndexedCols)"
    types = {f.name: type(f.dataType).__name__ for f in schema.fields}
    chosen: list[str] = []
    excluded: dict[str, str] = {}
    for key in spec.keys:
        if key not in types:
            excluded[key] = "not a column of the table"
        elif key in partitions:
            excluded[key] = "partition column (Delta refuses to Z-order by one; partitions already cluster it)"
        elif key not in with_stats:
            excluded[key] = why_not
        elif types[key] in _NO_MINMAX_TYPES:
            excluded[key] = f"{types[key]}: Delta keeps no min/max statistics for it"
        else:
            chosen.append(key)
    return chosen, excluded


def optimize(
    spark: SparkSession,
    spec: TableSpec,
    lake_dir: LakePath,
    zorder: bool = True,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> OpResult:
    """Bin-packing compaction; for gold tables (not the internal ones) Z-ordered by the table's keys.

    Changes no data (``dataChange=false``): readers and streams reading the table see nothing new.
    Z-order skips keys Delta refuses (see :func:`zorder_columns`) and a table of fewer than 2 files
    (Delta would rewrite even a single file).
    """
    started = time.monotonic()
    path = spec.path(lake_dir)
    _require(spark, spec, path)
    detail = _detail(spark, path)
    before, version_before = _files(detail), _version(spark, path)
    cols: list[str] = []
    excluded: dict[str, str] = {}
    zorder_skipped = ""
    if zorder and spec.layer == "gold":
        cols, excluded = _zorder_columns(spark, spec, path, detail)
        for col, why in excluded.items():
            log.warning("%s: not Z-ordering by %s: %s", spec.full_name, col, why)
        if cols and before.num_files < 2:
            # Z-ordering rewrites every file, even a lone one: no gain, and a rewrite a running MERGE could lose to
            zorder_skipped, cols = f"{before.num_files} file(s): nothing to cluster", []

    def run() -> dict[str, Any]:
        builder = DeltaTable.forPath(spark, path).optimize()
        out = builder.executeZOrderBy(*cols) if cols else builder.executeCompaction()
        row = out.first()
        return dict(row.asDict(recursive=True).get("metrics") or {}) if row is not None else {}

    attempts = Attempts()
    m = retry_on_conflict(run, what=f"OPTIMIZE {spec.full_name}", policy=retry, attempts=attempts)
    after = table_files(spark, path)
    commits = _commits_after(spark, path, version_before, {"OPTIMIZE"})
    added, removed = m.get("filesAdded") or {}, m.get("filesRemoved") or {}
    return _result(
        spec,
        "optimize",
        started,
        attempts,
        {
            **_file_metrics(before, after),
            "version_before": version_before,
            "commit_version": commits[-1]["version"] if commits else None,
            "zorder_by": ",".join(cols),
            "zorder_excluded": "; ".join(f"{c}: {why}" for c, why in excluded.items()),
            "zorder_skipped": zorder_skipped,
            "numFilesAdded": _int(m.get("numFilesAdded")),
            "numFilesRemoved": _int(m.get("numFilesRemoved")),
            "numBytesAdded": _int(added.get("totalSize")),
            "numBytesRemoved": _int(removed.get("totalSize")),
            "partitionsOptimized": _int(m.get("partitionsOptimized")),
            "numBatches": _int(m.get("numBatches")),
            "totalConsideredFiles": _int(m.get("totalConsideredFiles")),
            "totalFilesSkipped": _int(m.get("totalFilesSkipped")),
        },
    )


# -- re-encryption under the current master key --------------------------------------------
def rekey(
    spark: SparkSession,
    spec: TableSpec,
    lake_dir: LakePath,
    current_key: str,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> OpResult:
    """Rewrite the live files of an encrypted table that an older master key protects, or none.

    After a key rotation new files use the new key; this rewrites the older ones (and plain files
    written before the table's columns were encrypted), per partition holding any, with OPTIMIZE
    Z-ordered by the table's last key column: the same rows (``dataChange=false``), so readers and
    streams see nothing new, and allowed on bronze, which is append-only.
    Once VACUUM has removed the replaced files, nothing needs the old key. A table without encrypted
    columns, or whose live files all use ``current_key``, is left alone.
    """
    from lakehouse.delta.encryption import master_keys

    started = time.monotonic()
    path = spec.path(lake_dir)
    _require(spark, spec, path)
    version_before = _version(spark, path)
    before = table_files(spark, path)
    root = lake_dir / spec.layer / spec.name  # local, or on the object store (with its credentials)
    root_path = PurePosixPath(urlparse(path).path)

    def stale_groups() -> dict[str, int]:
        """Partition predicate ("" for the whole table) -> live files needing another key than the current one."""
        groups: dict[str, int] = {}
        for uri in spark.read.format("delta").load(path).inputFiles():
            relative = PurePosixPath(unquote(urlparse(uri).path)).relative_to(root_path)
            if master_keys(root / str(relative)) != {current_key}:  # an older key, or plain (before encryption)
                directories = relative.parts[:-1]  # partition directories: col=value
                predicate = " AND ".join(
                    f"`{col}` = '{value}'" for col, value in (d.split("=", 1) for d in directories)
                )
                groups[predicate] = groups.get(predicate, 0) + 1
        return groups

    groups = stale_groups() if spec.encrypted else {}
    attempts = Attempts()
    rewritten = 0
    for predicate, count in sorted(groups.items()):

        def run(predicate: str = predicate) -> dict[str, Any]:
            # OPTIMIZE ... ZORDER rewrites every file it selects, even a lone one (plain compaction skips
            # those), as dataChange=false, which Delta allows on an append-only table (an overwrite it refuses).
            builder = DeltaTable.forPath(spark, path).optimize()
            out = (builder.where(predicate) if predicate else builder).executeZOrderBy(spec.keys[-1])
            row = out.first()
            return dict(row.asDict(recursive=True).get("metrics") or {}) if row is not None else {}

        what = f"re-encrypt {spec.full_name} {predicate or '(whole table)'}"
        retry_on_conflict(run, what=what, policy=retry, attempts=attempts)
        rewritten += count
    left = sum(stale_groups().values()) if spec.encrypted else 0
    commits = _commits_after(spark, path, version_before, {"OPTIMIZE"})
    return _result(
        spec,
        "rekey",
        started,
        attempts,
        {
            **_file_metrics(before, table_files(spark, path)),
            "current_key": current_key,
            "encrypted_columns": ",".join(spec.encrypted),
            "files_rewritten": rewritten,
            "partitions_rewritten": len(groups),
            "files_not_on_current_key": left,
            "version_before": version_before,
            "commit_version": commits[-1]["version"] if commits else None,
        },
    )


# -- VACUUM -----------------------------------------------------------------------------
def vacuum(
    spark: SparkSession,
    spec: TableSpec,
    lake_dir: LakePath,
    retention_hours: float | None = None,
    force: bool = False,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> OpResult:
    """Delete files the table stopped referencing more than ``retention_hours`` ago.

    Default: the table's ``delta.deletedFileRetentionDuration`` (7 days), the safe minimum.
    Less is refused (:class:`RetentionTooShortError`) unless ``force``: a reader, a paused
    stream or time travel still using such a file would fail. With ``force``, Delta's own check
    (``spark.databricks.delta.retentionDurationCheck.enabled``) is off for this call only.
    """
    started = time.monotonic()
    path = spec.path(lake_dir)
    _require(spark, spec, path)
    detail = _detail(spark, path)
    safe = _retention_hours(spec, detail)
    hours = safe if retention_hours is None else float(retention_hours)
    if hours < 0:
        raise ValueError(f"VACUUM {spec.full_name}: retention must be >= 0 hours, not {hours:g}")
    if hours < safe and not force:
        raise RetentionTooShortError(
            f"refusing to VACUUM {spec.full_name} keeping removed files only {hours:g} h: the table keeps them "
            f"{safe:g} h (delta.deletedFileRetentionDuration), the safe minimum, so that readers, paused streams "
            f"and time travel never lose a file they still need. Use at least {safe:g} h, or force (--force) "
            "when nothing reads or writes the table."
        )
    before, version_before = _files(detail), _version(spark, path)
    conf = {_LISTING_PARALLELISM: str(max(2, spark.sparkContext.defaultParallelism))}
    if spark.conf.get(_LISTING_PARALLELISM, None) is not None:
        conf = {}  # set on purpose by whoever built the session: keep it
    if hours < safe:
        conf[_RETENTION_CHECK] = "false"
    logged = (spark.conf.get(_VACUUM_LOGGING, None) or "true").lower() != "false"

    def run() -> int | None:
        with _session_conf(spark, conf):
            planned = None
            if not logged:  # no VACUUM START/END commits to read the counts from: count first
                planned = spark.sql(f"VACUUM {_sql_path(path)} RETAIN {hours!r} HOURS DRY RUN").count()
            DeltaTable.forPath(spark, path).vacuum(hours).collect()
            return planned

    attempts = Attempts()
    planned = retry_on_conflict(run, what=f"VACUUM {spec.full_name}", policy=retry, attempts=attempts)
    commits = _commits_after(spark, path, version_before, {"VACUUM START", "VACUUM END"})
    start = next((c["operationMetrics"] or {} for c in reversed(commits) if c["operation"] == "VACUUM START"), {})
    end = next((c["operationMetrics"] or {} for c in reversed(commits) if c["operation"] == "VACUUM END"), {})
    after = table_files(spark, path)
    deleted = _int(end.get("numDeletedFiles"))
    return _result(
        spec,
        "vacuum",
        started,
        attempts,
        {
            **_file_metrics(before, after),
            "retention_hours": hours,
            "safe_retention_hours": safe,
            "forced": hours < safe,
            "files_deleted": deleted if deleted is not None else planned,
            "bytes_deleted": _int(start.get("sizeOfDataToDelete")),
            "numFilesToDelete": _int(start.get("numFilesToDelete")),
            "numDeletedFiles": deleted,
            "numVacuumedDirectories": _int(end.get("numVacuumedDirectories")),
        },
    )


# -- checkpoint -------------------------------------------------------------------------
def _jvm(spark: SparkSession) -> Any:
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:
        raise MaintenanceError("writing a Delta checkpoint needs a classic (py4j) SparkSession, not Spark Connect")
    return jvm


def _checkpoint_files(spark: SparkSession, path: str, version: int) -> list[tuple[str, int]]:
    jvm = _jvm(spark)
    hadoop_conf = spark._jsparkSession.sessionState().newHadoopConf()  # type: ignore[attr-defined]
    pattern = jvm.org.apache.hadoop.fs.Path(f"{path}/_delta_log/{version:020d}.checkpoint*")
    statuses = pattern.getFileSystem(hadoop_conf).globStatus(pattern) or []
    return sorted((str(st.getPath().getName()), int(st.getLen())) for st in statuses)


def checkpoint(
    spark: SparkSession, spec: TableSpec, lake_dir: LakePath, *, retry: RetryPolicy = DEFAULT_RETRY
) -> OpResult:
    """Write a Delta checkpoint of the table's current version (``_delta_log/<v>.checkpoint.parquet``).

    delta-spark 4.4 has no public API for it: this calls the JVM ``DeltaLog``
    (``update()`` for the latest snapshot, then ``checkpoint(snapshot, None)``), the same code
    Delta runs every ``delta.checkpointInterval`` commits, and checks that the file exists.
    """
    started = time.monotonic()
    path = spec.path(lake_dir)
    _require(spark, spec, path)
    before = table_files(spark, path)
    jvm = _jvm(spark)

    def run() -> int:
        none = jvm.scala.Option.apply(None)
        delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)  # type: ignore[attr-defined]
        snapshot = delta_log.update(False, none, none)
        delta_log.checkpoint(snapshot, none)
        return int(snapshot.version())

    attempts = Attempts()
    version = retry_on_conflict(run, what=f"checkpoint {spec.full_name}", policy=retry, attempts=attempts)
    files = _checkpoint_files(spark, path, version)
    if not files:
        raise MaintenanceError(
            f"checkpoint of {spec.full_name} at version {version}: no _delta_log/{version:020d}.checkpoint* "
            f"file in {path} afterwards"
        )
    return _result(
        spec,
        "checkpoint",
        started,
        attempts,
        {
            **_file_metrics(before, before),
            "checkpoint_version": version,
            "checkpoint_files": ",".join(name for name, _ in files),
            "checkpoint_bytes": sum(size for _, size in files),
        },
    )
