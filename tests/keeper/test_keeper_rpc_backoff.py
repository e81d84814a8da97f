"""keeper/rpc.py: node trouble in a batch of many chunks is asked again on one back-off schedule for
the whole call (review h8: a wait per chunk, one chunk after another, made a rate-limited run of many
chunks reach job_timeout_s, a systemic fault)."""

from __future__ import annotations

import types
from typing import Any

import orjson
import pytest
from aiohttp import web

import keeper.rpc as keeper_rpc
from keeper.rpc import Rpc, RpcError
from tests.local_http import posting


async def test_node_trouble_back_off_is_one_schedule_per_batch_call(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = {"n": 0}
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(keeper_rpc, "asyncio", types.SimpleNamespace(sleep=sleep))

    async def handle(request: web.Request) -> web.Response:
        msg = orjson.loads(await request.read())
        calls: list[Any] = msg if isinstance(msg, list) else [msg]
        asked["n"] += len(calls)
        out = [
            {"jsonrpc": "2.0", "id": c["id"], "error": {"code": -32005, "message": "rate limit exceeded"}}
            for c in calls
        ]
        return web.json_response(out if isinstance(msg, list) else out[0])

    async with posting(handle) as port:
        async with Rpc([f"http://127.0.0.1:{port}"], timeout_s=5, batch_size=1) as rpc:
            calls = [("eth_call", [{"to": "0x" + "11" * 20, "data": "0x"}, "latest"]) for _ in range(6)]
            results = await rpc.batch(calls)
    assert all(isinstance(r, RpcError) and r.node_trouble for r in results)
    assert asked["n"] == 6 * rpc.retries  # every element asked `retries` times in all
    assert waits == [0.5, 1.0]  # one wait between attempts for the whole call, not one per chunk (6 x 2)
