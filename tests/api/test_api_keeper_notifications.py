"""Time-based notifications the keeper emits (keeper.notifications) reach the user's list beside the
indexer's event notifications, can be marked read, and reach the feed through the outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import asyncpg
import pytest
from eth_account import Account
from starlette.testclient import TestClient
from websockets.asyncio.client import ClientConnection, connect

from api.auth import Principal, issue_token
from keeper.notify import emit_ending_soon
from tests.api.conftest import make_settings
from tests.api.rows import market
from tests.api.test_api_cache_limits_auth import CHAIN, sign, siwe_message
from tests.api.test_api_feed import recv_type, running, subscribe

pytestmark = [pytest.mark.pg, pytest.mark.redis]


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


async def test_keeper_notification_reaches_the_signed_in_owner_only_and_resumes_after_an_api_restart(
    db_dsn: str, redis_url: str
) -> None:
    """The keeper's ending-soon notification travels the outbox: the owner signed in on the feed gets
    event `notification` in user:{address} with the HTTP API's camelCase item, an anonymous client in
    the same room does not; one emitted while the API was down is replayed after its restart to the
    owner resuming with `since`."""
    holder = bytes.fromhex("a7" * 20)
    address = "0x" + holder.hex()
    room = "user:" + address
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    now = int(created.timestamp())
    conn = await asyncpg.connect(db_dsn)
    for mid, block in ((41, 21), (42, 22)):
        await market(conn, mid, end=dt.timedelta(minutes=10 if mid == 41 else 90), block=block, created=created)
        await conn.execute(
            "INSERT INTO idx.positions (chain_id, market_id, holder, yes_shares, updated_block)"
            " VALUES ($1, $2, $3, 5, 1)",
            CHAIN,
            mid,
            holder,
        )
    pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=2)
    settings = make_settings(db_dsn, redis_url)
    token, _ = issue_token(settings, Principal(address, frozenset({"user"})))

    async def sign_in(ws: ClientConnection) -> None:
        await ws.send(json.dumps({"op": "auth", "token": token}))
        assert (await recv_type(ws, "authenticated"))["address"] == address

    async with pool, running(settings) as (_, _rt, url):
        async with connect(url) as owner, connect(url) as anonymous:
            await sign_in(owner)
            await subscribe(owner, [room])
            await subscribe(anonymous, [room])
            assert await emit_ending_soon(pool, CHAIN, now, 3_600) == {"stored": 1}
            first = await recv_type(owner, "event")
            await anonymous.send(json.dumps({"op": "ping"}))
            pong = await recv_type(anonymous, "pong")  # no event arrived before the pong
            assert pong["seq"] >= first["seq"]
    assert first["event"] == "notification"
    assert first["rooms"] == [room]
    assert first["data"]["id"] == "0-41-market_ending_soon"
    assert first["data"]["marketId"] == 41
    assert first["data"]["recipient"] == address

    pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=2)
    async with pool:  # the API is down: the notification waits in the outbox
        assert await emit_ending_soon(pool, CHAIN, now + 3_600, 3_600) == {"stored": 1}
    async with running(make_settings(db_dsn, redis_url)) as (_, _rt, url), connect(url) as ws:
        await sign_in(ws)
        await subscribe(ws, [room], since=first["seq"])
        second = await recv_type(ws, "event")
    assert second["seq"] > first["seq"]
    assert (second["event"], second["data"]["id"]) == ("notification", "0-42-market_ending_soon")
    await conn.close()
