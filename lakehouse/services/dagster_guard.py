"""The guard in front of the Dagster webserver: a login, and no mutation from a foreign page.

Dagster OSS has no authentication, and its GraphQL endpoint runs a mutation sent as a GET or as a
cross-site form POST. So the stack does not run ``dagster-webserver``: this module builds the same
Starlette app (``create_app_from_workspace_process_context``, what that command runs) and serves it
with uvicorn on TLS (``orchestration/webserver.py``), wrapped in :class:`Guard`, the ASGI layer here
that every request passes first:

- **Who**: HTTP Basic (user ``engineer`` or ``viewer``, passwords in the secrets directory) or a
  session cookie (``HttpOnly; Secure; SameSite=Strict``) obtained with a one-time login link
  (``lakehouse ui``: a token in a file only the stack's owner can write, valid 2 minutes, used once).
- **From where**: the ``Host`` must name this server (no DNS rebinding), an ``Origin`` must be this
  server's, and ``Sec-Fetch-Site: cross-site|same-site`` is refused for anything but reading a page.
- **How**: GraphQL only as POST with ``Content-Type: application/json`` (a GET or a form cannot carry
  it); every other state-changing request must be JSON too.
- **What**: ``viewer`` may read the UI and run GraphQL queries and subscriptions, no mutation.

There is no other listener: no unguarded port or socket exists to go around it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets as pysecrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from lakehouse.settings import DAGSTER_USERS, Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("lakehouse.dagster_web")

#: What each Dagster user may do.
ROLES: dict[str, str] = {
    "engineer": "operates the platform: launches and terminates runs, starts sensors, reloads code (all of GraphQL)",
    "viewer": "reads the UI and GraphQL (queries and subscriptions); every mutation is refused",
}
assert set(ROLES) == set(DAGSTER_USERS)
SESSION_COOKIE = "lakehouse_dagster_session"
LOGIN_PATH = "/_lakehouse/login"
LOGOUT_PATH = "/_lakehouse/logout"
LOGIN_TTL_S = 120.0
SESSION_TTL_S = 12 * 3600.0
MAX_VIEWER_BODY = 4 * 1024 * 1024  # a viewer's GraphQL request is read whole to check it; queries are small
_SAFE = ("GET", "HEAD", "OPTIONS")
_HEADERS = [
    (b"x-frame-options", b"DENY"),  # no clickjacking of the run buttons
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def logins_dir(s: Settings) -> Path:
    """Where one-time login tokens wait (their SHA-256, not the token): only the stack's owner can write here."""
    return s.state_dir / "dagster-webserver" / "logins"


def serve_guarded(app: App, s: Settings, port: int) -> None:
    """Serve APP on PORT behind a :class:`Guard` (the Dagster users' passwords, the shared one-time
    logins), HTTPS only with the stack's certificate, no access log (paths would show login tokens)."""
    import uvicorn

    from lakehouse.settings import SERVER_CERT, SERVER_KEY

    passwords = {u: s.secret(f"dagster_{u}").get_secret_value() for u in ROLES}
    logins = logins_dir(s)
    logins.mkdir(mode=0o700, parents=True, exist_ok=True)
    uvicorn.run(
        Guard(app, passwords=passwords, port=port, logins=logins),
        host=s.host,
        port=port,
        ssl_certfile=str(s.secrets_dir / SERVER_CERT),
        ssl_keyfile=str(s.secrets_dir / SERVER_KEY),
        log_level="warning",
        access_log=False,
    )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def login_link(s: Settings, user: str = "engineer", next_path: str = "/", base_url: str | None = None) -> str:
    """A link that logs a browser in as USER once (within LOGIN_TTL_S) and opens NEXT_PATH on the
    Dagster UI, or on BASE_URL: another server behind a Guard on the same logins (the dashboards).

    The token is random; its SHA-256 names a file holding the user and the page, so the file alone
    cannot be replayed, and the page comes from the file (the link cannot redirect anywhere else).
    """
    if user not in ROLES:
        raise ValueError(f"unknown Dagster user {user!r}; known: {', '.join(ROLES)}")
    if not next_path.startswith("/") or next_path.startswith("//"):
        raise ValueError(f"next_path must be a path on the Dagster server, got {next_path!r}")
    d = logins_dir(s)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    token = pysecrets.token_urlsafe(32)
    fd = os.open(d / _digest(token), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"user": user, "next": next_path}, f)
    return f"{base_url or s.dagster_url}{LOGIN_PATH}?token={token}"


