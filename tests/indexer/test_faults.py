"""The indexer against flaky, rate-limited, load-balanced, lagging and lying providers (the seeded
fault proxy of tests/indexer/faultproxy.py), the chain:gap outbox message, and the start-up checks.

A few seeds run in the normal suite; GL_FUZZ=1 (make fuzz) runs many more."""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import orjson
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from indexer.chain import BlockRef
from indexer.fetch import dedupe
from indexer.metrics import Metrics
from indexer.migrate import SQL_DIR
from indexer.outbox_gap import Gap, advance
from indexer.rows import EV_TABLES
from indexer.rpc import (
    FatalRpcError,
    RateLimited,
    RawLog,
    RetryPolicy,
    Rpc,
    TransientRpcError,
    classify,
    parse_header,
    suspect,
    wait_hint,
)
from indexer.service import EXIT_CONFIG, Indexer, StartupCheckFailed, Status, run, watchdog
from indexer.settings import Settings
from tests.indexer.faultproxy import FaultProxy, Faults
from tests.indexer.helpers import (
    Node,
    assert_same_index,
    dump,
    fetch,
    index_to_head,
    make_settings,
    sim,
)
from tests.local_http import serving

FUZZ = os.environ.get("GL_FUZZ") == "1"
SEEDS = list(range(1, 31)) if FUZZ else [3, 4]


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("message", "span"),
    [
        ("query returned more than 10000 results. try with this block range [0x10, 0x1f]", 16),
        ("Query returned more than 10000 results. TRY WITH THIS BLOCK RANGE [0X10,0X1F]", 16),
        ("your range is too big; use [0xa, 0xb] instead", 2),
    ],
)
def test_a_block_range_hint_in_any_wording_narrows(message: str, span: int) -> None:
    """Any bracketed hex pair is the provider's suggested range, whatever the sentence around it."""
    err = classify(-32005, message)
    assert getattr(err, "suggested_span", None) == span


def test_rate_limits_carry_the_wait_the_provider_names() -> None:
    """Rate-limit errors are RateLimited with the wait their text names; unknown errors are transient."""
    err = classify(-32005, "daily request count exceeded, request rate limited, try again in 1.5s")
    assert isinstance(err, RateLimited)
    assert err.retry_after == 1.5
    assert wait_hint("retry after 250ms") == 0.25
    assert wait_hint("no hint here") is None
    unknown = classify(-32602, "the gateway could not complete the request (ref 7f3a)")
    assert type(unknown) is TransientRpcError


def raw(block: int, index: int, block_hash: str = "0x" + "0b" * 32) -> RawLog:
    return RawLog("0x" + "aa" * 20, [], "0x", hex(block), block_hash, "0x" + "0c" * 32, hex(index))


def test_duplicated_and_shuffled_logs_are_deduplicated_by_identity() -> None:
    """A repeated log is dropped (counted), the rest come back in (block, log index) order."""
    logs = [raw(2, 1), raw(1, 0), raw(2, 1), raw(1, 3)]
    out, dropped = dedupe(logs)
    assert dropped == 1
    assert [(r.blockNumber, r.logIndex) for r in out] == [("0x1", "0x0"), ("0x1", "0x3"), ("0x2", "0x1")]
    ordered = [raw(1, 0), raw(1, 1)]
    assert dedupe(ordered) == (ordered, 0)


def test_an_answer_with_a_log_it_should_not_hold_says_which_and_why() -> None:
    """rpc.suspect names the first log that is malformed, marked removed, of an address not asked
    for, of a block outside the range or of another block than the hash asked; an answer holding
    only its own logs (addresses in any case) passes."""
    wanted = frozenset(["0x" + "aa" * 20])
    topic = ["0x" + "01" * 32]
    mine = msgspec.structs.replace(raw(5, 0), address="0x" + "AA" * 20, topics=topic)

    def log(block: int, **changes: Any) -> RawLog:
        return msgspec.structs.replace(raw(block, 0), **{"topics": topic, **changes})

    assert suspect([log(1), mine, log(9)], wanted, 1, 9) is None
    assert suspect([mine], wanted, block_hash="0x" + "0b" * 32) is None
    other = log(5, address="0x" + "5e" * 20)
    assert suspect([mine, other], wanted, 1, 9) == ("address", f"a log of address 0x{'5e' * 20}, not one asked for")
    assert suspect([log(10)], wanted, 1, 9) == ("block", "a log of block 10, outside the range asked")
    assert suspect([log(0)], wanted, 1, 9) == ("block", "a log of block 0, outside the range asked")
    assert suspect([log(5)], wanted, block_hash="0x" + "0d" * 32) == (
        "block",
        f"a log of block 0x{'0b' * 32}, not the block asked",
    )
    assert suspect([log(5, removed=True)], wanted, 1, 9) == (
        "block",
        "a log marked removed (of a block reorged out) at block 5",
    )
    for broken in ({"blockNumber": "five"}, {"logIndex": "-0x1"}, {"transactionHash": "0x12"}, {"topics": []}):
        kind, why = suspect([log(5, **broken)], wanted, 1, 9) or ("", "")
        assert kind == "malformed", (broken, why)


def test_a_log_read_by_hash_must_also_be_of_the_block_number_asked() -> None:
    """By hash (the tip path, receipts): a log with the right blockHash but another blockNumber is
    refused like any stray log. Before, the range check was skipped by hash and the commit's decode
    failed on a KeyError (a crash, exit 1)."""
    wanted = frozenset(["0x" + "aa" * 20])
    log = msgspec.structs.replace(raw(21, 0), topics=["0x" + "01" * 32])
    assert suspect([log], wanted, 16, 16, "0x" + "0b" * 32) == ("block", "a log of block 21, outside the range asked")


WORD = "0" * 64


