"""The dashboards page: what `lakehouse up` serves at https://127.0.0.1:3001 (``dashboard_port``).

One page (``dashboard_static/``: HTML, a small SVG chart script, no download) draws the panels of
``lakehouse.dashboards`` and refreshes them every 10 s; this server answers its data requests
itself, as the platform's least-privileged users: Prometheus as ``admin`` (read-only API), Trino as
``analyst``, Redis as ``reader``. The browser never sees a credential.

Behind the same guard as the Dagster UI (``lakehouse.services.dagster_guard.Guard``): HTTPS only,
Basic auth or a session from a one-time link (``lakehouse ui --dashboard``), no foreign origin.
All it serves is GETs.

    python -m lakehouse.services.dashboard      (what the stack's `dashboard` component runs)
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lakehouse.dashboards import DASHBOARDS, TRINO_USER, Dashboard, Panel, panel
from lakehouse.settings import Settings, get_settings

STATIC = Path(__file__).with_name("dashboard_static")
log = logging.getLogger("lakehouse.dashboard")
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}


class PanelError(RuntimeError):
    """A panel's source could not answer; shown on the panel, never a server error."""


# -- the sources --------------------------------------------------------------------------------
def _prometheus(s: Settings, path: str, params: dict[str, Any]) -> Any:
    import requests

    try:
        r = requests.get(
            f"{s.prometheus_url}/api/v1/{path}",
            params=params,
            auth=s.http_auth("admin"),
            verify=str(s.ca_file),
            timeout=10,
        )
        body = r.json()
    except (requests.RequestException, ValueError) as e:
        raise PanelError(f"Prometheus at {s.prometheus_url} did not answer: {e}") from None
    if body.get("status") != "success":
        raise PanelError(f"Prometheus refused the query: {body.get('error', r.status_code)}")
    return body["data"]


def _legend(template: str, labels: dict[str, str]) -> str:
    if not template:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
    out = template
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return re.sub(r"\{\{\w+\}\}", "", out).strip() or "value"


def _finite(v: str | float) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def prometheus_panel(s: Settings, p: Panel, minutes: int, now: float) -> dict[str, Any]:
    if p.kind == "timeseries":
        step = max(15, minutes * 60 // 120)
        series = []
        for q in p.queries:
            data = _prometheus(
                s, "query_range", {"query": q.text, "start": now - minutes * 60, "end": now, "step": step}
            )
            for r in data["result"]:
                points = [[float(t), _finite(v)] for t, v in r["values"]]
                series.append({"name": _legend(q.legend, r["metric"]), "points": points})
        return {"series": series}
    rows = []
    for q in p.queries:
        for r in _prometheus(s, "query", {"query": q.text, "time": now})["result"]:
            rows.append([_legend(q.legend, r["metric"]), _finite(r["value"][1])])
    if p.kind == "table":
        return {"columns": ["series", "value"], "rows": rows}
    return {"values": [{"name": n, "value": v} for n, v in rows]}


def trino_panel(s: Settings, p: Panel) -> dict[str, Any]:
    from lakehouse.services import trino

    sql = p.queries[0].text.replace("{catalog}", s.trino_catalog)
    try:
        conn = trino.connect(s, user=TRINO_USER, timeout=20)
        try:
            cur = conn.cursor()
            cur.execute(sql)
            rows = cur.fetchall()
            columns = [d[0] for d in cur.description or []]
        finally:
            conn.close()
    except Exception as e:  # the driver raises many types: all of them mean "no data from Trino"
        raise PanelError(f"Trino: {trino.error_message(e)}") from None
    if p.kind == "timeseries":  # (time, series, value) rows -> one line per series
        by_series: dict[str, list[list[float | None]]] = {}
        for t, name, value in rows:
            by_series.setdefault(str(name), []).append([t.timestamp(), None if value is None else float(value)])
        return {"series": [{"name": n, "points": pts} for n, pts in sorted(by_series.items())]}
    if p.kind == "bars":
        return {"values": [{"name": str(r[0]), "value": None if r[1] is None else float(r[1])} for r in rows]}
    return {"columns": columns, "rows": [[_json_value(v) for v in r] for r in rows]}


def redis_panel(s: Settings, p: Panel, count: int = 20) -> dict[str, Any]:
    import redis

    from lakehouse import serving

    try:
        r = serving.connect(s, role="reader")
        try:
            entries = r.xrevrange(p.queries[0].text, count=count)
        finally:
            r.close()
    except redis.RedisError as e:
        raise PanelError(f"Redis at {s.redis_where}: {e}") from None
    columns: list[str] = []
    decoded = []
    for _id, fields in entries or []:
        row = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in (fields or {}).items()
        }
        decoded.append(row)
        columns += [c for c in row if c not in columns]
    return {"columns": columns, "rows": [[row.get(c) for c in columns] for row in decoded]}


def _json_value(v: Any) -> Any:
    if isinstance(v, int | float | str | bool) or v is None:
        return v
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def panel_data(s: Settings, dashboard_uid: str, panel_id: str, minutes: int = 60) -> dict[str, Any]:
    """What the page draws for one panel: series, values, or a table; ``error`` when its source failed."""
    p = panel(dashboard_uid, panel_id)
    try:
        if p.source == "prometheus":
            data = prometheus_panel(s, p, minutes, time.time())
        elif p.source == "trino":
            data = trino_panel(s, p)
        else:
            data = redis_panel(s, p)
    except PanelError as e:
        return {"kind": p.kind, "error": str(e)}
    return {"kind": p.kind, "unit": p.unit, **data}


