"""Time-based notifications the keeper emits (keeper.notifications) reach the user's list beside the
indexer's event notifications, and can be marked read."""

from __future__ import annotations

import asyncio

import asyncpg
from eth_account import Account
from starlette.testclient import TestClient

from tests.api.test_api_cache_limits_auth import CHAIN, sign, siwe_message


def test_keeper_ending_soon_notification_listed_and_marked_read(client: TestClient, db_dsn: str) -> None:
    """A market_ending_soon row from the keeper is listed newest-first with the event ones and marked read by id."""
    acct = Account.create()
    addr = acct.address
    holder = bytes.fromhex(addr[2:].lower())

    async def rows() -> None:
        conn = await asyncpg.connect(db_dsn)
        await conn.execute(
            """INSERT INTO idx.notifications (chain_id, block_number, log_index, recipient, kind, title, message,
                   market_id, block_time) VALUES ($1, 70, 1, $2, 'market_resolved', 'Resolved', 'm', 3,
                   now() - interval '1 hour')""",
            CHAIN,
            holder,
        )
        await conn.execute(
            """INSERT INTO keeper.notifications (chain_id, recipient, kind, market_id, title, message)
               VALUES ($1, $2, 'market_ending_soon', 9, 'Ending soon', 'Market 9 ends within the hour')""",
            CHAIN,
            holder,
        )
        await conn.close()

    asyncio.run(rows())
    nonce = client.post("/v1/auth/nonce", json={}).json()["data"]["nonce"]
    text = siwe_message(addr, nonce)
    token = client.post("/v1/auth/verify", json={"message": text, "signature": sign(acct, text)}).json()["data"][
        "token"
    ]
    auth = {"Authorization": f"Bearer {token}"}
    path = f"/v1/users/{addr}/notifications"

    listed = client.get(path, headers=auth).json()
    assert [n["id"] for n in listed["data"]] == ["0-9-market_ending_soon", "70-1-market_resolved"]
    assert listed["data"][0]["blockNumber"] is None
    assert listed["data"][0]["marketId"] == 9
    assert listed["meta"]["total"] == 2

    marked = client.post(f"{path}/read", json={"ids": ["0-9-market_ending_soon"]}, headers=auth).json()
    assert marked["data"] == {"marked": 1}
    unread = client.get(path, params={"unreadOnly": "true"}, headers=auth).json()["data"]
    assert [n["id"] for n in unread] == ["70-1-market_resolved"]