def is_mutation(body: bytes) -> bool:
    """Whether a GraphQL HTTP body asks for a mutation. Unreadable bodies count as one (fail closed)."""
    from graphql import OperationType, parse
    from graphql.error import GraphQLError
    from graphql.language import OperationDefinitionNode

    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return True
    for request in data if isinstance(data, list) else [data]:
        query = request.get("query") if isinstance(request, dict) else None
        if not isinstance(query, str):
            return True
        try:
            doc = parse(query)
        except GraphQLError:
            return True
        if any(
            isinstance(d, OperationDefinitionNode)
            and d.operation != OperationType.QUERY
            and d.operation != OperationType.SUBSCRIPTION
            for d in doc.definitions
        ):
            return True
    return False


def _ws_mutation(message: Message) -> bool:
    """Whether a graphql-ws / graphql-transport-ws client message starts a mutation."""
    raw = message.get("text") if message.get("text") is not None else message.get("bytes")
    if raw is None:
        return False
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False  # not an operation; the app rejects it
    if not isinstance(data, dict) or data.get("type") not in ("start", "subscribe"):
        return False
    return is_mutation(json.dumps(data.get("payload") or {}).encode())


class Guard:
    """ASGI middleware: authenticate, refuse foreign origins and non-JSON writes, keep viewers read-only."""

    def __init__(
        self,
        app: App,
        *,
        passwords: dict[str, str],
        port: int,
        logins: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.passwords = {u: p.encode() for u, p in passwords.items()}
        self.hosts = {f"{h}:{port}" for h in ("localhost", "127.0.0.1", "[::1]")}
        self.origins = {f"https://{h}" for h in self.hosts}
        self.logins = logins
        self.clock = clock
        self.sessions: dict[str, tuple[str, float]] = {}

    # --- the checks -------------------------------------------------------------------
    def foreign(self, scope: Scope, headers: dict[str, str]) -> str | None:
        """Why this request is not from a page of this server (None: it may be)."""
        host = headers.get("host", "")
        if host not in self.hosts:
            return f"Host {host!r} is not this server (expected one of {', '.join(sorted(self.hosts))})"
        origin = headers.get("origin")
        if origin is not None and origin not in self.origins:
            return f"cross-origin request from {origin!r} refused"
        site = headers.get("sec-fetch-site")
        reading = scope["type"] == "http" and scope["method"] in _SAFE and scope["path"] != "/graphql"
        if site in ("cross-site", "same-site") and not reading:
            return f"request from another site (Sec-Fetch-Site: {site}) refused"
        return None

    def user(self, headers: dict[str, str]) -> str | None:
        """The authenticated user (Basic credentials or a live session), else None."""
        auth = headers.get("authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                name, _, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            expected = self.passwords.get(name)
            ok = hmac.compare_digest(password.encode(), expected if expected is not None else b"\0" * 43)
            return name if ok and expected is not None else None
        cookie = headers.get("cookie")
        if cookie:
            try:
                jar = SimpleCookie(cookie)
            except CookieError:
                return None
            morsel = jar.get(SESSION_COOKIE)
            if morsel is not None:
                session = self.sessions.get(_digest(morsel.value))
                if session is not None and session[1] > self.clock():
                    return session[0]
        return None

    def redeem(self, token: str) -> tuple[str, str] | None:
        """(user, next path) of a valid one-time login token, which is used up; None otherwise."""
        if not token or len(token) > 128:
            return None
        path = self.logins / _digest(token)
        try:
            age = self.clock() - path.stat().st_mtime
            data = json.loads(path.read_text())
            path.unlink()  # used once: a second request (or a racing one) finds no file
        except (OSError, ValueError):
            return None
        user, nxt = data.get("user"), data.get("next", "/")
        if age > LOGIN_TTL_S or user not in self.passwords or not isinstance(nxt, str) or not nxt.startswith("/"):
            return None
        return user, nxt

    # --- ASGI -------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        problem = self.foreign(scope, headers)
        if problem is not None:
            await self.deny(scope, send, 403, problem)
            return
        if scope["type"] == "http" and scope["path"] == LOGIN_PATH:
            await self.login(scope, send)
            return
        user = self.user(headers)
        if user is None:
            if headers.get("authorization"):
                log.warning("dagster: authentication failed from %s", (scope.get("client") or ("?",))[0])
            await self.deny(
                scope,
                send,
                401,
                "log in: user and password (`lakehouse connect engineer`), or a one-time link from `lakehouse ui`",
            )
            return
        if scope["type"] == "http" and scope["path"] == LOGOUT_PATH:
            await self.logout(headers, send)
            return
        if scope["type"] == "websocket":
            if user == "viewer":
                receive = self._viewer_ws(receive, send)
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if scope["path"] == "/graphql" and method == "GET" and "text/html" not in headers.get("accept", ""):
            await self.deny(scope, send, 405, "send GraphQL as a POST with Content-Type: application/json")
            return
        if method not in _SAFE:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                await self.deny(scope, send, 415, f"{method} {scope['path']} needs Content-Type: application/json")
                return
            if user == "viewer":
                if scope["path"] != "/graphql":
                    await self.deny(scope, send, 403, "viewer may not write")
                    return
                body = await _read_body(receive, MAX_VIEWER_BODY)
                if body is None:
                    await self.deny(scope, send, 413, "request too large")
                    return
                if is_mutation(body):
                    await self.deny(scope, send, 403, "viewer may not run GraphQL mutations; log in as engineer")
                    return
                receive = _replay(body, receive)
        await self.app(scope, receive, _with_headers(send))

    def _viewer_ws(self, receive: Receive, send: Send) -> Receive:
        async def guarded() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive" and _ws_mutation(message):
                log.warning("dagster: a viewer's websocket asked for a mutation; closed")
                await send({"type": "websocket.close", "code": 1008, "reason": "viewer may not run mutations"})
                return {"type": "websocket.disconnect", "code": 1008}
            return message

        return guarded

    async def deny(self, scope: Scope, send: Send, status: int, why: str) -> None:
        if scope["type"] == "websocket":
            log.warning("dagster: websocket %s refused: %s", scope["path"], why)
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})
            return
        if status != 401:
            log.warning("dagster: %s %s refused (%d): %s", scope["method"], scope["path"], status, why)
        extra = [(b"www-authenticate", b'Basic realm="lakehouse dagster", charset="UTF-8"')] if status == 401 else []
        await _plain(send, status, f"{why}\n", extra)

    async def login(self, scope: Scope, send: Send) -> None:
        token = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [""])[0]
        redeemed = self.redeem(token)
        if redeemed is None:
            log.warning("dagster: an unknown, used or expired login link was refused")
            await _plain(send, 403, "this login link is unknown, used or expired; make a new one with `lakehouse ui`\n")
            return
        user, nxt = redeemed
        now = self.clock()
        self.sessions = {k: v for k, v in self.sessions.items() if v[1] > now}
        session = pysecrets.token_urlsafe(32)
        self.sessions[_digest(session)] = (user, now + SESSION_TTL_S)
        cookie = f"{SESSION_COOKIE}={session}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={int(SESSION_TTL_S)}"
        log.info("dagster: %s logged in with a one-time link", user)
        await _plain(send, 303, "", [(b"location", nxt.encode()), (b"set-cookie", cookie.encode())])

    async def logout(self, headers: dict[str, str], send: Send) -> None:
        with contextlib.suppress(CookieError):
            morsel = SimpleCookie(headers.get("cookie", "")).get(SESSION_COOKIE)
            if morsel is not None:
                self.sessions.pop(_digest(morsel.value), None)
        expired = f"{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
        await _plain(send, 200, "logged out\n", [(b"set-cookie", expired.encode())])


async def _plain(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *_HEADERS,
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *_HEADERS]}
        await send(message)

    return wrapped
