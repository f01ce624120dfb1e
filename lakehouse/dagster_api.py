"""A small client of the running Dagster webserver's GraphQL API (no Dagster import)."""

from __future__ import annotations

from typing import Any

import requests

from lakehouse.settings import Settings

_LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""
_DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required lastHeartbeatTime } } } }"


def graphql(s: Settings, query: str, variables: dict[str, Any] | None = None, timeout: float = 10) -> dict[str, Any]:
    r = requests.post(f"{s.dagster_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=timeout)
    try:
        body: dict[str, Any] = r.json()
    except ValueError:
        r.raise_for_status()
        raise
    if body.get("errors") or not r.ok:
        raise RuntimeError(f"Dagster GraphQL error (HTTP {r.status_code}): {body.get('errors')}")
    data: dict[str, Any] = body["data"]
    return data


def code_locations(s: Settings) -> list[dict[str, str]]:
    """Each code location with its load status ('LOADED' when its definitions loaded) and error, if any."""
    data = graphql(s, _LOCATIONS)["workspaceOrError"]
    out = []
    for entry in data.get("locationEntries", []):
        loc = entry.get("locationOrLoadError") or {}
        ok = loc.get("__typename") == "RepositoryLocation"
        out.append(
            {
                "name": entry["name"],
                "status": "LOADED" if ok and entry["loadStatus"] == "LOADED" else entry["loadStatus"],
                "error": loc.get("message", ""),
            }
        )
    return out


def daemon_health(s: Settings, since: float = 0.0) -> bool:
    """True when every required daemon (scheduler, sensors, run queue ...) is healthy and has
    sent a heartbeat after ``since`` (epoch seconds), so an old daemon's heartbeats don't count."""
    daemons = graphql(s, _DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
    required = [d for d in daemons if d["required"]]
    return bool(required) and all(d["healthy"] and (d["lastHeartbeatTime"] or 0) >= since for d in required)
