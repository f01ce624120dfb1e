"""A small client of the running Dagster webserver's GraphQL API (no Dagster import)."""

from __future__ import annotations

import time
from typing import Any

import requests

from lakehouse.settings import Settings

_LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""
DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required lastHeartbeatTime } } } }"


def session(s: Settings, user: str = "engineer") -> requests.Session:
    """A session to the webserver as USER: HTTPS verified against the local CA, Basic auth. It ignores the
    environment's proxies and CA bundle (REQUESTS_CA_BUNDLE would override ``verify``)."""
    sess = requests.Session()
    sess.trust_env = False
    sess.verify = str(s.ca_file)
    sess.auth = s.dagster_auth(user)
    return sess


def graphql(
    s: Settings, query: str, variables: dict[str, Any] | None = None, timeout: float = 10, user: str = "engineer"
) -> dict[str, Any]:
    with session(s, user) as sess:
        r = sess.post(f"{s.dagster_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=timeout)
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
    daemons = graphql(s, DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
    required = [d for d in daemons if d["required"]]
    return bool(required) and all(d["healthy"] and (d["lastHeartbeatTime"] or 0) >= since for d in required)


# -- runs, sensors and the code location: what `lakehouse stream ...` drives ----------
LOCATION = "lakehouse"
REPOSITORY = "__repository__"  # the name Dagster gives a code location's Definitions
IN_PROGRESS = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]

_RELOAD = """
mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) {
  __typename
  ... on WorkspaceLocationEntry { loadStatus locationOrLoadError { __typename ... on PythonError { message } } }
  ... on PythonError { message } } }
"""
_LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message } ... on InvalidSubsetError { message }
  ... on RunConfigValidationInvalid { errors { message } } ... on PipelineNotFoundError { message } } }
"""
_RUNS = """
query($filter: RunsFilter, $limit: Int) { runsOrError(filter: $filter, limit: $limit) {
  __typename ... on Runs { results { runId jobName status startTime endTime tags { key value } } }
  ... on PythonError { message } } }
"""
_TERMINATE = """
mutation($runId: String!) { terminateRun(runId: $runId, terminatePolicy: SAFE_TERMINATE) {
  __typename ... on TerminateRunFailure { message } ... on PythonError { message }
  ... on RunNotFoundError { message } } }
"""
_SENSOR = """
query($sel: SensorSelector!) { sensorOrError(sensorSelector: $sel) {
  __typename ... on Sensor { name sensorState { id selectorId status
      ticks(limit: 1) { status timestamp skipReason error { message } } } }
  ... on SensorNotFoundError { message } ... on PythonError { message } } }
"""
_START_SENSOR = """
mutation($sel: SensorSelector!) { startSensor(sensorSelector: $sel) {
  __typename ... on Sensor { sensorState { status } } ... on PythonError { message }
  ... on SensorNotFoundError { message } } }
