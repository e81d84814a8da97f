"""The keeper's resolution steps after the contracts' challenge window (issue 17 item 3): propose
(resolve job), finalize once the window has ended, never finalize a disputed proposal (alert instead),
and resolve INVALID past end + resolution window (expire job). Pure deciders first, then real anvil +
PostgreSQL in-process; the SIGKILL-between-record-and-send runs are in test_keeper_process.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper import decide, jobs
from keeper.abi import encode_call
from keeper.decide import ProposalView
from tests.keeper.kit import ADMIN, KEEPER, ChainOps, fetch, harness, insert_markets, make_settings, set_market_status

OPEN, PROPOSED, DISPUTED, RESOLVED = 0, 1, 2, 3
WINDOW_30D = 30 * 86_400


# ------------------------------------------------------------------------------ pure


def test_finalize_waits_for_the_window_then_finalizes_the_proposed_outcome() -> None:
    """Before challengeEnds nothing; from it a Finalize with the proposed outcome; never twice (ledger)."""
    p = ProposalView(7, end_time=100, status=PROPOSED, proposed_outcome=1, challenge_ends=200)
    assert decide.decide_finalize(p, 199) is None
    assert decide.decide_finalize(p, 200) == decide.Finalize(7, 1)
    assert decide.decide_finalize(ProposalView(7, 100, PROPOSED, 1, 200, in_ledger=True), 500) is None


def test_a_disputed_proposal_is_reported_never_finalized() -> None:
    """A disputed market gives Disputed at any time, also long after its window, also with a ledger row."""
    for now in (150, 200, 10**9):
        for in_ledger in (False, True):
            p = ProposalView(7, 100, DISPUTED, 2, 200, in_ledger=in_ledger)
            assert decide.decide_finalize(p, now) == decide.Disputed(7, 2)


def test_finalize_skips_resolved_and_open_markets() -> None:
    assert decide.decide_finalize(ProposalView(7, 100, RESOLVED, 1, 200), 300) == decide.Skip(
        "finalize:7", "already_resolved"
    )
    assert decide.decide_finalize(ProposalView(7, 100, OPEN, 0, 0), 300) == decide.Skip("finalize:7", "not_proposed")


def test_expiry_from_end_plus_window_for_open_and_disputed_markets_only() -> None:
    """Open or disputed: nothing before end + window, Expire from it; a proposed market is left to finalize."""
    for status in (OPEN, DISPUTED):
        p = ProposalView(7, 100, status, 0, 0)
        assert decide.decide_expiry(p, 100 + WINDOW_30D - 1, WINDOW_30D) is None
        assert decide.decide_expiry(p, 100 + WINDOW_30D, WINDOW_30D) == decide.Expire(7, status)
    assert decide.decide_expiry(ProposalView(7, 100, PROPOSED, 1, 160), 10**9, WINDOW_30D) is None
    assert decide.decide_expiry(ProposalView(7, 100, OPEN, 0, 0, in_ledger=True), 10**9, WINDOW_30D) is None
    assert decide.decide_expiry(ProposalView(7, 100, RESOLVED, 0, 0), 10**9, WINDOW_30D) == decide.Skip(
        "expire:7", "already_resolved"
    )


def test_a_late_dispute_expires_only_from_its_arbitration_deadline() -> None:
    """Disputed after end + window: getMarket's challengeEnds is then the arbitration deadline, and nothing is
    expired before it, Expire from it; a disputed market whose deadline came first expires at end + window."""
    late = ProposalView(7, 100, DISPUTED, 0, 100 + WINDOW_30D + 65)
    assert decide.decide_expiry(late, 100 + WINDOW_30D, WINDOW_30D) is None
    assert decide.decide_expiry(late, 100 + WINDOW_30D + 64, WINDOW_30D) is None
    assert decide.decide_expiry(late, 100 + WINDOW_30D + 65, WINDOW_30D) == decide.Expire(7, DISPUTED)
    early = ProposalView(7, 100, DISPUTED, 0, 170)
    assert decide.decide_expiry(early, 100 + WINDOW_30D, WINDOW_30D) == decide.Expire(7, DISPUTED)


def test_resolution_skips_a_market_that_already_has_a_proposal() -> None:
    """The resolve job proposes only on an open market; someone else's proposal is a skip, not a send."""
    for status in (PROPOSED, DISPUTED):
        m = decide.MarketView(7, 100, False, decide.QueueEntry(1, 1), status=status)
        assert decide.decide_resolution(m, 200, 3600, 3600) == decide.Skip("resolve:7", "already_proposed")
    m = decide.MarketView(7, 100, False, decide.QueueEntry(1, 1))
    assert decide.decide_resolution(m, 200, 3600, 3600) == decide.Resolve(7, 1, "queue", 1)


