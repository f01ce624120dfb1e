"""The dashboards' one definition, its Grafana JSON, and the server's answers from stand-in sources."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as models

from lakehouse.dashboards import DASHBOARDS, panel
from lakehouse.services import dashboard as server
from lakehouse.services import grafana
from lakehouse.settings import Settings


def test_the_definition_covers_what_on_call_needs_and_fits_the_grid() -> None:
    assert [d.title for d in DASHBOARDS] == ["Pipeline health", "Fraud", "Clickstream", "IoT"]
    for d in DASHBOARDS:
        ids = [p.id for p in d.panels]
        assert len(ids) == len(set(ids)), f"{d.uid}: duplicate panel ids"
        for p in d.panels:
            assert 1 <= p.width <= 24
            assert p.queries
            if p.source == "trino":
                assert "{catalog}." in p.queries[0].text, f"{p.id}: tables must be catalog-qualified"
    sources = {p.source for d in DASHBOARDS for p in d.panels}
    assert sources == {"prometheus", "trino", "redis"}


def test_every_dashboard_becomes_grafana_json_that_grafanas_own_model_reads_back(tmp_path: Path) -> None:
    paths = grafana.write_all(tmp_path, catalog="lake")
    assert [p.name for p in paths] == [f"{d.uid}.json" for d in DASHBOARDS]
    for d, path in zip(DASHBOARDS, paths, strict=True):
        doc = json.loads(path.read_text())
        assert doc["uid"] == d.uid
        assert doc["title"] == d.title
        # Round trip through the SDK's model: every field is one Grafana's schema knows.
        again = json.loads(json.dumps(models.Dashboard.from_json(doc), cls=JSONEncoder, sort_keys=True))
        assert again == doc
        assert len(doc["panels"]) == len(d.panels)
        for spec, p in zip(d.panels, doc["panels"], strict=True):
            assert p["title"] == spec.title
            assert p["gridPos"]["w"] == spec.width
            kind, uid = grafana.DATASOURCES[spec.source]
            assert p["datasource"] == {"type": kind, "uid": uid}
            assert len(p["targets"]) == len(spec.queries)
            for q, t in zip(spec.queries, p["targets"], strict=True):
                if spec.source == "prometheus":
                    assert t["expr"] == q.text
                elif spec.source == "trino":
                    assert t["rawSQL"] == q.text.replace("{catalog}", "lake")
                    assert "{catalog}" not in t["rawSQL"]
                else:
                    assert t["keyName"] == q.text


def _settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path)


def test_a_prometheus_panel_becomes_named_series(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        "query_range": {
            "result": [
                {"metric": {"query": "bronze_iot", "app": "bronze"}, "values": [[100, "2.5"], [115, "NaN"], [130, "3"]]}
            ]
        }
    }
    monkeypatch.setattr(server, "_prometheus", lambda s, path, params: answers[path])
    data = server.panel_data(_settings(tmp_path), "lakehouse-pipeline", "input_rate", minutes=15)
    assert data == {
        "kind": "timeseries",
        "unit": "rows/s",
        "series": [{"name": "bronze_iot", "points": [[100.0, 2.5], [115.0, None], [130.0, 3.0]]}],
    }


def test_a_source_that_fails_is_an_error_on_its_panel_not_a_server_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(s: Settings, path: str, params: dict[str, Any]) -> Any:
        raise server.PanelError("Prometheus at https://127.0.0.1:9090 did not answer: refused")

    monkeypatch.setattr(server, "_prometheus", down)
    data = server.panel_data(_settings(tmp_path), "lakehouse-pipeline", "heartbeat")
    assert data == {"kind": "stat", "error": "Prometheus at https://127.0.0.1:9090 did not answer: refused"}


def _get(app: Any, path: str, query: str = "") -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": query.encode(), "headers": []}
    asyncio.run(app(scope, receive, send))
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def test_the_app_serves_the_page_its_script_and_the_definition_and_nothing_outside(tmp_path: Path) -> None:
    app = server.make_app(_settings(tmp_path))
    status, headers, body = _get(app, "/")
    assert status == 200
    assert b'<script src="/static/dash.js"' in body
    assert "default-src 'self'" in headers["content-security-policy"]
    assert _get(app, "/static/dash.js")[0] == 200
    assert _get(app, "/static/../dashboard.py")[0] == 404
    status, _, body = _get(app, "/api/dashboards")
    assert status == 200
    spec = json.loads(body)
    assert [d["uid"] for d in spec["dashboards"]] == [d.uid for d in DASHBOARDS]
    assert "queries" not in spec["dashboards"][0]["panels"][0]  # the page needs no query text
    assert _get(app, "/api/panel/nope/nope")[0] == 404


def test_panels_are_found_by_dashboard_and_id() -> None:
    assert panel("lakehouse-fraud", "newest_alerts").source == "redis"
    with pytest.raises(KeyError):
        panel("lakehouse-fraud", "input_rate")


def test_dagster_health_for_prometheus_is_each_daemons_heartbeat_age_or_the_webserver_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from lakehouse.services import dagster_api

    daemons = [
        {"daemonType": "SENSOR", "healthy": True, "required": True, "lastHeartbeatTime": 1000.0},
        {"daemonType": "SCHEDULER", "healthy": True, "required": True, "lastHeartbeatTime": 880.5},
        {"daemonType": "FRESHNESS_DAEMON", "healthy": False, "required": False, "lastHeartbeatTime": None},
    ]
    asked: list[tuple[str, str]] = []

    def answers(s: Settings, query: str, variables: Any = None, timeout: float = 10, user: str = "engineer") -> Any:
        asked.append((query, user))
        return {"instance": {"daemonHealth": {"allDaemonStatuses": daemons}}}

    monkeypatch.setattr(dagster_api, "graphql", answers)
    text = server.dagster_metrics(_settings(tmp_path), now=1010.0)
    samples = {
        (m.name, tuple(sorted(x.labels.items()))): x.value
        for m in text_string_to_metric_families(text)
        for x in m.samples
    }
    assert samples == {
        ("lakehouse_dagster_webserver_up", ()): 1.0,
        ("lakehouse_dagster_daemon_heartbeat_age_seconds", (("daemon_type", "SENSOR"), ("required", "true"))): 10.0,
        ("lakehouse_dagster_daemon_heartbeat_age_seconds", (("daemon_type", "SCHEDULER"), ("required", "true"))): 129.5,
        (
            "lakehouse_dagster_daemon_heartbeat_age_seconds",
            (("daemon_type", "FRESHNESS_DAEMON"), ("required", "false")),
        ): float("inf"),
    }
    assert asked == [(dagster_api.DAEMONS, "viewer")]  # the least-privileged user

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("connection refused")

    monkeypatch.setattr(dagster_api, "graphql", refused)
    status, headers, body = _get(server.make_app(_settings(tmp_path)), "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    down = {m.name: [x.value for x in m.samples] for m in text_string_to_metric_families(body.decode())}
    assert down == {"lakehouse_dagster_webserver_up": [0.0]}  # no ages: the daemon rule cannot fire on nothing
