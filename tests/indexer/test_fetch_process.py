"""The backfill's fetch process (indexer/fetch.py) against a real anvil: what crosses the pipe is
what the in-process fetcher produces, errors keep their class, and a dead child is replaced."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import orjson
import pytest
from aiohttp import web

from indexer.chain import SpanPolicy
from indexer.fetch import ChildConfig, FetchProcess, Prepared, RangeFetcher
from indexer.rpc import RetryPolicy, Rpc, TransientRpcError
from indexer.spawn import Child, discard, early_child, spawn_fetch_child
from tests.chain import free_port
from tests.indexer.helpers import Node, sim
from tests.local_http import serving

pytestmark = [pytest.mark.anvil]

POLICY = SpanPolicy(100, 10_000, 10_000)


def addresses(node: Node) -> tuple[str, str]:
    c = node.deployment["contracts"]
    return c["OpinionMarket"], c["CreatorShares"]


def config(node: Node, urls: tuple[str, ...] | None = None, retry: RetryPolicy | None = None) -> ChildConfig:
    return ChildConfig(
        urls or (node.url,), 5.0, node.deployment["chain_id"], addresses(node), POLICY, retry=retry or RetryPolicy()
    )


def head(node: Node) -> int:
    return int(node.w3.eth.block_number)


def as_comparable(p: Prepared) -> tuple[Any, ...]:
    return (p.blocks, p.headers, p.events, p.raw, p.span, p.spans)


def test_child_results_equal_the_in_process_fetcher(node: Node) -> None:
    sim(node.url, node.deployment, seed=3, max_events=40, resolve=True)
    blocks = range(1, head(node) + 1)

    async def both() -> tuple[Prepared, Prepared]:
        splits: list[dict[str, Any]] = []
        async with Rpc([node.url], 5.0) as rpc:
            local = await RangeFetcher(
                rpc, node.deployment["chain_id"], addresses(node), POLICY, lambda **kw: splits.append(kw)
            ).fetch(blocks, 100, 0)
        observed: list[tuple[str, float, str]] = []
        child = FetchProcess(config(node), lambda *o: observed.append(o), lambda **kw: splits.append(kw))
        try:
            remote = await child.fetch(blocks, 100, 0)
        finally:
            await child.close()
        assert {o[0] for o in observed} >= {"eth_getLogs"}, "the child's RPC timings reach the parent's metrics"
        return local, remote

    local, remote = asyncio.run(both())
    assert len(remote.events) >= 40
    assert as_comparable(remote) == as_comparable(local)


def test_errors_keep_their_class_and_a_killed_child_is_replaced(node: Node) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: every request fails

    async def scenario() -> None:
        quick = RetryPolicy(attempts=2, base=0.01)  # every call is retried before it fails
        failing = FetchProcess(config(node, (dead_url,), quick), lambda *o: None, lambda **kw: None)
        try:
            with pytest.raises(TransientRpcError):
                await failing.fetch(range(1, 3), 100, 0)
        finally:
            await failing.close()

        starts: list[bool] = []
        child = FetchProcess(config(node), lambda *o: None, lambda **kw: None, lambda: starts.append(True))
        try:
            first = await child.fetch(range(1, head(node) + 1), 100, 0)
            # stopped first, so the job sent next cannot be answered before the kill: on a busy
            # machine the child used to reply in the gap and the fetch succeeded (CI, stop 12)
            child.proc.send_signal(signal.SIGSTOP)
            pending = asyncio.create_task(child.fetch(range(1, head(node) + 1), 100, 0))
            await asyncio.sleep(0)  # the job is sent to a child that cannot answer it
            child.proc.kill()  # SIGKILL: no goodbye on the socket
            with pytest.raises(TransientRpcError):
                await pending
            again = await child.fetch(range(1, head(node) + 1), 100, 0)  # a new child
            assert as_comparable(again) == as_comparable(first)
            assert len(starts) == 2  # what indexer_fetch_process_starts_total counts
        finally:
            await child.close()

    sim(node.url, node.deployment, seed=5, max_events=10)
    asyncio.run(scenario())


def test_an_oversized_getlogs_answer_is_split_not_parsed(node: Node) -> None:
    """A node with no result cap: an answer above max_logs_bytes counts as "range too large"."""
    sim(node.url, node.deployment, seed=4, max_events=40)
    blocks = range(1, head(node) + 1)

    async def fetch(limit: int) -> tuple[Prepared, list[dict[str, Any]]]:
        splits: list[dict[str, Any]] = []
        async with Rpc([node.url], 5.0, max_logs_bytes=limit) as rpc:
            got = await RangeFetcher(
                rpc, node.deployment["chain_id"], addresses(node), POLICY, lambda **kw: splits.append(kw)
            ).fetch(blocks, len(blocks), 0)
        return got, splits

    whole, no_splits = asyncio.run(fetch(32 << 20))
    capped, splits = asyncio.run(fetch(4_000))  # a few logs' worth of JSON
    assert [s["kind"] for s in no_splits] == ["fetched"]  # one range, answered whole
    splits = [s for s in splits if s["kind"] == "split"]
    assert splits
    assert "exceeds 4000" in splits[0]["error"]
    assert "max_response_mb" in splits[0]["error"]
    assert len(capped.spans) > len(whole.spans) == 1
    assert capped.events == whole.events
    assert capped.raw == whole.raw


def test_an_early_child_is_adopted_and_an_unused_one_exits(node: Node) -> None:
    """`python -m indexer` starts the fetch process before its imports (indexer/spawn.py): the
    FetchProcess adopts that one; a dead early child is replaced; one nobody adopts exits."""
    sim(node.url, node.deployment, seed=5, max_events=10)
    assert early_child(["migrate", "--config", "x.toml"]) is None
    assert early_child(["--help"]) is None

    unused = early_child(["--config", "x.toml"])
    assert unused is not None
    discard(unused)
    assert unused[0].returncode is not None  # saw EOF on its socket and exited

    async def adopt(early: Child) -> tuple[int, int]:
        child = FetchProcess(config(node), lambda *o: None, lambda **kw: None, early=early)
        try:
            got = await child.fetch(range(1, head(node) + 1), 100, 0)
            return child.proc.pid, len(got.events)
        finally:
            await child.close()

    early = spawn_fetch_child()
    pid, events = asyncio.run(adopt(early))
    assert pid == early[0].pid
    assert events >= 10
    assert early[0].poll() is not None  # closed with the FetchProcess

    dead = spawn_fetch_child()
    dead[0].kill()
    dead[0].wait()
    pid, events = asyncio.run(adopt(dead))
    assert pid != dead[0].pid
    assert events >= 10


def test_a_cancelled_fetch_stops_in_the_child_too() -> None:
    """The backfill cancels the fetches of a failed iteration: the child stops asking the node for
    them. Before, it went on (retrying for up to retry_seconds) for results nobody waited for, and a
    failing provider piled them up. The node here never answers; the open connections show who asks."""
    open_now: list[int] = [0]

    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_now[0] += 1
        try:
            while await reader.read(65536):  # until the client closes its side
                pass
        finally:
            open_now[0] -= 1
            writer.close()

    async def go() -> None:
        server = await asyncio.start_server(never_answers, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        two = ("0x" + "11" * 20, "0x" + "22" * 20)
        cfg = ChildConfig((url,), 60.0, 31337, two, POLICY, retry=RetryPolicy())
        child = FetchProcess(cfg, lambda *o: None, lambda **kw: None)
        try:
            task = asyncio.create_task(child.fetch(range(1, 100), 100, 0))
            for _ in range(300):
                if open_now[0]:
                    break
                await asyncio.sleep(0.05)
            assert open_now[0] >= 1, "the child never asked the node"
            task.cancel()
            for _ in range(200):  # the child drops its requests: their connections close
                if not open_now[0]:
                    break
                await asyncio.sleep(0.05)
            assert open_now[0] == 0
        finally:
            await child.close()
            server.close()

    asyncio.run(go())


TWO = ("0x" + "11" * 20, "0x" + "22" * 20)
HEADER = {"number": "0x10", "hash": "0x" + "ab" * 32, "parentHash": "0x" + "cd" * 32, "timestamp": "0x1"}


def rate_limited(request: Any) -> tuple[int, bytes]:
    return 429, b'{"error":"too many requests"}'


def headers_too_large(calls: Any) -> tuple[int, bytes]:
    """The range's [eth_getLogs, eth_getBlockByNumber] pair answered; every header batch too large."""
    if calls[0]["method"] == "eth_getLogs":
        return 200, orjson.dumps([{"id": calls[0]["id"], "result": []}, {"id": calls[1]["id"], "result": HEADER}])
    return 200, orjson.dumps([{"id": c["id"], "result": {**HEADER, "pad": "x" * 3000}} for c in calls])


