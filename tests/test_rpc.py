"""The one JSON-RPC client (core/rpc.py) as the keeper uses it (keeper/rpc.py, node_errors="final"):
a JSON-RPC error comes back at once with its code and revert data, never retried; a transport failure
is retried and then reported as transient (code -1)."""

from __future__ import annotations

import time
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
    arrives, whatever the method: it used to be read whole into memory. Only a range of logs can be
    split and a block's receipts read another way (RangeTooLarge); any other answer that large is a bad
    answer, asked again (review h2: as RangeTooLarge it ended every iteration without a retry, and the
    indexer stood at one block)."""
    from core.rpc import BadAnswer, RangeTooLarge, RetryPolicy
    from core.rpc import Rpc as CoreRpc

    big = {"result": {"number": "0x1", "padding": "x" * (2 << 20)}}
    seen: list[Any] = []
    fast = RetryPolicy(attempts=3, seconds=30.0, base=0.001, cap=0.01)
    async with serving(node([big], seen)) as url, CoreRpc([url], 5.0, max_logs_bytes=1 << 20, retry=fast) as rpc:
        with pytest.raises(BadAnswer, match="exceeds"):
            await rpc.call("eth_getBlockByNumber", ["0x1", False])
        assert len(seen) == 3  # asked again, each answer cut off at the bound
        with pytest.raises(RangeTooLarge, match="exceeds"):  # its logs are read by hash instead (indexer.rpc)
            await rpc.call("eth_getBlockReceipts", ["0x" + "11" * 32])
    small = {"result": "0x1"}
    async with serving(node([small], seen)) as url, CoreRpc([url], 5.0, max_logs_bytes=1 << 20) as rpc:
        assert await rpc.call("eth_blockNumber", []) == "0x1"


# ---------------------------------------------------------------- what counts as a provider's answer


def scripted(answer: Any, seen: list[Any] | None = None, status: int = 200) -> web.Application:
    """A node whose every answer is `answer` (bytes as they are; else JSON with each call's id)."""

    async def handle(request: web.Request) -> web.Response:
        call = await request.json()
        if seen is not None:
            seen.append(call)
        if isinstance(answer, bytes):
            body = answer
        elif isinstance(call, list):
            body = orjson.dumps([{"jsonrpc": "2.0", "id": c["id"], **answer} for c in call])
        else:
            body = orjson.dumps({"jsonrpc": "2.0", "id": call["id"], **answer})
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/", handle)
    return app


@pytest.mark.parametrize(
    "error", [{"code": -32000, "message": "header not found"}, {"code": -32005, "message": "rate limit exceeded"}]
)
async def test_a_jsonrpc_error_in_an_http_200_is_a_failure_not_an_answer(error: dict[str, Any]) -> None:
    """An HTTP 200 carrying a JSON-RPC error counts as the provider failing: its failures add up (so
    the backoff grows past its first step) and the observer never hears "ok" (the watchdog's
    "degraded" needs a good answer). Before, every such attempt first counted as a success."""
    from core.rpc import RetryPolicy
    from core.rpc import Rpc as CoreRpc
    from core.rpc_errors import TransientRpcError

    seen: list[Any] = []
    outcomes: list[str] = []
    fast = RetryPolicy(attempts=5, seconds=1.0, base=0.001, cap=0.01)  # a rate limit: the time bounds it
    observe = lambda m, s, o: outcomes.append(o)  # noqa: E731
    async with serving(scripted({"error": error}, seen)) as url, CoreRpc([url], 5.0, observe, retry=fast) as rpc:
        with pytest.raises(TransientRpcError):
            await rpc.call("eth_blockNumber", [])
        provider = rpc._urls[0]
    assert provider.failures == len(seen) >= 5
    assert "ok" not in outcomes


async def test_an_error_answered_at_once_backs_off_briefly_rate_limits_and_5xx_fully() -> None:
    """Consecutive failures grow a provider's backoff; one that answered at once with an error (a JSON-RPC
    error, a malformed or lagging answer) is up, and waits at most ANSWERED_CAP (1 s); a rate limit, a
    5xx or a timeout grows to the policy's cap (10 s). With 10 s for every error, seeded fault runs of a
    provider failing a third of its calls took 50-90 s instead of 15-20 s."""
    from core.rpc import ANSWERED_CAP, RetryPolicy
    from core.rpc import Rpc as CoreRpc
    from core.rpc_errors import BadAnswer, RateLimited, TimedOut, TransientRpcError

    async with CoreRpc(["http://127.0.0.1:9"], 5.0, retry=RetryPolicy()) as rpc:
        u = rpc._urls[0]
        for answered in (TransientRpcError("internal error", -32000), BadAnswer("lagging node")):
            u.failures = 0
            assert max(rpc._failed(u, answered) for _ in range(20)) <= ANSWERED_CAP == 1.0
        for slow in (TransientRpcError("HTTP 502", None), TimedOut("timeout", None), RateLimited("-32005", -32005)):
            u.failures = 0
            assert max(rpc._failed(u, slow) for _ in range(20)) >= 5.0  # full jitter: half the 10 s cap at least


async def test_a_revert_is_still_returned_at_once_and_counts_as_an_answer() -> None:
    """The keeper's deterministic errors (node_errors="final"): returned at once, and the node that
    gave one answered (its score is not hurt)."""
    from core.rpc import Rpc as CoreRpc
    from core.rpc_errors import NodeError

    seen: list[Any] = []
    outcomes: list[str] = []
    error = {"error": {"code": 3, "message": "execution reverted", "data": REVERT}}
    observe = lambda m, s, o: outcomes.append(o)  # noqa: E731
    async with serving(scripted(error, seen)) as url, CoreRpc([url], 5.0, observe, node_errors="final") as rpc:
        with pytest.raises(NodeError):
            await rpc.call("eth_call", [{}, "latest"])
        assert rpc._urls[0].failures == 0
    assert (len(seen), outcomes) == (1, ["ok"])


async def test_a_retry_after_beyond_the_budget_ends_the_call_and_logs_the_providers_value() -> None:
    """A Retry-After longer than the call's budget: the call ends at once as a retryable RateLimited
    (the iteration fails and is tried again later), and the log says what the provider asked for."""
    from structlog.testing import capture_logs

    from core.rpc import RateLimited, RetryPolicy
    from core.rpc import Rpc as CoreRpc

    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "300"}, text="slow down")

    app = web.Application()
    app.router.add_post("/", handle)
    async with serving(app) as url, CoreRpc([url], 5.0, retry=RetryPolicy(seconds=5.0)) as rpc:
        with capture_logs() as logs, pytest.raises(RateLimited, match=r"asked to wait 300 s"):
            await rpc.call("eth_blockNumber", [])
    beyond = [e for e in logs if e["event"] == "rpc_retry_after_beyond_budget"]
    assert [(e["retry_after"], e["provider"]) for e in beyond] == [(300.0, 0)]


