"""Review hf2 (attack on b980301): on a node without a `finalized` block tag, a queue entry a rival's proposal
closes is never closed.

keeper/jobs.py _final_rivals reads getMarket with eth_call at "finalized" and keeps the entry `queued` when that
read fails. The tracker supports such nodes: keeper/tx.py falls back to head - chain.finality_depth where the
node answers no "finalized" block (core/config.py: "blocks behind the head treated as final where the node has
no `finalized` tag"). _final_rivals has no such fallback: the eth_call errors on every run, the entry is logged
`queue_entry_kept ... not final yet` at info level and stays `queued` for ever, however deep the rival's
proposal is — no skip, no alert; `keeper status` shows the operator's entry waiting on a market that was decided
long ago.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.deploy import anvil_account
from keeper import jobs
from keeper.abi import encode_call
from keeper.rpc import RpcError
from tests.keeper.kit import ChainOps, fetch, harness, make_settings
from tests.keeper.test_keeper_tx import due_markets
from tests.keeper.test_keeper_unfinal_decisions import grant_resolver

pytestmark = [pytest.mark.pg, pytest.mark.anvil]


def without_finalized_tag(rpc: Any) -> None:
    """The node refuses the `finalized` block tag (as a pre-merge chain's or some L2 nodes do)."""
    real = rpc.batch

    async def batch(calls: list[tuple[str, list[Any]]], node: int | None = None) -> list[Any]:
        tagged = [i for i, (_, params) in enumerate(calls) if "finalized" in params]
        rest = [c for i, c in enumerate(calls) if i not in tagged]
        out = await real(rest, node=node) if rest else []
        it = iter(out)
        return [
            RpcError(calls[i][0], -32602, "invalid block tag: finalized") if i in tagged else next(it)
            for i in range(len(calls))
        ]

    rpc.batch = batch


async def test_an_entry_a_deep_rival_proposal_closes_is_closed_on_a_node_without_finalized(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    rival = anvil_account(7)
    grant_resolver(ops, rival)
    (m,) = await due_markets(ops, db_dsn, 1, outcome=1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    depth = settings.chain.finality_depth
    async with harness(settings) as h:
        without_finalized_tag(h.ctx.rpc)
        ops.send(rival, ops.dep.opinion_market, encode_call("OpinionMarket", "proposeOutcome", m, 0))
        assert ops.status(m)[:2] == (1, 0)
        for _ in range(3):  # runs, the rival's proposal far deeper than finality_depth
            ops.anvil.mine(depth + 10)
            assert (await jobs.resolve(h.ctx))["sent"] == 0
    (q,) = await fetch(db_dsn, "SELECT status, status_reason FROM keeper.resolution_queue")
    assert q["status"] == "skipped", (
        f"the rival's proposal is {3 * (depth + 10)} blocks deep (finality_depth {depth}), yet the operator's"
        f" entry is still {q['status']} ({q['status_reason']}): _final_rivals asks only the 'finalized' tag,"
        " with no finality_depth fallback, and keeps the entry for ever"
    )


async def test_a_failed_finality_read_does_not_stop_the_runs_other_proposals(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """Two due markets queued YES: one a rival proposed (its entry needs _final_rivals' read at "finalized"),
    one nobody touched. The node drops the connection for that one extra batch (RpcError raised for the whole
    batch, as Rpc.batch does for a node that cannot be reached). Expected: the untouched market's proposal is
    still sent (the rival's entry merely stays queued for the next run). Seen: _final_rivals runs after the
    decisions and before ctx.tx.submit, its exception ends resolve() and nothing is sent this run."""
    rival = anvil_account(7)
    grant_resolver(ops, rival)
    m1, m2 = await due_markets(ops, db_dsn, 2, outcome=1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        real = h.ctx.rpc.batch

        async def batch(calls: list[tuple[str, list[Any]]], node: int | None = None) -> list[Any]:
            if any("finalized" in params for _, params in calls if _ == "eth_call"):
                raise RpcError("batch", -1, "node unreachable: connection reset", transient=True)
            return await real(calls, node=node)

        h.ctx.rpc.batch = batch  # type: ignore[method-assign]
        ops.send(rival, ops.dep.opinion_market, encode_call("OpinionMarket", "proposeOutcome", m1, 0))
        error = None
        try:
            sent = (await jobs.resolve(h.ctx))["sent"]
        except Exception as exc:  # the finding
            sent, error = 0, f"{type(exc).__name__}: {exc}"
        await h.tx.wait_idle(30, 0.1)
    assert (sent, ops.status(m2)[:2]) == (1, (1, 1)), (
        f"market {m2} (no rival) was not proposed: the extra finality read for market {m1}'s entry failed"
        f" and ended the run ({error}); proposals sent: {sent}"
    )
