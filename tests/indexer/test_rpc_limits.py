"""eth_getLogs answers above the byte cap are refused as RangeTooLarge, also when the node streams them
(chunked transfer, no Content-Length); malformed log objects are refused with the field's path."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web

from indexer.rpc import RangeTooLarge, RawLog, RetryPolicy, Rpc, TransientRpcError
from tests.local_http import serving

LOG = {
    "address": "0x" + "aa" * 20,
    "topics": ["0x" + "01" * 32],
    "data": "0x" + "00" * 64,
    "blockNumber": "0x1",
    "blockHash": "0x" + "0b" * 32,
    "transactionHash": "0x" + "0c" * 32,
    "transactionIndex": "0x0",
    "logIndex": "0x0",
    "removed": False,
}


def node_app(logs: int) -> web.Application:
    """A node that streams an eth_getLogs answer of `logs` logs (chunked, no Content-Length)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        call = await request.json()
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        body = orjson.dumps({"jsonrpc": "2.0", "id": call["id"], "result": [LOG] * logs})
        for i in range(0, len(body), 1000):
            await resp.write(body[i : i + 1000])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/", handle)
    return app


async def test_a_streamed_answer_over_the_cap_is_range_too_large() -> None:
    async with serving(node_app(logs=200)) as url:  # ~105 KB
        async with Rpc([url], 5.0, max_logs_bytes=200_000) as rpc:
            assert len((await rpc.get_logs_checked(1, 2, ["0x" + "aa" * 20], check=False))[0]) == 200
        async with Rpc([url], 5.0, max_logs_bytes=10_000) as rpc:
            with pytest.raises(RangeTooLarge, match="exceeds 10000 bytes"):
                (await rpc.get_logs_checked(1, 2, ["0x" + "aa" * 20], check=False))[0]
            # every answer is capped, not only the backfill's ranges (session 12: receipts, headers)
            with pytest.raises(RangeTooLarge, match="exceeds 10000 bytes"):
                await rpc.call("eth_getLogs", [{}])


def answering(answer: object) -> web.Application:
    """A node whose every answer is `answer` (with the call's id)."""

    async def handle(request: web.Request) -> web.Response:
        call = await request.json()
        return web.Response(body=orjson.dumps({"jsonrpc": "2.0", "id": call["id"], **answer}))  # type: ignore[dict-item]

    app = web.Application()
    app.router.add_post("/", handle)
    return app


async def test_logs_are_typed_and_extra_fields_skipped() -> None:
    async with serving(answering({"result": [LOG, {**LOG, "logIndex": "0x1", "blockTimestamp": "0x5"}]})) as url:
        async with Rpc([url], 5.0) as rpc:
            logs = (await rpc.get_logs_checked(1, 2, ["0x" + "aa" * 20], check=False))[0]
    assert [type(r) for r in logs] == [RawLog, RawLog]
    assert (logs[1].blockNumber, logs[1].logIndex, logs[1].blockHash) == ("0x1", "0x1", LOG["blockHash"])


@pytest.mark.parametrize(
    ("result", "path"),
    [
        (
            [LOG, {k: v for k, v in LOG.items() if k != "blockHash"}],
            "missing required field `blockHash` - at `$.result[1]`",
        ),
        ([{**LOG, "blockNumber": 1}], "Expected `str`, got `int` - at `$.result[0].blockNumber`"),
        ({"logs": []}, "answer without a list result"),
    ],
)
async def test_a_malformed_log_names_its_field(result: object, path: str) -> None:
    async with serving(answering({"result": result})) as url:
        async with Rpc([url], 5.0, retry=RetryPolicy(attempts=2, base=0.01)) as rpc:
            with pytest.raises(TransientRpcError, match="eth_getLogs: gave up after") as err:
                (await rpc.get_logs_checked(1, 2, ["0x" + "aa" * 20], check=False))[0]
    assert path in str(err.value)


async def test_a_getlogs_error_is_classified() -> None:
    answer = {"error": {"code": -32005, "message": "query returned more than 10000 results"}}
    async with serving(answering(answer)) as url:
        async with Rpc([url], 5.0) as rpc:
            with pytest.raises(RangeTooLarge):
                (await rpc.get_logs_checked(1, 2, ["0x" + "aa" * 20], check=False))[0]
