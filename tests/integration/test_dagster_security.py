"""The running Dagster webserver refuses every unauthenticated or cross-site way to change anything.

Each attack tries the same mutation, starting the `vacuum_weekly` schedule, and the schedule must
still be stopped afterwards; the control at the end proves that mutation does start it when an
engineer sends it properly (so "still stopped" means refused, not "the mutation does nothing").
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from lakehouse.services import dagster_api
from lakehouse.services import dagster_guard as dagster_web
from lakehouse.settings import Settings
from lakehouse.stack.secrets import make_ca

SELECTOR = {"repositoryLocationName": "lakehouse", "repositoryName": "__repository__", "scheduleName": "vacuum_weekly"}
START = {
    "query": "mutation($s: ScheduleSelector!) { startSchedule(scheduleSelector: $s) { __typename } }",
    "variables": {"s": SELECTOR},
}
STATUS = """query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) {
  ... on Schedule { scheduleState { status } } } }"""


def schedule_status(s: Settings) -> str:
    return str(dagster_api.graphql(s, STATUS, {"s": SELECTOR})["scheduleOrError"]["scheduleState"]["status"])


def reset(s: Settings) -> None:
    q = "mutation($s: ScheduleSelector!) { resetSchedule(scheduleSelector: $s) { __typename } }"
    dagster_api.graphql(s, q, {"s": SELECTOR})


@pytest.fixture
def stopped_schedule(lakehouse_stack: Settings) -> Iterator[Settings]:
    reset(lakehouse_stack)
    assert schedule_status(lakehouse_stack) == "STOPPED"
    yield lakehouse_stack
    reset(lakehouse_stack)


def raw(s: Settings) -> requests.Session:
    """A client that sends exactly what it is told: no environment, the stack's CA, no login."""
    sess = requests.Session()
    sess.trust_env = False
    sess.verify = str(s.ca_file)
    return sess


def test_attacks_change_nothing(stopped_schedule: Settings) -> None:
    s = stopped_schedule
    url = f"{s.dagster_url}/graphql"
    engineer = s.dagster_auth("engineer")
    refused: dict[str, int] = {}
    with raw(s) as http:
        # Nobody logged in.
        refused["anonymous JSON POST"] = http.post(url, json=START).status_code
        refused["wrong password"] = http.post(url, json=START, auth=("engineer", "guess")).status_code
        # A browser holding the engineer's Basic credentials, driven by a foreign page.
        refused["cross-site form POST"] = http.post(
            url,
            data={"query": START["query"], "variables": json.dumps(START["variables"])},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
            auth=engineer,
        ).status_code
        refused["CORS-simple text/plain POST"] = http.post(
            url, data=json.dumps(START), headers={"Content-Type": "text/plain"}, auth=engineer
        ).status_code
        refused["mutation as a GET"] = http.get(
            url, params={"query": START["query"], "variables": json.dumps(START["variables"])}, auth=engineer
        ).status_code
        refused["JSON POST from a foreign origin"] = http.post(
            url, json=START, headers={"Origin": "https://evil.example"}, auth=engineer
        ).status_code
        refused["DNS rebinding (foreign Host)"] = http.post(
            url, json=START, headers={"Host": f"evil.example:{s.dagster_port}"}, auth=engineer
        ).status_code
        # A viewer (analyst) is logged in but may not mutate.
        refused["viewer mutation"] = http.post(url, json=START, auth=s.dagster_auth("viewer")).status_code
        ok = http.post(url, json={"query": STATUS, "variables": {"s": SELECTOR}}, auth=s.dagster_auth("viewer"))
    assert refused == {
        "anonymous JSON POST": 401,
        "wrong password": 401,
        "cross-site form POST": 403,
        "CORS-simple text/plain POST": 415,
        "mutation as a GET": 405,
        "JSON POST from a foreign origin": 403,
        "DNS rebinding (foreign Host)": 403,
        "viewer mutation": 403,
    }
    assert ok.status_code == 200
    assert ok.json()["data"]["scheduleOrError"]["scheduleState"]["status"] == "STOPPED"
    assert schedule_status(s) == "STOPPED", "an attack started the schedule"
    # Control: the same mutation, sent properly by an engineer, does start it.
    with raw(s) as http:
        r = http.post(
            url, json=START, headers={"Origin": s.dagster_url.replace("127.0.0.1", "localhost")}, auth=engineer
        )
    assert r.status_code == 200
    assert r.json()["data"]["startSchedule"]["__typename"] == "ScheduleStateResult"
    assert schedule_status(s) == "RUNNING"


def test_only_tls_with_the_stacks_certificate(lakehouse_stack: Settings, tmp_path: Any) -> None:
    s = lakehouse_stack
    with pytest.raises(requests.ConnectionError):  # plain HTTP to the TLS port: no HTTP answer at all
        requests.Session().get(f"http://{s.host}:{s.dagster_port}/server_info", timeout=5)
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(make_ca().cert_pem)
    with raw(s) as http, pytest.raises(requests.exceptions.SSLError):
        http.get(f"{s.dagster_url}/server_info", verify=str(other_ca), auth=s.dagster_auth(), timeout=5)


def test_a_login_link_logs_in_once(lakehouse_stack: Settings) -> None:
    s = lakehouse_stack
    link = dagster_web.login_link(s, "viewer", "/runs")
    with raw(s) as browser:
        first = browser.get(link, allow_redirects=False)
        assert first.status_code == 303
        assert first.headers["location"] == "/runs"
        assert dagster_web.SESSION_COOKIE in browser.cookies
        page = browser.get(f"{s.dagster_url}/runs")
        assert page.status_code == 200
        assert "<html" in page.text.lower()
        # The session is the viewer's: queries yes, mutations no.
        assert browser.post(f"{s.dagster_url}/graphql", json={"query": "{ version }"}).status_code == 200
        assert browser.post(f"{s.dagster_url}/graphql", json=START).status_code == 403
    with raw(s) as other:
        assert other.get(link, allow_redirects=False).status_code == 403  # used up


def _ws_connect(s: Settings, headers: dict[str, str]) -> str:
    """Open the GraphQL websocket with HEADERS; 'open' or why it was refused."""
    import websockets
    from websockets.exceptions import InvalidStatus

    ctx = ssl.create_default_context(cafile=str(s.ca_file))

    async def go() -> str:
        uri = f"wss://{s.host}:{s.dagster_port}/graphql"
        try:
            async with websockets.connect(uri, ssl=ctx, additional_headers=headers, subprotocols=["graphql-ws"]):  # type: ignore[list-item]
                return "open"
        except InvalidStatus as exc:
            return f"refused {exc.response.status_code}"

    return asyncio.run(go())


def test_the_graphql_websocket_needs_a_login_and_this_origin(lakehouse_stack: Settings) -> None:
    import base64

    s = lakehouse_stack
    user, password = s.dagster_auth("engineer")
    auth = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    assert _ws_connect(s, {}) == "refused 403"
    assert _ws_connect(s, {**auth, "Origin": "https://evil.example"}) == "refused 403"
    assert _ws_connect(s, {**auth, "Origin": f"https://127.0.0.1:{s.dagster_port}"}) == "open"


def test_localhost_is_a_name_of_the_server(lakehouse_stack: Settings) -> None:
    """A browser may open the UI as `localhost` too: the certificate and the Host check both accept it."""
    s = lakehouse_stack
    with raw(s) as http:
        r = http.get(f"https://localhost:{s.dagster_port}/server_info", auth=s.dagster_auth(), timeout=5)
    assert r.status_code == 200
    assert "dagster_webserver_version" in r.json()
