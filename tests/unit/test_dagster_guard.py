"""The guard in front of the Dagster app: who may call it, from where, how, and what a viewer may do.

The Dagster app is replaced here by a recorder (these tests are about the guard's decisions); the
integration suite (tests/integration/test_dagster_security.py) sends the same attacks to the real
webserver of the running stack.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from lakehouse.services import dagster_guard as dagster_web
from lakehouse.services.dagster_guard import Guard, is_mutation
from lakehouse.settings import Settings

PORT = 3000
HOST = f"127.0.0.1:{PORT}"
PASSWORDS = {"engineer": "e-secret", "viewer": "v-secret"}


class Recorder:
    """The app behind the guard: records what reached it (and its body) and answers 200."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        if scope["type"] == "http":
            while True:
                m = await receive()
                body += m.get("body", b"")
                if not m.get("more_body"):
                    break
            self.calls.append((scope["method"], scope["path"], body))
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"ok"})
        else:
            self.calls.append(("WS", scope["path"], b""))
            await send({"type": "websocket.accept"})
            while (await receive())["type"] != "websocket.disconnect":
                pass


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(
    guard: Guard,
    method: str = "POST",
    path: str = "/graphql",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    query: str = "",
) -> tuple[int, dict[str, str], bytes]:
    hdrs = {"host": HOST, **(headers or {})}
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in hdrs.items()],
        "client": ("127.0.0.1", 5555),
    }
    out: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(m: dict[str, Any]) -> None:
        out.append(m)

    asyncio.run(guard(scope, receive, send))
    start = out[0]
    got = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], got, b"".join(m.get("body", b"") for m in out[1:])


def websocket(guard: Guard, headers: dict[str, str], messages: list[str] | None = None) -> list[dict[str, Any]]:
    hdrs = {"host": HOST, **headers}
    scope = {"type": "websocket", "path": "/graphql", "headers": [(k.encode(), v.encode()) for k, v in hdrs.items()]}
    inbox: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    inbox += [{"type": "websocket.receive", "text": t} for t in messages or []]
    inbox.append({"type": "websocket.disconnect", "code": 1000})
    out: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(m: dict[str, Any]) -> None:
        out.append(m)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while (m := await receive())["type"] != "websocket.disconnect":
            out.append({"type": "app-got", "text": m["text"]})

    guard.app = app
    asyncio.run(guard(scope, receive, send))
    return out


@pytest.fixture
def app() -> Recorder:
    return Recorder()


@pytest.fixture
def guard(app: Recorder, tmp_path: Path) -> Guard:
    (tmp_path / "logins").mkdir()
    return Guard(app, passwords=PASSWORDS, port=PORT, logins=tmp_path / "logins")


QUERY = json.dumps({"query": "{ version }"}).encode()
MUTATION = json.dumps({"query": "mutation { setNuxSeen }"}).encode()
JSON = {"content-type": "application/json"}


def test_without_credentials_nothing_reaches_dagster(guard: Guard, app: Recorder) -> None:
    status, headers, body = request(guard, "GET", "/")
    assert status == 401
    assert headers["www-authenticate"].startswith("Basic ")
    assert b"lakehouse ui" in body  # says how to log in
    for creds in (basic("engineer", "wrong"), basic("nobody", "e-secret"), "Basic !!!", basic("engineer", "")):
        assert request(guard, "POST", body=MUTATION, headers={**JSON, "authorization": creds})[0] == 401
    assert app.calls == []


def test_an_engineer_runs_queries_and_mutations(guard: Guard, app: Recorder) -> None:
    auth = {**JSON, "authorization": basic("engineer", "e-secret")}
    assert request(guard, body=QUERY, headers=auth)[0] == 200
    status, headers, _ = request(guard, body=MUTATION, headers={**auth, "origin": f"https://{HOST}"})
    assert status == 200
    assert headers["x-frame-options"] == "DENY"
    assert app.calls == [("POST", "/graphql", QUERY), ("POST", "/graphql", MUTATION)]


