"""Benchmark: writing gold changes to Redis, pipelined (what the serving stream does) against one round trip
per command (what one writes first), on a private redis-server.

    .venv/bin/python -m tests.bench.serving [--rows 20000] [--repeat 3]

Rows are synthetic gold rows of each served table (merchant minutes, device minutes, page minutes,
fraud alerts), applied with ``lakehouse.serving.apply_changes``:

- pipelined: ``CHUNK_SIZE`` (500) commands per round trip, the serving stream's setting;
- baseline:  chunk size 1, so every command (HSET, EXPIRE, a Lua call) is its own round trip;
- replay:    the same batch applied again, pipelined (idempotent: nothing changes, the Lua
             scripts still run, so this is the cost of a replayed micro-batch).

Each run starts on an empty database; the figure is rows per second, mean of --repeat runs.
Redis's memory per 10,000 merchant minutes is reported too. Numbers only; it asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from lakehouse import serving
from tests.unit.conftest import answers, free_port, private_redis_settings, start_private_redis

T0 = datetime(2026, 11, 26, 10, 0)


def rows(n: int) -> dict[str, list[dict[str, Any]]]:
    """N rows per served table, shaped like gold's."""
    merchants = [
        {
            "merchant_id": f"m-{i % 500:04d}",
            "window_start": T0 + timedelta(minutes=i // 500),
            "tx_count": 3 + i % 7,
            "amount_sum": 91.5 + i,
            "amount_avg": 30.5,
            "amount_max": 99.99,
            "flagged_count": i % 3,
        }
        for i in range(n)
    ]
    devices = [
        {
            "device_id": f"dev-{i % 200:04d}",
            "sensor_type": ("temperature", "humidity", "pressure", "vibration")[i % 4],
            "window_start": T0 + timedelta(minutes=i // 800),
            "readings": 6,
            "value_sum": 129.0,
            "value_avg": 21.5,
            "value_min": 20.1,
            "value_max": 23.0,
            "anomalies": 0,
        }
        for i in range(n)
    ]
    pages = [
        {"page": f"/product/{i % 300}", "window_start": T0 + timedelta(minutes=i // 300), "views": 1 + i % 40}
        for i in range(n)
    ]
    alerts = [
        {
            "event_id": f"e-{i:08d}",
            "event_time": T0 + timedelta(seconds=i),
            "user_id": f"u-{i % 1000:05d}",
            "card_token": f"tok-{i % 1500}",
            "merchant_id": f"m-{i % 500:04d}",
            "amount": 1.99,
            "rules": ["card_testing", "velocity"],
            "score": 0.7,
            "detected_at": T0 + timedelta(seconds=i + 30),
        }
        for i in range(n // 10)  # alerts are rarer than minutes
    ]
    return {"merchant_minute": merchants, "device_minute": devices, "page_minute": pages, "fraud_alerts": alerts}


def timed(fn: Callable[[], None], reset: Callable[[], None], repeat: int) -> float:
    """Mean seconds of FN over REPEAT runs, each after RESET."""
    spent = []
    for _ in range(repeat):
        reset()
        t0 = time.perf_counter()
        fn()
        spent.append(time.perf_counter() - t0)
    return statistics.mean(spent)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000, help="rows per minute table (alerts: a tenth)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (make setup installs it)")
    data = rows(args.rows)
    total = sum(len(v) for v in data.values())
    with tempfile.TemporaryDirectory() as tmp:
        s = private_redis_settings(Path(tmp), free_port())  # TLS and ACL users, as the stack's Redis
        proc = start_private_redis(s)
        try:
            if not answers(s, proc):
                raise SystemExit(f"redis-server did not answer; see {s.state_dir / 'redis' / 'redis.log'}")
            r = serving.connect(s, role="admin")
            version = r.info("server")["redis_version"]

            def apply(chunk: int) -> Callable[[], None]:
                def run() -> None:
                    for table, batch in data.items():
                        serving.apply_changes(r, table, batch, chunk_size=chunk)

                return run

            pipelined = timed(apply(serving.CHUNK_SIZE), r.flushall, args.repeat)
            baseline = timed(apply(1), r.flushall, args.repeat)
            replay = timed(apply(serving.CHUNK_SIZE), lambda: None, args.repeat)  # Redis already holds the batch
            r.flushall()
            before = int(r.info("memory")["used_memory"])
            sample = data["merchant_minute"][:10_000]
            serving.apply_changes(r, "merchant_minute", sample)
            per_10k = (int(r.info("memory")["used_memory"]) - before) * 10_000 / len(sample)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    print(
        f"Redis {version} on loopback, {total:,} rows per run ({args.rows:,} per minute table), mean of {args.repeat}"
    )
    print("| write | seconds | rows/s | vs baseline |\n|---|---:|---:|---:|")
    for name, seconds in (
        ("one round trip per command (baseline)", baseline),
        (f"pipelined, {serving.CHUNK_SIZE} commands per round trip", pipelined),
        ("the same batch replayed (pipelined, no change)", replay),
    ):
        print(f"| {name} | {seconds:.2f} | {total / seconds:,.0f} | {baseline / seconds:.1f}x |")
    print(f"memory: {per_10k / 1024 / 1024:.1f} MiB per 10,000 merchant-minute hashes")


if __name__ == "__main__":
    main()