@pytest.mark.parametrize(
    ("script", "error"), [(rate_limited, "RateLimited"), (headers_too_large, "TransientRpcError")], ids=["429", "large"]
)
def test_a_childs_rpc_error_reaches_the_parent_as_a_retried_iteration_error(script: Any, error: str) -> None:
    """A 429 storm longer than retry_seconds, or a header batch above max_response_mb (a bad answer,
    asked again: only a range of logs can be split), in the fetch process: the parent gets the same
    RpcError class (a failed iteration, retried), not the RuntimeError that ended the run with exit 1
    (indexer_crashed)."""
    from indexer.service import ITERATION_ERRORS

    async def handle(request: web.Request) -> web.Response:
        status, body = script(await request.json())
        return web.Response(status=status, body=body, content_type="application/json")

    async def go() -> BaseException:
        app = web.Application()
        app.router.add_post("/", handle)
        async with serving(app) as url:
            cfg = ChildConfig(
                (url,), 2.0, 1, TWO, POLICY, max_logs_bytes=2000, retry=RetryPolicy(attempts=3, seconds=1.0)
            )
            child = FetchProcess(cfg, lambda *o: None, lambda **kw: None)
            try:
                await asyncio.wait_for(child.fetch(range(16, 17), 1, 100), 30)
            except Exception as exc:  # what the parent gets is the point: checked by the caller
                return exc
            finally:
                await child.close()
        raise AssertionError("the fetch succeeded")

    exc = asyncio.run(go())
    assert type(exc).__name__ == error
    assert isinstance(exc, ITERATION_ERRORS)