@given(
    word=st.integers(0, 9),
    at=st.integers(0, 63),
    bad=st.sampled_from(["-", "+", " ", "_", "\t", "g", "\u0663"]),
    where=st.sampled_from(["data", "topic"]),
)
def test_data_and_topics_must_be_strictly_hex(word: int, at: int, bad: str, where: str) -> None:
    """One character that int(word, 16) or bytes.fromhex would take ("-5", " 7", "1_0") in a log's
    data or topics makes the answer malformed (refused, asked again): the backfill's readers used to
    decode "-0…05" as collateral -5."""
    wanted = frozenset(["0x" + "aa" * 20])
    words = [WORD] * 10
    words[word] = WORD[:at] + bad + WORD[at + 1 :]
    topic = "0x" + (words[word] if where == "topic" else "01" * 32)
    data = "0x" + "".join(words) if where == "data" else "0x" + WORD * 10
    log = msgspec.structs.replace(raw(5, 0), topics=["0x" + "02" * 32, topic], data=data)
    good = msgspec.structs.replace(raw(5, 0), topics=["0x" + "02" * 32, "0x" + "01" * 32], data="0x" + WORD * 10)
    assert suspect([good], wanted, 1, 9) is None
    kind, why = suspect([log], wanted, 1, 9) or ("", "")
    assert kind == "malformed", why


def test_a_rescan_refuses_logs_of_events_that_are_not_ours() -> None:
    """With `topics` (the re-scan's): a log of our address whose topic0 is no event of abi/ is a bad
    answer, never a "missing" event that would trigger a re-index."""
    from indexer.rescan import our_topics

    ours = ["0x" + "aa" * 20, "0x" + "bb" * 20]
    topics = our_topics(ours)
    wanted = frozenset(ours)
    known = next(t for a, t in topics if a == ours[0])
    mine = msgspec.structs.replace(raw(5, 0), topics=[known])
    made_up = msgspec.structs.replace(raw(5, 1), topics=["0x" + "ee" * 32])
    assert suspect([mine], wanted, 1, 9, topics=topics) is None
    assert (suspect([mine, made_up], wanted, 1, 9, topics=topics) or ("",))[0] == "topic"


def test_progress_is_the_checkpoint_passing_its_highest_not_any_commit() -> None:
    """The stall watchdog's progress: a block committed again after a rollback is not progress, so a
    commit/rollback cycle cannot keep the watchdog quiet for ever; passing the highest block is."""
    status = Status()
    status.committed(10)
    first = status.last_progress
    status.indexed = 9  # rolled back
    time.sleep(0.01)
    status.committed(10)
    assert (status.indexed, status.last_progress) == (10, first)
    status.committed(11)
    assert status.last_progress > first


@pytest.mark.parametrize(
    "broken",
    [{"number": 5}, {"hash": "0x"}, {"timestamp": None}, {"parentHash": "zz"}, {"number": "-0x1"}],
)
def test_a_malformed_block_object_is_the_nodes_fault_not_a_crash(broken: dict[str, Any]) -> None:
    """parse_header: a field of the wrong type, not hex, cut short or negative is a TransientRpcError
    (asked again) naming what was wrong, never a TypeError that would stop the indexer."""
    good = {"number": "0x5", "hash": "0x" + "11" * 32, "parentHash": "0x" + "22" * 32, "timestamp": "0x1"}
    assert parse_header(good).number == 5
    with pytest.raises(TransientRpcError, match="malformed block object from the node"):
        parse_header({**good, **broken})


def test_one_gap_message_spans_every_batch_of_the_stretch() -> None:
    """Batches below the outbox window extend one open gap; the batch that reaches the window closes it."""
    gap, closed = advance(None, 10, 19, 100, {12: 2, 19: 1})
    assert (gap, closed) == (Gap(10, 19, 3), None)
    gap, closed = advance(gap, 20, 89, 100, {50: 4})
    assert (gap, closed) == (Gap(10, 89, 7), None)
    gap, closed = advance(gap, 90, 120, 100, {95: 1, 100: 5})
    assert (gap, closed) == (None, Gap(10, 99, 8))
    assert advance(None, 121, 130, 100, {125: 1}) == (None, None)


# ---------------------------------------------------------------- the client against a scripted node


async def test_a_429_is_retried_after_the_time_retry_after_names() -> None:
    """HTTP 429 + Retry-After: the call waits at least that long, then succeeds on the same provider."""
    seen: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        call = await request.json()
        seen.append(time.monotonic())
        if len(seen) == 1:
            return web.Response(status=429, text="slow down", headers={"Retry-After": "0.4"})
        return web.Response(body=orjson.dumps({"jsonrpc": "2.0", "id": call["id"], "result": "0x7a69"}))

    app = web.Application()
    app.router.add_post("/", handle)
    async with serving(app) as url, Rpc([url], 5.0) as rpc:
        assert await rpc.chain_id() == 31337
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 0.4


async def test_batch_elements_that_succeeded_are_not_asked_again() -> None:
    """A batch with one failing element: the retry carries only that element."""
    asked: list[list[str]] = []

    async def handle(request: web.Request) -> web.Response:
        calls = await request.json()
        asked.append([c["params"][0] for c in calls])
        out = []
        for c in calls:
            if c["params"][0] == "0x2" and len(asked) == 1:
                out.append({"jsonrpc": "2.0", "id": c["id"], "error": {"code": -32000, "message": "busy"}})
            else:
                out.append({"jsonrpc": "2.0", "id": c["id"], "result": c["params"][0]})
        return web.Response(body=orjson.dumps(out))

    app = web.Application()
    app.router.add_post("/", handle)
    async with serving(app) as url, Rpc([url], 5.0, retry=RetryPolicy(base=0.01)) as rpc:
        got = await rpc.batch([("eth_x", [hex(n)]) for n in range(1, 5)])
    assert got == ["0x1", "0x2", "0x3", "0x4"]
    assert asked == [["0x1", "0x2", "0x3", "0x4"], ["0x2"]]


