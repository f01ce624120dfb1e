"""Benchmark: resident memory of the idle local stack, per component.

    .venv/bin/python -m tests.bench.stack_memory [--idle-seconds 60] [--samples 6]

Brings the stack up (or reuses the running one), lets it idle, samples each
component's RSS (process + children) several times and prints min / mean / max,
then the total against the 6 GiB budget of the foundation issue. The configured
JVM heaps are printed beside the figures, since they bound what the JVMs can grow to.
Reports numbers only; it asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

from lakehouse.settings import get_settings
from lakehouse.stack import components as stack

BUDGET_GIB = 6.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle-seconds", type=float, default=60.0, help="idle time before and between samples")
    ap.add_argument("--samples", type=int, default=6)
    args = ap.parse_args()

    s = get_settings()
    states = stack.up(s, log=lambda _m: None)
    print(f"stack: {', '.join(f'{k}={v}' for k, v in states.items())}")
    time.sleep(args.idle_seconds)
    samples: dict[str, list[int]] = {c.name: [] for c in stack.components(s)}
    interval = args.idle_seconds / max(args.samples, 1)
    for i in range(args.samples):
        for c in stack.components(s):
            samples[c.name].append(c.rss_bytes())
        if i < args.samples - 1:
            time.sleep(interval)
    mib = 1024 * 1024
    print(f"\nidle RSS over {args.samples} samples, {interval:.0f}s apart, after {args.idle_seconds:.0f}s idle")
    print(f"{'component':<20}{'min MiB':>10}{'mean MiB':>10}{'max MiB':>10}")
    for name, vals in samples.items():
        print(f"{name:<20}{min(vals) / mib:>10.0f}{statistics.mean(vals) / mib:>10.0f}{max(vals) / mib:>10.0f}")
    totals = [sum(vals[i] for vals in samples.values()) for i in range(args.samples)]
    print(f"{'total':<20}{min(totals) / mib:>10.0f}{statistics.mean(totals) / mib:>10.0f}{max(totals) / mib:>10.0f}")
    print(
        f"\nbudget {BUDGET_GIB:.0f} GiB; peak idle total {max(totals) / 1024**3:.2f} GiB "
        f"({100 * max(totals) / (BUDGET_GIB * 1024**3):.0f}% of budget)"
    )
    print(f"heaps: kafka -Xmx{s.kafka_heap}, trino -Xmx{s.trino_heap}, spark driver {s.spark_driver_memory} (not idle)")
    if any(v == "started" for v in states.values()):
        print("(this run started the stack; `lakehouse down` stops it)")


if __name__ == "__main__":
    main()