def test_an_error_the_parent_does_not_know_comes_back_transient_with_its_text() -> None:
    """What crosses the pipe is the first class of the error's MRO the parent knows; an unknown one
    (RecursionError from a parser, a bug's ValueError) is a TransientRpcError naming it, never a
    RuntimeError (which is not an iteration error)."""
    from indexer.chain import ChainMismatch
    from indexer.fetch import error_of, error_reply
    from indexer.rpc import BadAnswer, RangeTooLarge

    class Subclassed(RangeTooLarge):
        pass

    def round_trip(exc: Exception) -> Exception:
        return error_of(*error_reply(exc))

    back = round_trip(RecursionError("maximum recursion depth exceeded"))
    assert type(back) is TransientRpcError
    assert "RecursionError" in str(back)
    assert "maximum recursion depth exceeded" in str(back)
    assert type(round_trip(ValueError("x"))) is TransientRpcError
    assert type(round_trip(Subclassed("too big", -32005))) is RangeTooLarge
    assert round_trip(Subclassed("too big", -32005)).code == -32005  # type: ignore[attr-defined]
    assert type(round_trip(BadAnswer("provider 1: not hex"))) is BadAnswer
    assert type(round_trip(ChainMismatch("block 5 does not link"))) is ChainMismatch


def test_a_single_block_every_provider_refuses_is_transient_not_fatal() -> None:
    """One provider pads every answer past max_response_mb: a one-block range goes to the other one
    (counted against the padding one); when every provider refuses one block, a TransientRpcError
    with the provider's text (retried), never the FatalRpcError that ended the run."""
    from indexer.rpc import FatalRpcError

    def good(calls: Any) -> bytes:
        return orjson.dumps([{"id": calls[0]["id"], "result": []}, {"id": calls[1]["id"], "result": HEADER}])

    def padded(calls: Any) -> bytes:
        return orjson.dumps([{"id": calls[0]["id"], "result": [], "pad": "x" * 5000}])

    def app_of(script: Any) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            return web.Response(body=script(await request.json()), content_type="application/json")

        app = web.Application()
        app.router.add_post("/", handle)
        return app

    async def go() -> None:
        fast = RetryPolicy(attempts=5, seconds=5.0, base=0.001, cap=0.01)
        async with serving(app_of(good)) as ok_url, serving(app_of(padded)) as bad_url:
            for seed in range(8):
                async with Rpc([ok_url, bad_url], 2.0, max_logs_bytes=4000, retry=fast, seed=seed) as rpc:
                    fetcher = RangeFetcher(rpc, 1, TWO, POLICY, lambda **kw: None)
                    logs, _span = await fetcher._logs(16, 16, 1, [], {})
                    assert logs == []
            async with Rpc([bad_url], 2.0, max_logs_bytes=4000, retry=fast) as rpc:
                fetcher = RangeFetcher(rpc, 1, TWO, POLICY, lambda **kw: None)
                with pytest.raises(
                    TransientRpcError, match=r"block 16: refused by every provider.*exceeds 4000"
                ) as err:
                    await fetcher._logs(16, 16, 1, [], {})
                assert not isinstance(err.value, FatalRpcError)

    asyncio.run(go())
