"""A trade's feed message is built from its event row when read (idx.outbox_messages, sql/082), not written by
the indexer. What the readers get must be what the indexer used to write: `reference_*` below are the
builders the indexer had (indexer/fold.py before sql/082) and are the oracle here, over the whole range of
each column (hypothesis). Rows whose event rows are deleted keep their payload (a rollback, a reset)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.bulk import insert_arrays
from indexer.decode import SharesTraded, Trade
from indexer.fold import Message, event_id, hexaddr, iso, ratio6, usdc
from indexer.maintenance import reset_chain
from indexer.rows import EVENT_TABLES_BY_NAME, event_records
from indexer.write import keep_payloads, write_outbox

pytestmark = [pytest.mark.pg]

CHAIN = 31337
U256 = st.integers(0, 2**256 - 1)
U64 = st.integers(0, 2**64 - 1)
EARNS_FROM = st.one_of(st.just(0), st.integers(1, 2**40), st.integers(253402300790, 253402300810), U64)


def reference_trade(e: Trade) -> dict[str, Any]:
    total = e.yes_reserve + e.no_reserve
    trader = hexaddr(e.trader)
    yes_price = ratio6(e.no_reserve, total)
    return {
        "id": event_id(CHAIN, e),
        "tx_hash": "0x" + e.tx_hash.hex(),
        "time": iso(e.block_time),
        "market_id": e.market_id,
        "trader": trader,
        "side": "buy" if e.is_buy else "sell",
        "outcome": "yes" if e.outcome == 1 else "no",
        "collateral": usdc(e.collateral),
        "shares": usdc(e.shares),
        "fee": usdc(e.fee),
        "price": ratio6(e.collateral, e.shares),
        "yes_price_after": yes_price,
        "yes_reserve": usdc(e.yes_reserve),
        "no_reserve": usdc(e.no_reserve),
        "yes_price": yes_price,
        "no_price": ratio6(e.yes_reserve, total),
        "trader_yes": usdc(e.trader_yes),
        "trader_no": usdc(e.trader_no),
    }


def reference_shares(e: SharesTraded) -> dict[str, Any]:
    fees = e.protocol_fee + e.creator_fee + e.dividend_fee
    return {
        "id": event_id(CHAIN, e),
        "tx_hash": "0x" + e.tx_hash.hex(),
        "time": iso(e.block_time),
        "creator": hexaddr(e.creator),
        "trader": hexaddr(e.trader),
        "side": "buy" if e.is_buy else "sell",
        "shares": str(e.amount),
        "price": usdc(e.price),
        "protocol_fee": usdc(e.protocol_fee),
        "creator_fee": usdc(e.creator_fee),
        "dividend_fee": usdc(e.dividend_fee),
        "total": usdc(e.price + fees if e.is_buy else e.price - fees),
        "supply_after": str(e.supply),
        "trader_shares": str(e.trader_shares),
        "pool": usdc(e.pool),
        "distributed": usdc(e.distributed),
        "trader_pending": str(e.trader_pending_old + e.trader_pending_new),
        "trader_earns_from": iso(e.trader_earns_from) if e.trader_earns_from else None,
    }


def _position(draw: Any, i: int) -> dict[str, Any]:
    return {
        "block_number": i // 3 + 1,
        "log_index": i % 3,
        "block_hash": draw(st.binary(min_size=32, max_size=32)),
        "tx_hash": draw(st.binary(min_size=32, max_size=32)),
        "block_time": draw(st.integers(0, 2**37)),  # to year 6325: past every real chain's clock
    }


@st.composite
def trade(draw: Any, i: int) -> Trade:
    return Trade(
        **_position(draw, i),
        market_id=draw(st.integers(0, 2**63 - 1)),
        trader=draw(st.binary(min_size=20, max_size=20)),
        is_buy=draw(st.booleans()),
        outcome=draw(st.sampled_from([0, 1])),
        collateral=draw(U256),
        shares=draw(st.one_of(st.just(0), U256)),
        fee=draw(U256),
        creator_fee=draw(U256),
        yes_reserve=draw(st.one_of(st.just(0), U256)),
        no_reserve=draw(st.one_of(st.just(0), U256)),
        trader_yes=draw(U256),
        trader_no=draw(U256),
    )


@st.composite
def shares_traded(draw: Any, i: int) -> SharesTraded:
    return SharesTraded(
        **_position(draw, i),
        creator=draw(st.binary(min_size=20, max_size=20)),
        trader=draw(st.binary(min_size=20, max_size=20)),
        is_buy=draw(st.booleans()),
        amount=draw(U256),
        price=draw(U256),
        protocol_fee=draw(U256),
        creator_fee=draw(U256),
        dividend_fee=draw(U256),
        supply=draw(U256),
        trader_shares=draw(U256),
        trader_claimable=draw(U256),
        locked_until=draw(U64),
        pool=draw(U256),
        acc_per_share=draw(U256),
        distributed=draw(U256),
        trader_pending_old=draw(U256),
        trader_pending_new=draw(U256),
        trader_earns_from=draw(EARNS_FROM),
        pending_supply=draw(U256),
    )


@st.composite
def events(draw: Any) -> list[Trade | SharesTraded]:
    n = draw(st.integers(1, 12))
    return [draw(st.one_of(trade(i), shares_traded(i))) for i in range(n)]


def message(e: Trade | SharesTraded) -> Message:
    event = "market:trade" if isinstance(e, Trade) else "shares:trade"
    return Message(event, ("global:all",), e.block_number, e.log_index, e.block_hash, None)


def reference(e: Trade | SharesTraded) -> dict[str, Any]:
    return reference_trade(e) if isinstance(e, Trade) else reference_shares(e)


async def store(conn: asyncpg.Connection, evs: list[Trade | SharesTraded], copy: bool) -> None:
    """Event rows as the writer inserts them, then one outbox row each (payload NULL), through the
    writer's array path or its COPY path."""
    for table, records in event_records(CHAIN, evs).items():
        await insert_arrays(conn, table, EVENT_TABLES_BY_NAME[table].columns, records)
    messages = [message(e) for e in evs]
    if copy:  # the COPY path takes more than bulk.SMALL_ROWS messages; the same rows through it
        async with conn.transaction():
            records = [
                (CHAIN, m.event, list(m.rooms), m.block_number, m.log_index, m.block_hash, None) for m in messages
            ]
            await write_outbox(conn, CHAIN, messages, records)
    else:
        async with conn.transaction():
            await write_outbox(conn, CHAIN, messages)


