"""The published feed frame schemas (docs/schemas/feed/*.json) against real frames: every frame a
client sends in this run and every frame a running feed answers must validate, and every frame
type the schemas name must have been seen."""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

import asyncpg
import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from websockets.asyncio.client import ClientConnection, connect

from api.auth import Principal, issue_token
from tests.api.conftest import ADMIN, make_settings
from tests.api.rows import head, outbox
from tests.api.test_api_feed import USER, broadcast_listeners, recv, running, trade_row

pytestmark = [pytest.mark.pg, pytest.mark.redis]
SCHEMAS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "schemas" / "feed"
CLIENT = ("subscribe", "unsubscribe", "ping", "auth")
SERVER = ("subscribed", "unsubscribed", "event", "replayed", "pong", "heartbeat", "error", "authenticated")


def _validators() -> tuple[Draft202012Validator, Draft202012Validator]:
    docs = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
    assert set(docs) == {f"{n}.json" for n in (*CLIENT, *SERVER, "client", "server")}
    registry: Registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs.values())
    for d in docs.values():
        Draft202012Validator.check_schema(d)
    make = lambda name: Draft202012Validator(docs[name], registry=registry, format_checker=FormatChecker())  # noqa: E731
    return make("client.json"), make("server.json")


class Recorder:
    """Validates every frame sent and received on a connection and keeps the kinds seen."""

    def __init__(self, client: Draft202012Validator, server: Draft202012Validator) -> None:
        self.client, self.server = client, server
        self.sent: set[str] = set()
        self.received: set[str] = set()
        self.events: set[str] = set()

    async def send(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        errors = [e.message for e in self.client.iter_errors(frame)]
        assert not errors, (frame, errors)
        self.sent.add(frame["op"])
        await ws.send(json.dumps(frame))

    async def next(self, ws: ClientConnection, kind: str, wait_s: float = 10) -> dict[str, Any]:
        """Frames until one of `kind`; each one validated against server.json."""
        while True:
            m = await recv(ws, wait_s)
            errors = [e.message for e in self.server.iter_errors(m)]
            assert not errors, (m, errors)
            self.received.add(m["type"])
            if m["type"] == "event":
                self.events.add(m["event"])
            if m["type"] == kind:
                return m


def test_schema_files_refuse_what_the_feed_refuses() -> None:
    """A few frames the server answers with an error are invalid by the client schema too."""
    client, _ = _validators()
    for bad in (
        {"op": "subscribe", "rooms": []},
        {"op": "subscribe", "rooms": ["market:x"]},
        {"op": "subscribe", "rooms": ["market:1"], "since": -1},
        {"op": "subscribe", "rooms": ["market:1"], "extra": 1},
        {"op": "auth", "token": ""},
        {"op": "dance"},
    ):
        assert not client.is_valid(bad), bad


async def test_real_frames_match_the_published_schemas(db_dsn: str, redis_url: str) -> None:
    """subscribe/auth/ping/unsubscribe, live events (trade, notification, reorg, maintenance), a
    `since` replay, heartbeats and errors — all valid; every frame type seen."""
    rec = Recorder(*_validators())
    conn = await asyncpg.connect(db_dsn)
    await head(conn, 100, safe=90, finalized=80)
    settings = make_settings(db_dsn, redis_url, feed_heartbeat_s=0.3)
    user_token, _ = issue_token(settings, Principal(USER, frozenset({"user"})))
    admin_token, _ = issue_token(settings, Principal(ADMIN, frozenset({"user", "admin"})))
    try:
        async with running(settings) as (app, rt, url), connect(url) as ws:
            await rec.send(ws, {"op": "ping"})
            await rec.next(ws, "pong")
            await rec.send(ws, {"op": "auth", "token": user_token})
            await rec.next(ws, "authenticated")
            await rec.send(ws, {"op": "subscribe", "rooms": ["market:1", f"user:{USER.upper().replace('0X', '0x')}"]})
            first = (await rec.next(ws, "subscribed"))["seq"]
            await trade_row(conn, 1, 95, 3, collateral_usdc="12.500000", side="buy")
            await rec.next(ws, "event")
            await outbox(
                conn,
                "notification",
                [f"user:{USER}"],
                {"kind": "market_resolved", "title": "T", "message": "M", "market_id": 1, "recipient": USER},
                96,
                0,
            )
            await rec.next(ws, "event")
            await outbox(conn, "chain:reorg", ["global:all"], {"common_ancestor": 90, "removed": []}, 90)
            await rec.next(ws, "event")
            await broadcast_listeners(rt, 1)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
                r = await http.post(
                    "/v1/admin/maintenance",
                    json={"message": "upgrade at noon"},
                    headers={"Authorization": f"Bearer {admin_token}"},
                )
                assert r.status_code == 202, r.text
            assert (await rec.next(ws, "event"))["seq"] is None
            await rec.next(ws, "heartbeat")
            await rec.send(ws, {"op": "unsubscribe", "rooms": ["market:1"]})
            await rec.next(ws, "unsubscribed")
            await ws.send(json.dumps({"op": "subscribe", "rooms": ["market:x"]}))  # invalid on purpose
            assert (await rec.next(ws, "error"))["code"] == "bad_room"

            async with connect(url) as again:
                await rec.send(again, {"op": "subscribe", "rooms": ["market:1"], "since": first})
                await rec.next(again, "subscribed")
                replayed = await rec.next(again, "replayed")
                assert replayed["events"] >= 1
        assert rec.sent == set(CLIENT)
        assert rec.received == set(SERVER)
        assert {"market:trade", "notification", "chain:reorg", "system:maintenance"} <= rec.events
    finally:
        await conn.close()
    await asyncio.sleep(0)
