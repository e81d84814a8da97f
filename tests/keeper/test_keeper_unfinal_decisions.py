"""Review hk (fault injection): the keeper takes irreversible ledger decisions from chain state that is not
final yet. Everywhere else it waits (a "dropped" transaction needs its nonce used in finalized state, review
s15; a mined one is watched until finalized), but:

- a queue entry is closed for good (`skipped already_proposed` / `already_resolved`) on the latest block's
  getMarket or simulation: a rival's proposal one block deep, reorged away, leaves the market open, the
  operator's entry closed, and nothing ever proposes the operator's outcome — the market is reported overdue
  and ends INVALID through the expire job;
- a cancel (zero-value self-transfer) seen mined in the latest block makes the row `dropped` at once
  (decide_tx: no confirmations, no finality), and a dropped row is never looked at again (store.load_live):
  a reorg that puts the original call at that nonce instead leaves the ledger saying "cancelled" for the
  keeper's own mined proposal, and the operator's entry `skipped already_proposed` by its own transaction.

Each ends by checking the chain."""

from __future__ import annotations

from pathlib import Path

import pytest
from web3 import Web3

from core.deploy import anvil_account
from keeper import jobs
from keeper.abi import encode_call
from tests.keeper.kit import ADMIN, ChainOps, fetch, harness, make_settings
from tests.keeper.test_keeper_tx import GWEI, due_markets, manual_mining

pytestmark = [pytest.mark.pg, pytest.mark.anvil]


def grant_resolver(ops: ChainOps, acct: object) -> None:
    ops.send(
        ADMIN,
        ops.dep.opinion_market,
        encode_call("OpinionMarket", "grantRole", Web3.keccak(text="RESOLVER_ROLE"), acct.address),  # type: ignore[attr-defined]
    )


async def test_an_entry_closed_on_a_rival_proposal_that_a_reorg_removed_is_still_proposed(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """The operator queued YES for an ended market. A rival resolver's NO proposal is in the latest block when
    the resolve job runs: the entry is closed `skipped already_proposed`. That block is reorged away (depth 1)
    and the rival's transaction is not included again: the market is open on chain. Expected: the operator's
    entry is proposed by a later run (at most when the proposal it deferred to is final). Seen: the entry stays
    `skipped`, every later run sends nothing, and the market is only reported overdue."""
    rival = anvil_account(7)
    grant_resolver(ops, rival)
    (m,) = await due_markets(ops, db_dsn, 1, outcome=1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        ops.send(rival, ops.dep.opinion_market, encode_call("OpinionMarket", "proposeOutcome", m, 0))
        assert ops.status(m)[:2] == (1, 0)  # proposed NO, one block deep
        first = await jobs.resolve(h.ctx)
        assert first["sent"] == 0
        ops.anvil.call("anvil_reorg", 1, [])  # the rival's block goes; its transaction is not replayed
        assert ops.status(m)[0] == 0, "the reorg should leave the market open"
        sent = 0
        for _ in range(3):  # later runs, blocks apart
            ops.anvil.mine(1)
            sent += (await jobs.resolve(h.ctx))["sent"]
        await h.tx.wait_idle(30, 0.1)
    (q,) = await fetch(db_dsn, "SELECT status, status_reason FROM keeper.resolution_queue")
    assert sent == 1, f"the operator's entry was never proposed after the reorg (entry {dict(q)})"
    assert ops.status(m)[:2] == (1, 1)  # proposed YES, the operator's outcome


async def test_a_cancel_reorged_out_for_the_original_call_leaves_the_ledger_truthful(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """The keeper's YES proposal is stuck; a rival proposes first, so the fee bump becomes a cancel at the same
    nonce, and the cancel is mined: the row is `dropped` ("cancelled: the call would revert") in that very
    pass. That block is reorged away and the new branch holds the keeper's original proposal (attempt 0, the
    raw bytes the ledger recorded) at that nonce instead, not the rival's. Expected: the ledger follows the
    chain (the proposal mined, the entry resolved). Seen: the row stays `dropped` for good (never tracked
    again) and the operator's entry ends `skipped already_proposed` by the keeper's own proposal."""
    rival = anvil_account(7)
    grant_resolver(ops, rival)
    (m,) = await due_markets(ops, db_dsn, 1, outcome=1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, replace_after_blocks=1)
    nonce = ops.keeper_nonce()
    with manual_mining(ops.anvil):
        async with harness(settings) as h:
            assert (await jobs.resolve(h.ctx))["sent"] == 1
            (orig,) = await fetch(db_dsn, "SELECT raw_tx FROM keeper.tx_attempts WHERE attempt = 0")
            ops.anvil.call("anvil_setNextBlockBaseFeePerGas", hex(40 * GWEI))  # ours is priced out
            rival_tx = ops.send(
                rival,
                ops.dep.opinion_market,
                encode_call("OpinionMarket", "proposeOutcome", m, 0),
                wait=False,
                max_fee=200 * GWEI,
            )
            ops.anvil.mine(1)
            assert ops.status(m)[:2] == (1, 0)
            rival_block = int(ops.w3.eth.get_transaction_receipt(rival_tx)["blockNumber"])
            dropped_at = None
            for _ in range(8):
                ops.anvil.mine(1)
                await h.tx.track()
                (t,) = await fetch(
                    db_dsn,
                    "SELECT t.status, a.attempt FROM keeper.txs t"
                    " LEFT JOIN keeper.tx_attempts a ON a.tx_hash = t.mined_tx_hash",
                )
                if t["status"] == "dropped" or (t["status"] == "mined" and t["attempt"]):  # the cancel mined
                    dropped_at = ops.anvil.head()
                    break
            assert dropped_at is not None, "setup: the cancel should have mined"
            assert ops.keeper_nonce() == nonce + 1
            # the branch: the rival's block and the cancel's block are replaced; the new branch has the keeper's
            # original proposal at its nonce (a builder that never saw the replacement)
            depth = ops.anvil.head() - rival_block + 1
            ops.anvil.call("anvil_setNextBlockBaseFeePerGas", hex(1 * GWEI))
            ops.anvil.call("anvil_reorg", depth, [["0x" + bytes(orig["raw_tx"]).hex(), 0]])
            assert ops.keeper_nonce() == nonce + 1
            assert ops.status(m)[:2] == (1, 1), "setup: the new branch holds the keeper's YES proposal"
            for _ in range(6):
                ops.anvil.mine(1)
                await h.tx.track()
            await jobs.resolve(h.ctx)  # the next run's chain check
    assert len(ops.proposed_events(m)) == 1  # the keeper's, on the new branch
    (t,) = await fetch(db_dsn, "SELECT status, error FROM keeper.txs")
    (q,) = await fetch(db_dsn, "SELECT status, status_reason FROM keeper.resolution_queue")
    assert (t["status"], q["status"]) in (("confirmed", "resolved"), ("mined", "sent")), (
        f"the keeper's proposal is on chain at its nonce, but the ledger says {t['status']} ({t['error']}) and"
        f" the operator's entry {q['status']} ({q['status_reason']})"
    )
