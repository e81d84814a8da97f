"""Review hu: the feed's documented event names and published frame schemas against what the hub
sends. `chain:gap` (written by the indexer, docs/indexer.md) reaches every feed connection, but
docs/feed.md does not name it and docs/schemas/feed/event.json refuses it."""

from __future__ import annotations

import json
import pathlib
import re

import asyncpg
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from websockets.asyncio.client import connect

from tests.api.conftest import make_settings
from tests.api.rows import CHAIN, outbox
from tests.api.test_api_feed import recv_type, running, subscribe

pytestmark = [pytest.mark.pg, pytest.mark.redis]
ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "schemas" / "feed"
GAP = {"chain_id": CHAIN, "from_block": 10, "to_block": 900, "events": 12345}


def validator(name: str) -> Draft202012Validator:
    docs = [json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")]
    registry: Registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)
    schema = next(d for d in docs if d["$id"].endswith(f"/{name}"))
    return Draft202012Validator(schema, registry=registry)


async def test_a_chain_gap_frame_validates_against_the_published_schema(db_dsn: str, redis_url: str) -> None:
    """The frame the hub sends for a `chain:gap` outbox row is valid per docs/schemas/feed/event.json
    (and so server.json, the union a client validates with)."""
    conn = await asyncpg.connect(db_dsn)
    try:
        async with running(make_settings(db_dsn, redis_url)) as (_, _rt, url), connect(url) as ws:
            await subscribe(ws, ["market:1"])
            await outbox(conn, "chain:gap", ["global:all"], GAP)
            frame = await recv_type(ws, "event")
    finally:
        await conn.close()
    assert frame["event"] == "chain:gap"
    errors = [e.message for e in validator("event.json").iter_errors(frame)]
    assert not errors, (frame, errors)
    assert validator("server.json").is_valid(frame), frame


def test_feed_doc_names_every_event_the_hub_sends_to_all_connections() -> None:
    """docs/feed.md's event list names each event of api.feed.ALL_ROOMS_EVENTS."""
    from api.feed import ALL_ROOMS_EVENTS

    text = (ROOT / "docs" / "feed.md").read_text()
    missing = [e for e in ALL_ROOMS_EVENTS if not re.search(rf"`{re.escape(e)}`", text)]
    assert not missing, f"docs/feed.md does not name: {missing}"
