"""Raw JSON-RPC over aiohttp + orjson (msgspec for eth_getLogs ranges): the indexer's only way to the node.

No web3 formatters on the hot path (TOOLCHAIN.md: they cost ~12x). Hex becomes bytes/int here,
once. Several URLs: a request that fails transiently is retried on the next URL; every request
has a timeout; latency and errors are observed per method (bounded labels).

Error hierarchy:
    RpcError                 base
    ├── RangeTooLarge        the provider refused an eth_getLogs range or result size; carries
    │                        the span it suggests (parsed from its message) when it gives one
    ├── TransientRpcError    timeouts, connection errors, 429, 5xx, "header not found", ...:
    │                        retried (another URL, then backoff at the loop top)
    └── FatalRpcError        anything else (bad params, method not found): a bug or a bad config
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import msgspec
import orjson

from indexer.chain import BlockRef
from indexer.decode import Log


class RpcError(RuntimeError):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class RangeTooLarge(RpcError):
    def __init__(self, message: str, code: int | None = None, suggested_span: int | None = None) -> None:
        super().__init__(message, code)
        self.suggested_span = suggested_span


class TransientRpcError(RpcError):
    pass


class FatalRpcError(RpcError):
    pass


# ---------------------------------------------------------------- provider error classification (pure)

# Range/size refusals with a suggested range or span, as real providers word them.
_SUGGESTED_RANGE = (
    # Alchemy: "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range
    # and no limit on the response size, or you can request any block range with a cap of 10K logs in the
    # response. Based on your parameters, this block range should work: [0x11e0c1, 0x11e6f1]"
    re.compile(r"this block range should work: \[0x([0-9a-fA-F]+),\s*0x([0-9a-fA-F]+)\]"),
    # Infura / zkSync: "query returned more than 10000 results. Try with this block range [0x1A2B, 0x1B00]."
    re.compile(r"Try with this block range \[0x([0-9a-fA-F]+),\s*0x([0-9a-fA-F]+)\]"),
    # Reth: "query exceeds max results 20000, retry with the range 100-200"
    re.compile(r"retry with the range (\d+)-(\d+)"),
)
_SUGGESTED_SPAN = (
    # QuickNode: "eth_getLogs is limited to a 10,000 range"; 1RPC/Blast similar
    re.compile(r"limited to a ([\d,.]+)"),
    # BlockPI: "eth_getLogs is limited to 1024 block range"
    re.compile(r"limited to ([\d,.]+) block"),
    # Cloudflare: "Max range: 800"; Avalanche: "requested too many blocks from 0 to 5000, maximum is set to 2048"
    re.compile(r"Max range: (\d+)"),
    re.compile(r"maximum is set to (\d+)"),
    # thirdweb: "Maximum allowed number of requested blocks is 2000"
    re.compile(r"Maximum allowed number of requested blocks is (\d+)"),
    # Coinbase/Base node: "please limit the query to at most 1000 blocks"
    re.compile(r"please limit the query to at most ([\d,.]+) blocks"),
    # PublicNode: "maximum block range: 50000"; Reth/Hyperliquid: "query exceeds max block range 100000"
    re.compile(r"maximum block range: ([\d,.]+)"),
    re.compile(r"exceeds max block range ([\d,.]+)"),
    # Swell/op-geth style: "block range greater than 2000 max"
    re.compile(r"block range greater than ([\d,.]+) max"),
    # Moonbeam: "block range is too wide (maximum 1024)"
    re.compile(r"block range is too wide \(maximum (\d+)\)"),
    # Ankr (some chains): "maximum [from, to] blocks distance: 3000"
    re.compile(r"maximum \[from, to\] blocks distance: (\d+)"),
    # Aurora, Alchemy wording: "up to a 2K block range" handled by the first table; numeric form here
    re.compile(r"up to a ([\d,.]+) block range"),
)
# Range/size refusals without a number: halve.
_TOO_LARGE = (
    "query returned more than",  # geth, Infura without a range, zkEVM
    "query exceeds max results",  # llamarpc, Ankr, Reth
    "log response size exceeded",  # Alchemy (without the range sentence)
    "block range too large",  # Erigon, Base
    "block range is too large",  # Optimism
    "block range is too wide",  # Ankr: "block range is too wide"
    "range too large",
    "too many results",
    "backend response too large",  # Optimism
    "response size should not greater than",  # 1RPC
    "logs matched by query exceeds limit",  # Arbitrum
    "block range limit exceeded",  # Chainstack
    "exceeds the range allowed for your plan",  # Blast
    "eth_getlogs range is too large",  # Merkle
    "response is too big",
    "result set too large",
)
_TRANSIENT = (
    "block height is",  # anvil behind: "block height is 125 but requested was 130"
    "out of range",
    "missing trie node",
    "header not found",
    "unknown block",
    "timeout",
    "timed out",
    "rate limit",
    "too many requests",
    "capacity",
    "temporarily",
    "try again",
    "internal error",
    "busy",
    "unavailable",
    "overloaded",
    "no backend is currently healthy",
    "exceeded",
    "limit reached",
)


def _num(text: str) -> int:
    t = text.replace(",", "").replace(".", "")
    return int(t)


def classify(code: int | None, message: str) -> RpcError:
    """Maps a JSON-RPC error to our hierarchy; suggested spans are parsed from the provider's wording."""
    for rx in _SUGGESTED_RANGE:
        m = rx.search(message)
        if m:
            base = 16 if rx.pattern.startswith(("this", "Try")) else 10
            a, b = int(m.group(1), base), int(m.group(2), base)
            return RangeTooLarge(message, code, max(1, b - a + 1))
    low = message.lower()
    for rx in _SUGGESTED_SPAN:
        m = rx.search(message)
        if m:
            try:
                return RangeTooLarge(message, code, max(1, _num(m.group(1)) - 1))
            except ValueError:
                break
    if any(s in low for s in _TOO_LARGE):
        return RangeTooLarge(message, code, None)
    if code == -32601 or "method not found" in low or "not supported" in low:
        return FatalRpcError(message, code)
    if code == -32602 and not any(s in low for s in _TRANSIENT):
        return FatalRpcError(message, code)
    # Everything else (including unknown wording) is retried: a node that is behind ("block height
    # is 127 but requested was 130"), overloaded or mid-restart recovers; max_failures bounds it.
    return TransientRpcError(message, code)


