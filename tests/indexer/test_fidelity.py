"""Data fidelity: 2^256−1 amounts, empty strings, NUL bytes and invalid UTF-8 in questions, and long
stretches of empty blocks. Extreme values come from the real contract addresses via LogReplayer
(bench/LogReplayer.sol installed with anvil_setCode), since the contracts themselves cap amounts."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_abi import encode as abi_encode  # type: ignore[attr-defined]

from bench.indexer_chain import T_CREATED, T_SHARES, T_TRADE, Node, addr_word, install_replayer, record, send_records
from tests.indexer.helpers import Node as Chain
from tests.indexer.helpers import fetch, index_to_head, make_settings

pytestmark = [pytest.mark.anvil, pytest.mark.pg]

MAX = 2**256 - 1


def w(v: int) -> bytes:
    return v.to_bytes(32, "big")


def test_extreme_values_and_strings_round_trip_exactly(node: Chain, db_dsn: str, tmp_path: Path) -> None:
    """uint256 max amounts, '' and NUL/invalid UTF-8 strings are stored exactly (bytea twin when lossy)."""
    rpc = Node(node.url)
    install_replayer(rpc, node.deployment)
    sender = rpc.call("eth_accounts")[0]
    trader, creator = b"\x11" * 20, b"\x22" * 20
    questions = [b"", b"nul\x00inside", b"\xff\xfe not utf-8", "emoji ✓".encode()]
    om: list[bytes] = []
    for i, q in enumerate(questions, start=1):
        data = abi_encode(
            ["bytes", "bytes", "uint256", "uint256", "uint256", "uint256"],
            [q, b"" if i % 2 else b"\x00", 2**32 - 1, MAX, MAX, MAX],
        )
        om.append(record([T_CREATED, w(i), addr_word(creator)], data))
    om.append(
        record(
            [T_TRADE, w(1), addr_word(trader)],
            b"".join([w(1), w(1), w(MAX), w(MAX), w(MAX), w(0), w(MAX), w(MAX), w(MAX), w(0)]),
        )
    )
    cs = [
        record(
            [T_SHARES, addr_word(creator), addr_word(creator)],
            b"".join(
                [
                    *(w(1), w(MAX), w(MAX), w(0), w(0), w(0), w(MAX), w(MAX), w(MAX), w(MAX), w(MAX), w(MAX), w(0)),
                    *(w(0), w(MAX), w(MAX), w(MAX)),  # the warm-up's lots, their 00:00, the creator's pending supply
                ]
            ),
        )
    ]
    send_records(rpc, node.deployment, [om, cs], sender, mine=False)
    assert index_to_head(make_settings(node.url, node.deployment, db_dsn, tmp_path)) == 0

    rows = fetch(
        db_dsn,
        "SELECT market_id, question, question_bytes, category, category_bytes, initial_liquidity"
        " FROM idx.ev_market_created ORDER BY market_id",
    )
    for r, q in zip(rows, questions, strict=True):
        original = bytes(r["question_bytes"]) if r["question_bytes"] is not None else r["question"].encode()
        assert original == q
        assert "\x00" not in r["question"]
        assert int(r["initial_liquidity"]) == MAX
    assert rows[0]["question"] == ""
    assert rows[0]["question_bytes"] is None
    assert rows[1]["category_bytes"] == b"\x00"
    markets = fetch(db_dsn, "SELECT question_bytes, yes_reserve FROM idx.markets ORDER BY market_id")
    assert bytes(markets[1]["question_bytes"]) == b"nul\x00inside"
    (trade,) = fetch(db_dsn, "SELECT collateral, shares, fee, trader_yes FROM idx.ev_trade")
    assert {int(v) for v in trade.values()} == {MAX}
    (pos,) = fetch(db_dsn, "SELECT yes_shares, bought, yes_cost FROM idx.positions")
    assert [int(v) for v in pos.values()] == [MAX, MAX, MAX]
    (market,) = fetch(db_dsn, "SELECT volume, fees FROM idx.markets WHERE market_id = 1")
    assert [int(v) for v in market.values()] == [MAX, MAX]
    (holding,) = fetch(
        db_dsn, "SELECT shares, credited, acc_paid, locked_until, pend_new, earns_from FROM idx.share_holdings"
    )
    assert {int(v) for v in holding.values()} == {MAX}
    (creator_row,) = fetch(db_dsn, "SELECT pending_supply FROM idx.creators")
    assert int(creator_row["pending_supply"]) == MAX
    (view,) = fetch(db_dsn, "SELECT collateral FROM public.trades")
    assert str(view["collateral"]) == f"{MAX // 10**6}.{MAX % 10**6:06d}"


def test_long_stretch_of_empty_blocks_advances_the_checkpoint(node: Chain, db_dsn: str, tmp_path: Path) -> None:
    """Thousands of blocks without our events: the checkpoint reaches the head, only needed blocks are kept."""
    for _ in range(12):  # anvil_mine gets slower than linear with the count per call
        node.anvil.mine(250)
    head = node.anvil.head()
    assert index_to_head(make_settings(node.url, node.deployment, db_dsn, tmp_path, initial_span=500)) == 0
    (cp,) = fetch(db_dsn, "SELECT block_number FROM idx.checkpoints")
    assert cp["block_number"] == head
    kept = fetch(db_dsn, "SELECT count(*) AS n FROM idx.blocks")[0]["n"]
    assert kept < 200  # the unfinalized window (64 on anvil) + blocks with events, not 3,000
