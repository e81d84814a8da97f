"""Review hu: statements of docs/api.md checked against what the code does."""

from __future__ import annotations

import datetime as dt
import pathlib
from typing import Any

import asyncpg
import pytest

from keeper.notify import emit_ending_soon
from tests.api.rows import CHAIN, market

ROOT = pathlib.Path(__file__).resolve().parents[2]
API_DOC = ROOT / "docs" / "api.md"


@pytest.mark.pg
async def test_api_doc_does_not_deny_that_keeper_notifications_reach_the_feed(db_dsn: str) -> None:
    """keeper.notify writes each market_ending_soon notification to idx.outbox (event `notification`,
    room user:{address}): the feed pushes it (docs/feed.md, docs/keeper.md say so). docs/api.md must
    not tell a frontend developer the opposite."""
    holder = bytes.fromhex("a8" * 20)
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    conn = await asyncpg.connect(db_dsn)
    try:
        await market(conn, 43, end=dt.timedelta(minutes=10), block=23, created=created)
        await conn.execute(
            "INSERT INTO idx.positions (chain_id, market_id, holder, yes_shares, updated_block)"
            " VALUES ($1, 43, $2, 5, 1)",
            CHAIN,
            holder,
        )
        pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=2)
        async with pool:
            assert await emit_ending_soon(pool, CHAIN, int(created.timestamp()), 3_600) == {"stored": 1}
        rows = await conn.fetch(
            "SELECT event, rooms FROM idx.outbox WHERE chain_id = $1 AND event = 'notification'", CHAIN
        )
    finally:
        await conn.close()
    assert [(r["event"], list(r["rooms"])) for r in rows] == [("notification", ["user:0x" + holder.hex()])]
    text = " ".join(API_DOC.read_text().split())
    assert "Keeper notifications are not pushed on the feed" not in text, (
        "docs/api.md says keeper notifications are not pushed on the feed; keeper/notify.py writes them to the outbox"
    )


SQL_DOC = ROOT / "docs" / "sql.md"


def active_users_query() -> str:
    """The ```sql block of docs/sql.md that says it is "the same figure as /v1/stats?window=24h"."""
    import re

    for block in re.findall(r"```sql\n(.*?)```", SQL_DOC.read_text(), re.S):
        if "/v1/stats?window=24h" in block:
            return block
    raise AssertionError("docs/sql.md has no query announced as the figure of /v1/stats?window=24h")


@pytest.mark.pg
@pytest.mark.redis
async def test_sql_doc_active_users_query_is_the_apis_figure_with_two_chains(client: Any, db_dsn: str) -> None:
    """docs/sql.md: "one database holds every chain" and the active-users query is "the same figure as
    /v1/stats?window=24h". With users active on two chains the API answers the default chain's
    figure; the documented query must give the same."""
    from tests.api.rows import head

    conn = await asyncpg.connect(db_dsn)
    try:
        await head(conn, 100, safe=90, finalized=80)
        hour = await conn.fetchval("SELECT date_trunc('hour', now() - interval '2 hours', 'UTC')")
        await conn.execute(
            "INSERT INTO agg.active_hours (chain_id, hour, users) VALUES ($1, $3, 3), ($2, $3, 5)", CHAIN, 8453, hour
        )
        documented = await conn.fetchval(active_users_query())
    finally:
        await conn.close()
    r = client.get("/v1/stats", params={"window": "24h"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["activeUsers"] == 3, r.json()
    assert documented == r.json()["data"]["activeUsers"], (
        f"docs/sql.md's query sums every chain ({documented}); /v1/stats?window=24h answers one chain's figure"
    )


def test_design_references_in_docs_resolve() -> None:
    """docs cite "DESIGN.md decision 6", "decision 7", "decision 1": a reader must find the file and a
    numbered decision. No DESIGN.md exists and docs/decisions.md numbers none of its decisions."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    dangling = []
    decisions = (ROOT / "docs" / "decisions.md").read_text()
    for page in pages:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            where = f"{page.relative_to(ROOT)}:{n}"
            if "DESIGN.md" in line and not (ROOT / "DESIGN.md").exists():
                dangling.append(f"{where}: DESIGN.md (no such file)")
            for num in re.findall(r"\bdecision (\d+)\b", line):
                if not re.search(rf"(?m)^(?:#+ *|\*\*)?(?:Decision )?{num}[.)] ", decisions):
                    dangling.append(f"{where}: decision {num} (not numbered in docs/decisions.md)")
    assert not dangling, dangling


def documented_payload_fields(event: str) -> set[str]:
    """The payload fields docs/indexer.md's outbox table lists for `event`, plus id, tx_hash, time."""
    import re

    for line in (ROOT / "docs" / "indexer.md").read_text().splitlines():
        if line.startswith(f"| `{event}` |"):
            fields = line.split("|")[3]
            names = re.findall(r"(?:^|,)\s*([a-z_]+)", re.sub(r"\([^)]*\)", "", fields))
            return {*names, "id", "tx_hash", "time"}
    raise AssertionError(f"docs/indexer.md lists no payload for {event}")


@pytest.mark.pg
async def test_shares_trade_feed_payload_fields_are_documented(db_dsn: str) -> None:
    """A `shares:trade` message as the feed reads it (idx.outbox_messages, sql/082) carries only the
    fields docs/indexer.md lists (the feed camelCases them; docs/feed.md sends readers there)."""
    import json

    block_hash = bytes.fromhex("ab" * 32)
    conn = await asyncpg.connect(db_dsn)
    try:
        await conn.execute(
            """INSERT INTO idx.ev_shares_traded (chain_id, block_number, log_index, block_hash, tx_hash, block_time,
                 creator, trader, is_buy, amount, price, protocol_fee, creator_fee, dividend_fee, supply,
                 trader_shares, trader_claimable, locked_until, pool, acc_per_share, trader_pending_new,
                 trader_earns_from)
               VALUES ($1, 50, 0, $2, $2, now(), $3, $4, true, 2, 1000000, 1, 1, 1, 3, 2, 0, 0, 1, 0, 2,
                 extract(epoch from date_trunc('day', now()) + interval '2 days'))""",
            CHAIN,
            block_hash,
            bytes.fromhex("c1" * 20),
            bytes.fromhex("a1" * 20),
        )
        await conn.execute(
            """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
               VALUES ($1, 'shares:trade', ARRAY['global:all'], 50, 0, $2, NULL)""",
            CHAIN,
            block_hash,
        )
        payload = await conn.fetchval("SELECT payload FROM idx.outbox_messages WHERE event = 'shares:trade'")
    finally:
        await conn.close()
    sent = set(json.loads(payload))
    undocumented = sorted(sent - documented_payload_fields("shares:trade"))
    assert not undocumented, f"shares:trade payload fields not in docs/indexer.md: {undocumented}"


@pytest.mark.pg
@pytest.mark.redis
def test_nonce_answer_has_the_documented_keys(client: Any) -> None:
    """docs/api.md, Sign-In step 1: `POST /v1/auth/nonce` with `{}` → 201
    `{"data": {"nonce", "expiresAt", "domain", "uri", "chainId"}}`; the answer's keys are those."""
    import re

    text = API_DOC.read_text()
    m = re.search(r'`POST /v1/auth/nonce` with `\{\}` → `201 \{"data": \{([^}]*)\}\}`', text)
    assert m is not None, "docs/api.md no longer documents the nonce answer"
    documented = set(re.findall(r'"([A-Za-z]+)"', m.group(1)))
    r = client.post("/v1/auth/nonce", json={})
    assert r.status_code == 201, r.text
    assert set(r.json()["data"]) == documented, r.json()