# ---------------------------------------------------------------- hex → bytes/int (the boundary)


def _b(h: str) -> bytes:
    return bytes.fromhex(h[2:])


def parse_log(raw: dict[str, Any]) -> Log:
    bt = raw.get("blockTimestamp")
    return Log(
        int(raw["blockNumber"], 16),
        bytes.fromhex(raw["blockHash"][2:]),
        int(bt, 16) if bt else None,
        bytes.fromhex(raw["transactionHash"][2:]),
        int(raw["logIndex"], 16),
        bytes.fromhex(raw["address"][2:]),
        tuple([bytes.fromhex(t[2:]) for t in raw["topics"]]),
        bytes.fromhex(raw["data"][2:]),
    )


class RawLog(msgspec.Struct, gc=False):
    """One eth_getLogs log object as the node sent it (hex strings), typed at parse time: msgspec
    builds these from the JSON in 2.4 us against 5.1 us for orjson's dicts, and a field missing or of
    the wrong type fails the parse with its path instead of a KeyError later. Other fields
    (transactionIndex, removed, blockTimestamp, ...) are skipped."""

    address: str
    topics: list[str]
    data: str
    blockNumber: str  # the node's field names
    blockHash: str
    transactionHash: str
    logIndex: str


class _LogsAnswer(msgspec.Struct, gc=False):
    result: list[RawLog] | None = None
    error: dict[str, Any] | None = None


_LOGS_ANSWER = msgspec.json.Decoder(_LogsAnswer)


def raw_log_dict(r: RawLog) -> dict[str, Any]:
    """A RawLog as the dict parse_log reads (the generic decoding path)."""
    return msgspec.structs.asdict(r)


def parse_header(raw: dict[str, Any]) -> BlockRef:
    return BlockRef(
        int(raw["number"], 16),
        _b(raw["hash"]),
        _b(raw["parentHash"]),
        int(raw["timestamp"], 16),
        _b(raw.get("logsBloom") or "0x"),
    )


# ---------------------------------------------------------------- client


Observer = Callable[[str, float, str], None]  # (method, seconds, outcome)


@dataclasses.dataclass(slots=True)
class _Url:
    url: str
    failures: int = 0
    down_until: float = 0.0


