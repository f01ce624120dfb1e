"""maintenance: OPTIMIZE (+ Z-order on gold keys), VACUUM and checkpoints; re-encryption after a key rotation.

    spark-submit spark_apps/maintenance.py [--optimize] [--vacuum] [--checkpoint] [--rekey]
        [--tables gold/merchant_minute,silver/payments,...] [--retention-hours H] [--force]
        [--no-zorder] [--master URL]

No operation flag means the first three. ``--tables`` takes layer/name (or layer.name) and defaults
to every table. Per table the order is rekey, optimize, vacuum, checkpoint. ``--rekey`` rewrites the
live files of tables with encrypted columns that an older Parquet master key protects. (The streams keep no
bookkeeping tables: their state is in Spark's state store, pruned by its own timers.)
Safe while the streams run: Delta concurrency conflicts are retried with backoff
(``lakehouse.delta.maintenance``). A table that does not exist yet is skipped.

Each result goes to Dagster as a Pipes message (an AssetObservation there) and into a summary
table on stdout. Exit status 1 when any operation failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.delta import log_check
from lakehouse.delta import maintenance as m
from lakehouse.delta.encryption import current_key
from lakehouse.settings import Settings
from lakehouse.tables import ALL_TABLES, TableSpec
from spark_apps._pipes import Reporter, reporter
from spark_apps._runtime import RunOptions, session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

APP = "maintenance"
OPERATIONS = ("rekey", "optimize", "vacuum", "checkpoint")  # the order they run in, per table
DEFAULT_OPERATIONS = ("optimize", "vacuum", "checkpoint")  # rekey only when asked (after a key rotation)


@dataclass(frozen=True)
class Args:
    operations: tuple[str, ...]
    tables: tuple[TableSpec, ...]
    retention_hours: float | None
    force: bool
    zorder: bool
    master: str | None


def _table(name: str) -> TableSpec:
    wanted = name.strip().strip("/").replace("/", ".")
    for t in ALL_TABLES:
        if t.full_name == wanted:
            return t
    known = ", ".join(t.relative_path for t in ALL_TABLES)
    raise argparse.ArgumentTypeError(f"no table {name!r}; known: {known}")


def parse_args(argv: Sequence[str] | None = None) -> Args:
    ap = argparse.ArgumentParser(prog=f"spark-submit spark_apps/{APP}.py", description=__doc__.split("\n\n")[0])
    for op, what in (
        ("optimize", "bin-packing compaction; gold tables also Z-ordered by their keys"),
        ("vacuum", "delete files unreferenced for longer than the retention"),
        ("checkpoint", "write a Delta checkpoint of the current version"),
        ("rekey", "rewrite encrypted files an older master key protects under the current one (after a rotation)"),
    ):
        ap.add_argument(f"--{op}", action="store_true", help=what)
    ap.add_argument("--tables", help="comma-separated layer/name list (default: every table)")
    ap.add_argument(
        "--retention-hours",
        type=float,
        help="VACUUM retention (default: each table's delta.deletedFileRetentionDuration, 7 days)",
    )
    ap.add_argument("--force", action="store_true", help="allow a VACUUM retention below the table's (unsafe)")
    ap.add_argument("--no-zorder", action="store_true", help="compaction only, even for gold tables")
    ap.add_argument("--master", help="Spark master URL (default: LAKEHOUSE_SPARK_MASTER)")
    a = ap.parse_args(argv)
    chosen = tuple(op for op in OPERATIONS if getattr(a, op))
    try:
        named = [_table(n) for n in a.tables.split(",") if n.strip()] if a.tables else list(ALL_TABLES)
    except argparse.ArgumentTypeError as exc:
        ap.error(str(exc))
    tables = tuple({t.full_name: t for t in named}.values())  # once each, in the given order
    if not tables:
        ap.error("--tables names no table")
    if a.retention_hours is not None and a.retention_hours < 0:
        ap.error("--retention-hours must be >= 0")
    return Args(
        operations=chosen or DEFAULT_OPERATIONS,
        tables=tables,
        retention_hours=a.retention_hours,
        force=bool(a.force),
        zorder=not a.no_zorder,
        master=a.master,
    )


@dataclass(frozen=True)
class Outcome:
    table: TableSpec
    operation: str
    result: m.OpResult | None = None
    error: str | None = None
    skipped: str | None = None


def _run_one(spark: SparkSession, s: Settings, args: Args, spec: TableSpec, op: str) -> m.OpResult:
    runs: dict[str, Callable[[], m.OpResult]] = {
        "optimize": lambda: m.optimize(spark, spec, s.lake_dir, zorder=args.zorder),
        "vacuum": lambda: m.vacuum(spark, spec, s.lake_dir, retention_hours=args.retention_hours, force=args.force),
        "checkpoint": lambda: m.checkpoint(spark, spec, s.lake_dir),
        "rekey": lambda: m.rekey(spark, spec, s.lake_dir, current_key(s)),
    }
    return runs[op]()


def run(spark: SparkSession, s: Settings, args: Args, r: Reporter) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for spec in args.tables:
        ops = list(args.operations)
        if not m.table_exists(spark, spec.path(s.lake_dir)):
            outcomes.append(Outcome(spec, ",".join(ops), skipped="no Delta table yet"))
            continue
        if damage := log_check.problems(Path(spec.path(s.lake_dir))):
            # VACUUM would delete the files a damaged commit added (nothing would reference them any more)
            reason = f"damaged Delta log ({'; '.join(damage)}): left alone; docs/runbook.md, 'A damaged Delta commit'"
            r.log(f"maintenance: {spec.full_name} FAILED: {reason}")
            outcomes.append(Outcome(spec, ",".join(ops), error=reason))
            continue
        for op in ops:
            try:
                result = _run_one(spark, s, args, spec, op)
            except Exception as exc:  # reported, and the exit status says so; the other tables still run
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                reason = f"{type(exc).__name__}: {first}"
                r.log(f"maintenance: {op} {spec.full_name} FAILED: {reason}")
                outcomes.append(Outcome(spec, op, error=reason))
                continue
            r.message(result.message())
            r.log(f"maintenance: {op} {spec.full_name} done in {result.duration_s:.1f}s ({result.attempts} attempt(s))")
            outcomes.append(Outcome(spec, op, result=result))
    return outcomes


def _size(n: object) -> str:
    if not isinstance(n, int):
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _detail(o: Outcome) -> str:
    if o.skipped:
        return f"skipped: {o.skipped}"
    if o.error:
        return f"FAILED: {o.error}"
    assert o.result is not None
    x = o.result.metrics
    if o.operation == "optimize":
        text = f"+{x.get('numFilesAdded')} -{x.get('numFilesRemoved')} files"
        if x.get("zorder_by"):
            text += f", z-order {x['zorder_by']}"
        if x.get("zorder_excluded"):
            text += f" (not: {x['zorder_excluded']})"
        return text
    if o.operation == "vacuum":
        forced = ", FORCED" if x.get("forced") else ""
        return f"deleted {x.get('files_deleted')} files, retention {x.get('retention_hours')} h{forced}"
    if o.operation == "rekey":
        return (
            f"{x.get('files_rewritten')} file(s) in {x.get('partitions_rewritten')} partition(s) re-encrypted with "
            f"{x.get('current_key')}; {x.get('files_not_on_current_key')} left on other keys"
        )
    if o.operation == "checkpoint":
        return f"version {x.get('checkpoint_version')}: {x.get('checkpoint_files')}"
    extra = f", cutoff {x['cutoff']}" if x.get("cutoff") else ""
    return f"{x.get('rows_deleted')} of {x.get('rows_before')} rows deleted{extra}"


def summary(outcomes: Sequence[Outcome]) -> str:
    header = ("table", "operation", "attempts", "seconds", "files", "size", "detail")
    rows = [header]
    for o in outcomes:
        if o.result is None:
            rows.append((o.table.relative_path, o.operation, "-", "-", "-", "-", _detail(o)))
            continue
        x = o.result.metrics
        rows.append(
            (
                o.table.relative_path,
                o.operation,
                str(o.result.attempts),
                f"{o.result.duration_s:.1f}",
                f"{x.get('files_before')} -> {x.get('files_after')}",
                f"{_size(x.get('bytes_before'))} -> {_size(x.get('bytes_after'))}",
                _detail(o),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with reporter() as r:
        spark, s = session(APP, RunOptions(available_now=True, master=args.master))
        try:
            outcomes = run(spark, s, args, r)
        finally:
            spark.stop()
        print(summary(outcomes), flush=True)
        failed = [o for o in outcomes if o.error]
        if failed:
            names = ", ".join(f"{o.operation} {o.table.full_name}" for o in failed)
            print(f"error: {len(failed)} maintenance operation(s) failed: {names}", file=sys.stderr, flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