"""
_STOP_SENSOR = """
mutation($id: String!) { stopSensor(id: $id) {
  __typename ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }
"""


class DagsterApiError(RuntimeError):
    pass


def _ok(result: dict[str, Any], *typenames: str) -> dict[str, Any]:
    if result.get("__typename") not in typenames:
        errors = result.get("errors") or []
        detail = result.get("message") or "; ".join(e.get("message", "") for e in errors) or result.get("__typename")
        raise DagsterApiError(str(detail))
    return result


def reload_location(s: Settings, name: str = LOCATION) -> None:
    """Make the webserver (and, through the shared workspace, the daemon) load the current code."""
    entry = _ok(graphql(s, _RELOAD, {"name": name}, timeout=120)["reloadRepositoryLocation"], "WorkspaceLocationEntry")
    loaded = entry.get("locationOrLoadError") or {}
    if loaded.get("__typename") == "PythonError":
        raise DagsterApiError(f"code location {name} failed to load: {loaded.get('message')}")


def launch_run(
    s: Settings,
    job: str,
    run_config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    assets: list[str] | None = None,
    checks: list[tuple[str, str]] | None = None,
) -> str:
    """Launch JOB; ASSETS ("layer/name") and CHECKS ((asset, check name)) narrow an asset job to a subset."""
    selector: dict[str, Any] = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job}
    if assets is not None:
        selector["assetSelection"] = [{"path": a.split("/")} for a in assets]
    if checks is not None:
        selector["assetCheckSelection"] = [{"assetKey": {"path": a.split("/")}, "name": n} for a, n in checks]
    params = {
        "selector": selector,
        "runConfigData": run_config or {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
    }
    result = _ok(graphql(s, _LAUNCH, {"params": params})["launchRun"], "LaunchRunSuccess")
    run_id: str = result["run"]["runId"]
    return run_id


_BACKFILL = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId }
  ... on PythonError { message } ... on PartitionSetNotFoundError { message }
  ... on PartitionKeysNotFoundError { message } ... on UnauthorizedError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }
"""
_BACKFILL_STATUS = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { id status numPartitions
    partitionStatuses { results { partitionName runId runStatus } } }
  ... on PythonError { message } ... on BackfillNotFoundError { message } } }
"""


def launch_backfill(
    s: Settings,
    job: str,
    partitions: list[str],
    run_config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    title: str | None = None,
) -> str:
    """Backfill PARTITIONS of the partitioned JOB (one run per partition, RUN_CONFIG for each); its id.
    It shows on the UI's backfill page: ``{dagster_url}/runs/b/{id}``."""
    params: dict[str, Any] = {
        "selector": {
            "partitionSetName": f"{job}_partition_set",
            "repositorySelector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY},
        },
        "partitionNames": partitions,
        "runConfigData": run_config or {},
        "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
        **({"title": title} if title else {}),
    }
    result = _ok(graphql(s, _BACKFILL, {"params": params})["launchPartitionBackfill"], "LaunchBackfillSuccess")
    backfill_id: str = result["backfillId"]
    return backfill_id


