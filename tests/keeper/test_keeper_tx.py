"""The transaction manager against a real anvil: fee spikes and stuck transactions, reorgs,
nonce gaps, fencing of a stale leader."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from keeper import jobs
from keeper.leader import Leader
from keeper.store import FencedError
from keeper.tx import TxRequest
from tests.chain import Anvil
from tests.keeper.kit import ChainOps, fetch, harness, insert_markets, make_settings, mine_until_settled, queue

pytestmark = [pytest.mark.pg, pytest.mark.anvil]
GWEI = 10**9


@contextlib.contextmanager
def manual_mining(anvil: Anvil) -> Iterator[None]:
    """Automine off; afterwards automine on and the base fee back where it was (evm_revert does not
    reset anvil's next-block base fee)."""
    base = anvil.call("eth_getBlockByNumber", "latest", False)["baseFeePerGas"]
    anvil.call("evm_setAutomine", False)
    try:
        yield
    finally:
        anvil.call("evm_setAutomine", True)
        anvil.call("anvil_setNextBlockBaseFeePerGas", base)


async def due_markets(ops: ChainOps, dsn: str, n: int, outcome: int = 1) -> list[int]:
    end = ops.now() + 30
    ids = ops.create_markets(n, end)
    await insert_markets(dsn, ids, end)
    for m in ids:
        await queue(dsn, m, outcome)
    ops.advance(60)
    return ids


async def test_fee_spike_leaves_tx_stuck_then_replacements_follow_within_cap(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """A base-fee spike after signing strands the tx; after N blocks it is re-signed with ≥ 12.5 % more on
    both fee fields (never above the cap) until it is mined, once."""
    (m,) = await due_markets(ops, db_dsn, 1)
    cap = 200 * GWEI
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, replace_after_blocks=2, max_fee_per_gas_cap=cap)
    with manual_mining(ops.anvil):
        async with harness(settings) as h:
            assert (await jobs.resolve(h.ctx))["sent"] == 1
            ops.anvil.call("anvil_setNextBlockBaseFeePerGas", hex(60 * GWEI))
            await mine_until_settled(ops, h, db_dsn)
    attempts = await fetch(
        db_dsn, "SELECT attempt, max_fee_per_gas, max_priority_fee_per_gas FROM keeper.tx_attempts ORDER BY attempt"
    )
    assert len(attempts) >= 2
    for old, new in itertools.pairwise(attempts):
        assert new["max_fee_per_gas"] * 10_000 >= old["max_fee_per_gas"] * 11_250
        assert new["max_priority_fee_per_gas"] * 10_000 >= old["max_priority_fee_per_gas"] * 11_250
    assert all(a["max_fee_per_gas"] <= cap for a in attempts)
    (t,) = await fetch(db_dsn, "SELECT status, mined_tx_hash FROM keeper.txs")
    assert t["status"] == "confirmed"
    assert ops.market(m)[4]
    assert len(ops.proposed_events(m)) == 1


async def test_fee_cap_below_base_fee_waits_without_bumping_past_the_cap(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """When the cap forbids a valid replacement the tx waits (metric/log) instead of spiralling."""
    await due_markets(ops, db_dsn, 1)
    cap = 3 * GWEI
    settings = make_settings(
        ops.anvil.url,
        db_dsn,
        deployment_path,
        replace_after_blocks=1,
        max_fee_per_gas_cap=cap,
        max_priority_fee_cap=GWEI,
    )
    with manual_mining(ops.anvil):
        async with harness(settings) as h:
            assert (await jobs.resolve(h.ctx))["sent"] == 1
            ops.anvil.call("anvil_setNextBlockBaseFeePerGas", hex(50 * GWEI))
            waited = 0
            for _ in range(4):
                ops.anvil.mine(1)
                s = await h.tx.track()
                waited += s.waiting.get("fee_cap_reached", 0)
    attempts = await fetch(db_dsn, "SELECT max_fee_per_gas FROM keeper.tx_attempts")
    assert all(a["max_fee_per_gas"] <= cap for a in attempts)
    assert waited >= 1
    (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs")
    assert t["status"] == "pending"


@pytest.mark.parametrize(("confirmations", "status_before"), [(3, "mined"), (1, "confirmed")])
async def test_mined_resolution_reorged_out_is_rebroadcast_and_lands(
    ops: ChainOps, db_dsn: str, deployment_path: Path, confirmations: int, status_before: str
) -> None:
    """anvil_reorg drops the block holding the resolution (before or after it counted as confirmed: it is
    watched until finalized): the ledger goes back to pending, the recorded raw transaction is rebroadcast
    and mined again; the market ends resolved exactly once."""
    (m,) = await due_markets(ops, db_dsn, 1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, confirmations=confirmations)
    async with harness(settings) as h:
        assert (await jobs.resolve(h.ctx))["sent"] == 1
        # anvil answers eth_sendRawTransaction before it mines the block: track until the ledger sees it
        for _ in range(100):
            await h.tx.track()
            (t,) = await fetch(db_dsn, "SELECT status, mined_block FROM keeper.txs")
            if t["status"] != "pending":
                break
            await asyncio.sleep(0.05)
        assert t["status"] == status_before
        depth = ops.anvil.head() - t["mined_block"] + 1
        ops.anvil.call("anvil_reorg", depth, [])
        assert not ops.market(m)[4] or len(ops.proposed_events(m)) == 1
        summary = await h.tx.track()
        assert summary.reorged == 1
        ops.anvil.mine(3)
        await h.tx.wait_idle(30, 0.1)
    (t,) = await fetch(db_dsn, "SELECT status, reorg_count FROM keeper.txs")
    assert (t["status"], t["reorg_count"]) == ("confirmed", 1)
    assert ops.market(m)[4]
    assert len(ops.proposed_events(m)) == 1


async def test_nonce_gap_is_filled_with_a_self_transfer(ops: ChainOps, db_dsn: str, deployment_path: Path) -> None:
    """A nonce lost below a pending tx is filled by a zero-value self-transfer; both then mine."""
    (m,) = await due_markets(ops, db_dsn, 1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    base = ops.keeper_nonce()
    async with harness(settings) as h:
        await h.tx.resync_nonce()
        h.tx._next = base + 1  # simulate a nonce allocated and lost (e.g. a crash of an older version)
        assert (await jobs.resolve(h.ctx))["sent"] == 1
        await h.tx.track()
        assert h.metrics.nonce_gap._value.get() == 1
        await h.tx.wait_idle(30, 0.1)
    rows = await fetch(db_dsn, "SELECT job, nonce, status FROM keeper.txs ORDER BY nonce")
    assert [(r["job"], r["nonce"], r["status"]) for r in rows] == [
        ("fill", base, "confirmed"),
        ("resolve", base + 1, "confirmed"),
    ]
    assert ops.market(m)[4]


async def test_stale_leader_is_fenced_and_sends_nothing(ops: ChainOps, db_dsn: str, deployment_path: Path) -> None:
    """A leader that lost its lock without noticing cannot record, hence cannot broadcast: the new
    leader's epoch rejects its ledger writes."""
    (m,) = await due_markets(ops, db_dsn, 1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    nonce = ops.keeper_nonce()
    async with harness(settings) as stale:
        assert stale.leader._conn is not None
        stale.leader._conn.terminate()  # the lock is gone; the process has not noticed (fence still set)
        stale_fence = stale.leader.fence
        stale.leader._conn = None
        stale.leader.fence = stale_fence
        other = Leader(db_dsn, 31337, holder="other")
        fence = await other.try_acquire()
        for _ in range(50):  # the server ends the terminated session (and frees its lock) a moment later
            if fence is not None:
                break
            await asyncio.sleep(0.1)
            fence = await other.try_acquire()
        assert fence is not None
        assert stale_fence is not None
        assert fence.epoch == stale_fence.epoch + 1
        data = bytes.fromhex("df55406e") + m.to_bytes(32, "big") + (1).to_bytes(32, "big")
        with pytest.raises(FencedError):
            await stale.tx.submit(
                [
                    TxRequest(
                        job="resolve",
                        job_key=f"resolve:{m}",
                        to=bytes.fromhex(ops.dep.opinion_market[2:]),
                        data=data,
                        gas_limit=100_000,
                        market_id=m,
                    )
                ]
            )
        await other.release()
    assert ops.keeper_nonce() == nonce
    assert await fetch(db_dsn, "SELECT 1 FROM keeper.txs") == []
    assert not ops.market(m)[4]


async def test_transaction_dropped_from_the_mempool_is_rebroadcast_and_mined(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """The node forgets a pending transaction (anvil_dropTransaction): the tracker sees it unknown and
    rebroadcasts the recorded raw bytes; it is mined once."""
    (m,) = await due_markets(ops, db_dsn, 1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, replace_after_blocks=50)
    with manual_mining(ops.anvil):
        async with harness(settings) as h:
            assert (await jobs.resolve(h.ctx))["sent"] == 1
            (a,) = await fetch(db_dsn, "SELECT tx_hash FROM keeper.tx_attempts")
            ops.anvil.call("anvil_dropTransaction", "0x" + bytes(a["tx_hash"]).hex())
            ops.anvil.mine(1)
            assert not ops.market(m)[4]
            summary = await h.tx.track()
            assert summary.rebroadcast == 1
            ops.anvil.mine(1)
            await h.tx.wait_idle(30, 0.1)
    (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs")
    assert t["status"] == "confirmed"
    assert len(ops.proposed_events(m)) == 1


async def test_stuck_resolution_resolved_elsewhere_is_cancelled_not_bumped(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """While our proposal is stuck another resolver proposes first: the replacement re-simulates,
    sees MarketNotOpen, and frees the nonce with a self-transfer instead of a doomed call; the
    queue entry ends skipped after the next run's chain check."""
    from web3 import Web3

    from core.deploy import anvil_account
    from keeper.abi import encode_call
    from tests.keeper.kit import ADMIN

    # another resolver: not the admin, which is the arbiter (no account may hold both roles)
    rival = anvil_account(7)
    (m,) = await due_markets(ops, db_dsn, 1)
    ops.send(
        ADMIN,
        ops.dep.opinion_market,
        encode_call("OpinionMarket", "grantRole", Web3.keccak(text="RESOLVER_ROLE"), rival.address),
    )
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, max_broadcast_refusals=3, replace_after_blocks=1)
    nonce = ops.keeper_nonce()
    with manual_mining(ops.anvil):
        async with harness(settings) as h:
            assert (await jobs.resolve(h.ctx))["sent"] == 1
            ops.anvil.call("anvil_setNextBlockBaseFeePerGas", hex(40 * GWEI))
            ops.send(
                rival,
                ops.dep.opinion_market,
                encode_call("OpinionMarket", "proposeOutcome", m, 0),
                wait=False,
                max_fee=200 * GWEI,
            )
            ops.anvil.mine(1)
            assert ops.status(m)[:2] == (1, 0)
            for _ in range(40):  # the cancel mines, then is final (anvil: head - 64): dropped
                ops.anvil.mine(4)
                await h.tx.track()
                (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs")
                if t["status"] == "dropped":
                    break
            assert (await jobs.resolve(h.ctx))["sent"] == 0
    (t,) = await fetch(db_dsn, "SELECT status, error FROM keeper.txs")
    assert t["status"] == "dropped"
    assert "cancelled" in t["error"]
    cancels = await fetch(db_dsn, "SELECT is_cancel FROM keeper.tx_attempts ORDER BY attempt")
    assert cancels[-1]["is_cancel"]
    assert ops.keeper_nonce() == nonce + 1  # the nonce was used by the self-transfer
    assert len(ops.proposed_events(m)) == 1  # only the other resolver's
    (q,) = await fetch(db_dsn, "SELECT status, status_reason FROM keeper.resolution_queue")
    assert (q["status"], q["status_reason"]) == ("skipped", "already_proposed")


async def test_many_nonce_gaps_are_filled_a_few_per_pass(ops: ChainOps, db_dsn: str, deployment_path: Path) -> None:
    """Twelve missing nonces (a bad nonce reading looks like this) are filled at most
    MAX_FILLS_PER_PASS per tracker pass, lowest first; the rest follow and everything mines."""
    (m,) = await due_markets(ops, db_dsn, 1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    base = ops.keeper_nonce()
    async with harness(settings) as h:
        await h.tx.resync_nonce()
        h.tx._next = base + 12
        assert (await jobs.resolve(h.ctx))["sent"] == 1
        s = await h.tx.track()
        assert 0 < s.gaps_filled < 12
        from keeper.tx import MAX_FILLS_PER_PASS

        assert s.gaps_filled == MAX_FILLS_PER_PASS
        fills = await fetch(db_dsn, "SELECT nonce FROM keeper.txs WHERE job = 'fill' ORDER BY nonce")
        assert [r["nonce"] for r in fills] == list(range(base, base + MAX_FILLS_PER_PASS))
        await h.tx.wait_idle(60, 0.1)
    rows = await fetch(db_dsn, "SELECT job, status FROM keeper.txs ORDER BY nonce")
    assert [r["job"] for r in rows] == ["fill"] * 12 + ["resolve"]
    assert {r["status"] for r in rows} == {"confirmed"}
    assert ops.market(m)[4]


async def test_gas_limit_is_bounded_by_the_cap_and_an_estimate_above_it_is_never_sent(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """estimate × (1 + margin) above keeper.max_gas_limit is signed at the cap; an estimate above the cap
    is a refused simulation: nothing recorded, the queue entry failed naming the estimate and the bound."""
    await due_markets(ops, db_dsn, 1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, gas_margin_pct=1_000, max_gas_limit=100_000)
    async with harness(settings) as h:
        assert (await jobs.resolve(h.ctx))["sent"] == 1
        await h.tx.wait_idle(30, 0.1)
    rows = await fetch(db_dsn, "SELECT gas_limit, status FROM keeper.txs")
    assert [(r["gas_limit"], r["status"]) for r in rows] == [(100_000, "confirmed")]
    (m2,) = await due_markets(ops, db_dsn, 1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, max_gas_limit=21_000)
    async with harness(settings) as h:
        assert (await jobs.resolve(h.ctx))["sent"] == 0
        assert h.metrics.registry.get_sample_value("keeper_gas_above_bound_total") == 1
    assert len(await fetch(db_dsn, "SELECT 1 FROM keeper.txs")) == 1
    (q,) = await fetch(db_dsn, "SELECT status, status_reason FROM keeper.resolution_queue WHERE market_id = $1", m2)
    assert q["status"] == "failed"
    assert "is above the bound 21000" in q["status_reason"]
    assert "keeper.max_gas_limit 21000" in q["status_reason"]


async def test_a_tx_every_node_refuses_is_cancelled_at_its_nonce_and_later_nonces_mine(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """A recorded transaction the node refuses for good (gas above the block's limit) is sent again as is
    (never fee-bumped) until keeper.max_broadcast_refusals refusals in a row, then replaced by a zero-value
    self-transfer at its nonce: the resolution recorded after it mines, the refused row ends `dropped`
    naming the node's answer, alerted (keeper_tx_abandoned_total, keeper_tx_total{outcome=abandoned}) and
    shown by `keeper txs`. Before, it was re-sent and re-bumped forever and every later nonce waited."""
    (m,) = await due_markets(ops, db_dsn, 1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, max_broadcast_refusals=3, replace_after_blocks=1)
    block_gas = int(ops.anvil.call("eth_getBlockByNumber", "latest", False)["gasLimit"], 16)
    async with harness(settings) as h:
        me = bytes.fromhex(h.tx.signer.address[2:])
        bad = TxRequest(
            job="distribute", job_key="distribute:0xbad:2026-01-01", to=me, data=b"", gas_limit=block_gas + 1
        )
        assert await h.tx.submit([bad]) == [bad.job_key]
        assert (await jobs.resolve(h.ctx))["sent"] == 1  # the nonce above it
        for _ in range(60):  # the cancel is dropped once final (anvil: head - 64)
            await h.tx.track()
            rows = await fetch(db_dsn, "SELECT job_key, status FROM keeper.txs ORDER BY nonce")
            if {r["status"] for r in rows} <= {"dropped", "confirmed"}:
                break
            ops.anvil.mine(4)
        abandoned = h.metrics.registry.get_sample_value("keeper_tx_abandoned_total", {"job": "distribute"})
        outcome = h.metrics.registry.get_sample_value("keeper_tx_total", {"job": "distribute", "outcome": "abandoned"})
    rows = await fetch(db_dsn, "SELECT job_key, status, error FROM keeper.txs ORDER BY nonce")
    assert [(r["job_key"], r["status"]) for r in rows] == [(bad.job_key, "dropped"), (f"resolve:{m}", "confirmed")]
    assert rows[0]["error"].startswith("cancelled: every broadcast was refused: ")
    atts = await fetch(
        db_dsn,
        "SELECT attempt, is_cancel, refusals FROM keeper.tx_attempts a JOIN keeper.txs t"
        " ON t.id = a.tx_id WHERE t.job_key = $1 ORDER BY attempt",
        bad.job_key,
    )
    assert [(a["attempt"], a["is_cancel"]) for a in atts] == [(0, False), (1, True)]  # never fee-bumped
    assert atts[0]["refusals"] == 3
    assert (abandoned, outcome) == (1, 1)
    assert ops.status(m)[0] == 1  # proposed