HEADER = {"number": "0x10", "hash": "0x" + "ab" * 32, "parentHash": "0x" + "cd" * 32, "timestamp": "0x1"}


@pytest.mark.parametrize(
    ("answer", "ask"),
    [
        ({"result": 31337}, "chain_id"),  # a JSON number
        ({"result": "31337"}, "chain_id"),  # decimal text
        ({"result": "0x-7a69"}, "chain_id"),  # int(x, 16) takes a sign
        ({"result": 12}, "code"),
        ({"result": "0xzz"}, "code"),
        ({"result": [1]}, "code"),
        (b'{"jsonrpc":"2.0","id":1,"result":' + b"[" * 5000 + b"]" * 5000 + b"}", "code"),  # nested too deep
        (b'[{"jsonrpc":"2.0","id":[1],"result":{}}]', "batch"),  # ids that are not ours
        (b'[{"jsonrpc":"2.0","id":{"a":1},"result":{}}]', "batch"),
    ],
    ids=["number", "decimal", "signed", "code-number", "code-not-hex", "code-list", "too-deep", "id-list", "id-object"],
)
async def test_a_wrong_typed_answer_is_a_bad_answer_naming_the_provider(answer: Any, ask: str) -> None:
    """Well-formed JSON of the wrong type (a number for a hex quantity, a list as a batch id, JSON
    nested thousands deep) is a BadAnswer (transient: asked again, then a failed iteration) naming
    the provider and the method — never a TypeError, ValueError or RecursionError ending the run."""
    from core.rpc import BadAnswer, RetryPolicy, TransientRpcError
    from core.rpc import Rpc as CoreRpc

    fast = RetryPolicy(attempts=2, seconds=30.0, base=0.001, cap=0.01)
    async with serving(scripted(answer)) as url, CoreRpc([url], 5.0, retry=fast) as rpc:
        if ask == "batch":
            got = await rpc.batch_settled([("eth_getBlockByNumber", ["latest", False])])
            assert isinstance(got[0], TransientRpcError), got  # "misses call 0": no answer is ours
            return
        with pytest.raises(BadAnswer, match=r"provider 0, eth_(chainId|getCode)"):
            await (rpc.chain_id() if ask == "chain_id" else rpc.code("0x" + "11" * 20))


