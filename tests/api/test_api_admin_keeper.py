"""Operators over HTTP: queue and cancel a resolution and bind a price feed through /v1/admin/keeper/*,
validated like the CLI (core/resolution.py), recorded with the token's address and the reason, and
listed by `python -m keeper queue`; user tokens are refused (403), anonymous callers 401."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import asyncpg
import pytest
from starlette.testclient import TestClient

from api.auth import Principal, issue_token
from api.settings import Settings
from keeper.cli import cmd_queue
from tests.api.conftest import ADMIN
from tests.api.rows import market
from tests.keeper.kit import make_settings as keeper_settings

pytestmark = [pytest.mark.pg, pytest.mark.redis]
USER = "0x" + "a1" * 20
FEED = "0x" + "fe" * 20


def _markets(dsn: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await market(conn, 1, end=-dt.timedelta(hours=1), block=10)  # ended
            await market(conn, 2, end=dt.timedelta(days=3), block=11)  # still open
            await market(conn, 3, end=-dt.timedelta(days=1), resolved=True, outcome=1, block=12)
        finally:
            await conn.close()

    asyncio.run(go())


def _auth(settings: Settings, address: str, *roles: str) -> dict[str, str]:
    token, _ = issue_token(settings, Principal(address, frozenset({"user", *roles})))
    return {"Authorization": f"Bearer {token}"}


def test_admin_queues_cancels_and_binds_with_who_and_why(
    client: TestClient, settings: Settings, db_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An admin token queues (201), is refused a second active entry (409), cancels (200) with its
    address and reason recorded, and binds a feed rule; the CLI's `queue` lists the API's entries."""
    _markets(db_dsn)
    admin = _auth(settings, ADMIN, "admin")
    r = client.post(
        "/v1/admin/keeper/queue", json={"marketId": 1, "outcome": "yes", "reason": "announced"}, headers=admin
    )
    assert r.status_code == 201, r.text
    entry = r.json()["data"]
    assert (entry["marketId"], entry["outcome"], entry["status"]) == (1, "yes", "queued")
    assert (entry["requestedBy"], entry["reason"]) == (ADMIN, "announced")
    again = client.post("/v1/admin/keeper/queue", json={"marketId": 1, "outcome": "no", "reason": "x"}, headers=admin)
    assert again.status_code == 409
    assert "already has an active queue entry" in again.text

    capsys.readouterr()
    ks = keeper_settings("http://127.0.0.1:1", db_dsn, tmp_path / "d.json")
    assert asyncio.run(cmd_queue(ks, all_rows=False)) == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (listed["id"], listed["requested_by"], listed["reason"]) == (entry["id"], ADMIN, "announced")

    cancel = client.post(f"/v1/admin/keeper/queue/{entry['id']}/cancel", json={"reason": "wrong id"}, headers=admin)
    assert cancel.status_code == 200, cancel.text
    assert (cancel.json()["data"]["status"], cancel.json()["data"]["cancelledBy"]) == ("cancelled", ADMIN)
    twice = client.post(f"/v1/admin/keeper/queue/{entry['id']}/cancel", json={"reason": "again"}, headers=admin)
    assert twice.status_code == 409
    assert client.post("/v1/admin/keeper/queue/999/cancel", json={"reason": "r"}, headers=admin).status_code == 404

    rule = client.put(
        "/v1/admin/keeper/rules/2",
        json={"feed": FEED, "op": "gte", "threshold": "300000000000", "reason": "ETH above $3,000"},
        headers=admin,
    )
    assert rule.status_code == 200, rule.text
    assert rule.json()["data"]["threshold"] == "300000000000"

    async def stored() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(db_dsn)
        try:
            return list(
                await conn.fetch(
                    "SELECT q.cancel_reason, r.created_by, r.reason, r.threshold FROM keeper.resolution_queue q,"
                    " keeper.price_feed_rules r"
                )
            )
        finally:
            await conn.close()

    (row,) = asyncio.run(stored())
    assert (row["cancel_reason"], row["created_by"], row["reason"]) == ("wrong id", ADMIN, "ETH above $3,000")
    assert int(row["threshold"]) == 300_000_000_000


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        ({"marketId": -5, "outcome": "yes", "reason": "typo"}, 400, "marketId", "must be >= 0"),
        ({"marketId": "1", "outcome": "maybe", "reason": "r"}, 400, "outcome", "yes, no, invalid"),
        ({"marketId": 1, "outcome": "yes", "reason": "  "}, 400, "reason", "non-blank"),
        ({"marketId": 1, "outcome": "yes", "reason": "r", "by": "x"}, 400, "by", "unknown field"),
        ({"marketId": 99, "outcome": "yes", "reason": "r"}, 404, "marketId", "does not exist"),
        ({"marketId": 2, "outcome": "yes", "reason": "r"}, 409, "marketId", "has not ended"),
        ({"marketId": 3, "outcome": "yes", "reason": "r"}, 409, "marketId", "already resolved"),
    ],
)
def test_admin_queue_refuses_what_the_cli_refuses(
    client: TestClient, settings: Settings, db_dsn: str, body: dict[str, object], status: int, field: str, message: str
) -> None:
    """The same validation as the CLI, as the seed's error body naming the field; nothing recorded."""
    _markets(db_dsn)
    r = client.post("/v1/admin/keeper/queue", json=body, headers=_auth(settings, ADMIN, "admin"))
    assert r.status_code == status, r.text
    errors = r.json()["errors"]
    assert any(e["field"] == field and message in e["message"] for e in errors), r.text


def test_admin_keeper_writes_need_the_admin_role(client: TestClient, settings: Settings, db_dsn: str) -> None:
    """Anonymous callers get 401 and user tokens 403 on every operator endpoint; nothing is recorded."""
    _markets(db_dsn)
    calls = [
        ("POST", "/v1/admin/keeper/queue", {"marketId": 1, "outcome": "yes", "reason": "r"}),
        ("POST", "/v1/admin/keeper/queue/1/cancel", {"reason": "r"}),
        ("PUT", "/v1/admin/keeper/rules/2", {"feed": FEED, "op": "gt", "threshold": "1", "reason": "r"}),
    ]
    user = _auth(settings, USER)
    for method, path, body in calls:
        assert client.request(method, path, json=body).status_code == 401, path
        assert client.request(method, path, json=body, headers=user).status_code == 403, path

    async def count() -> int:
        conn = await asyncpg.connect(db_dsn)
        try:
            return int(
                await conn.fetchval(
                    "SELECT (SELECT count(*) FROM keeper.resolution_queue)"
                    " + (SELECT count(*) FROM keeper.price_feed_rules)"
                )
            )
        finally:
            await conn.close()

    assert asyncio.run(count()) == 0


def test_keeper_transactions_filter_by_every_job_the_ledger_holds(client: TestClient, settings: Settings) -> None:
    """Each job keeper.txs can hold (sql/034: the resolution steps too) is a valid filter; others are a 400."""
    admin = _auth(settings, ADMIN, "admin")
    for job in ("resolve", "finalize", "expire", "distribute", "fill"):
        r = client.get("/v1/admin/keeper/transactions", params={"job": job}, headers=admin)
        assert r.status_code == 200, (job, r.text)
    assert client.get("/v1/admin/keeper/transactions", params={"job": "resolv"}, headers=admin).status_code == 400
