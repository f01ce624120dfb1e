"""The dashboards page as a person sees it: rendered by headless Chromium after the pipeline ran.

Every panel must answer without an error (each PromQL and SQL query is run for real, against the
stack's Prometheus, Trino and Redis), and the panels fed by what the pipeline just wrote must draw
data: the Trino panels over gold and silver, and the stream throughput from the metrics the
pipeline's driver pushed while it ran.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from lakehouse.dashboards import DASHBOARDS
from lakehouse.settings import Settings
from tests import ui_snapshot as ui


def _panels(dom: str) -> dict[str, tuple[str, int]]:
    found = {}
    for m in re.finditer(r"<div [^>]*data-panel=\"[^\"]+\"[^>]*>", dom):
        tag = m.group(0)
        name = re.search(r'data-panel="([^"]+)"', tag)
        state = re.search(r'data-state="(\w+)"', tag)
        points = re.search(r'data-points="(\d+)"', tag)
        assert name is not None
        assert state is not None
        found[name.group(1)] = (state.group(1), int(points.group(1)) if points else 0)
    return found


@pytest.fixture(scope="module")
def chromium() -> Path:
    try:
        return ui.find_chromium()
    except ui.RenderError as e:
        pytest.fail(str(e))


def test_every_query_of_every_panel_runs_against_the_real_sources(stack_lake: Settings) -> None:
    s = stack_lake
    errors = {}
    for d in DASHBOARDS:
        for p in d.panels:
            url = f"{s.dashboard_url}/api/panel/{d.uid}/{p.id}"
            answer = requests.get(url, auth=s.dagster_auth("viewer"), verify=str(s.ca_file), timeout=60).json()
            if "error" in answer:
                errors[f"{d.uid}/{p.id}"] = answer["error"]
    assert errors == {}
    # The page refuses strangers (it sits behind the Dagster UI's login).
    assert requests.get(f"{s.dashboard_url}/api/dashboards", verify=str(s.ca_file), timeout=10).status_code == 401


@pytest.mark.parametrize(
    "dashboard", ["lakehouse-pipeline", "lakehouse-clickstream", "lakehouse-iot", "lakehouse-fraud"]
)
def test_a_browser_draws_the_dashboard_with_data(
    stack_lake: Settings, chromium: Path, dashboard: str, tmp_path: Path
) -> None:
    s = stack_lake
    out = tmp_path / f"{dashboard}.png"
    expected_with_data = {
        # Not batch_p95: a quantile of rates has no value when no batch ended between two scrapes in
        # the window (an available-now run of one batch per query), however correct the query.
        # kafka_retention: the broker's own metrics; dagster: the daemon's heartbeat, scraped from the dashboards
        # server; trino_queries: the coordinator's own (these dashboards' SQL runs there)
        "lakehouse-pipeline": {"input_rate", "kafka_retention", "dagster", "trino_queries"},
        "lakehouse-clickstream": {"top_pages", "funnel"},
        "lakehouse-iot": {"anomalies_per_minute", "anomalous_devices"},
        "lakehouse-fraud": {"alerts_per_minute"},
    }[dashboard]

    def ready(dom: str) -> bool:
        panels = {k: v for k, v in _panels(dom).items() if k.startswith(dashboard + "/")}
        return bool(panels) and all(state not in ("loading",) for state, _ in panels.values())

    dom = ui.snapshot(f"{s.dashboard_url}/?dashboard={dashboard}", out, wait_ms=12_000, ready=ready)
    panels = {k.split("/", 1)[1]: v for k, v in _panels(dom).items() if k.startswith(dashboard + "/")}
    definition = next(d for d in DASHBOARDS if d.uid == dashboard)
    assert set(panels) == {p.id for p in definition.panels}
    assert {k: v for k, v in panels.items() if v[0] == "error"} == {}
    for panel_id in expected_with_data:
        state, points = panels[panel_id]
        assert state == "data", f"{panel_id} drew no data ({state})"
        assert points > 0
    if any(p.kind == "timeseries" and p.id in expected_with_data for p in definition.panels):
        assert "<polyline" in dom, "a time series with data must draw a line"
    stats = ui.png_stats(out)
    assert not stats.looks_blank, f"{out} looks blank: {stats}"
