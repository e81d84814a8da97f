"""Review hi: an index built for one deployment is silently continued for another.

`Indexer.start` records the deployment's contracts with `INSERT … ON CONFLICT DO NOTHING`
(indexer/checkpoint.py ensure_contracts) and resumes from the stored checkpoint: nothing compares
the stored contracts (addresses, deploy block) with the deployment file the process was started
with. An operator who points [chain].deployment at a redeploy (new addresses), or corrects
deploy_block downwards because events were missed, gets no error: the old checkpoint is resumed, the
new contracts' events are folded into the old contracts' markets (market ids collide), and the
blocks below the old cursor are never indexed for the corrected deploy block. Expected: refused at
start (StartupCheckFailed, exit 2) naming chain.deployment and saying to reset or use another
database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from indexer.metrics import Metrics
from indexer.pipeline import Status
from indexer.rpc import Rpc
from indexer.service import Indexer, StartupCheckFailed
from tests.indexer.helpers import make_settings
from tests.indexer.mocknode import DEPLOYMENT, block, handler, reply
from tests.local_http import posting

pytestmark = [pytest.mark.pg]

HEAD = 200


def node_answer(deploy_blocks: dict[str, int], pruned: bool = False) -> Any:
    """A node of chain 31337 at HEAD whose contracts (address -> deploy block) have code from their deploy
    block; `pruned`: it answers no old state (eth_getCode at a block number), as pruned nodes do."""

    def answer(call: dict[str, Any]) -> dict[str, Any]:
        method = call["method"]
        if method == "eth_chainId":
            return reply(call, hex(31337))
        if method == "eth_blockNumber":
            return reply(call, hex(HEAD))
        if method == "eth_getCode":
            address, tag = call["params"]
            if pruned and tag != "latest":
                return {"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32000, "message": "missing trie node"}}
            born = deploy_blocks.get(address.lower())
            at = HEAD if tag == "latest" else int(tag, 16)
            return reply(call, "0x6080" if born is not None and at >= born else "0x")
        if method == "eth_getBlockByNumber":
            tag = call["params"][0]
            n = {"latest": HEAD, "safe": HEAD - 10, "finalized": HEAD - 10}.get(tag)
            n = int(tag, 16) if n is None else n
            if n > HEAD:
                return reply(call, None)
            b = block(max(n, 1))
            if n == 0:
                b = {**block(1), "number": "0x0", "hash": "0x" + "00" * 31 + "00", "parentHash": "0x" + "00" * 32}
            return reply(call, b)
        return {"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32601, "message": "method not found"}}

    return answer


async def start_once(url: str, deployment: dict[str, Any], dsn: str, tmp_path: Path) -> Indexer:
    settings = make_settings(url, deployment, dsn, tmp_path, fetch_process=False)
    async with Rpc([url], 5.0) as rpc:
        ix = Indexer(settings, rpc, Metrics(31337), Status())
        conn = await asyncpg.connect(dsn)
        try:
            await ix.start(conn)
        finally:
            await conn.close()
    return ix


OLD = DEPLOYMENT  # contracts 0x11…, 0x22…, deployed at block 1
REDEPLOYED = {
    **DEPLOYMENT,
    "deploy_block": 150,
    "contracts": {
        "OpinionMarket": "0x" + "44" * 20,
        "CreatorShares": "0x" + "55" * 20,
        "USDC": "0x" + "33" * 20,
    },
}


@pytest.mark.parametrize(
    ("changed", "why"),
    [
        (REDEPLOYED, "new contract addresses"),
        ({**DEPLOYMENT, "deploy_block": 1}, "same file (control: must start)"),
    ],
    ids=["redeployed", "unchanged"],
)
async def test_a_deployment_file_that_no_longer_matches_the_index_is_refused(
    db_dsn: str, tmp_path: Path, changed: dict[str, Any], why: str
) -> None:
    born = {OLD["contracts"]["OpinionMarket"]: 1, OLD["contracts"]["CreatorShares"]: 1}
    born |= {REDEPLOYED["contracts"]["OpinionMarket"]: 150, REDEPLOYED["contracts"]["CreatorShares"]: 150}
    async with posting(handler(node_answer(born))) as port:
        url = f"http://127.0.0.1:{port}"
        first = await start_once(url, OLD, db_dsn, tmp_path)
        assert first.cursor is not None
        assert first.cursor.number == 0  # the index of OLD, from block 0
        if changed is not REDEPLOYED:
            await start_once(url, changed, db_dsn, tmp_path)  # same deployment: resumes
            return
        before = await _stored_contracts(db_dsn)
        with pytest.raises(StartupCheckFailed, match=r"chain\.deployment .*indexer reset"):
            await start_once(url, changed, db_dsn, tmp_path)
        assert await _stored_contracts(db_dsn) == before, why  # nothing changed by the refused start


async def test_a_lowered_deploy_block_is_not_silently_ignored(db_dsn: str, tmp_path: Path) -> None:
    """On a pruned node (deploy_block_not_checked, as documented) the first run started with deploy_block
    150; the operator finds the contracts were deployed at block 100 and corrects the file: the
    checkpoint of the first run (block 149) is resumed, so 100..149 are never indexed, without a word."""
    late = {**DEPLOYMENT, "deploy_block": 150}
    fixed = {**DEPLOYMENT, "deploy_block": 100}
    born = {DEPLOYMENT["contracts"]["OpinionMarket"]: 100, DEPLOYMENT["contracts"]["CreatorShares"]: 100}
    async with posting(handler(node_answer(born, pruned=True))) as port:
        url = f"http://127.0.0.1:{port}"
        first = await start_once(url, late, db_dsn, tmp_path)
        assert first.cursor is not None
        assert first.cursor.number == 149
        with pytest.raises(StartupCheckFailed, match=r"from block 150 \(the deployment: .* from block 100\)"):
            await start_once(url, fixed, db_dsn, tmp_path)


async def _stored_contracts(dsn: str) -> list[tuple[str, str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT name, address, deploy_block FROM idx.contracts ORDER BY name")
        return [(r["name"], "0x" + bytes(r["address"]).hex(), r["deploy_block"]) for r in rows]
    finally:
        await conn.close()