async def test_a_provider_with_a_malformed_chain_id_is_skipped_at_start_like_an_unreachable_one() -> None:
    """check_chain_ids: one provider answering eth_chainId as a JSON number is not checked (warned),
    the others are; before, its TypeError stopped the start-up."""
    from core.rpc import Rpc as CoreRpc

    async with serving(scripted({"result": 31337})) as bad, serving(scripted({"result": "0x7a69"})) as good:
        async with CoreRpc([bad, good], 5.0) as rpc:
            matched, unreachable = await rpc.check_chain_ids(31337, [0, 1])
    assert (matched, unreachable) == ({1}, {0})


async def test_an_answer_too_large_from_one_provider_goes_to_another() -> None:
    """A provider whose answers exceed max_response_mb (padding, or no result cap) is scored down for it:
    the call is asked of another provider, whichever is drawn first; only when every provider refused
    does the caller get RangeTooLarge, and no provider is left backing off for it."""
    from core.rpc import RangeTooLarge, RetryPolicy
    from core.rpc import Rpc as CoreRpc

    padded = {"result": "0x10", "pad": "x" * 5000}
    fast = RetryPolicy(attempts=5, seconds=30.0, base=0.001, cap=0.01)
    async with serving(scripted({"result": "0x10"})) as good, serving(scripted(padded)) as bad:
        for seed in range(12):
            async with CoreRpc([good, bad], 5.0, max_logs_bytes=4000, retry=fast, seed=seed) as rpc:
                for _ in range(3):
                    assert await rpc.call("eth_blockNumber", []) == "0x10"
        async with CoreRpc([bad], 5.0, max_logs_bytes=4000, retry=fast) as rpc:
            with pytest.raises(RangeTooLarge):  # a range of logs: the caller splits it
                await rpc.call("eth_getLogs", [{"fromBlock": "0x1", "toBlock": "0x10"}])
            assert rpc._urls[0].errors > 0  # counted in its error score ...
            assert rpc._urls[0].down_until == 0.0  # ... without a backoff: the split range goes straight back


async def test_a_batch_element_rate_limited_with_a_wait_is_not_sent_before_it() -> None:
    """Review s19 h4: a batch whose one element is rate-limited (with the provider's wait) and whose
    other is answered keeps the answer and sends the element again alone, after the wait it asked
    for: the wait is not lost when the failure is wrapped as a batch that made progress."""

    from core.rpc import RetryPolicy
    from core.rpc import Rpc as CoreRpc

    seen: list[Any] = []
    limited = {"error": {"code": -32005, "message": "rate limited, try again in 0.3s"}}
    answers: list[Any] = [[{"result": "0x2"}, limited], [{"result": "0x3"}]]
    fast = RetryPolicy(attempts=10, seconds=30.0, base=0.001, cap=0.01)
    async with serving(node(answers, seen)) as url, CoreRpc([url], 5.0, retry=fast) as rpc:
        started = time.monotonic()
        got = await rpc.batch_settled([("eth_chainId", []), ("eth_gasPrice", [])])
        left_alone_until = rpc._urls[0].down_until  # when the provider could be asked again
    assert got == ["0x2", "0x3"]
    assert [len(s) if isinstance(s, list) else 1 for s in seen] == [2, 1]  # the answered element not asked again
    assert left_alone_until - started >= 0.3  # the policy alone would leave it at most 0.01 s
