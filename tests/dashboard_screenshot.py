"""Regenerate the README's pictures of the dashboards from the running stack.

    .venv/bin/python -m tests.dashboard_screenshot [--out docs/img] [UID ...]

Needs the stack up with data in it (after `make demo`) and Chromium (`make setup` installs it).
A picture is kept only if every panel answered without an error and the PNG is not blank.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from lakehouse.dashboards import DASHBOARDS
from lakehouse.settings import PROJECT_ROOT, get_settings
from tests import ui_snapshot as ui


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.dashboard_screenshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("uids", nargs="*", default=[d.uid for d in DASHBOARDS])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "img")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args(argv)
    s = get_settings()
    failed = 0
    for uid in args.uids:
        out = args.out / f"dashboard-{uid.removeprefix('lakehouse-')}.png"
        dom = ui.snapshot(
            f"{s.dashboard_url}/?dashboard={uid}", out, wait_ms=12_000, width=args.width, height=args.height
        )
        errors = re.findall(rf'data-panel="{uid}/([^"]+)" data-state="error"', dom)
        if errors or ui.png_stats(out).looks_blank:
            print(f"{uid}: not kept (panels in error: {errors or 'none'}; blank: {ui.png_stats(out).looks_blank})")
            out.unlink(missing_ok=True)
            failed += 1
        else:
            print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