async def test_several_providers_share_the_load_and_a_failing_one_is_avoided() -> None:
    """Two good providers both serve; one that answers 502 gets few requests once scored."""
    hits = {"a": 0, "b": 0, "bad": 0}

    def app_of(name: str) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            call = await request.json()
            hits[name] += 1
            if name == "bad":
                return web.Response(status=502, text="Bad Gateway")
            return web.Response(body=orjson.dumps({"jsonrpc": "2.0", "id": call["id"], "result": "0x1"}))

        app = web.Application()
        app.router.add_post("/", handle)
        return app

    async with serving(app_of("a")) as a, serving(app_of("b")) as b, serving(app_of("bad")) as bad:
        async with Rpc([a, b, bad], 5.0, retry=RetryPolicy(base=0.2), seed=1) as rpc:
            for _ in range(200):
                assert await rpc.call("eth_blockNumber", []) == "0x1"
    assert hits["a"] > 40
    assert hits["b"] > 40
    assert hits["bad"] < 30


async def test_a_provider_that_takes_no_batches_gets_no_log_ranges() -> None:
    """eth_getLogs ranges go with their header check in one batch of 2: a provider that refuses
    batches gets no range (the other provider takes them all); when none is left, a configuration
    error naming the key to change, not a retry for ever."""
    hits = {"batches": 0, "none": 0}
    header = {"number": "0x9", "hash": "0x" + "11" * 32, "parentHash": "0x" + "22" * 32, "timestamp": "0x1"}

    def app_of(name: str) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            calls = await request.json()
            hits[name] += 1
            if name == "none" and isinstance(calls, list):
                error = {"code": -32600, "message": "Batch requests are not supported on this plan (max batch size 0)"}
                return web.Response(body=orjson.dumps({"jsonrpc": "2.0", "id": None, "error": error}))
            answers = [[], header]
            return web.Response(
                body=orjson.dumps(
                    [{"jsonrpc": "2.0", "id": c["id"], "result": a} for c, a in zip(calls, answers, strict=True)]
                )
            )

        app = web.Application()
        app.router.add_post("/", handle)
        return app

    fast = RetryPolicy(attempts=5, base=0.001, cap=0.01)
    async with serving(app_of("batches")) as good, serving(app_of("none")) as none:
        async with Rpc([none, good], 5.0, retry=fast, seed=3) as rpc:
            for _ in range(20):
                logs, end = await rpc.get_logs_checked(1, 9, ["0x" + "aa" * 20])
                assert logs == []
                assert end is not None
                assert end.number == 9
        assert hits["none"] == 1  # refused once, then never asked for a range again
        async with Rpc([none], 5.0, retry=fast) as rpc:
            with pytest.raises(FatalRpcError, match=r"no provider takes JSON-RPC batches.*\[chain\]\.rpc_urls"):
                await rpc.get_logs_checked(1, 9, ["0x" + "aa" * 20])


async def test_a_provider_without_block_receipts_confirms_by_hash_with_the_block() -> None:
    """The bloom cross-check reads a block's receipts; a provider without eth_getBlockReceipts
    (method not found) is asked for eth_getLogs by hash with eth_getBlockByHash in one batch instead,
    which counts only when the answering node has the block (not fatal, warned once)."""
    block = BlockRef(9, b"\x11" * 32, b"\x22" * 32, 1, b"")
    header = {"number": "0x9", "hash": "0x" + "11" * 32, "parentHash": "0x" + "22" * 32, "timestamp": "0x1"}
    mine = {
        "address": "0x" + "aa" * 20,
        "topics": ["0x" + "01" * 32],
        "data": "0x",
        "blockNumber": "0x9",
        "blockHash": "0x" + "11" * 32,
        "transactionHash": "0x" + "0c" * 32,
        "logIndex": "0x0",
    }
    asked: list[str] = []
    has_block = [False, True]  # a node without the block answers first, then one with it

    async def handle(request: web.Request) -> web.Response:
        calls = await request.json()
        if isinstance(calls, dict):
            asked.append(calls["method"])
            error = {"code": -32601, "message": "the method eth_getBlockReceipts does not exist/is not available"}
            return web.Response(body=orjson.dumps({"jsonrpc": "2.0", "id": calls["id"], "error": error}))
        asked.append("+".join(c["method"] for c in calls))
        answers = [[mine], header if has_block.pop(0) else None]
        body = [{"jsonrpc": "2.0", "id": c["id"], "result": a} for c, a in zip(calls, answers, strict=True)]
        return web.Response(body=orjson.dumps(body))

    app = web.Application()
    app.router.add_post("/", handle)
    async with serving(app) as url, Rpc([url], 5.0, retry=RetryPolicy(attempts=5, base=0.001, cap=0.01)) as rpc:
        logs = await rpc.confirmed_logs_raw(block, ["0x" + "aa" * 20])
        assert [(r.blockNumber, r.logIndex) for r in logs] == [("0x9", "0x0")]
        assert rpc.no_receipts
    assert asked == ["eth_getBlockReceipts", "eth_getLogs+eth_getBlockByHash", "eth_getLogs+eth_getBlockByHash"]


def block_node(receipts: Any = None, by_hash: Any = None, header: Any = None) -> web.Application:
    """A node answering eth_getBlockReceipts with `receipts`, the [eth_getLogs, eth_getBlockByHash] pair
    with ([], `header`), and a lone eth_getLogs by hash with `by_hash`."""

    async def handle(request: web.Request) -> web.Response:
        calls = await request.json()
        if isinstance(calls, list):
            answers = [[], header]
            body: Any = [{"jsonrpc": "2.0", "id": c["id"], "result": a} for c, a in zip(calls, answers, strict=True)]
        elif calls["method"] == "eth_getBlockReceipts":
            body = {"jsonrpc": "2.0", "id": calls["id"], "result": receipts}
        else:
            body = {"jsonrpc": "2.0", "id": calls["id"], "result": by_hash}
        return web.Response(body=orjson.dumps(body))

    app = web.Application()
    app.router.add_post("/", handle)
    return app