# -- Dagster's health, for Prometheus -------------------------------------------------------------
#: Dagster's daemons beat every 30 s (dagster._daemon.controller.DEFAULT_HEARTBEAT_INTERVAL_SECONDS).
DAEMON_HEARTBEAT_S = 30


def dagster_metrics(s: Settings, now: float | None = None) -> str:
    """Prometheus' text format: whether the Dagster webserver answers, and each daemon's heartbeat age.

    A dead daemon (schedules, sensors, the run queue, the stream supervisors) pushes nothing, and the
    run-status sensors that push runs' outcomes live in it: its health is read from outside, from the
    heartbeats the webserver reports. Dagster itself calls a daemon unhealthy only after 30 minutes
    without one; the alert rule (LakehouseDagsterDaemonDown) uses the age."""
    from lakehouse.services import dagster_api

    now = time.time() if now is None else now
    lines = [
        "# HELP lakehouse_dagster_webserver_up Whether the Dagster webserver answered this scrape's GraphQL query.",
        "# TYPE lakehouse_dagster_webserver_up gauge",
    ]
    try:
        data = dagster_api.graphql(s, dagster_api.DAEMONS, timeout=5, user="viewer")
        daemons = data["instance"]["daemonHealth"]["allDaemonStatuses"]
    except Exception as e:  # down, refusing, or answering nonsense: all mean "not up"
        log.warning("Dagster's daemon health unavailable: %s", e)
        return "\n".join([*lines, "lakehouse_dagster_webserver_up 0", ""])
    lines += [
        "lakehouse_dagster_webserver_up 1",
        f"# HELP lakehouse_dagster_daemon_heartbeat_age_seconds Seconds since each Dagster daemon's last "
        f"heartbeat (they beat every {DAEMON_HEARTBEAT_S} s; +Inf: never).",
        "# TYPE lakehouse_dagster_daemon_heartbeat_age_seconds gauge",
    ]
    for d in sorted(daemons, key=lambda d: d["daemonType"]):
        beat = d.get("lastHeartbeatTime")
        age = "+Inf" if beat is None else f"{max(0.0, now - float(beat)):.3f}"
        labels = f'daemon_type="{d["daemonType"]}",required="{str(bool(d["required"])).lower()}"'
        lines.append(f"lakehouse_dagster_daemon_heartbeat_age_seconds{{{labels}}} {age}")
    return "\n".join([*lines, ""])


def definition() -> list[dict[str, Any]]:
    def panel_json(p: Panel) -> dict[str, Any]:
        return {
            "id": p.id,
            "title": p.title,
            "kind": p.kind,
            "source": p.source,
            "unit": p.unit,
            "description": p.description,
            "width": p.width,
        }

    def dash(d: Dashboard) -> dict[str, Any]:
        return {
            "uid": d.uid,
            "title": d.title,
            "description": d.description,
            "panels": [panel_json(p) for p in d.panels],
        }

    return [dash(d) for d in DASHBOARDS]


# -- the app ------------------------------------------------------------------------------------
def make_app(s: Settings) -> Callable[..., Any]:
    """The ASGI app (unguarded: ``serve`` wraps it)."""

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method not in ("GET", "HEAD"):
            await _reply(send, 405, b"read-only", "text/plain")
            return
        if path in ("/", "/index.html"):
            await _file(send, STATIC / "index.html")
        elif path.startswith("/static/"):
            name = path.removeprefix("/static/")
            target = (STATIC / name).resolve()
            if target.parent != STATIC.resolve() or not target.is_file():
                await _reply(send, 404, b"not found", "text/plain")
            else:
                await _file(send, target)
        elif path == "/api/dashboards":
            await _json(send, {"dashboards": definition(), "refresh_s": 10})
        elif path.startswith("/api/panel/"):
            parts = path.removeprefix("/api/panel/").split("/")
            query = dict(p.split("=", 1) for p in scope.get("query_string", b"").decode().split("&") if "=" in p)
            try:
                minutes = max(5, min(24 * 60, int(query.get("minutes", "60"))))
                if len(parts) != 2:
                    raise KeyError(path)
                panel(parts[0], parts[1])
            except (KeyError, ValueError) as e:
                await _json(send, {"error": f"unknown panel or range: {e}"}, status=404)
                return
            data = await asyncio.to_thread(panel_data, s, parts[0], parts[1], minutes)
            await _json(send, data)
        elif path == "/metrics":  # Prometheus' `dagster` job
            body = await asyncio.to_thread(dagster_metrics, s)
            await _reply(send, 200, body.encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/healthz":
            await _reply(send, 200, b"ok", "text/plain")
        else:
            await _reply(send, 404, b"not found", "text/plain")

    return app


async def _reply(send: Callable[..., Any], status: int, body: bytes, content_type: str) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        # Only this page's own script and styles; data only from this server.
        (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _file(send: Callable[..., Any], path: Path) -> None:
    await _reply(send, 200, path.read_bytes(), _CONTENT_TYPES.get(path.suffix, "application/octet-stream"))


async def _json(send: Callable[..., Any], obj: Any, status: int = 200) -> None:
    await _reply(send, status, json.dumps(obj, allow_nan=False).encode(), "application/json")


def serve(s: Settings) -> None:
    from lakehouse.services.dagster_guard import serve_guarded

    log.info("serving the dashboards on %s (HTTPS, login required) in process %d", s.dashboard_url, os.getpid())
    serve_guarded(make_app(s), s, s.dashboard_port)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    serve(get_settings())
