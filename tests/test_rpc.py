"""The one JSON-RPC client (core/rpc.py) as the keeper uses it (keeper/rpc.py, node_errors="final"):
a JSON-RPC error comes back at once with its code and revert data, never retried; a transport failure
is retried and then reported as transient (code -1)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web

from keeper.rpc import Rpc, RpcError
from tests.local_http import serving

REVERT = "0x08c379a0" + "00" * 4


def node(answers: list[Any], seen: list[Any]) -> web.Application:
    """Answers POSTs in turn from `answers` (an int is an HTTP status with an empty body)."""

    async def handle(request: web.Request) -> web.Response:
        call = await request.json()
        seen.append(call)
        a = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(a, int):
            return web.Response(status=a)
        if isinstance(call, list):
            return web.json_response([{"jsonrpc": "2.0", "id": c["id"], **a[i]} for i, c in enumerate(call)])
        return web.Response(body=orjson.dumps({"jsonrpc": "2.0", "id": call["id"], **a}))

    app = web.Application()
    app.router.add_post("/", handle)
    return app


async def test_a_revert_is_returned_at_once_with_its_data() -> None:
    seen: list[Any] = []
    error = {"error": {"code": 3, "message": "execution reverted", "data": REVERT}}
    async with serving(node([error], seen)) as url, Rpc([url], 5.0, retries=3) as rpc:
        with pytest.raises(RpcError) as err:
            await rpc.call("eth_call", {"to": "0x" + "aa" * 20}, "latest")
    assert len(seen) == 1
    assert (err.value.code, err.value.transient, err.value.revert_data) == (3, False, bytes.fromhex(REVERT[2:]))
    assert str(err.value) == "eth_call: execution reverted (code 3)"


async def test_a_batch_keeps_its_answers_and_returns_errors_as_values() -> None:
    seen: list[Any] = []
    answers = [[{"result": "0x1"}, {"error": {"code": -32000, "message": "nonce too low"}}]]
    async with serving(node(answers, seen)) as url, Rpc([url], 5.0) as rpc:
        ok, refused = await rpc.batch([("eth_blockNumber", []), ("eth_sendRawTransaction", ["0x00"])])
    assert ok == "0x1"
    assert isinstance(refused, RpcError)
    assert (refused.code, refused.message, refused.transient) == (-32000, "nonce too low", False)
    assert len(seen) == 1  # a refused transaction is the keeper's to read, not resent


async def test_an_unreachable_node_is_retried_then_transient() -> None:
    seen: list[Any] = []
    async with serving(node([502, 502, {"result": "0x5"}], seen)) as url, Rpc([url], 5.0, retries=3) as rpc:
        assert await rpc.call("eth_blockNumber") == "0x5"
    assert len(seen) == 3
    seen.clear()
    async with serving(node([503], seen)) as url, Rpc([url], 5.0, retries=2) as rpc:
        with pytest.raises(RpcError) as err:
            await rpc.call("eth_blockNumber")
    assert (err.value.code, err.value.transient) == (-1, True)
    assert len(seen) == 2


async def test_failed_attempts_leave_nothing_for_the_garbage_collector() -> None:
    """Retried failures are freed by reference counting: no exception of a failed attempt (with the
    frames and answers its traceback holds) waits in a reference cycle for a full collection, which
    the daemons run rarely (runtime.tune_gc). Before, a rate-limited provider grew the indexer's fetch
    process from 89 to 191 MB over a 200k-event backfill."""
    import gc

    from core.rpc import RetryPolicy
    from core.rpc import Rpc as CoreRpc
    from core.rpc_errors import TransientRpcError

    seen: list[Any] = []
    internal = {"error": {"code": -32000, "message": "internal error"}}
    answers: list[Any] = [502, internal, internal, {"result": "0x1"}]  # a call: three failures, then an answer
    # a batch: one element fails twice, the other is kept from the first answer
    answers += [[{"result": "0x2"}, internal], [internal], [{"result": "0x3"}]]
    fast = RetryPolicy(attempts=10, seconds=30.0, base=0.001, cap=0.01)

    def alive() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, TransientRpcError))

    gc.collect()
    gc.disable()
    try:
        before = alive()
        async with serving(node(answers, seen)) as url, CoreRpc([url], 5.0, retry=fast) as rpc:
            assert await rpc.call("eth_blockNumber", []) == "0x1"
            got = await rpc.batch_settled([("eth_chainId", []), ("eth_gasPrice", [])])
            assert got == ["0x2", "0x3"]
            assert alive() == before
    finally:
        gc.enable()
    assert len(seen) == 7  # every failure was retried alone


def capped(cap: int, seen: list[Any], wording: str) -> web.Application:
    """A node that refuses whole any batch of more than `cap` calls (cap 0: every batch) and answers
    each call with its own id as the result."""

    async def handle(request: web.Request) -> web.Response:
        call = await request.json()
        seen.append(len(call) if isinstance(call, list) else "single")
        if isinstance(call, list) and len(call) > cap:
            return web.json_response({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": wording}})
        if isinstance(call, list):
            return web.json_response([{"jsonrpc": "2.0", "id": c["id"], "result": c["params"][0]} for c in call])
        return web.json_response({"jsonrpc": "2.0", "id": call["id"], "result": call["params"][0]})

    app = web.Application()
    app.router.add_post("/", handle)
    return app


@pytest.mark.parametrize(
    ("cap", "wording"),
    [(3, "batch too large"), (10, "exceeded max batch size of 10"), (0, "Batch requests are limited to 0")],
)
async def test_a_provider_that_caps_batches_gets_batches_that_fit(cap: int, wording: str) -> None:
    """A batch refused for its size halves the provider's batch cap (remembered) and is sent again
    at once, in parts that fit; a provider that takes no batch at all gets one call per request.
    Every answer comes back in order."""
    from core.rpc import RetryPolicy
    from core.rpc import Rpc as CoreRpc

    seen: list[Any] = []
    fast = RetryPolicy(attempts=3, seconds=30.0, base=0.001, cap=0.01)
    calls = [("eth_echo", [i]) for i in range(40)]
    async with serving(capped(cap, seen, wording)) as url, CoreRpc([url], 5.0, retry=fast) as rpc:
        assert await rpc.batch(calls) == list(range(40))
        refused = len(seen)
        assert await rpc.batch(calls) == list(range(40))  # the cap is remembered: nothing refused
    sent = seen[refused:]
    if cap == 0:
        assert sent == ["single"] * 40
    else:
        assert all(isinstance(n, int) and n <= cap for n in sent)
        assert sum(sent) == 40


@pytest.mark.parametrize(
    ("message", "refused"),
    [
        ("batch too large", True),
        ("Batch size too large. Max batch size is 100", True),
        ("exceeded max batch size of 50", True),
        ("too many requests in batch", True),
        ("batch rate limit exceeded", False),
        ("your app has exceeded its compute units per second capacity (batch)", False),
        ("execution reverted", False),
    ],
)
def test_a_batch_size_refusal_is_told_from_a_rate_limit(message: str, refused: bool) -> None:
    from core.rpc_errors import batch_refused

    assert batch_refused(message) is refused


async def test_every_answer_is_bounded_not_only_log_ranges() -> None:
    """A header, a block's receipts or an error page larger than max_response_mb is refused as it
    arrives (RangeTooLarge), whatever the method: it used to be read whole into memory."""
    from core.rpc import RangeTooLarge
    from core.rpc import Rpc as CoreRpc

    big = {"result": {"number": "0x1", "padding": "x" * (2 << 20)}}
    seen: list[Any] = []
    async with serving(node([big], seen)) as url, CoreRpc([url], 5.0, max_logs_bytes=1 << 20) as rpc:
        with pytest.raises(RangeTooLarge, match="exceeds"):
            await rpc.call("eth_getBlockReceipts", ["0x" + "11" * 32])
        small = {"result": "0x1"}
    async with serving(node([small], seen)) as url, CoreRpc([url], 5.0, max_logs_bytes=1 << 20) as rpc:
        assert await rpc.call("eth_blockNumber", []) == "0x1"
