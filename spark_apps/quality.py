"""quality: the data-quality checks of silver and gold (lakehouse.delta.quality, Great Expectations), as asset checks.

    spark-submit spark_apps/quality.py [--assets silver/payments,gold/fraud_alerts] [--master URL]

Runs ``lakehouse.delta.quality.run_checks`` over the Delta tables under the lake directory, reports
every outcome with ``Reporter.check`` (an asset check in Dagster when launched through Pipes,
nothing otherwise) and prints a summary table. Failing checks are results, not crashes: the
exit code is 0 whenever the checks ran, and non-zero only when they could not (bad arguments,
no Spark, an unexpected error).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from lakehouse.checks import CHECKS, CheckOutcome
from lakehouse.delta.quality import run_checks
from spark_apps._pipes import Reporter, reporter
from spark_apps._runtime import RunOptions, session

APP = "quality"
ASSETS = list(dict.fromkeys(c.asset for c in CHECKS))


def _asset_list(text: str) -> list[str]:
    names = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in ASSETS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown asset(s) {', '.join(unknown)}; known: {', '.join(ASSETS)}")
    if not names:
        raise argparse.ArgumentTypeError("no asset named")
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=f"spark-submit spark_apps/{APP}.py", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--assets",
        type=_asset_list,
        default=None,
        help=f"comma-separated assets to check (default: all): {','.join(ASSETS)}",
    )
    ap.add_argument("--master", help="Spark master URL (default: LAKEHOUSE_SPARK_MASTER)")
    return ap.parse_args(argv)


def pipes_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Pipes takes scalars as they are; a dict or list must be declared JSON explicitly."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, dict | list):
            out[key] = {"raw_value": value, "type": "json"}
        elif value is None:
            out[key] = {"raw_value": None, "type": "null"}
        else:
            out[key] = value
    return out


def _detail(o: CheckOutcome) -> str:
    md = o.metadata
    if "error" in md:
        return str(md["error"])
    if o.name == "reconciliation":
        return f"{md.get('equation', '')}; extra {md.get('extra', 0)}" if md.get("cutoff") else str(md.get("note", ""))
    if o.name == "freshness":
        age = f"{md.get('age_seconds')} s, max {md.get('max_age_seconds')} s"
        return f"newest {md.get('column')} {md.get('newest')} ({age})"
    if o.passed:
        return f"{md.get('rows')} rows"
    failed = "; ".join(md.get("failed_expectations") or [])
    return f"{md.get('unexpected_count')} unexpected of {md.get('rows')} rows: {failed}"


def summary(outcomes: Sequence[CheckOutcome]) -> str:
    """A plain-text table: one line per check, then the totals."""
    header = ("asset", "check", "severity", "result", "detail")
    rows = [
        (o.asset, o.name, o.severity, "pass" if o.passed else "FAIL", _detail(o).replace("\n", " ")) for o in outcomes
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells[:4], widths, strict=True)) + "  " + cells[4]

    lines = [line(header), line([*("-" * w for w in widths), "------"]), *(line(r) for r in rows)]
    failed = [o for o in outcomes if not o.passed]
    errors = sum(1 for o in failed if o.severity == "ERROR")
    lines.append(
        f"{len(outcomes)} checks: {len(outcomes) - len(failed)} passed, {errors} failed (ERROR), "
        f"{len(failed) - errors} failed (WARN)"
    )
    return "\n".join(lines)


def report(outcomes: Sequence[CheckOutcome], r: Reporter) -> None:
    for o in outcomes:
        r.check(o.asset, o.name, passed=o.passed, severity=o.severity, metadata=pipes_metadata(o.metadata))
    r.log(summary(outcomes))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with reporter() as r:
        spark, s = session(APP, RunOptions(available_now=True, master=args.master))
        try:
            r.log(f"{APP}: checking {', '.join(args.assets or ASSETS)} under {s.lake_dir}")
            report(run_checks(spark, s, args.assets), r)
        finally:
            spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