def test_a_mutation_as_a_get_or_a_form_is_refused(guard: Guard, app: Recorder) -> None:
    auth = {"authorization": basic("engineer", "e-secret")}
    assert request(guard, "GET", query="query=mutation%20%7BsetNuxSeen%7D", headers=auth)[0] == 405
    for ctype in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x", ""):
        status, _, body = request(guard, body=MUTATION, headers={**auth, "content-type": ctype})
        assert (status, b"application/json" in body) == (415, True), ctype
    assert (
        request(guard, "POST", "/report_asset_materialization/a", headers={**auth, "content-type": "text/plain"})[0]
        == 415
    )
    assert app.calls == []
    # The GraphiQL page itself (HTML, no operation) is still served.
    assert request(guard, "GET", headers={**auth, "accept": "text/html"})[0] == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"origin": "http://127.0.0.1:3000"},  # not this server's scheme
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"host": "evil.example:3000"},  # DNS rebinding: a foreign name resolving to loopback
        {"host": "127.0.0.1:3001"},
    ],
)
def test_requests_from_other_sites_are_refused_even_with_credentials(
    guard: Guard, app: Recorder, headers: dict[str, str]
) -> None:
    status, _, body = request(
        guard, body=MUTATION, headers={**JSON, "authorization": basic("engineer", "e-secret"), **headers}
    )
    assert status == 403
    assert body
    assert app.calls == []


def test_a_link_from_another_site_may_open_a_page(guard: Guard, app: Recorder) -> None:
    headers = {"authorization": basic("viewer", "v-secret"), "sec-fetch-site": "cross-site"}
    assert request(guard, "GET", "/runs", headers=headers)[0] == 200
    assert app.calls == [("GET", "/runs", b"")]


def test_a_viewer_reads_but_may_not_mutate(guard: Guard, app: Recorder) -> None:
    auth = {**JSON, "authorization": basic("viewer", "v-secret")}
    assert request(guard, body=QUERY, headers=auth)[0] == 200
    assert app.calls == [("POST", "/graphql", QUERY)]  # the body read to check it reaches the app whole
    sneaky = [
        MUTATION,
        json.dumps({"query": "query A { version } mutation B { setNuxSeen }", "operationName": "A"}).encode(),
        json.dumps([{"query": "{ version }"}, {"query": "mutation { setNuxSeen }"}]).encode(),
        b"not json",
        json.dumps({"query": "mutation {"}).encode(),
    ]
    for body in sneaky:
        status, _, _ = request(guard, body=body, headers=auth)
        assert status == 403, body
    assert request(guard, "POST", "/report_asset_materialization/x", body=b"{}", headers=auth)[0] == 403
    assert len(app.calls) == 1


def test_is_mutation_reads_the_operation_not_the_text() -> None:
    assert not is_mutation(
        json.dumps({"query": '{ runsOrError(filter: {tags: [{key: "mutation"}]}) { __typename } }'}).encode()
    )
    assert not is_mutation(
        json.dumps({"query": 'subscription { pipelineRunLogs(runId: "x") { __typename } }'}).encode()
    )
    assert is_mutation(json.dumps({"query": "mutation M { launchRun { __typename } }"}).encode())


def test_a_viewers_websocket_may_subscribe_but_not_mutate(guard: Guard) -> None:
    auth = {"authorization": basic("viewer", "v-secret")}
    sub = json.dumps({"type": "start", "id": "1", "payload": {"query": "subscription { x }"}})
    mut = json.dumps({"type": "subscribe", "id": "2", "payload": {"query": "mutation { setNuxSeen }"}})
    out = websocket(guard, auth, [sub, mut, sub])
    assert {"type": "app-got", "text": sub} in out
    closes = [m for m in out if m["type"] == "websocket.close"]
    assert closes
    assert closes[0]["code"] == 1008
    assert [m for m in out if m["type"] == "app-got"] == [{"type": "app-got", "text": sub}]  # nothing after


