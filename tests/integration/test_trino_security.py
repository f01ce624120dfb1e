"""The stack's Trino refuses strangers and keeps each user to its role (HTTPS only, password file,
file-based access control, infra/trino/rules.json). Each test first shows the legitimate credential works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import trino

from lakehouse.services.trino import connect
from lakehouse.settings import Settings
from lakehouse.stack import secrets


def _statement(s: Settings, **kw: Any) -> requests.Response:
    """POST a query to Trino's REST API as the caller says (user, auth, TLS trust)."""
    headers = {"X-Trino-User": kw.pop("user", "engineer")}
    return requests.post(f"{s.trino_url}/v1/statement", data="SELECT 1", headers=headers, timeout=20, **kw)


def test_trino_refuses_strangers(lakehouse_stack: Settings, tmp_path: Path) -> None:
    s = lakehouse_stack
    ca = str(s.ca_file)
    password = s.secret("trino_engineer").get_secret_value()
    assert _statement(s, verify=ca, auth=("engineer", password)).status_code == 200  # the credential works
    assert _statement(s, verify=ca).status_code == 401  # no password
    assert _statement(s, verify=ca, auth=("engineer", "not-the-password")).status_code == 401
    assert _statement(s, verify=ca, auth=("mallory", password), user="mallory").status_code == 401
    assert _statement(s, verify=ca, auth=("analyst", password), user="analyst").status_code == 401  # not theirs
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://{s.host}:{s.trino_port}/v1/info", timeout=10)  # no plain HTTP
    other = secrets.make_ca("another CA")
    (tmp_path / "other-ca.pem").write_bytes(other.cert_pem)
    with pytest.raises(requests.exceptions.SSLError):
        _statement(s, verify=str(tmp_path / "other-ca.pem"), auth=("engineer", password))


def _can(s: Settings, user: str, sql: str) -> bool:
    """Whether USER may run SQL (an access refusal is False; any other error fails the test)."""
    conn = connect(s, user=user)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        cur.fetchall()
        return True
    except trino.exceptions.TrinoUserError as e:
        if e.error_name == "PERMISSION_DENIED":
            return False
        raise
    finally:
        conn.close()


def test_each_trino_user_does_its_job_only(stack_lake: Settings) -> None:
    s = stack_lake
    cat = s.trino_catalog
    raw = f"SELECT value FROM {cat}.bronze.payments LIMIT 1"
    quarantine_raw = f"SELECT raw_value FROM {cat}.silver.quarantine LIMIT 1"
    quarantine = f"SELECT topic, error FROM {cat}.silver.quarantine LIMIT 1"
    silver = f"SELECT card_token FROM {cat}.silver.payments LIMIT 1"
    gold = f"SELECT * FROM {cat}.gold.fraud_alerts LIMIT 1"
    expected = {
        "engineer": {raw: True, quarantine_raw: True, quarantine: True, silver: True, gold: True},
        "analyst": {raw: False, quarantine_raw: False, quarantine: True, silver: True, gold: True},
        "dbt": {raw: False, quarantine_raw: False, quarantine: True, silver: True, gold: True},
        "service": {raw: False, quarantine_raw: False, quarantine: False, silver: False, gold: True},
        "monitoring": {raw: False, quarantine_raw: False, quarantine: False, silver: False, gold: False},
    }
    got = {user: {sql: _can(s, user, sql) for sql in queries} for user, queries in expected.items()}
    assert got == expected
    # The raw columns are Parquet-encrypted at rest and Trino holds no key: even the engineer gets a mask.
    conn = connect(s, user="engineer")
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT DISTINCT value FROM {cat}.bronze.payments")
        assert cur.fetchall() == [["(encrypted at rest: read it with Spark)"]]
    finally:
        conn.close()
    for user in ("analyst", "service", "dbt", "monitoring"):
        assert not _can(s, user, f"DROP TABLE {cat}.gold.fraud_alerts"), user
        assert not _can(s, user, f"CREATE SCHEMA {cat}.{user}_x"), user
    assert _can(s, "engineer", f"SELECT count(*) FROM {cat}.gold.fraud_alerts")  # still there


def test_only_monitoring_and_engineer_read_trinos_metrics(lakehouse_stack: Settings) -> None:
    s = lakehouse_stack
    ca = str(s.ca_file)

    def metrics(user: str) -> int:
        auth = (user, s.secret(f"trino_{user}").get_secret_value())
        r = requests.get(f"{s.trino_url}/metrics", auth=auth, verify=ca, timeout=20, headers={"X-Trino-User": user})
        return r.status_code

    assert metrics("monitoring") == 200
    assert metrics("engineer") == 200
    assert metrics("analyst") == 403
    assert metrics("service") == 403