async def read(conn: asyncpg.Connection) -> list[Any]:
    rows = await conn.fetch("SELECT payload::text AS p FROM idx.outbox_messages ORDER BY seq")
    return [None if r["p"] is None else orjson.loads(r["p"]) for r in rows]


async def clear(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM idx.outbox; DELETE FROM idx.ev_trade; DELETE FROM idx.ev_shares_traded")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(evs=events(), copy=st.booleans())
def test_a_trade_message_read_from_its_row_is_what_the_indexer_wrote(db_dsn: str, evs: Any, copy: bool) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(db_dsn)
        try:
            await clear(conn)
            await store(conn, evs, copy)
            got = await read(conn)
        finally:
            await conn.close()
        want = [reference(e) for e in evs]
        assert got == want
        assert [list(g) for g in got] == [list(w) for w in want]  # the same keys in the same order

    asyncio.run(go())


async def test_payloads_survive_their_event_rows_being_deleted(db_dsn: str) -> None:
    """A rollback deletes the event rows above the ancestor and keeps the outbox (a resume replays the old
    messages, then chain:reorg): keep_payloads writes them first. A reset deletes every event row."""
    t1 = Trade(1, 0, b"\x01" * 32, b"\x11" * 32, 1_700_000_000, 7, b"\xaa" * 20, True, 1, 5, 9, 1, 0, 4, 6, 9, 0)
    t2 = Trade(2, 0, b"\x02" * 32, b"\x22" * 32, 1_700_000_012, 7, b"\xbb" * 20, False, 0, 3, 2, 1, 0, 5, 5, 0, 2)
    conn = await asyncpg.connect(db_dsn)
    try:
        await store(conn, [t1, t2], copy=False)
        assert await conn.fetchval("SELECT count(*) FROM idx.outbox WHERE payload IS NULL") == 2
        async with conn.transaction():
            assert await keep_payloads(conn, CHAIN, 1) == 1  # block 2 is rolled back
            await conn.execute("DELETE FROM idx.ev_trade WHERE block_number > 1")
        # a replacement block 2 with another trade at the same position: the old message keeps the old one
        t2b = Trade(2, 0, b"\x03" * 32, b"\x33" * 32, 1_700_000_013, 8, b"\xcc" * 20, True, 0, 1, 1, 0, 0, 1, 1, 1, 0)
        await store(conn, [t2b], copy=False)
        assert await read(conn) == [reference(t1), reference(t2), reference(t2b)]
        await conn.execute(
            "INSERT INTO idx.checkpoints (chain_id, block_number, block_hash) VALUES ($1, 2, $2)", CHAIN, b"\x03" * 32
        )
        await reset_chain(conn, CHAIN)
        assert await conn.fetchval("SELECT count(*) FROM idx.ev_trade") == 0
        # the reset tells the feed to refetch the whole chain: a chain:gap over it, after the kept messages
        gap = {"chainId": CHAIN, "fromBlock": 0, "toBlock": 2, "events": 2}
        assert await read(conn) == [reference(t1), reference(t2), reference(t2b), gap]
    finally:
        await conn.close()