def maybe_block() -> BlockRef:
    """Block 9, sealed, whose bloom says "maybe" for address 0xaa…"""
    from indexer.chain import bloom_bits

    bloom = bytearray(256)
    for bit in bloom_bits(b"\xaa" * 20):
        bloom[255 - bit // 8] |= 1 << (bit % 8)
    return BlockRef(9, b"\x11" * 32, b"\x22" * 32, 1, bytes(bloom), True)


async def test_empty_receipts_of_a_block_whose_sealed_bloom_is_set_are_not_no_logs() -> None:
    """Receipts answering [] (a node without the block) for a sealed header whose bloom is not empty
    are refused (every log sets bloom bits), as is a receipt of another block; before, [] was "no
    logs" and the block was committed empty."""
    block = maybe_block()
    fast = RetryPolicy(attempts=2, base=0.001, cap=0.01)
    receipt = {"blockHash": "0x" + "11" * 32, "logs": [{"address": "0x" + "cc" * 20}]}
    async with serving(block_node(receipts=[])) as url, Rpc([url], 5.0, retry=fast) as rpc:
        with pytest.raises(TransientRpcError, match="sealed logsBloom is not empty"):
            await rpc.receipts_logs_raw(block, ["0x" + "aa" * 20])
    other = {**receipt, "blockHash": "0x" + "33" * 32}
    async with serving(block_node(receipts=[other])) as url, Rpc([url], 5.0, retry=fast) as rpc:
        with pytest.raises(TransientRpcError, match="a receipt of block 0x3333"):
            await rpc.receipts_logs_raw(block, ["0x" + "aa" * 20])
    async with serving(block_node(receipts=[receipt])) as url, Rpc([url], 5.0, retry=fast) as rpc:
        assert await rpc.receipts_logs_raw(block, ["0x" + "aa" * 20]) == []  # a bloom false positive


async def test_a_block_by_hash_answered_with_another_block_is_refused() -> None:
    """The [eth_getLogs, eth_getBlockByHash] pair counts only when the header is the block asked: by
    its number and by its hash (before, by its number only)."""
    block = maybe_block()
    other = {"number": "0x9", "hash": "0x" + "44" * 32, "parentHash": "0x" + "22" * 32, "timestamp": "0x1"}
    fast = RetryPolicy(attempts=2, base=0.001, cap=0.01)
    async with serving(block_node(header=other)) as url, Rpc([url], 5.0, retry=fast) as rpc:
        with pytest.raises(TransientRpcError, match=r"eth_getBlockByHash.*answered block 0x4444"):
            await rpc.get_logs_checked(9, 9, ["0x" + "aa" * 20], block_hash=block.hash)


async def test_the_rescans_confirming_read_comes_from_another_provider() -> None:
    """A lying provider fabricates a log (our address, a topic0 of ours, the stored block hash, a new
    log index): the re-scan's confirming read goes to another provider when several are configured,
    so the lie is not confirmed; a made-up topic0 is refused outright (asked of the other one)."""
    from indexer.rescan import node_identities, our_topics

    ours = ["0x" + "aa" * 20, "0x" + "bb" * 20]
    topic = next(t for a, t in our_topics(ours) if a == ours[0])
    header = {"number": "0x10", "hash": "0x" + "0b" * 32, "parentHash": "0x" + "0d" * 32, "timestamp": "0x1"}
    made_up = {
        "address": ours[0],
        "topics": [topic],
        "data": "0x",
        "blockNumber": "0x10",
        "blockHash": "0x" + "0b" * 32,
        "transactionHash": "0x" + "0c" * 32,
        "logIndex": "0x3e8",
    }

    def node(logs: list[Any]) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            calls = await request.json()
            answers = [logs, header]
            body = [{"jsonrpc": "2.0", "id": c["id"], "result": a} for c, a in zip(calls, answers, strict=True)]
            return web.Response(body=orjson.dumps(body))

        app = web.Application()
        app.router.add_post("/", handle)
        return app

    fast = RetryPolicy(attempts=5, base=0.001, cap=0.01)
    async with serving(node([made_up])) as liar, serving(node([])) as honest:
        for seed in range(6):
            async with Rpc([liar, honest], 5.0, retry=fast, seed=seed) as rpc:
                first, by = await node_identities(rpc, 16, 16, ours, 1)
                second, _ = await node_identities(rpc, 16, 16, ours, 1, avoid=by)
                assert not (first & second), "a fabricated log confirmed by the provider that made it up"
        unknown = {**made_up, "topics": ["0x" + "ee" * 32]}
        async with serving(node([unknown])) as liar2:
            for seed in range(4):
                async with Rpc([liar2, honest], 5.0, retry=fast, seed=seed) as rpc:
                    assert (await node_identities(rpc, 16, 16, ours, 1))[0] == set()


async def test_a_providers_range_cap_is_remembered_and_wide_ranges_go_to_the_others() -> None:
    """A provider stating "limited to a 5 range" gets no wider range again; the uncapped one takes them."""
    asked: dict[str, list[int]] = {"capped": [], "open": []}

    def app_of(name: str) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            calls = await request.json()
            out = []
            for c in calls:
                if c["method"] == "eth_getLogs":
                    p = c["params"][0]
                    size = int(p["toBlock"], 16) - int(p["fromBlock"], 16) + 1
                    asked[name].append(size)
                    if name == "capped" and size > 6:
                        error = {"code": -32614, "message": "eth_getLogs is limited to a 6 range"}
                        out.append({"jsonrpc": "2.0", "id": c["id"], "error": error})
                        continue
                    out.append({"jsonrpc": "2.0", "id": c["id"], "result": []})
                else:
                    block = {"number": c["params"][0], "hash": "0x" + "00" * 32, "parentHash": "0x" + "00" * 32}
                    out.append({"jsonrpc": "2.0", "id": c["id"], "result": {**block, "timestamp": "0x1"}})
            return web.Response(body=orjson.dumps(out))

        app = web.Application()
        app.router.add_post("/", handle)
        return app

    async with serving(app_of("capped")) as a, serving(app_of("open")) as b:
        async with Rpc([a, b], 5.0, seed=2) as rpc:
            for _ in range(30):
                await rpc.get_logs_checked(1, 20, ["0x" + "aa" * 20])
                await rpc.get_logs_checked(1, 3, ["0x" + "aa" * 20])
            assert rpc.span_limit() is None  # the open provider states no cap
    assert [n for n in asked["capped"] if n > 5] == [20]  # refused once, then never asked again
    assert asked["open"].count(20) == 30
    assert asked["capped"].count(3) > 5  # narrow ranges still go to both


# ---------------------------------------------------------------- seeded fault runs against anvil


def run_until_head(settings: Settings) -> int:
    """Until the head, and until every finalized block is re-scanned (rescan_interval permitting)."""
    return asyncio.run(run(settings, asyncio.Event(), until_head=True, rescan=True))


def checkpoint(dsn: str) -> int:
    return int(fetch(dsn, "SELECT block_number FROM idx.checkpoints")[0]["block_number"])


def execute(dsn: str, sql: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.mark.anvil
@pytest.mark.pg
@pytest.mark.parametrize("seed", SEEDS)
def test_seeded_provider_faults_end_equal_to_a_fresh_index(
    seed: int, node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """Through two faulty providers (30 % call errors, 429 + Retry-After, 502, hangs, lagging
    load-balanced backends, range, result and batch caps in several wordings, dropped, duplicated,
    stray and malformed answers) the indexer reaches the head while faulted; the re-scan of
    finalized blocks repairs what lying answers dropped; the tables end equal to a fresh index of
    the same chain."""
    rng = random.Random(seed)
    sim(node.url, node.deployment, seed=seed, max_events=rng.randint(25, 45), resolve=True)
    node.anvil.mine(rng.randint(5, 40))
    sim(node.url, node.deployment, seed=seed + 50, max_events=rng.randint(5, 15))
    flaky = Faults(
        rpc_error=0.3,
        http_429=0.05,
        retry_after="1",
        http_502=0.05,
        hang=0.01,
        range_cap=rng.choice([5, 9, 40]),
        result_cap=rng.choice([0, 6]),
        lag=0.3,
        max_lag=4,
        drop=0.05,
        duplicate=0.1,
        stray=0.05,
        malformed=0.02,
        zero_bloom=0.1,
    )
    limited = Faults(
        rpc_error=0.05,
        http_429=0.3,
        retry_after="0",
        http_502=0.1,
        range_cap=20,
        lag=0.5,
        drop=0.05,
        duplicate=0.1,
        stray=0.05,
        batch_cap=rng.choice([0, 4, 50]),
    )
    proxies = [FaultProxy(node.url, seed, flaky, hang_seconds=1.0), FaultProxy(node.url, seed + 1000, limited)]
    try:
        options = {
            "request_timeout": 0.6,
            "initial_span": rng.choice([1, 4, 50]),
            "concurrency": rng.randint(1, 3),
            "tip_blocks": rng.choice([0, 3, 8]),
            "max_failures": 200,
            "rescan_interval": 1e-6,  # back to back
            "rescan_span": 100_000,
            "outbox_max_lag": rng.choice([0, 20]),
        }
        settings = make_settings([p.url for p in proxies], node.deployment, db_dsn, tmp_path, **options)
        # faulted all the way: reaching the head proves progress under faults (a run ends when a lagging
        # backend says it is at the head, so it may take more than one)
        for _ in range(10):
            assert run_until_head(settings) == 0
            if checkpoint(db_dsn) == node.anvil.head():
                break
        assert checkpoint(db_dsn) == node.anvil.head()
        # the lying stops (a bad backend leaves the pool); everything else goes on; once the blocks
        # are final the re-scan finds what was dropped and repairs it
        for p in proxies:
            p.faults.drop = 0.0
        node.anvil.mine(70)
        for _ in range(10):
            assert run_until_head(settings) == 0
            if checkpoint(db_dsn) == node.anvil.head():
                break
        counts = [dict(p.counts) for p in proxies]
    finally:
        for p in proxies:
            p.stop()
    print(f"seed {seed}: faults {counts}")
    for kind in ("rpc_error", "lag", "range_cap"):
        assert sum(c.get(kind, 0) for c in counts) > 0, kind
    want_dsn = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, want_dsn, tmp_path)) == 0
    assert_same_index(dump(db_dsn), dump(want_dsn))


@pytest.mark.anvil
@pytest.mark.pg
def test_logs_a_lying_node_dropped_are_found_by_the_rescan_and_repaired(
    node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """A provider that drops a log from every eth_getLogs answer leaves events missing (the bloom check
    only catches blocks left empty); once final, the re-scan sees the difference and re-indexes."""
    sim(node.url, node.deployment, seed=31, max_events=40)
    want_dsn = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, want_dsn, tmp_path)) == 0
    want = dump(want_dsn)
    proxy = FaultProxy(
        node.url, 31, Faults(rpc_error=0, http_429=0, http_502=0, hang=0, range_cap=10**6, lag=0, drop=1.0, duplicate=0)
    )
    try:
        lying = make_settings(proxy.url, node.deployment, db_dsn, tmp_path, rescan_interval=0, initial_span=20)
        assert index_to_head(lying) == 0
        assert dump(db_dsn) != want, "the dropped logs went missing"
        proxy.faults.enabled = False
        node.anvil.mine(70)
        honest = make_settings(proxy.url, node.deployment, db_dsn, tmp_path, rescan_interval=1e-6)
        assert run_until_head(honest) == 0
    finally:
        proxy.stop()
    assert proxy.counts.get("drop", 0) > 0
    assert_same_index(dump(db_dsn), want)


