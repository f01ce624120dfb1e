"""Regenerate the docs' picture of the Dagster asset graph from the running stack.

    .venv/bin/python -m tests.ui_screenshot --out docs/img/dagster-asset-graph.png

Needs the stack up (`lakehouse up`) and Chromium (`make setup` installs Debian's package).
The global lineage page is rendered by headless Chromium with every asset group expanded,
and the picture is kept only if the graph drew every asset and the PNG is not blank.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lakehouse.services.dagster_api import code_locations
from lakehouse.settings import PROJECT_ROOT, SettingsError, get_settings
from tests import ui_snapshot as ui


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.ui_screenshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "img" / "dagster-asset-graph.png")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1100, help="at 1600x1100 the whole graph fits, labels legible")
    parser.add_argument("--wait-ms", type=int, default=15_000, help="Chromium's virtual time budget for the page")
    args = parser.parse_args(argv)

    try:
        s = get_settings()
        chromium = ui.find_chromium()
    except (SettingsError, ui.ChromiumMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        locations = {loc["name"]: loc["status"] for loc in code_locations(s)}
    except OSError as exc:  # requests' ConnectionError is an OSError
        print(
            f"error: the Dagster webserver at {s.dagster_url} does not answer ({exc}); run `lakehouse up`",
            file=sys.stderr,
        )
        return 1
    if locations.get("lakehouse") != "LOADED":
        print(f"error: code location 'lakehouse' is not loaded: {locations}", file=sys.stderr)
        return 1

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "graph.png"
        dom, assets = ui.lineage_snapshot(s, png, width=args.width, height=args.height, wait_ms=args.wait_ms)
        missing = ui.missing_from_lineage(dom, assets)
        stats = ui.png_stats(png)
        if missing or stats.looks_blank:
            print(f"error: not writing {args.out}: missing {missing}; {stats}", file=sys.stderr)
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, args.out)
    print(
        f"{args.out}: {stats.width}x{stats.height}, {stats.size_bytes} bytes, {len(assets)} assets, "
        f"{ui.chromium_version(chromium)}, {time.monotonic() - t0:.1f}s"
    )
    print(f"page: {ui.lineage_url(s, assets)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
