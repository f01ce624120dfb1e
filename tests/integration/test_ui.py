"""The Dagster UI, rendered by a real browser (headless Chromium from Debian), shows the platform's assets.

The GraphQL tests prove the webserver knows the assets; these prove its React app draws them:
the asset catalog lists every key, and the global lineage graph draws every asset (the dbt groups,
too many to read there, on their own group pages), which is saved as a PNG under the state
directory and must be a real picture, not a blank page.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lakehouse.settings import Settings
from tests import ui_snapshot as ui


def _chromium() -> Path:
    # A failure, not a skip: `make setup` installs Chromium, so its absence is a broken setup.
    try:
        return ui.find_chromium()
    except ui.ChromiumMissing as exc:
        missing = str(exc)
    pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="module")
def defined_assets() -> set[tuple[str, ...]]:
    """Every asset key the code location defines (orchestration/defs)."""
    from orchestration.definitions import defs

    return {tuple(k.path) for k in defs.resolve_asset_graph().get_all_asset_keys()}


@pytest.fixture(scope="module")
def served_assets(lakehouse_stack: Settings, defined_assets: set[tuple[str, ...]]) -> list[ui.UiAsset]:
    assets = ui.dagster_assets(lakehouse_stack)
    served = {a.path for a in assets}
    assert served == defined_assets, (
        "the webserver serves other assets than orchestration/defs defines (stale code location? reload it "
        f"in the UI): only defined {sorted(defined_assets - served)}, only served {sorted(served - defined_assets)}"
    )
    return assets


def test_the_asset_catalog_lists_every_asset(lakehouse_stack: Settings, served_assets: list[ui.UiAsset]) -> None:
    _chromium()
    ui.skip_community_dialog(lakehouse_stack)
    # The catalog is a virtualised list: the window must be tall enough for every row to exist.
    height = max(1100, 400 + 80 * len(served_assets))
    dom = ui.dump_dom(
        ui.catalog_url(lakehouse_stack),
        height=height,
        ready=lambda d: not ui.missing_from_catalog(d, served_assets),
    )
    missing = ui.missing_from_catalog(dom, served_assets)
    assert not missing, f"the asset catalog at {ui.catalog_url(lakehouse_stack)} does not show {missing}"


def test_the_lineage_graph_draws_every_asset_and_is_screenshotted(
    lakehouse_stack: Settings, served_assets: list[ui.UiAsset]
) -> None:
    _chromium()
    out = lakehouse_stack.state_dir / "screenshots" / "dagster-asset-graph.png"
    t0 = time.monotonic()
    dom, assets = ui.lineage_snapshot(lakehouse_stack, out)
    missing = ui.missing_from_lineage(dom, assets)
    assert not missing, f"the lineage graph at {ui.lineage_url(lakehouse_stack, assets)} does not draw {missing}"

    assert out.read_bytes()[:8] == ui.PNG_MAGIC, f"{out} is not a PNG"
    stats = ui.png_stats(out)
    assert (stats.width, stats.height) == (1600, 1100), stats
    assert stats.size_bytes > 30_000, f"{out} is suspiciously small: {stats}"
    assert not stats.looks_blank, f"{out} looks blank (a loading page or an empty graph): {stats}"
    print(
        f"screenshot {out} ({stats.size_bytes} bytes, {stats.distinct_colours} colours) in {time.monotonic() - t0:.1f}s"
    )


@pytest.mark.parametrize("group", ui.OWN_PAGE_GROUPS)
def test_each_dbt_group_page_draws_every_model(
    lakehouse_stack: Settings, served_assets: list[ui.UiAsset], group: str
) -> None:
    _chromium()
    out = lakehouse_stack.state_dir / "screenshots" / f"dagster-group-{group}.png"
    dom, assets = ui.group_snapshot(lakehouse_stack, group, out)
    assert {a.group for a in served_assets} >= {group}
    missing = ui.missing_from_lineage(dom, assets)
    assert not missing, f"the {group} group page at {ui.group_lineage_url(lakehouse_stack, assets[0])} lacks {missing}"
    assert not ui.png_stats(out).looks_blank