def backfill(s: Settings, backfill_id: str) -> dict[str, Any]:
    """A backfill's ``status`` (Dagster's BulkActionStatus) and ``partitions``: {name: {runId, runStatus}}
    (runStatus None while its run is not yet created)."""
    result = _ok(graphql(s, _BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"], "PartitionBackfill")
    statuses = (result.get("partitionStatuses") or {}).get("results") or []
    return {
        "status": result["status"],
        "partitions": {p["partitionName"]: {"runId": p["runId"], "runStatus": p["runStatus"]} for p in statuses},
    }


def wait_backfill(s: Settings, backfill_id: str, timeout: float = 900, poll: float = 2) -> dict[str, Any]:
    """Poll until every partition's run of the backfill ended; return :func:`backfill`'s answer."""
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {"status": "?", "partitions": {}}
    while time.monotonic() < deadline:
        state = backfill(s, backfill_id)
        parts = state["partitions"]
        if state["status"] in ("CANCELED", "FAILED") or (
            parts and all(p["runStatus"] in TERMINAL for p in parts.values())
        ):
            return state
        time.sleep(poll)
    raise TimeoutError(f"backfill {backfill_id} did not end within {timeout:.0f}s (last: {state})")


def runs(
    s: Settings,
    *,
    tags: dict[str, str] | None = None,
    job: str | None = None,
    statuses: list[str] | None = None,
    run_ids: list[str] | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Runs, newest first, each with runId, jobName, status, startTime, endTime and tags as a dict."""
    flt: dict[str, Any] = {}
    if tags:
        flt["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    if job:
        flt["pipelineName"] = job
    if statuses:
        flt["statuses"] = statuses
    if run_ids:
        flt["runIds"] = run_ids
    result = _ok(graphql(s, _RUNS, {"filter": flt, "limit": limit})["runsOrError"], "Runs")
    out: list[dict[str, Any]] = []
    for r in result["results"]:
        out.append({**r, "tags": {t["key"]: t["value"] for t in r["tags"]}})
    return out


def terminate_run(s: Settings, run_id: str) -> None:
    """Ask Dagster to stop a run; the run's op stops its Spark app between two micro-batches."""
    _ok(graphql(s, _TERMINATE, {"runId": run_id})["terminateRun"], "TerminateRunSuccess")


def _selector(sensor: str) -> dict[str, str]:
    return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": sensor}


def sensor_state(s: Settings, sensor: str) -> dict[str, Any]:
    """{'status': 'RUNNING'|'STOPPED', 'id': ..., 'last_tick': {...} | None}."""
    result = _ok(graphql(s, _SENSOR, {"sel": _selector(sensor)})["sensorOrError"], "Sensor")
    state = result["sensorState"]
    ticks = state.get("ticks") or []
    return {"status": state["status"], "id": state["id"], "last_tick": ticks[0] if ticks else None}


def set_sensor(s: Settings, sensor: str, on: bool) -> str:
    """Switch a sensor on or off; returns its status afterwards."""
    if on:
        result = _ok(graphql(s, _START_SENSOR, {"sel": _selector(sensor)})["startSensor"], "Sensor")
        status: str = result["sensorState"]["status"]
        return status
    state = sensor_state(s, sensor)
    if state["status"] == "STOPPED":
        return "STOPPED"
    result = _ok(graphql(s, _STOP_SENSOR, {"id": state["id"]})["stopSensor"], "StopSensorMutationResult")
    status = result["instigationState"]["status"]
    return status


_EVENTS = """
query($runId: ID!, $after: String) { logsForRun(runId: $runId, afterCursor: $after) {
  __typename ... on EventConnection { cursor hasMore events { __typename
    ... on MessageEvent { message timestamp stepKey }
    ... on AssetCheckEvaluationEvent { evaluation { checkName success severity assetKey { path }
        metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text }
        ... on JsonMetadataEntry { jsonString } } } }
    ... on ObservationEvent { assetKey { path } metadataEntries { label
        ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
        ... on TextMetadataEntry { text } ... on BoolMetadataEntry { boolValue } } }
    ... on MaterializationEvent { assetKey { path } }
    ... on ExecutionStepFailureEvent { error { message } } } }
  ... on PythonError { message } ... on RunNotFoundError { message } } }
"""


def run_events(s: Settings, run_id: str) -> list[dict[str, Any]]:
    """A run's event log: each event's type, message, step, asset ("layer/name"), metadata and, for an
    asset check evaluation, ``check`` = {checkName, success, severity}, as plain dicts."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        conn = _ok(graphql(s, _EVENTS, {"runId": run_id, "after": cursor})["logsForRun"], "EventConnection")
        for e in conn["events"]:
            meta = {}
            check = e.get("evaluation")
            entries = (check or {}).get("metadataEntries") or e.get("metadataEntries") or []
            for m in entries:
                values = [v for k, v in m.items() if k != "label" and v is not None]
                meta[m["label"]] = values[0] if values else None
            key = e.get("assetKey") or (check or {}).get("assetKey")
            out.append(
                {
                    "type": e["__typename"],
                    "message": e.get("message", ""),
                    "step": e.get("stepKey"),
                    "check": {k: check[k] for k in ("checkName", "success", "severity")} if check else None,
                    "asset": "/".join(key["path"]) if key else None,
                    "metadata": meta,
                    "error": (e.get("error") or {}).get("message"),
                }
            )
        cursor = conn["cursor"]
        if not conn.get("hasMore"):
            return out


TERMINAL = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


def wait_run(s: Settings, run_id: str, timeout: float = 600, poll: float = 2) -> dict[str, Any]:
    """Poll run RUN_ID until it ends; return it. TimeoutError names the run and its last status."""
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        run = runs(s, run_ids=[run_id])[0]
        status = run["status"]
        if status in TERMINAL:
            return run
        time.sleep(poll)
    raise TimeoutError(f"run {run_id} did not end within {timeout:.0f}s (last status {status})")