class Rpc:
    """JSON-RPC client over several URLs. Use as an async context manager (owns the session)."""

    def __init__(
        self,
        urls: Sequence[str],
        timeout: float = 10.0,
        observe: Observer | None = None,
        max_logs_bytes: int = 32 << 20,
    ) -> None:
        if not urls:
            raise ValueError("at least one RPC URL")
        self._max_logs_bytes = max_logs_bytes
        self._urls = [_Url(u) for u in urls]
        self._current = 0
        self._timeout = timeout
        self._observe = observe
        self._session: aiohttp.ClientSession | None = None
        self._id = 0

    async def __aenter__(self) -> Rpc:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=32, keepalive_timeout=30),
            json_serialize=lambda o: orjson.dumps(o).decode(),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _pick(self) -> _Url:
        now = time.monotonic()
        for i in range(len(self._urls)):
            u = self._urls[(self._current + i) % len(self._urls)]
            if u.down_until <= now:
                self._current = (self._current + i) % len(self._urls)
                return u
        return min(self._urls, key=lambda u: u.down_until)

    def _failed(self, u: _Url) -> None:
        u.failures += 1
        u.down_until = time.monotonic() + min(30.0, 0.25 * 2 ** min(u.failures, 7))
        if len(self._urls) > 1:
            self._current = (self._urls.index(u) + 1) % len(self._urls)

    async def _body(self, resp: aiohttp.ClientResponse, method: str, limit: int | None) -> bytes:
        """The response body; above `limit` bytes a RangeTooLarge (a node with no result cap, a sparse
        stretch that turned dense): the range is split instead of parsed into gigabytes."""
        size = resp.content_length
        if limit is None or (size is not None and size <= limit):
            return await resp.read()
        if size is not None:
            raise RangeTooLarge(f"{method} response of {size} bytes exceeds {limit} ([indexer].max_response_mb)")
        buf = bytearray()  # chunked transfer: count as it arrives
        async for chunk in resp.content.iter_chunked(1 << 20):
            buf += chunk
            if len(buf) > limit:
                raise RangeTooLarge(f"{method} response exceeds {limit} bytes ([indexer].max_response_mb)")
        return bytes(buf)

    async def _post(
        self, body: bytes, method: str, limit: int | None = None, decode: Callable[[bytes], Any] = orjson.loads
    ) -> Any:
        assert self._session is not None, "use Rpc as an async context manager"
        attempts = len(self._urls)
        last: RpcError | None = None
        for _ in range(attempts):
            u = self._pick()
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self._timeout):
                    async with self._session.post(
                        u.url, data=body, headers={"Content-Type": "application/json"}
                    ) as resp:
                        status = resp.status
                        raw = await self._body(resp, method, limit if status < 400 else None)
                if status == 429 or status >= 500:
                    raise TransientRpcError(f"HTTP {status} from node: {raw[:200]!r}", status)
                if status >= 400:
                    # Some providers answer range errors with HTTP 400 + a JSON-RPC body.
                    try:
                        answer = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        raise TransientRpcError(f"HTTP {status} from node: {raw[:200]!r}", status) from None
                else:
                    answer = decode(raw)
            except TimeoutError:
                last = TransientRpcError(f"{method} timed out after {self._timeout}s", None)
            except (aiohttp.ClientError, OSError) as exc:
                last = TransientRpcError(f"{method}: {type(exc).__name__}: {exc}", None)
            except (orjson.JSONDecodeError, msgspec.DecodeError) as exc:
                # msgspec.ValidationError (a DecodeError) names the path: "Expected `str`, got `int` -
                # at `$.result[3].blockNumber`"
                last = TransientRpcError(f"{method}: invalid JSON from node: {exc}", None)
            except TransientRpcError as exc:
                last = exc
            else:
                if self._observe:
                    self._observe(method, time.perf_counter() - started, "ok")
                u.failures = 0
                return answer
            if self._observe:
                self._observe(method, time.perf_counter() - started, "error")
            self._failed(u)
        assert last is not None
        raise last

    async def _request(
        self, method: str, params: list[Any], limit: int | None = None, decode: Callable[[bytes], Any] = orjson.loads
    ) -> Any:
        """One JSON-RPC request; the answer as `decode` parses it (not checked)."""
        self._id += 1
        body = orjson.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        return await self._post(body, method, limit, decode)

    async def call(self, method: str, params: list[Any], limit: int | None = None) -> Any:
        answer = await self._request(method, params, limit)
        if not isinstance(answer, dict):
            raise TransientRpcError(f"{method}: unexpected answer {str(answer)[:200]}")
        return self._result(method, answer.get("error"), answer)

    def _result(self, method: str, err: Any, answer: dict[str, Any]) -> Any:
        """The answer's result, or its JSON-RPC error classified."""
        if err is not None:
            if not isinstance(err, dict):
                raise TransientRpcError(f"{method}: malformed error object {str(err)[:200]}")
            exc = classify(
                err.get("code"), str(err.get("message", "")) + (f" {err['data']}" if err.get("data") else "")
            )
            if self._observe:
                self._observe(method, 0.0, "rpc_error")
            raise exc
        if "result" not in answer:
            raise TransientRpcError(f"{method}: answer without result")
        return answer["result"]

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """One HTTP request with several calls; results in order. Any error raises (classified)."""
        if not calls:
            return []
        first = self._id + 1
        self._id += len(calls)
        body = orjson.dumps(
            [{"jsonrpc": "2.0", "id": first + i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        )
        answer = await self._post(body, calls[0][0] + "[batch]")
        if isinstance(answer, dict):  # whole-batch error
            err = answer.get("error") or {}
            raise classify(err.get("code"), str(err.get("message", answer)))
        by_id = {a.get("id"): a for a in answer if isinstance(a, dict)}
        out = []
        for i in range(len(calls)):
            a = by_id.get(first + i)
            if a is None:
                raise TransientRpcError(f"batch answer misses call {i} ({calls[i][0]})")
            if a.get("error") is not None:
                raise classify(a["error"].get("code"), str(a["error"].get("message", "")))
            out.append(a.get("result"))
        return out

    # ------------------------------------------------------------ typed helpers

    async def chain_id(self) -> int:
        return int(await self.call("eth_chainId", []), 16)

    async def block_number(self) -> int:
        return int(await self.call("eth_blockNumber", []), 16)

    async def header(self, block: int | str) -> BlockRef | None:
        tag = hex(block) if isinstance(block, int) else block
        raw = await self.call("eth_getBlockByNumber", [tag, False])
        return parse_header(raw) if raw else None

    async def headers(self, numbers: Sequence[int], chunk: int = 500) -> dict[int, BlockRef]:
        """Headers by number (batched); numbers the node does not have are missing from the result."""
        out: dict[int, BlockRef] = {}
        for i in range(0, len(numbers), chunk):
            part = numbers[i : i + chunk]
            results = await self.batch([("eth_getBlockByNumber", [hex(n), False]) for n in part])
            for raw in results:
                if raw:
                    h = parse_header(raw)
                    out[h.number] = h
        return out

    async def get_logs_raw(self, from_block: int, to_block: int, addresses: Sequence[str]) -> list[RawLog]:
        """The node's log objects, fields still hex (the backfill decodes them in its fetch process)."""
        params = [{"fromBlock": hex(from_block), "toBlock": hex(to_block), "address": list(addresses)}]
        answer: _LogsAnswer | dict[str, Any] = await self._request(
            "eth_getLogs", params, self._max_logs_bytes, _LOGS_ANSWER.decode
        )
        if isinstance(answer, dict):  # an HTTP 400 body, parsed by orjson
            raw = self._result("eth_getLogs", answer.get("error"), answer)
            raise TransientRpcError(f"eth_getLogs: HTTP 400 with a result {str(raw)[:200]}")
        if answer.error is not None:
            self._result("eth_getLogs", answer.error, {})
        if answer.result is None:
            raise TransientRpcError("eth_getLogs: answer without result")
        return answer.result

    async def get_logs_by_hash(self, block_hash: bytes, addresses: Sequence[str]) -> list[Log]:
        raw = await self.call("eth_getLogs", [{"blockHash": "0x" + block_hash.hex(), "address": list(addresses)}])
        if not isinstance(raw, list):
            raise TransientRpcError(f"eth_getLogs returned {type(raw).__name__}")
        return [parse_log(r) for r in raw]

    async def receipts_logs(self, block_hash: bytes, addresses: Sequence[str]) -> list[Log]:
        """Logs of our addresses read from the block's receipts (the bloom cross-check)."""
        receipts = await self.call("eth_getBlockReceipts", ["0x" + block_hash.hex()])
        wanted = {a.lower() for a in addresses}
        out = []
        for r in receipts or []:
            for raw in r.get("logs", []):
                if raw["address"].lower() in wanted:
                    out.append(parse_log(raw))
        return out
