"""The tracker against a node that fails or lags on lookups (real anvil behind tests/keeper/rpcproxy.py):
a failed or empty receipt lookup is no evidence of a reorg or a drop, and a failed re-simulation is no
reason to cancel a fee bump."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from keeper import jobs
from tests.keeper.kit import ChainOps, Harness, fetch, harness, make_settings, mine_until_settled
from tests.keeper.rpcproxy import RpcProxy
from tests.keeper.test_keeper_tx import GWEI, due_markets, manual_mining

pytestmark = [pytest.mark.pg, pytest.mark.anvil]


async def _mined(h: Harness, db_dsn: str) -> None:
    for _ in range(100):
        await h.tx.track()
        (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs")
        if t["status"] != "pending":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the transaction was never seen mined")


@pytest.mark.parametrize("fault", ["error", "null"])
async def test_a_mined_tx_whose_receipt_lookups_fail_stays_mined_then_confirms(
    ops: ChainOps, db_dsn: str, deployment_path: Path, proxy: RpcProxy, fault: str
) -> None:
    """While every receipt lookup errors (a rate limit inside the batch) or comes back null (a node that
    has the block but not yet the receipt), a mined resolution is neither reorged nor dropped: the
    pass decides nothing; once lookups answer it confirms with reorg_count 0 and its key held."""
    (m,) = await due_markets(ops, db_dsn, 1)
    settings = make_settings(proxy.url, db_dsn, deployment_path, confirmations=4)
    async with harness(settings) as h:
        assert (await jobs.resolve(h.ctx))["sent"] == 1
        await _mined(h, db_dsn)
        proxy.faults["eth_getTransactionReceipt"] = fault  # type: ignore[assignment]
        for _ in range(4):
            ops.anvil.mine(1)
            s = await h.tx.track()
            assert (s.reorged, s.dropped) == (0, 0)
        assert proxy.counts["eth_getTransactionReceipt"] >= 4
        (t,) = await fetch(db_dsn, "SELECT status, reorg_count FROM keeper.txs")
        assert (t["status"], t["reorg_count"]) == ("mined", 0)
        proxy.faults.clear()
        await h.tx.wait_idle(30, 0.1)
    (t,) = await fetch(db_dsn, "SELECT status, reorg_count FROM keeper.txs")
    assert (t["status"], t["reorg_count"]) == ("confirmed", 0)
    (q,) = await fetch(db_dsn, "SELECT status FROM keeper.resolution_queue")
    assert q["status"] == "resolved"
    assert len(ops.proposed_events(m)) == 1


async def test_broadcast_with_an_unread_head_records_no_send_block(
    ops: ChainOps, db_dsn: str, deployment_path: Path, proxy: RpcProxy
) -> None:
    """When eth_blockNumber fails in the broadcast batch, the attempt's send block stays unknown (never 0,
    which made a fresh transaction look ancient: a fee bump at once); the next pass sends it again and
    records the real head, and no replacement is made."""
    await due_markets(ops, db_dsn, 1)
    settings = make_settings(proxy.url, db_dsn, deployment_path, replace_after_blocks=3)
    ops.anvil.call("evm_setAutomine", False)
    try:
        async with harness(settings) as h:
            proxy.faults["eth_blockNumber"] = "error"
            assert (await jobs.resolve(h.ctx))["sent"] == 1
            proxy.faults.clear()
            (a,) = await fetch(db_dsn, "SELECT sent_block FROM keeper.tx_attempts")
            assert a["sent_block"] is None
            s = await h.tx.track()
            assert s.replaced == 0
            (a,) = await fetch(db_dsn, "SELECT sent_block, last_sent_block FROM keeper.tx_attempts")
            assert a["sent_block"] is not None
            assert a["sent_block"] >= ops.anvil.head()
    finally:
        ops.anvil.call("evm_setAutomine", True)


async def test_a_fee_bump_whose_re_simulation_hits_a_busy_node_never_cancels(
    ops: ChainOps, db_dsn: str, deployment_path: Path, proxy: RpcProxy
) -> None:
    """A stuck proposal comes due for a bump while eth_estimateGas answers a rate-limit error: the bump
    waits (the tx is sent again as it is) instead of being swapped for a self-transfer; once the node
    answers, the real call is bumped and lands."""
    (m,) = await due_markets(ops, db_dsn, 1)
    settings = make_settings(proxy.url, db_dsn, deployment_path, replace_after_blocks=1)
    with manual_mining(ops.anvil):
        async with harness(settings) as h:
            assert (await jobs.resolve(h.ctx))["sent"] == 1
            ops.anvil.call("anvil_setNextBlockBaseFeePerGas", hex(60 * GWEI))
            proxy.faults["eth_estimateGas"] = "error"
            deferred = 0
            for _ in range(3):
                ops.anvil.mine(1)
                deferred += (await h.tx.track()).waiting.get("simulation_unavailable", 0)
            assert await fetch(db_dsn, "SELECT 1 FROM keeper.tx_attempts WHERE is_cancel") == []
            assert deferred >= 1
            proxy.faults.clear()
            await mine_until_settled(ops, h, db_dsn)
    (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs")
    assert t["status"] == "confirmed"
    assert await fetch(db_dsn, "SELECT 1 FROM keeper.tx_attempts WHERE is_cancel") == []
    assert ops.status(m)[:2] == (1, 1)  # our proposal (yes), not a cancelled nonce


@pytest.mark.parametrize("fault", ["malformed", "foreign"])
async def test_a_malformed_or_off_chain_receipt_is_no_answer_and_the_tx_confirms_later(
    ops: ChainOps, db_dsn: str, deployment_path: Path, proxy: RpcProxy, fault: str
) -> None:
    """Review s13 keeper items 3 and 5: a receipt with blockNumber null failed every tracker pass (a
    TypeError out of track()), and a receipt naming a block off the canonical chain was recorded as
    mined, then confirmed and finalized, and never looked at again. Now both are no answer that pass:
    the transaction stays pending, and confirms once the node answers truly."""
    await due_markets(ops, db_dsn, 1)
    settings = make_settings(proxy.url, db_dsn, deployment_path, confirmations=1)
    async with harness(settings) as h:
        proxy.faults["eth_getTransactionReceipt"] = fault  # type: ignore[assignment]
        assert (await jobs.resolve(h.ctx))["sent"] == 1
        for _ in range(4):
            ops.anvil.mine(1)
            s = await h.tx.track()  # raised TypeError ("malformed") before
            assert (s.mined, s.reorged, s.dropped) == (0, 0, 0)
        assert proxy.counts["eth_getTransactionReceipt"] >= 4
        (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs")
        assert t["status"] == "pending"  # was "confirmed" on the off-chain block ("foreign")
        proxy.faults.clear()
        await h.tx.wait_idle(30, 0.1)
    (t,) = await fetch(db_dsn, "SELECT status, reorg_count FROM keeper.txs")
    assert (t["status"], t["reorg_count"]) == ("confirmed", 0)


async def test_the_canonical_block_check_asks_the_node_that_gave_the_receipts(
    ops: ChainOps, db_dsn: str, deployment_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review s14c: the check that a fresh receipt's block is canonical drew its node again, so with
    several providers a receipt from a node ahead was checked against a lagging one (null: no answer)
    and dropped pass after pass. Both batches of a pass now name one node."""
    await due_markets(ops, db_dsn, 1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, confirmations=1)
    async with harness(settings) as h:
        nodes: list[tuple[int, int | None]] = []
        real = h.tx.rpc.batch

        async def batch(calls: list[tuple[str, list[object]]], node: int | None = None) -> list[object]:
            nodes.append((len(calls), node))
            return await real(calls, node=node)

        monkeypatch.setattr(h.tx.rpc, "batch", batch)
        assert (await jobs.resolve(h.ctx))["sent"] == 1
        ops.anvil.mine(1)
        await h.tx.track()
        (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs")
        assert t["status"] in ("mined", "confirmed")
    asked = [n for _, n in nodes if n is not None]
    assert len(asked) >= 2  # the pass's receipts batch and its canonical-block check
    assert len(set(asked[-2:])) == 1


async def test_slow_feed_reads_defer_some_rules_instead_of_timing_the_run_out(
    ops: ChainOps, db_dsn: str, deployment_path: Path, proxy: RpcProxy
) -> None:
    """Review s13 keeper item 4: every rule's feed was read, one call at a time, before anything was
    sent, with no bound: on a slow node the run outlived job_timeout_s (no proposal at all; five in a
    row halt the keeper). Now reads stop at half the timeout; the rest wait for the next run. (Each
    market has its own feed: markets on one feed share its reads.)"""
    from keeper.abi import encode_call
    from tests.keeper.kit import ADMIN, bind_rule, insert_markets

    feeds = ops.price_feeds(4, 3_500 * 10**8)
    end = ops.now() + 100
    markets = ops.create_markets(4, end)
    await insert_markets(db_dsn, markets, end)
    for m, f in zip(markets, feeds, strict=True):
        await bind_rule(db_dsn, m, f, 3_400 * 10**8)
    ops.advance(200)
    for f in feeds:  # a round after the end: each market walks back one round, a call of its own
        ops.send(ADMIN, f, encode_call("MockPriceFeed", "updateAnswer", 3_600 * 10**8))
    settings = make_settings(proxy.url, db_dsn, deployment_path, job_timeout_s=4.0)
    async with harness(settings) as h:
        proxy.delay_s = 1.0  # every eth_call a second late: four markets' reads alone take the whole timeout
        proxy.faults["eth_call"] = "slow"  # type: ignore[assignment]
        first = await jobs.resolve(h.ctx)
        assert 1 <= first["sent"] < 4, first  # before: all 4, after 4+ s of reads
        proxy.faults.clear()
        second = await jobs.resolve(h.ctx)
        assert first["sent"] + second["sent"] == 4
        await h.tx.wait_idle(30, 0.1)
    assert all(ops.status(m)[:2] == (1, 1) for m in markets)


async def test_run_once_with_transactions_still_open_exits_1_without_a_traceback(
    ops: ChainOps,
    db_dsn: str,
    deployment_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Review s13 keeper item 12: `run --once` ended in a TimeoutError traceback when its transactions
    were still open after its wait. Now one line, exit 1; the transaction stays in the ledger."""
    from keeper import daemon
    from tests.keeper.test_keeper_tx import manual_mining

    await due_markets(ops, db_dsn, 1)
    monkeypatch.setattr(daemon, "ONCE_WAIT_S", 1.0)
    with manual_mining(ops.anvil):  # nothing mines: the proposal stays pending
        code = await daemon.Daemon(make_settings(ops.anvil.url, db_dsn, deployment_path)).main(True, ["resolve"], print)
    out = capsys.readouterr()
    assert code == 1
    assert "transactions_still_open" in out.out + out.err
    (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs")
    assert t["status"] == "pending"


async def test_a_rate_limited_market_read_is_no_answer_not_a_missing_market(ops: ChainOps, proxy: RpcProxy) -> None:
    """Review s13 keeper item 12: `keeper resolve` (core.resolution.read_market) read any eth_call error
    as "market does not exist" (exit 2, refused input); a rate limit is the chain not answering."""
    from core.resolution import ChainUnavailable, read_market

    om = ops.dep.opinion_market
    facts, _ = await read_market([ops.anvil.url], om, 999_999)
    assert facts is None  # a real MarketNotFound revert
    proxy.faults["eth_call"] = "error"
    with pytest.raises(ChainUnavailable, match="eth_call failed"):
        await read_market([proxy.url], om, 999_999)
