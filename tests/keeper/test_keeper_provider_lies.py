"""The keeper against providers that lie in the ways real ones do (review s15), on a real anvil and
PostgreSQL: a broadcast accepted but answered with an error, erigon's answer to a repeated send, receipts
that lag the nonce, a transaction count that lags the ledger — and a rule market the contract refuses.
Each ends with the ledger truthful and every step sent exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest
from web3 import Web3

from core.deploy import anvil_account
from keeper import jobs
from keeper.abi import decode_result, encode_call
from tests.keeper.kit import ADMIN, KEEPER, ChainOps, bind_rule, fetch, harness, insert_markets, make_settings
from tests.keeper.rpcproxy import RpcProxy
from tests.keeper.test_keeper_distribute import buy_shares, insert_creators
from tests.keeper.test_keeper_tx import due_markets, manual_mining

pytestmark = [pytest.mark.pg, pytest.mark.anvil]


async def test_a_broadcast_answered_with_an_error_that_the_node_holds_is_never_cancelled(
    ops: ChainOps, db_dsn: str, deployment_path: Path, proxy: RpcProxy
) -> None:
    """The provider broadcast the proposal and answered "internal error". Each pass counted a refusal and
    after max_broadcast_refusals (5, ~10 s: less than a mainnet block) the keeper cancelled its own
    proposal at its nonce; the operator's entry ended failed. Now a node that holds the attempt makes its
    broadcast errors moot: the proposal mines and the entry is resolved."""
    (m,) = await due_markets(ops, db_dsn, 1)
    settings = make_settings(proxy.url, db_dsn, deployment_path)
    proxy.faults["eth_sendRawTransaction"] = "lie"
    with manual_mining(ops.anvil):
        async with harness(settings) as h:
            assert (await jobs.resolve(h.ctx))["sent"] == 1
            for _ in range(6):  # no block for six tracker passes
                await h.tx.track()
            ops.anvil.mine(1)
            for _ in range(5):
                await h.tx.track()
                ops.anvil.mine(1)
    assert proxy.counts["eth_sendRawTransaction"] >= 1
    atts = await fetch(db_dsn, "SELECT is_cancel FROM keeper.tx_attempts")
    assert [a["is_cancel"] for a in atts] == [False]
    (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs")
    assert t["status"] in ("mined", "confirmed")
    assert ops.status(m)[0] == 1  # proposed


async def test_erigons_answer_to_a_repeat_after_a_crash_is_the_node_holding_it(
    ops: ChainOps, db_dsn: str, deployment_path: Path, proxy: RpcProxy
) -> None:
    """A SIGKILL between the broadcast and its mark (KEEPER_CRASH_AT=after_broadcast leaves sent_block NULL)
    makes the restarted keeper send again; erigon answers a repeat of a pooled tx "INTERNAL_ERROR: existing
    tx with same hash", which counted as a refusal every pass until the keeper cancelled its own proposal.
    It is an "already known" answer now."""
    (m,) = await due_markets(ops, db_dsn, 1)
    settings = make_settings(proxy.url, db_dsn, deployment_path)
    proxy.faults["eth_sendRawTransaction"] = "erigon_dup"
    with manual_mining(ops.anvil):
        async with harness(settings) as h:
            assert (await jobs.resolve(h.ctx))["sent"] == 1
        await fetch(
            db_dsn, "UPDATE keeper.tx_attempts SET sent_block = NULL, last_sent_block = NULL, broadcast_at = NULL"
        )
        async with harness(settings) as h:  # the restarted keeper
            for _ in range(6):
                await h.tx.track()
            for _ in range(4):
                ops.anvil.mine(1)
                await h.tx.track()
    assert proxy.counts["eth_sendRawTransaction"] >= 1  # the repeat was answered erigon's way
    atts = await fetch(db_dsn, "SELECT is_cancel, refusals FROM keeper.tx_attempts")
    assert [(a["is_cancel"], a["refusals"]) for a in atts] == [(False, 0)]
    assert ops.status(m)[0] == 1


def distributed_events(ops: ChainOps, creator: str) -> int:
    from core.contracts import load_abi

    abi = load_abi("CreatorShares")
    event = next(e for e in abi if e.get("type") == "event" and e["name"] == "DividendsDistributed")
    topic = Web3.keccak(text=f"DividendsDistributed({','.join(i['type'] for i in event['inputs'])})")
    logs = ops.w3.eth.get_logs(
        {
            "fromBlock": 0,
            "toBlock": "latest",
            "address": Web3.to_checksum_address(ops.dep.creator_shares),
            "topics": [topic, "0x" + bytes.fromhex(creator[2:]).rjust(32, b"\0").hex()],
        }
    )
    return len(logs)


async def test_receipts_that_lag_the_nonce_never_make_a_mined_distribution_dropped(
    ops: ChainOps, db_dsn: str, deployment_path: Path, proxy: RpcProxy
) -> None:
    """A node showed the keeper's nonce used and no receipt for a few blocks (an index catching up, a load
    balancer): the mined distribution was recorded dropped ("something else signed with the keeper key"),
    its job key freed, and the next run of the same period distributed the creator again. Now "dropped"
    waits for the nonce to be used in finalized state; the receipt comes first and the row is mined."""
    a, holder = anvil_account(3), anvil_account(4)
    for acct in (a, holder):
        ops.fund_usdc(acct, 1_000 * 10**6)
    buy_shares(ops, a, a.address, 1)
    buy_shares(ops, holder, a.address, 2)
    await insert_creators(db_dsn, [a.address.lower()])
    ops.advance(12 * 3600)  # half the pool vested
    settings = make_settings(proxy.url, db_dsn, deployment_path)
    period = "2026-12-07"
    async with harness(settings) as h:
        proxy.faults["eth_getTransactionReceipt"] = "null"  # receipts lag the nonce
        assert (await jobs.distribute(h.ctx, period=period))["sent"] == 1
        for _ in range(4):
            await h.tx.track()
            ops.anvil.mine(1)
        (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs")
        assert t["status"] == "pending"  # nonce used, no receipt: waiting, not dropped
        proxy.faults.clear()  # the receipts catch up
        for _ in range(3):
            await h.tx.track()
        ops.advance(600)  # the same UTC day: the scheduled run (or a catch-up) comes again
        assert (await jobs.distribute(h.ctx, period=period))["sent"] == 0
        await h.tx.wait_idle(30, 0.1)
    rows = await fetch(db_dsn, "SELECT status FROM keeper.txs")
    assert [r["status"] for r in rows] in (["mined"], ["confirmed"])
    assert distributed_events(ops, a.address) == 1


async def test_a_transaction_count_behind_the_ledger_never_reuses_a_mined_nonce(
    ops: ChainOps, db_dsn: str, deployment_path: Path, proxy: RpcProxy
) -> None:
    """With nothing pending the chain's count was taken as the truth: a node one block behind made the next
    run sign at the nonce the keeper's own confirmed proposal holds, and the ledger's unique nonce index
    failed every record of the run. The count is now never below what the ledger saw mined."""
    await due_markets(ops, db_dsn, 1)
    settings = make_settings(proxy.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        before = ops.keeper_nonce()
        assert (await jobs.resolve(h.ctx))["sent"] == 1
        await h.tx.wait_idle(30, 0.1)
        proxy.stale_count = before  # the node lags one block behind our last transaction
        await h.tx.track()  # resyncs the nonce from that node
        await due_markets(ops, db_dsn, 3)
        assert (await jobs.resolve(h.ctx))["sent"] == 3
        proxy.stale_count = None
        await h.tx.wait_idle(30, 0.1)
    rows = await fetch(db_dsn, "SELECT nonce, status FROM keeper.txs ORDER BY nonce")
    assert [r["nonce"] for r in rows] == list(range(before, before + 4))
    assert {r["status"] for r in rows} <= {"mined", "confirmed"}


async def test_a_rule_market_the_contract_refuses_is_an_item_failure_each_run(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """A price-feed-rule market whose proposal the contract refuses (here the keeper's RESOLVER_ROLE was
    revoked) was only skipped each run: no KeeperItemFailed, never overdue, until the expire job voided it
    INVALID although the rule had an answer. It is an item failure now, as for an operator's entry."""
    feed = ops.dep.price_feed
    assert feed is not None
    ops.send(ADMIN, feed, encode_call("MockPriceFeed", "updateAnswer", 3_500 * 10**8))
    end = ops.now() + 100
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    await bind_rule(db_dsn, m, feed, 3_400 * 10**8)
    om = Web3.to_checksum_address(ops.dep.opinion_market)
    role = decode_result(
        "OpinionMarket",
        "RESOLVER_ROLE",
        bytes(ops.w3.eth.call({"to": om, "data": encode_call("OpinionMarket", "RESOLVER_ROLE")})),
    )[0]
    ops.send(ADMIN, ops.dep.opinion_market, encode_call("OpinionMarket", "revokeRole", role, KEEPER.address))
    ops.advance(200)
    ops.send(ADMIN, feed, encode_call("MockPriceFeed", "updateAnswer", 3_500 * 10**8))  # the deciding round
    async with harness(make_settings(ops.anvil.url, db_dsn, deployment_path)) as h:
        for _ in range(2):
            counts = await jobs.resolve(h.ctx)
            assert (counts["failed"], counts["sent"]) == (1, 0)
        failures = h.metrics.registry.get_sample_value(
            "keeper_item_failures_total", {"job": "resolve", "stage": "simulate"}
        )
    assert failures == 2
    decisions = await fetch(db_dsn, "SELECT action, reason FROM keeper.decisions WHERE action = 'failed'")
    assert decisions
    assert "AccessControlUnauthorizedAccount" in decisions[0]["reason"]