@pytest.mark.anvil
@pytest.mark.pg
def test_a_rescan_that_disagrees_on_a_finalized_blocks_hash_alerts_and_never_wipes_the_index(
    node: Node, db_dsn: str, tmp_path: Path
) -> None:
    """The node reports a finalized block's logs under another hash than the index holds (a node of
    another fork in rpc_urls, or this index's own damage): an operator's call, logged as
    rescan_fork_disagreement; the index is not reset (it was re-indexed from the deploy block on the
    word of that one answer)."""
    sim(node.url, node.deployment, seed=33, max_events=30)
    assert index_to_head(make_settings(node.url, node.deployment, db_dsn, tmp_path, rescan_interval=0)) == 0
    union = " UNION ALL ".join(f"SELECT '{t}' AS t, block_number, log_index FROM idx.{t}" for t in EV_TABLES)
    rows = fetch(db_dsn, f"SELECT t, block_number, log_index FROM ({union}) u ORDER BY block_number, log_index")
    per_block: dict[int, list[Any]] = {}
    for r in rows:
        per_block.setdefault(int(r["block_number"]), []).append(r)
    block, events = next((b, ev) for b, ev in per_block.items() if len(ev) >= 2)
    fake = b"\xfe" * 32
    for table in EV_TABLES:
        execute(db_dsn, f"UPDATE idx.{table} SET block_hash = '\\x{fake.hex()}' WHERE block_number = {block}")
    gone = events[0]  # and one of that block's events missing: the node's log is "missing" under its hash
    execute(db_dsn, f"DELETE FROM idx.{gone['t']} WHERE block_number = {block} AND log_index = {gone['log_index']}")
    before = checkpoint(db_dsn)
    node.anvil.mine(70)
    assert run_until_head(make_settings(node.url, node.deployment, db_dsn, tmp_path, rescan_interval=1e-6)) == 0
    kept = fetch(
        db_dsn, f"SELECT count(*) AS n FROM ({union.replace('log_index', 'block_hash')}) u WHERE block_hash = $1", fake
    )
    assert kept[0]["n"] == len(events) - 1  # the index was not wiped and rebuilt from the node
    assert checkpoint(db_dsn) >= before  # not reset: indexed on from where it was