def test_a_websocket_needs_credentials_and_this_origin(guard: Guard) -> None:
    for headers in ({}, {"authorization": basic("engineer", "e-secret"), "origin": "https://evil.example"}):
        out = websocket(guard, headers)
        assert [m["type"] for m in out] == ["websocket.close"], headers
    ok = websocket(guard, {"authorization": basic("engineer", "e-secret"), "origin": f"https://{HOST}"})
    assert ok[0] == {"type": "websocket.accept"}


def _settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state")


def test_a_login_link_works_once_and_its_cookie_is_a_session(app: Recorder, tmp_path: Path) -> None:
    s = _settings(tmp_path)
    link = dagster_web.login_link(s, "viewer", "/runs")
    logins = dagster_web.logins_dir(s)
    assert oct(logins.stat().st_mode & 0o777) == "0o700"
    guard = Guard(app, passwords=PASSWORDS, port=s.dagster_port, logins=logins)
    token = link.split("token=", 1)[1]
    assert token not in "".join(p.read_text() + p.name for p in logins.iterdir())  # only its hash is stored
    status, headers, _ = request(guard, "GET", dagster_web.LOGIN_PATH, query=f"token={token}")
    assert status == 303
    assert headers["location"] == "/runs"
    cookie = headers["set-cookie"]
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict"):
        assert attribute in cookie
    session = cookie.split(";")[0]
    assert request(guard, "GET", dagster_web.LOGIN_PATH, query=f"token={token}")[0] == 403  # used up
    # The session is the viewer's: it reads, it may not mutate.
    assert request(guard, body=QUERY, headers={**JSON, "cookie": session})[0] == 200
    assert request(guard, body=MUTATION, headers={**JSON, "cookie": session})[0] == 403
    assert request(guard, body=QUERY, headers={**JSON, "cookie": session + "x"})[0] == 401
    # Logging out ends it.
    assert request(guard, "POST", dagster_web.LOGOUT_PATH, body=b"{}", headers={**JSON, "cookie": session})[0] == 200
    assert request(guard, body=QUERY, headers={**JSON, "cookie": session})[0] == 401


def test_an_expired_or_forged_login_link_is_refused(app: Recorder, tmp_path: Path) -> None:
    s = _settings(tmp_path)
    token = dagster_web.login_link(s).split("token=", 1)[1]
    logins = dagster_web.logins_dir(s)
    (entry,) = logins.iterdir()
    old = entry.stat().st_mtime - dagster_web.LOGIN_TTL_S - 1
    os.utime(entry, (old, old))
    guard = Guard(app, passwords=PASSWORDS, port=s.dagster_port, logins=logins)
    assert request(guard, "GET", dagster_web.LOGIN_PATH, query=f"token={token}")[0] == 403
    assert not list(logins.iterdir())  # an expired token is removed too
    assert request(guard, "GET", dagster_web.LOGIN_PATH, query="token=made-up")[0] == 403
    assert request(guard, "GET", dagster_web.LOGIN_PATH, query=f"token={entry.name}")[0] == 403  # the hash is no token
    with pytest.raises(ValueError, match="path on the Dagster server"):
        dagster_web.login_link(s, "engineer", "//evil.example/")
    assert app.calls == []


def test_lakehouse_ui_prints_a_link_the_guard_accepts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, app: Recorder
) -> None:
    from click.testing import CliRunner

    from lakehouse.cli.app import main
    from lakehouse.settings import get_settings

    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["ui", "--user", "viewer", "--path", "/assets"])
        s = get_settings()
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    link = result.stdout.strip().splitlines()[0]
    assert link.startswith(f"https://{s.host}:{s.dagster_port}{dagster_web.LOGIN_PATH}?token=")
    guard = Guard(app, passwords=PASSWORDS, port=s.dagster_port, logins=dagster_web.logins_dir(s))
    status, headers, _ = request(guard, "GET", dagster_web.LOGIN_PATH, query=link.split("?", 1)[1])
    assert status == 303
    assert headers["location"] == "/assets"