# ------------------------------------------------------------------------------ anvil + PostgreSQL


async def proposed_market(ops: ChainOps, db_dsn: str, outcome: int = 1) -> tuple[int, int]:
    """An ended market the keeper's account proposed `outcome` for, indexed as proposed: (id, challengeEnds)."""
    end = ops.now() + 30
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    ops.advance(60)
    ops.send(KEEPER, ops.dep.opinion_market, encode_call("OpinionMarket", "proposeOutcome", m, outcome))
    ends = int(ops.market(m)[8])
    await set_market_status(db_dsn, m, "proposed", outcome, ends)
    return m, ends


@pytest.mark.pg
@pytest.mark.anvil
async def test_proposal_is_finalized_once_when_its_window_ends(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """Inside the challenge window the finalize job waits; after it, one finalizeOutcome; later runs send
    nothing (the ledger key finalize:{id}); the market ends resolved with the proposed outcome."""
    m, _ends = await proposed_market(ops, db_dsn, outcome=1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        early = await jobs.finalize(h.ctx)
        assert (early["sent"], early["waiting"]) == (0, 1)
        ops.past_challenge_window(m)
        assert (await jobs.finalize(h.ctx))["sent"] == 1
        await h.tx.wait_idle(30, 0.1)
        assert (await jobs.finalize(h.ctx))["sent"] == 0
    assert ops.status(m) == (RESOLVED, 1, 1)
    (ev,) = ops.resolved_events(m)
    assert ev["topics"][2][-20:] == bytes.fromhex(KEEPER.address[2:])  # resolver = the keeper (finalize)
    txs = await fetch(db_dsn, "SELECT job, job_key, status FROM keeper.txs")
    assert [(t["job"], t["job_key"], t["status"]) for t in txs] == [("finalize", f"finalize:{m}", "confirmed")]


@pytest.mark.pg
@pytest.mark.anvil
async def test_disputed_proposal_is_alerted_never_finalized_then_arbitrated(
    ops: ChainOps, db_dsn: str, deployment_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The arbiter disputes: past the window the finalize job sends nothing, records the market in
    keeper.disputed_markets, logs market_disputed as an error and counts it once (keeper_disputes_total)
    however many runs see it; after the arbiter settles it the alert clears."""
    m, _ends = await proposed_market(ops, db_dsn, outcome=0)
    ops.send(ADMIN, ops.dep.opinion_market, encode_call("OpinionMarket", "disputeOutcome", m))
    await set_market_status(db_dsn, m, "disputed", 0, _ends)
    ops.past_challenge_window(m)
    ops.advance(600)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    nonce = ops.keeper_nonce()
    async with harness(settings) as h:
        for _ in range(3):
            counts = await jobs.finalize(h.ctx)
            assert (counts["sent"], counts["disputed"]) == (0, 1)
        assert h.metrics.disputes._value.get() == 1
        assert h.metrics.disputed._value.get() == 1
        rows = await fetch(db_dsn, "SELECT market_id, proposed_outcome FROM keeper.disputed_markets")
        assert [(r["market_id"], r["proposed_outcome"]) for r in rows] == [(m, 0)]
        assert ops.keeper_nonce() == nonce
        assert ops.status(m)[0] == DISPUTED
        ops.send(ADMIN, ops.dep.opinion_market, encode_call("OpinionMarket", "arbitrate", m, 1))
        counts = await jobs.finalize(h.ctx)
        assert (counts["sent"], counts["disputed"]) == (0, 0)
        assert h.metrics.disputed._value.get() == 0
    assert await fetch(db_dsn, "SELECT 1 FROM keeper.disputed_markets") == []
    assert await fetch(db_dsn, "SELECT 1 FROM keeper.txs") == []
    (d,) = await fetch(db_dsn, "SELECT job_key, action, reason FROM keeper.decisions WHERE action = 'alerted'")
    assert (d["job_key"], d["reason"]) == (f"finalize:{m}", "disputed")
    assert ops.status(m) == (RESOLVED, 0, 1)  # the arbiter's outcome, not the proposal
    assert capsys.readouterr().out.count("market_disputed") == 1


@pytest.mark.pg
@pytest.mark.anvil
async def test_market_nobody_settles_is_expired_invalid_once(ops: ChainOps, db_dsn: str, deployment_path: Path) -> None:
    """No outcome source: before end + resolution window the expire job waits; after it, one resolveExpired
    (INVALID); later runs send nothing."""
    end = ops.now() + 30
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    ops.advance(3_600)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        assert (await jobs.expire(h.ctx))["candidates"] == 0
        ops.advance(WINDOW_30D)
        assert (await jobs.expire(h.ctx))["sent"] == 1
        await h.tx.wait_idle(30, 0.1)
        assert (await jobs.expire(h.ctx))["sent"] == 0
    assert ops.status(m)[0] == RESOLVED
    assert ops.status(m)[2] == 2
    assert len(ops.resolved_events(m)) == 1
    txs = await fetch(db_dsn, "SELECT job, job_key, status FROM keeper.txs")
    assert [(t["job"], t["job_key"], t["status"]) for t in txs] == [("expire", f"expire:{m}", "confirmed")]


async def expired_with_queued_yes(ops: ChainOps, db_dsn: str) -> int:
    """A market past its end and the resolution window, with the operator's outcome YES queued: both the
    resolve and the expire jobs have work for it. Returns its id."""
    end = ops.now() + 30
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    ops.advance(WINDOW_30D + 3_600)
    await fetch(
        db_dsn,
        "INSERT INTO keeper.resolution_queue (chain_id, market_id, outcome, reason, requested_by)"
        f" VALUES (31337, {m}, 1, 'settled off-chain', 'test') RETURNING id",
    )
    return m


@pytest.mark.pg
@pytest.mark.anvil
async def test_a_pending_proposal_holds_the_expiry_back(ops: ChainOps, db_dsn: str, deployment_path: Path) -> None:
    """Past end + resolution window with a queued outcome, the resolve job proposes; while that proposal
    is not mined (mining paused) the expire job waits for it — rather than race it (one would revert)
    or count a failed item when its simulation sees the pending proposal — and once it is mined the
    chain says 'proposed', which the expire job leaves to finalize."""
    m = await expired_with_queued_yes(ops, db_dsn)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        ops.anvil.call("evm_setAutomine", False)
        try:
            assert (await jobs.resolve(h.ctx))["sent"] == 1
            held = await jobs.expire(h.ctx)
            assert (held["candidates"], held["sent"], held["waiting"]) == (1, 0, 1)
        finally:
            ops.anvil.call("evm_setAutomine", True)
            ops.anvil.mine(1)
        await h.tx.wait_idle(30, 0.1)
        assert (await jobs.expire(h.ctx))["sent"] == 0
    assert ops.status(m)[:2] == (PROPOSED, 1)
    txs = await fetch(db_dsn, "SELECT job_key, status FROM keeper.txs")
    assert [(t["job_key"], t["status"]) for t in txs] == [(f"resolve:{m}", "confirmed")]


@pytest.mark.pg
@pytest.mark.anvil
async def test_a_dispute_after_the_resolution_window_holds_the_expiry_until_the_arbiter_deadline(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """Proposed 10 s before end + resolution window, disputed 5 s after it: the expire job sends nothing (waiting)
    until the arbitration deadline the dispute set (dispute + challenge window, getMarket's challengeEnds), then
    one resolveExpired (INVALID) for a market the arbiter never settled. (Before: the first run after the dispute
    expired it INVALID, before the arbiter could rule.)"""
    om = ops.dep.opinion_market
    end = ops.now() + 30
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    ops.anvil.call("evm_setNextBlockTimestamp", hex(end + WINDOW_30D - 10))
    ops.send(KEEPER, om, encode_call("OpinionMarket", "proposeOutcome", m, 0))
    ops.anvil.call("evm_setNextBlockTimestamp", hex(end + WINDOW_30D + 5))
    ops.send(ADMIN, om, encode_call("OpinionMarket", "disputeOutcome", m))
    deadline = int(ops.market(m)[8])
    assert deadline == end + WINDOW_30D + 5 + 60  # DeployParams.challenge_window
    await set_market_status(db_dsn, m, "disputed", 0, deadline)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        held = await jobs.expire(h.ctx)
        assert (held["candidates"], held["sent"], held["waiting"]) == (1, 0, 1)
        ops.anvil.call("evm_setNextBlockTimestamp", hex(deadline - 1))
        ops.anvil.mine(1)
        assert (await jobs.expire(h.ctx))["sent"] == 0
        assert ops.status(m)[0] == DISPUTED
        ops.anvil.call("evm_setNextBlockTimestamp", hex(deadline))
        ops.anvil.mine(1)
        assert (await jobs.expire(h.ctx))["sent"] == 1
        await h.tx.wait_idle(30, 0.1)
    assert ops.status(m) == (RESOLVED, 0, 2)


@pytest.mark.pg
@pytest.mark.anvil
async def test_a_reverted_finalize_is_sent_again_while_it_simulates_at_most_three_times(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """Review s13 keeper item 7: a finalizeOutcome that reverted on chain (the market changed between
    its simulation and its block) held finalize:{id} for good: the market stayed proposed until
    someone finalized it by hand, and `keeper resolve` refuses a proposed market. The step is anyone's
    and is simulated before each send, so it goes again while the simulation passes, up to
    jobs.STEP_REVERTS_MAX reverts a market."""
    m, _ends = await proposed_market(ops, db_dsn, outcome=1)
    ops.past_challenge_window(m)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        assert h.leader.fence is not None

        async def reverted(n: int) -> None:
            # another sender's rows: the keeper's own nonces above its real ones would be mined nonces it
            # never allocates below (store.mined_nonce_floor); the revert count is per market, any sender
            await fetch(
                db_dsn,
                "INSERT INTO keeper.txs (chain_id, job, job_key, sender, to_address, data, nonce, gas_limit, status,"
                " epoch, market_id) VALUES (31337, 'finalize', $1, $2, $2, '', $3, 100000, 'reverted', $4, $5)",
                f"finalize:{m}",
                b"\x99" * 20,
                10_000 + n,
                h.leader.fence.epoch,
                m,
            )

        for n in range(jobs.STEP_REVERTS_MAX):
            await reverted(n)
        assert (await jobs.finalize(h.ctx))["sent"] == 0  # three reverts: left to an operator
        await fetch(db_dsn, "DELETE FROM keeper.txs WHERE nonce = 10000")
        again = await jobs.finalize(h.ctx)
        assert again["sent"] == 1, again  # two: sent again (was 0 after one revert)
        await h.tx.wait_idle(30, 0.1)
    assert ops.status(m) == (RESOLVED, 1, 1)