QUIET = {"rpc_error": 0, "http_429": 0, "http_502": 0, "hang": 0, "lag": 0, "drop": 0, "duplicate": 0}


def index_through(
    node: Node, proxy: FaultProxy, dsns: list[str], tmp_path: Path, tip_blocks: tuple[int, ...], **options: Any
) -> dict[str, int]:
    """Indexes the chain into each database through `proxy`, the n-th with tip_blocks[n] (10**6: block
    by block on the tip path; 0: the backfill); each run must reach the head. Returns the faults made."""
    try:
        for dsn, tip in zip(dsns, tip_blocks, strict=True):
            settings = make_settings(proxy.url, node.deployment, dsn, tmp_path, tip_blocks=tip, **options)
            assert index_to_head(settings) == 0
    finally:
        proxy.stop()
    return dict(proxy.counts)


def assert_like_fresh(node: Node, fresh_db: Any, tmp_path: Path, dsns: list[str]) -> None:
    """Each database equals a fresh index of the same chain, straight from the node."""
    want_dsn = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, want_dsn, tmp_path)) == 0
    want = dump(want_dsn)
    for dsn in dsns:
        assert_same_index(dump(dsn), want)


def faulted_both_ways(
    node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path, seed: int, events: int, fault: dict[str, Any]
) -> dict[str, int]:
    """A chain of `events` simulated events, indexed through a proxy with only `fault` on, block by
    block (the tip path) into db_dsn and by ranges into a fresh database; both must equal a fresh
    index of the chain. Returns the faults the proxy made."""
    sim(node.url, node.deployment, seed=seed, max_events=events)
    proxy = FaultProxy(node.url, seed, Faults(**{**QUIET, **fault}, range_cap=10**6))
    dsns = [db_dsn, fresh_db()]
    counts = index_through(node, proxy, dsns, tmp_path, (10**6, 0))
    assert_like_fresh(node, fresh_db, tmp_path, dsns)
    return counts


