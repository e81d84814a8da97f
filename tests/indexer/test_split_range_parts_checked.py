"""Review hp (independent fault injection): the sub-ranges of a split eth_getLogs range are not checked
against the chain we link to.

docs/indexer.md, Completeness: a range's eth_getLogs goes in one batch with eth_getBlockByNumber(b); "the
answer counts only if that header is there (the answering node has b, hence every block up to it) and
its hash equals the hash of b we link to (same branch)". RangeFetcher._logs collects the header of every
answered (sub-)range's end in `ends`, but fetch_packed compares `ends` only with the headers it fetched:
{a, b}, the blocks with logs and the unfinalized blocks. When a range is split (a result cap, a timeout,
an unknown error: routine in a backfill), the end m of each sub-range but the last is none of those in a
finalized stretch, so `ends[m]` is never compared: a sub-range answered by a node of another branch (a
node stuck on a dead fork, a backend of another network with the same chain id) with no logs is
accepted, and the events of that sub-range are lost for good (no bloom check below finality; nothing but
a re-scan ever reads them again, and `--exit-at-head` runs none).

Here: two providers. H is honest but flaky (its first try of each eth_getLogs fails with "internal
error"); L is a node of another branch at height 6 (same chain id, another hash for every block, none of
our logs). Both refuse 8-block ranges ("query returned more than 10000 results"), so 1..8 is split into
1..4 and 5..8. L answers 1..4 (its header of block 4 is not ours), H answers 5..8 and the headers. The
Trade log of block 3 is dropped without any error. With random provider picks the same happens whenever
L draws an earlier sub-range and H the last one and the headers (about 1 split range in 8)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from indexer.chain import ChainMismatch, SpanPolicy
from indexer.fetch import RangeFetcher
from indexer.rpc import RetryPolicy, Rpc, RpcError
from tests.indexer.mocknode import block
from tests.indexer.test_units import recorded_logs
from tests.local_http import posting

OM = "0x9fe46736679d2d9a65f0992f2272de9f3c7fa6e0"  # the recorded Trade log's address
CS = "0x" + "22" * 20
TOO_MANY = {"code": -32005, "message": "query returned more than 10000 results"}
INTERNAL = {"code": -32603, "message": "internal error"}


def honest(n: int) -> dict[str, Any]:
    return block(n)


def other_branch(n: int) -> dict[str, Any]:
    b = block(n)
    return {
        **b,
        "hash": "0x" + "ee" * 24 + n.to_bytes(8, "big").hex(),
        "parentHash": "0x" + "ee" * 24 + (n - 1).to_bytes(8, "big").hex(),
    }


def trade_at(n: int) -> dict[str, Any]:
    log = recorded_logs()[1]
    return {**log, "blockNumber": hex(n), "blockHash": honest(n)["hash"], "logIndex": "0x0"}


def handler(name: str, tries: dict[str, int]) -> Any:
    async def handle(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        calls = body if isinstance(body, list) else [body]
        out = []
        has_logs = any(c["method"] == "eth_getLogs" for c in calls)
        for c in calls:
            m, p = c["method"], c["params"]
            if m == "eth_getLogs":
                a, b = int(p[0]["fromBlock"], 16), int(p[0]["toBlock"], 16)
                key = f"{name}:{a}-{b}"
                tries[key] = tries.get(key, 0) + 1
                if b - a + 1 > 4:
                    out.append({"jsonrpc": "2.0", "id": c["id"], "error": TOO_MANY})
                elif name == "H" and tries[key] == 1:  # flaky: the first try of each range fails
                    out.append({"jsonrpc": "2.0", "id": c["id"], "error": INTERNAL})
                elif name == "H":
                    logs = [trade_at(3)] if a <= 3 <= b else []
                    out.append({"jsonrpc": "2.0", "id": c["id"], "result": logs})
                else:  # another branch: none of our logs
                    out.append({"jsonrpc": "2.0", "id": c["id"], "result": []})
            elif m == "eth_getBlockByNumber":
                n = int(p[0], 16)
                if name == "H":
                    out.append({"jsonrpc": "2.0", "id": c["id"], "result": honest(n)})
                elif not has_logs:  # L fails header batches: the headers come from H
                    out.append({"jsonrpc": "2.0", "id": c["id"], "error": INTERNAL})
                else:  # L's head is 6: null above it
                    out.append({"jsonrpc": "2.0", "id": c["id"], "result": other_branch(n) if n <= 6 else None})
            else:
                out.append({"jsonrpc": "2.0", "id": c["id"], "error": INTERNAL})
        answer = out if isinstance(body, list) else out[0]
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    return handle


async def test_a_sub_range_answered_from_another_branch_is_not_trusted() -> None:
    tries: dict[str, int] = {}
    fast = RetryPolicy(attempts=10, seconds=10.0, base=0.001, cap=0.01)
    async with posting(handler("H", tries)) as h, posting(handler("L", tries)) as lp:
        async with Rpc([f"http://127.0.0.1:{h}", f"http://127.0.0.1:{lp}"], 5.0, retry=fast, seed=1) as rpc:
            fetcher = RangeFetcher(rpc, 31337, [OM, CS], SpanPolicy(8, 8, 6000), lambda **kw: None)
            try:
                got = await fetcher.fetch(range(1, 9), 8, finalized=100)  # 1..8, all finalized
            except (ChainMismatch, RpcError):
                return  # the branch mismatch was seen: refetched (what the docs promise)
    assert tries.get("L:1-4"), "the liar should have answered a sub-range (the scenario did not happen)"
    assert [e.block_number for e in got.events] == [3], (
        f"range 1..8 committed with {len(got.events)} event(s): the Trade of block 3 was dropped because"
        " sub-range 1..4 was answered by a node of another branch (its header of block 4 is not ours)"
    )
