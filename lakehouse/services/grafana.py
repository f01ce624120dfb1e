"""The stack's dashboards as Grafana JSON, for deployments that have Grafana, from the one definition in
``lakehouse.dashboards`` (built with Grafana's own ``grafana-foundation-sdk``).

Datasources are referenced by UID, to be provisioned under these UIDs in Grafana:

- ``lakehouse-prometheus`` (type ``prometheus``): the stack's Prometheus;
- ``lakehouse-trino`` (type ``trino-datasource``, Grafana's Trino plugin): user ``analyst``;
- ``lakehouse-redis`` (type ``redis-datasource``, Grafana's Redis plugin): user ``reader``.

    lakehouse dashboards grafana --out DIR     one <uid>.json per dashboard
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as models

from lakehouse.dashboards import DASHBOARDS, Dashboard, Panel

DATASOURCES = {
    "prometheus": ("prometheus", "lakehouse-prometheus"),
    "trino": ("trino-datasource", "lakehouse-trino"),
    "redis": ("redis-datasource", "lakehouse-redis"),
}
#: Our units as Grafana's unit ids.
UNITS = {"s": "s", "rows/s": "rowsps", "records": "short", "%": "percent"}


class _PluginQuery(cogvariants.Dataquery):
    """A query of a datasource plugin the SDK has no model for (Trino's, Redis'): its JSON as is."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_json(self) -> dict[str, Any]:
        return self.data


class _PluginQueryBuilder(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def build(self) -> cogvariants.Dataquery:
        return _PluginQuery(self.data)


def _ref(source: str) -> models.DataSourceRef:
    kind, uid = DATASOURCES[source]
    return models.DataSourceRef(type_val=kind, uid=uid)


def _targets(p: Panel, catalog: str) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    out: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for i, q in enumerate(p.queries):
        ref_id = chr(ord("A") + i)
        if p.source == "prometheus":
            b = prometheus.Dataquery().expr(q.text).legend_format(q.legend or "__auto").ref_id(ref_id)
            out.append(b.instant() if p.kind in ("stat", "table") else b.range())
        elif p.source == "trino":
            sql = q.text.replace("{catalog}", catalog)
            out.append(
                _PluginQueryBuilder(
                    {
                        "refId": ref_id,
                        "rawSQL": sql,
                        "format": 0 if p.kind == "timeseries" else 1,
                        "datasource": _ref_json(p),
                    }
                )
            )
        else:
            out.append(
                _PluginQueryBuilder(
                    {
                        "refId": ref_id,
                        "command": "xrevrange",
                        "keyName": q.text,
                        "start": "+",
                        "end": "-",
                        "count": 20,
                        "query": "",
                        "type": "command",
                        "datasource": _ref_json(p),
                    }
                )
            )
    return out


def _ref_json(p: Panel) -> dict[str, str]:
    kind, uid = DATASOURCES[p.source]
    return {"type": kind, "uid": uid}


def _panel(p: Panel, catalog: str) -> cogbuilder.Builder[Any]:
    b: Any
    if p.kind == "timeseries":
        b = timeseries.Panel().line_width(1).fill_opacity(8)
    elif p.kind == "stat":
        b = stat.Panel()
    elif p.kind == "bars":
        b = bargauge.Panel()
    else:
        b = table.Panel()
    b = b.title(p.title).description(p.description).datasource(_ref(p.source)).span(p.width).height(8)
    if p.unit:
        b = b.unit(UNITS.get(p.unit, p.unit))
    for target in _targets(p, catalog):
        b = b.with_target(target)
    return b  # type: ignore[no-any-return]


def build(d: Dashboard, catalog: str = "lakehouse") -> models.Dashboard:
    b = (
        dashboard.Dashboard(d.title)
        .uid(d.uid)
        .description(d.description)
        .tags(["lakehouse"])
        .refresh("10s")
        .time("now-1h", "now")
        .timezone("browser")
        .editable()
    )
    for p in d.panels:
        b = b.with_panel(_panel(p, catalog))
    return b.build()


def to_json(d: Dashboard, catalog: str = "lakehouse") -> str:
    return json.dumps(build(d, catalog), cls=JSONEncoder, indent=2, sort_keys=True)


def write_all(out: Path, catalog: str = "lakehouse") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in DASHBOARDS:
        path = out / f"{d.uid}.json"
        path.write_text(to_json(d, catalog) + "\n")
        paths.append(path)
    return paths
