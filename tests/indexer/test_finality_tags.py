"""Review h9 (medium): a provider without the `safe`/`finalized` tags (geth before the merge and several L2 and
sidechain nodes answer -32000 "finalized block not found"). The docs promise the fallback to
head - finality_depth; every head read instead retried the two failing elements for seconds, on
every read, so the tip's per-block head read cost that long and newHeads were never used."""

from __future__ import annotations

import types

import orjson
from aiohttp import web

from core.rpc import RetryPolicy
from indexer import checkpoint
from indexer.metrics import Metrics
from indexer.pipeline import TAGS_GIVE_UP, Pipeline, Status
from indexer.rpc import Rpc
from tests.local_http import posting

HEAD = 1000


def _block(n: int) -> dict[str, str]:
    return {
        "number": hex(n),
        "hash": "0x" + n.to_bytes(32, "big").hex(),
        "parentHash": "0x" + (n - 1).to_bytes(32, "big").hex(),
        "timestamp": hex(1_700_000_000 + n),
        "logsBloom": "0x" + "00" * 256,
    }


def _answer(call: dict) -> dict:
    tag = call["params"][0]
    if tag in ("safe", "finalized"):
        return {"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32000, "message": f"{tag} block not found"}}
    n = HEAD if tag == "latest" else int(tag, 16)
    return {"jsonrpc": "2.0", "id": call["id"], "result": _block(n)}


ASKED: dict[str, int] = {}


async def _handle(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    for c in body if isinstance(body, list) else [body]:
        ASKED[c["params"][0]] = ASKED.get(c["params"][0], 0) + 1
    out = [_answer(c) for c in body] if isinstance(body, list) else _answer(body)
    return web.Response(body=orjson.dumps(out), content_type="application/json")


async def test_a_provider_without_finality_tags_is_asked_for_them_once_per_read_then_not_at_all() -> None:
    """Before: each read asked each tag ~10 times with back-off (5-9 s a read, on every read)."""
    ASKED.clear()
    async with posting(_handle) as port:
        async with Rpc([f"http://127.0.0.1:{port}"], 5.0, retry=RetryPolicy(attempts=10, seconds=120.0)) as rpc:
            me = types.SimpleNamespace(
                o=types.SimpleNamespace(finality="tag", outbox_max_lag=256),
                s=types.SimpleNamespace(chain=types.SimpleNamespace(finality_depth=64)),
                rpc=rpc,
                m=Metrics(31337),
                status=Status(indexed=HEAD),
                heads=checkpoint.Heads(0, None, 0),
                finality_read=None,
                heads_read_at=0.0,
                head_hash=b"",
                tags_failed=0,
                tags_off_until=0.0,
                tags_seen=False,
                outbox_head=0,
            )
            me._read_tags = types.MethodType(Pipeline._read_tags, me)
            me._outbox_head = types.MethodType(Pipeline._outbox_head, me)
            reads = [await Pipeline.refresh_heads(me) for _ in range(TAGS_GIVE_UP + 2)]  # type: ignore[arg-type]
    assert {h.head for h in reads} == {HEAD}
    assert reads[-1].finalized == HEAD - 64  # the fallback: head - finality_depth (two reads agreeing)
    assert ASKED["latest"] == TAGS_GIVE_UP + 2
    # one try per read (a batch that answered something is sent once more for what it missed), and
    # none after TAGS_GIVE_UP reads; before, about 10 tries a read, on every read
    assert ASKED["safe"] == ASKED["finalized"] <= 2 * TAGS_GIVE_UP
    assert me.tags_off_until > 0  # asked again after TAGS_REPROBE_S