@pytest.mark.anvil
@pytest.mark.pg
def test_repeated_logs_are_indexed_once_on_the_tip_path_and_the_backfill(
    node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """A provider that repeats a log in every eth_getLogs answer: block by block (tip) and by ranges
    (backfill) each event is stored once; the index equals a fresh one."""
    counts = faulted_both_ways(node, db_dsn, fresh_db, tmp_path, 41, 15, {"duplicate": 1.0})
    assert counts.get("log_duplicate", 0) > 0


@pytest.mark.anvil
@pytest.mark.pg
def test_logs_an_answer_should_not_hold_are_refused_and_asked_again(
    node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """A provider that slips into eth_getLogs answers a log of a block outside the range asked, or a
    log of an address not asked for: the answer is refused and asked again (never committed, never
    fatal), on the tip path and on the backfill; the index equals a fresh one."""
    sim(node.url, node.deployment, seed=43, max_events=30)
    proxy = FaultProxy(node.url, 43, Faults(**QUIET, range_cap=6, stray=0.5))
    dsns = [db_dsn, fresh_db()]
    counts = index_through(node, proxy, dsns, tmp_path, (10**6, 0), initial_span=3)
    assert counts.get("stray_range", 0) > 0, counts
    assert counts.get("stray_address", 0) > 0, counts
    assert_like_fresh(node, fresh_db, tmp_path, dsns)


@pytest.mark.anvil
@pytest.mark.pg
def test_ranges_that_time_out_are_narrowed_until_they_answer(
    node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """A provider on which every eth_getLogs range wider than 4 blocks times out (a heavy range, a
    slow archive node): the range is narrowed as for a cap it did not state, and the indexer reaches
    the head; the index equals a fresh one."""
    sim(node.url, node.deployment, seed=44, max_events=20)
    proxy = FaultProxy(node.url, 44, Faults(**QUIET, range_cap=10**6, slow_span=4), hang_seconds=1.0)
    counts = index_through(node, proxy, [db_dsn], tmp_path, (0,), initial_span=16, request_timeout=0.3)
    assert counts.get("slow_range", 0) > 0, counts
    assert_like_fresh(node, fresh_db, tmp_path, [db_dsn])


@pytest.mark.anvil
@pytest.mark.pg
def test_a_provider_that_caps_batches_gets_smaller_ones(node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path) -> None:
    """A provider that refuses whole any JSON-RPC batch of more than 3 calls (in several wordings,
    HTTP 200 or 400): its cap is learnt and the batches are split to fit; the indexer reaches the
    head on the backfill and the tip path; the index equals a fresh one."""
    sim(node.url, node.deployment, seed=45, max_events=25)
    node.anvil.mine(20)
    proxy = FaultProxy(node.url, 45, Faults(**QUIET, range_cap=10**6, batch_cap=3))
    dsns = [db_dsn, fresh_db()]
    counts = index_through(node, proxy, dsns, tmp_path, (0, 10**6))
    assert counts.get("batch_cap", 0) > 0, counts
    assert_like_fresh(node, fresh_db, tmp_path, dsns)


@pytest.mark.anvil
@pytest.mark.pg
def test_malformed_answers_are_asked_again(node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path) -> None:
    """A provider whose block and log objects often come with a field missing, of the wrong type or
    cut short: each is refused and asked again, on the backfill (in the fetch process) and on the tip
    path; the indexer reaches the head and the index equals a fresh one."""
    sim(node.url, node.deployment, seed=46, max_events=20)
    proxy = FaultProxy(node.url, 46, Faults(**QUIET, range_cap=10**6, malformed=0.3))
    dsns = [db_dsn, fresh_db()]
    counts = index_through(node, proxy, dsns, tmp_path, (0, 10**6), initial_span=5)
    assert counts.get("malformed", 0) > 0, counts
    assert_like_fresh(node, fresh_db, tmp_path, dsns)


def test_the_watchdog_tells_a_degraded_provider_from_a_stuck_indexer(tmp_path: Path) -> None:
    """No commit while the head moves: providers still answering is "degraded" (no exit, gauge set);
    no answers either is "stuck" (the watchdog stops the process)."""
    fake = {
        "chain_id": 31337,
        "deploy_block": 1,
        "contracts": {k: "0x" + "11" * 20 for k in ("OpinionMarket", "CreatorShares", "USDC")},
    }
    settings = make_settings(
        "http://127.0.0.1:1", fake, "postgresql://unused@127.0.0.1:1/x", tmp_path, stall_seconds=0.4
    )
    metrics = Metrics(31337)

    async def scenario() -> tuple[bool, bool, bool]:
        now = time.monotonic()
        status = Status(
            head=100, indexed=50, role="writer", last_progress=now - 0.6, last_commit=now - 0.6, head_moved=now
        )
        stop, stalled = asyncio.Event(), []
        dog = asyncio.create_task(watchdog(settings, status, stop, stalled, metrics))
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:  # answers keep coming: degraded, never stalled
            status.last_answer = time.monotonic()
            status.head_moved = time.monotonic()
            await asyncio.sleep(0.05)
        degraded = status.degraded and not stop.is_set()
        # no answers any more: stuck
        status.last_progress = status.last_commit = time.monotonic() - 0.6
        status.last_answer = time.monotonic() - 1.0
        status.head_moved = time.monotonic()
        await asyncio.wait_for(dog, 5)
        return degraded, bool(stalled), stop.is_set()

    degraded, stalled, stopped = asyncio.run(scenario())
    assert degraded
    assert stalled
    assert stopped


# ---------------------------------------------------------------- far behind: one chain:gap message


@pytest.mark.anvil
@pytest.mark.pg
def test_a_stretch_indexed_far_behind_is_announced_by_one_gap_message(node: Node, db_dsn: str, tmp_path: Path) -> None:
    """Events more than outbox_max_lag behind get no messages; ONE chain:gap message (before the first
    per-event message) names the stretch and its event count, in the outbox that feeds the API."""
    sim(node.url, node.deployment, seed=21, max_events=20)
    node.anvil.mine(30)
    sim(node.url, node.deployment, seed=22, max_events=6)
    head = node.anvil.head()
    lag = 10
    settings = make_settings(node.url, node.deployment, db_dsn, tmp_path, outbox_max_lag=lag, initial_span=3)
    assert index_to_head(settings) == 0
    rows = fetch(db_dsn, "SELECT seq, event, rooms, block_number, payload FROM idx.outbox ORDER BY seq")
    gaps = [r for r in rows if r["event"] == "chain:gap"]
    assert len(gaps) == 1
    payload = orjson.loads(gaps[0]["payload"]) if isinstance(gaps[0]["payload"], str) else gaps[0]["payload"]
    outbox_from = head - lag
    skipped = fetch(
        db_dsn, "SELECT coalesce(sum(event_count), 0) AS n FROM idx.blocks WHERE block_number < $1", outbox_from
    )[0]["n"]
    assert payload == {
        "chainId": 31337,
        "fromBlock": node.deployment["deploy_block"],
        "toBlock": outbox_from - 1,
        "events": skipped,
    }
    assert list(gaps[0]["rooms"]) == ["global:all"]
    per_event = [r for r in rows if r["block_number"] is not None]
    assert per_event, "events near the head still get their own messages"
    assert all(r["block_number"] >= outbox_from for r in per_event)
    assert gaps[0]["seq"] < min(r["seq"] for r in per_event)
    assert fetch(db_dsn, "SELECT * FROM idx.outbox_gaps") == []


@pytest.mark.anvil
@pytest.mark.pg
def test_a_restart_in_the_middle_of_the_stretch_still_announces_all_of_it(
    node: Node, db_dsn: str, tmp_path: Path
) -> None:
    """The open stretch is kept in idx.outbox_gaps with each batch: stopped half-way and restarted, the
    indexer writes one chain:gap message from the stretch's first block, with every skipped event."""
    sim(node.url, node.deployment, seed=23, max_events=12)
    node.anvil.mine(600)
    sim(node.url, node.deployment, seed=24, max_events=3)
    head = node.anvil.head()
    settings = make_settings(node.url, node.deployment, db_dsn, tmp_path, outbox_max_lag=10, initial_span=3)
    deploy = node.deployment["deploy_block"]

    async def stopped_early() -> int:
        stop, status = asyncio.Event(), Status()
        task = asyncio.create_task(run(settings, stop, status=status))
        for _ in range(30_000):  # at most a minute
            if status.indexed >= deploy + 10:
                break
            await asyncio.sleep(0.002)
        stop.set()
        return await task

    assert asyncio.run(stopped_early()) == 0
    stopped_at = checkpoint(db_dsn)
    assert stopped_at < head - 10, "stopped inside the stretch"
    assert [r["from_block"] for r in fetch(db_dsn, "SELECT from_block FROM idx.outbox_gaps")] == [deploy]
    assert fetch(db_dsn, "SELECT * FROM idx.outbox WHERE event = 'chain:gap'") == []
    assert index_to_head(settings) == 0
    gaps = fetch(db_dsn, "SELECT payload FROM idx.outbox WHERE event = 'chain:gap'")
    assert len(gaps) == 1
    payload = orjson.loads(gaps[0]["payload"])
    skipped = fetch(
        db_dsn, "SELECT coalesce(sum(event_count), 0) AS n FROM idx.blocks WHERE block_number < $1", head - 10
    )[0]["n"]
    assert payload == {"chainId": 31337, "fromBlock": deploy, "toBlock": head - 11, "events": skipped}


# ---------------------------------------------------------------- start-up checks


def indexer_for(settings: Settings, rpc: Rpc) -> Indexer:
    return Indexer(settings, rpc, Metrics(settings.chain.chain_id), Status())


@pytest.mark.anvil
def test_startup_refuses_a_wrong_chain_id_an_address_without_code_and_a_deploy_block_above_the_head(
    node: Node, tmp_path: Path
) -> None:
    """Each mismatch is refused with an error naming the key to fix; run() exits with code 2."""
    dep = node.deployment
    wrong_chain = {**dep, "chain_id": 1}
    no_code = {**dep, "contracts": {**dep["contracts"], "OpinionMarket": "0x" + "12" * 20}}
    future = {**dep, "deploy_block": 10**9}
    dsn = "postgresql://nobody@127.0.0.1:1/none"
    cases = [(wrong_chain, "chain.chain_id is 1 but the node at chain.rpc_urls\\[0\\] reports chain id 31337")]
    cases.append((no_code, "contracts.OpinionMarket 0x1212.* has no code"))
    cases.append((future, "deploy_block 1000000000 is above the node's head"))

    async def check(settings: Settings) -> None:
        async with Rpc(settings.chain.rpc_urls, 5.0) as rpc:
            await indexer_for(settings, rpc).check_node()

    for deployment, message in cases:
        settings = make_settings(node.url, deployment, dsn, tmp_path, fetch_process=False)
        with pytest.raises(StartupCheckFailed, match=message) as err:
            asyncio.run(check(settings))
        assert "chain." in str(err.value)
    settings = make_settings(node.url, dep, dsn, tmp_path, fetch_process=False)
    asyncio.run(check(settings))  # the real deployment passes


@pytest.mark.anvil
@pytest.mark.pg
def test_run_exits_with_the_config_code_on_a_node_of_another_chain(node: Node, db_dsn: str, tmp_path: Path) -> None:
    """A node of another chain: exit code 2, nothing indexed."""
    settings = make_settings(node.url, {**node.deployment, "chain_id": 5}, db_dsn, tmp_path)
    assert run_until_head(settings) == EXIT_CONFIG
    assert fetch(db_dsn, "SELECT * FROM idx.checkpoints") == []


# ---------------------------------------------------------------- ev_other addresses


@pytest.mark.anvil
@pytest.mark.pg
def test_ev_other_addresses_are_lowercase_and_the_migration_converts_old_rows(
    node: Node, db_dsn: str, tmp_path: Path
) -> None:
    """Audit events store addresses in lowercase like every other table; migration 040 converts rows
    written before (checksummed text), leaving other strings alone."""
    assert index_to_head(make_settings(node.url, node.deployment, db_dsn, tmp_path)) == 0
    rows = fetch(db_dsn, "SELECT args::text AS a FROM idx.ev_other")
    assert rows
    addresses = [a for r in rows for a in re.findall(r'"(0x[0-9a-fA-F]{40})"', r["a"])]
    assert addresses
    assert all(a == a.lower() for a in addresses), addresses
    checksummed = '{"account": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "role": "0xABCD", "n": "1",'
    checksummed += ' "list": ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]}'
    fetch(
        db_dsn,
        "INSERT INTO idx.ev_other SELECT chain_id, 10000000, 0, block_hash, tx_hash, block_time, address, event,"
        " $1::jsonb FROM idx.ev_other LIMIT 1",
        checksummed,
    )
    execute(db_dsn, (SQL_DIR / "040_ev_other_lowercase.sql").read_text())
    args = fetch(db_dsn, "SELECT args FROM idx.ev_other WHERE block_number = 10000000")[0]["args"]
    assert orjson.loads(args) == {
        "account": "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        "role": "0xABCD",
        "n": "1",
        "list": ["0x70997970c51812dc3a010c7d01b50e0d17dc79c8"],
    }


@pytest.mark.anvil
@pytest.mark.pg
def test_a_block_answered_for_another_number_is_asked_again(
    node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """eth_getBlockByNumber(n) answered with block n - 1, well-formed (a cache keyed wrongly): the
    start block, a range's end and a tip block are checked against the number asked, refused and
    asked again; by ranges and block by block the index equals a fresh one."""
    counts = faulted_both_ways(node, db_dsn, fresh_db, tmp_path, 43, 20, {"renumber": 0.3})
    assert counts.get("renumber", 0) > 0


@pytest.mark.anvil
@pytest.mark.pg
def test_a_zeroed_logs_bloom_is_not_trusted(node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path) -> None:
    """Block objects whose logsBloom is all zero (a node without blooms, or one altering them): the
    header no longer hashes to its block hash, so its bloom is not trusted to rule our logs out; block
    by block (the tip path) and by ranges every event is indexed. Before, the tip skipped each such
    block's logs (committed empty until the finalized re-scan found them)."""
    counts = faulted_both_ways(node, db_dsn, fresh_db, tmp_path, 47, 20, {"zero_bloom": 0.5})
    assert counts.get("zero_bloom", 0) > 0, counts
