"""Review s21 hu (user surfaces): docs/keeper.md says a queue entry is closed `skipped already_proposed`
"only once the rival's proposal or resolution is in the finalized block", and defines the finalized block
as "the node's `finalized` block (or head − `[chain].finality_depth`)" (`confirm_at_finalized`; the tracker
falls back the same way, keeper/tx.py). keeper/jobs.py `_final_rivals` asks `eth_call` at the "finalized"
tag only: on a node that does not take that tag the answer is an error, read as "not final yet", and the
entry stays `queued` for ever (`queue_entry_kept` each run) however deep the rival's proposal is."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from core.deploy import anvil_account
from keeper import jobs
from keeper.abi import encode_call
from tests.keeper.kit import ChainOps, fetch, harness, make_settings
from tests.keeper.test_keeper_tx import due_markets
from tests.keeper.test_keeper_unfinal_decisions import grant_resolver
from tests.local_http import posting

pytestmark = [pytest.mark.pg, pytest.mark.anvil]

NO_TAG = {"code": -32602, "message": "invalid argument 1: unknown block tag: finalized"}


def _refuses_tag(call: dict[str, Any]) -> bool:
    return "finalized" in (call.get("params") or [])


async def test_a_rival_proposal_deeper_than_finality_depth_closes_the_entry_on_a_node_without_the_tag(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """A node without the `finalized` tag (answers an error for it); finality_depth 2. A rival proposes NO
    for a market the operator queued YES for, and 6 blocks follow: the proposal is 5 below head − depth.
    Expected (docs/keeper.md): the entry is closed `skipped already_proposed`. Seen: it stays `queued`."""
    rival = anvil_account(7)
    grant_resolver(ops, rival)
    (m,) = await due_markets(ops, db_dsn, 1, outcome=1)
    refused = 0
    async with aiohttp.ClientSession() as session:

        async def handle(request: web.Request) -> web.Response:
            nonlocal refused
            body = orjson.loads(await request.read())
            calls = body if isinstance(body, list) else [body]
            out: dict[Any, Any] = {}
            forward = []
            for c in calls:
                if _refuses_tag(c):
                    refused += 1
                    out[c["id"]] = {"jsonrpc": "2.0", "id": c["id"], "error": NO_TAG}
                else:
                    forward.append(c)
            if forward:
                async with session.post(
                    ops.anvil.url, data=orjson.dumps(forward), headers={"content-type": "application/json"}
                ) as r:
                    for a in orjson.loads(await r.read()):
                        out[a["id"]] = a
            answers = [out[c["id"]] for c in calls]
            return web.Response(
                body=orjson.dumps(answers if isinstance(body, list) else answers[0]), content_type="application/json"
            )

        async with posting(handle) as port:
            settings = make_settings(f"http://127.0.0.1:{port}", db_dsn, deployment_path)
            settings = dataclasses.replace(settings, chain=dataclasses.replace(settings.chain, finality_depth=2))
            async with harness(settings) as h:
                tx = ops.send(rival, ops.dep.opinion_market, encode_call("OpinionMarket", "proposeOutcome", m, 0))
                proposed_in = int(ops.w3.eth.get_transaction_receipt(tx)["blockNumber"])
                assert ops.status(m)[:2] == (1, 0)  # proposed NO by the rival
                ops.anvil.mine(6)
                for _ in range(3):
                    assert (await jobs.resolve(h.ctx))["sent"] == 0
                    ops.anvil.mine(1)
    assert refused > 0, "setup: the keeper should have asked for the finalized tag"
    (q,) = await fetch(db_dsn, "SELECT status, status_reason FROM keeper.resolution_queue")
    assert (q["status"], q["status_reason"]) == ("skipped", "already_proposed"), (
        f"the rival's proposal is {ops.anvil.head() - proposed_in} blocks deep, past finality_depth 2, but the entry is"
        f" {q['status']} ({q['status_reason']}): a node without the finalized tag never closes it"
    )
