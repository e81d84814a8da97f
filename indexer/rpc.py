"""Raw JSON-RPC over aiohttp + orjson (msgspec for eth_getLogs ranges): the indexer's only way to the node.

No web3 formatters on the hot path (TOOLCHAIN.md: they cost ~12x). Hex becomes bytes/int here,
once. Every answer is suspect; every call is retried alone:

- A call that fails transiently (timeout, connection error, HTTP 429/5xx, a JSON-RPC error that is
  not a range refusal or a missing method, an answer without the block asked for) is retried on
  its own, never by redoing work that succeeded, with exponential backoff and jitter; a
  `Retry-After` (HTTP header, or the wait a rate-limit message names) is honoured. A call gives up
  after `retries` attempts or `retry_seconds`, whichever comes first.
- In a JSON-RPC batch, elements fail independently: the ones that succeeded are kept and only the
  failed ones are sent again.
- Several URLs are used together: each request goes to a provider drawn by weight 1/score, where the
  score is its recent latency (EWMA) times a penalty for its recent errors (EWMA); a provider that
  failed is left alone for its backoff (or its Retry-After) while the others carry the load.

Error hierarchy:
    RpcError                 base
    ├── RangeTooLarge        the provider refused an eth_getLogs range or result size; carries
    │                        the span it suggests (parsed from its message) when it gives one
    ├── TransientRpcError    timeouts, connection errors, 5xx, "header not found", and any wording we
    │   │                    do not recognise: retried here (logged with the provider's text)
    │   └── RateLimited      HTTP 429 or a rate-limit message; carries Retry-After when given
    └── FatalRpcError        the method does not exist on this node: a bad config
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp
import msgspec
import orjson
import structlog

from indexer.chain import BlockRef
from indexer.decode import Log

log = structlog.get_logger("indexer.rpc")
T = TypeVar("T")


class RpcError(RuntimeError):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class RangeTooLarge(RpcError):
    """`per_provider`: the provider states a fixed block-range cap ("limited to a 10,000 range"), which
    the client remembers for that provider; other refusals depend on how dense the range is."""

    def __init__(
        self, message: str, code: int | None = None, suggested_span: int | None = None, per_provider: bool = False
    ) -> None:
        super().__init__(message, code)
        self.suggested_span = suggested_span
        self.per_provider = per_provider


class TransientRpcError(RpcError):
    pass


class RateLimited(TransientRpcError):
    def __init__(self, message: str, code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


class FatalRpcError(RpcError):
    pass


# ---------------------------------------------------------------- provider error classification (pure)

# Range/size refusals with a suggested range or span, as real providers word them.
_SUGGESTED_RANGE = (
    # Alchemy: "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range
    # and no limit on the response size, or you can request any block range with a cap of 10K logs in the
    # response. Based on your parameters, this block range should work: [0x11e0c1, 0x11e6f1]"
    # Infura / zkSync: "query returned more than 10000 results. Try with this block range [0x1A2B, 0x1B00]."
    # (and the lower-case "try with this block range [0x..., 0x...]" of others): any hex pair in brackets
    re.compile(r"\[\s*0x([0-9a-f]+)\s*,\s*0x([0-9a-f]+)\s*\]", re.IGNORECASE),
    # Reth: "query exceeds max results 20000, retry with the range 100-200"
    re.compile(r"retry with the range (\d+)\s*-\s*(\d+)", re.IGNORECASE),
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
# Rate limits (checked after the range refusals, which share codes such as -32005 with them).
_RATE_LIMITED = (
    "rate limit",
    "rate-limit",
    "ratelimit",
    "too many requests",
    "requests per second",
    "request limit",
    "compute units",
    "capacity exceeded",
    "throughput",
    "exceeded the quota",
    "daily limit",
)
# "try again in 1.5s", "retry after 2 seconds", "retry in 500ms", "backoff_seconds: 3"
_WAIT = re.compile(
    r"(?:try again|retry)\s+(?:after|in)\s+(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|sec|seconds?)?"
    r"|backoff_seconds\D{0,3}(\d+(?:\.\d+)?)",
    re.IGNORECASE,
)


def wait_hint(text: str) -> float | None:
    """Seconds to wait that a provider's message names, if any."""
    m = _WAIT.search(text)
    if not m:
        return None
    if m.group(3):
        return float(m.group(3))
    value = float(m.group(1))
    return value / 1000 if (m.group(2) or "").lower().startswith("m") else value


def retry_after_header(value: str | None) -> float | None:
    """An HTTP Retry-After in seconds (the HTTP-date form is not used by RPC providers: ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None


def _num(text: str) -> int:
    t = text.replace(",", "").replace(".", "")
    return int(t)


def classify(code: int | None, message: str) -> RpcError:
    """Maps a JSON-RPC error to our hierarchy; suggested spans are parsed from the provider's wording."""
    for rx in _SUGGESTED_RANGE:
        m = rx.search(message)
        if m:
            base = 16 if "0x" in rx.pattern else 10
            a, b = int(m.group(1), base), int(m.group(2), base)
            return RangeTooLarge(message, code, max(1, b - a + 1))
    low = message.lower()
    for rx in _SUGGESTED_SPAN:
        m = rx.search(message) or rx.search(low)
        if m:
            try:
                return RangeTooLarge(message, code, max(1, _num(m.group(1)) - 1), per_provider=True)
            except ValueError:
                break
    if any(s in low for s in _TOO_LARGE):
        return RangeTooLarge(message, code, None)
    if code == -32601 or any(w in low for w in ("method not found", "does not exist", "not supported")):
        return FatalRpcError(message, code)
    if code in (429, -32005) or any(s in low for s in _RATE_LIMITED):
        return RateLimited(message, code, wait_hint(message))
    # Everything else (including unknown wording and invalid-params errors, which some providers use
    # for a node that is behind: "block height is 127 but requested was 130") is retried, reported
    # with the provider's text; retries and max_failures bound it. eth_getLogs ranges that keep
    # failing with an unknown error are split (fetch.py): an unknown range-cap wording still narrows.
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


Observer = Callable[[str, float, str], None]  # (method, seconds, outcome: ok | error | rate_limited)


@dataclasses.dataclass(slots=True)
class _Url:
    url: str
    index: int
    latency: float = 0.05  # EWMA of successful round trips (seconds)
    errors: float = 0.0  # EWMA of the failure rate (0..1)
    failures: int = 0  # consecutive
    down_until: float = 0.0  # monotonic: left alone until then (backoff or Retry-After)
    span_cap: int | None = None  # the eth_getLogs block-range cap it stated, once it did

    def score(self) -> float:
        """Lower is better: latency (plus 50 ms, so that providers a few milliseconds apart share the
        load instead of the fastest taking all), heavily penalised by recent errors."""
        return (self.latency + 0.05) * (1.0 + 20.0 * self.errors)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 10  # per call (each attempt may go to another provider)
    seconds: float = 120.0  # per call, waits included
    base: float = 0.05  # first backoff; doubles per consecutive failure of a provider
    cap: float = 10.0  # longest backoff (a Retry-After may ask for more, up to `seconds`)


def backoff(failures: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential backoff with full jitter in [half, whole] (pure but for the rng)."""
    whole: float = min(policy.cap, policy.base * float(1 << max(0, min(failures - 1, 16))))
    return whole * rng.uniform(0.5, 1.0)


_MISSING = object()


class _Progressed(TransientRpcError):
    """A batch attempt in which some elements failed and others succeeded."""


class _LogsElem(msgspec.Struct, gc=False):
    """One element of the [eth_getLogs, eth_getBlockByNumber] batch (get_logs_checked)."""

    id: int | None = None
    result: list[RawLog] | dict[str, Any] | None = None
    error: dict[str, Any] | None = None


_LOGS_BATCH = msgspec.json.Decoder(list[_LogsElem] | _LogsElem)


class Rpc:
    """JSON-RPC client over several URLs. Use as an async context manager (owns the session)."""

    def __init__(
        self,
        urls: Sequence[str],
        timeout: float = 10.0,
        observe: Observer | None = None,
        max_logs_bytes: int = 32 << 20,
        retry: RetryPolicy | None = None,
        seed: int | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one RPC URL")
        self._max_logs_bytes = max_logs_bytes
        self._urls = [_Url(u, i) for i, u in enumerate(urls)]
        self._timeout = timeout
        self._observe = observe
        self._retry = retry or RetryPolicy()
        self._rng = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None
        self._id = 0
        self._reported: set[str] = set()  # unrecognised error texts already logged (bounded)

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

    # ------------------------------------------------------------ provider choice and retries

    def span_limit(self) -> int | None:
        """The widest eth_getLogs range some provider accepts, once every provider stated a cap."""
        caps = [u.span_cap for u in self._urls]
        return None if any(c is None for c in caps) else max(c for c in caps if c is not None)

    def _pick(self, now: float, span: int | None = None) -> _Url:
        """A provider that is not backing off (and takes a range of `span` blocks), drawn by weight
        1/score (several share the load); when all are backing off, the one free soonest."""
        able = [u for u in self._urls if span is None or u.span_cap is None or u.span_cap >= span]
        if not able:
            widest = max(u.span_cap or 1 for u in self._urls)
            raise RangeTooLarge(f"every provider caps eth_getLogs below {span} blocks", None, widest, True)
        ready = [u for u in able if u.down_until <= now]
        if not ready:
            return min(able, key=lambda u: u.down_until)
        if len(ready) == 1:
            return ready[0]
        weights = [1.0 / u.score() for u in ready]
        return self._rng.choices(ready, weights)[0]

    def _succeeded(self, u: _Url, seconds: float) -> None:
        u.failures = 0
        u.errors *= 0.9
        u.latency = 0.8 * u.latency + 0.2 * seconds

    def _failed(self, u: _Url, exc: RpcError) -> float:
        """Records a failure; returns how long the provider is left alone."""
        u.failures += 1
        u.errors = 0.9 * u.errors + 0.1
        wait = backoff(u.failures, self._retry, self._rng)
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            wait = max(wait, min(exc.retry_after, self._retry.seconds))
        u.down_until = max(u.down_until, time.monotonic() + wait)
        return wait

    async def _retrying(
        self,
        method: str,
        once: Callable[[_Url], Awaitable[T]],
        only: int | None = None,
        span: int | None = None,
        policy: RetryPolicy | None = None,
    ) -> T:
        """`once` on a provider until it succeeds; RangeTooLarge and FatalRpcError are not retried."""
        policy = policy or self._retry
        deadline = time.monotonic() + policy.seconds
        last: RpcError | None = None
        attempt = failed = 0
        # Rate-limited attempts and batches that got some answers do not use up `attempts` (they are
        # not the call failing); the time budget bounds them.
        while failed < policy.attempts:
            attempt += 1
            now = time.monotonic()
            u = self._pick(now, span) if only is None else self._urls[only]
            if u.down_until > now:
                if u.down_until > deadline:
                    break
                await asyncio.sleep(u.down_until - now)
            try:
                return await once(u)
            except RangeTooLarge as exc:
                if not (exc.per_provider and exc.suggested_span and span and span > 1 and only is None):
                    raise
                # a fixed cap of this provider: remembered; another provider may take the range
                u.span_cap = min(exc.suggested_span, span - 1)
                log.info("provider_range_cap", provider=u.index, span_cap=u.span_cap)
                continue
            except FatalRpcError:
                raise
            except TransientRpcError as exc:
                last = exc
                if not isinstance(exc, RateLimited | _Progressed):
                    failed += 1
                wait = self._failed(u, exc)
                self._report(method, u, attempt, exc, wait)
            if time.monotonic() >= deadline:
                break
        if last is None:
            raise RateLimited(f"{method}: every provider is backing off past the retry budget", None)
        last.args = (f"{method}: gave up after {attempt} attempt(s): {last}",)
        raise last

    def _report(self, method: str, u: _Url, attempt: int, exc: RpcError, wait: float) -> None:
        text = str(exc)[:300]
        if self._observe:
            self._observe(method, 0.0, "rate_limited" if isinstance(exc, RateLimited) else "error")
        known = isinstance(exc, RateLimited) or exc.code is None or any(s in text.lower() for s in _TRANSIENT)
        if not known and text not in self._reported and len(self._reported) < 200:
            self._reported.add(text)  # the provider's own words, once per wording
            log.warning("rpc_error_unrecognised", method=method, provider=u.index, code=exc.code, error=text)
        log.debug("rpc_retry", method=method, provider=u.index, attempt=attempt, wait=round(wait, 3), error=text[:200])

    # ------------------------------------------------------------ one HTTP attempt

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

    async def _send(
        self,
        u: _Url,
        body: bytes,
        method: str,
        limit: int | None = None,
        decode: Callable[[bytes], Any] = orjson.loads,
    ) -> Any:
        """One HTTP request to provider `u`; the answer as `decode` parses it. HTTP-level failures raise
        TransientRpcError (RateLimited for 429 and for 503 with Retry-After)."""
        assert self._session is not None, "use Rpc as an async context manager"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.post(u.url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    status = resp.status
                    retry_after = retry_after_header(resp.headers.get("Retry-After"))
                    raw = await self._body(resp, method, limit if status < 400 else None)
            if status == 429 or (status == 503 and retry_after is not None):
                raise RateLimited(f"HTTP {status} from node: {raw[:200]!r}", status, retry_after)
            if status >= 500:
                raise TransientRpcError(f"HTTP {status} from node: {raw[:200]!r}", None)
            if status >= 400:
                # Some providers answer range errors with HTTP 400 + a JSON-RPC body.
                try:
                    answer = decode(raw)
                except (orjson.JSONDecodeError, msgspec.DecodeError):
                    raise TransientRpcError(f"HTTP {status} from node: {raw[:200]!r}", None) from None
            else:
                answer = decode(raw)
        except TimeoutError:
            raise TransientRpcError(f"{method} timed out after {self._timeout}s", None) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientRpcError(f"{method}: {type(exc).__name__}: {exc}", None) from None
        except (orjson.JSONDecodeError, msgspec.DecodeError) as exc:
            # msgspec.ValidationError (a DecodeError) names the path: "Expected `str`, got `int` -
            # at `$.result[3].blockNumber`"
            raise TransientRpcError(f"{method}: invalid JSON from node: {exc}", None) from None
        seconds = time.perf_counter() - started
        self._succeeded(u, seconds)
        if self._observe:
            self._observe(method, seconds, "ok")
        return answer

    def _next_ids(self, n: int) -> int:
        first = self._id + 1
        self._id += n
        return first

    def _body_of(self, method: str, params: list[Any]) -> bytes:
        return orjson.dumps({"jsonrpc": "2.0", "id": self._next_ids(1), "method": method, "params": params})

    # ------------------------------------------------------------ calls

    async def call(
        self,
        method: str,
        params: list[Any],
        limit: int | None = None,
        require: bool = False,
        provider: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """One call, retried alone. `require`: a null result (a node without the block asked for) is
        retried too. `provider`: only that URL (start-up checks of each configured node). `retry`:
        another policy than the client's."""
        body = self._body_of(method, params)

        async def once(u: _Url) -> Any:
            answer = await self._send(u, body, method, limit)
            if not isinstance(answer, dict):
                raise TransientRpcError(f"{method}: unexpected answer {str(answer)[:200]}")
            result = self._result(method, answer.get("error"), answer)
            if require and result is None:
                raise TransientRpcError(f"{method}{params!r:.120}: null result (the node lacks it)")
            return result

        return await self._retrying(method, once, provider, policy=retry)

    def _result(self, method: str, err: Any, answer: dict[str, Any]) -> Any:
        """The answer's result, or its JSON-RPC error classified."""
        if err is not None:
            if not isinstance(err, dict):
                raise TransientRpcError(f"{method}: malformed error object {str(err)[:200]}")
            raise self._error(err)
        if "result" not in answer:
            raise TransientRpcError(f"{method}: answer without result")
        return answer["result"]

    @staticmethod
    def _error(err: Any) -> RpcError:
        if not isinstance(err, dict):
            return TransientRpcError(f"malformed error object {str(err)[:200]}")
        data = err.get("data")
        code = err.get("code")
        return classify(
            code if isinstance(code, int) else None, str(err.get("message", "")) + (f" {data}" if data else "")
        )

    async def batch_settled(
        self, calls: Sequence[tuple[str, list[Any]]], require: Sequence[bool] | None = None
    ) -> list[Any]:
        """Several calls in one HTTP request; results in order. Elements fail independently: the
        ones that succeeded are kept and only the failed ones are sent again (retried like a call).
        An element that still fails is returned as its RpcError (RangeTooLarge and FatalRpcError at
        once); `require[i]`: a null result of call i is retried too."""
        n = len(calls)
        out: list[Any] = [_MISSING] * n
        need = list(require) if require is not None else [False] * n
        name = (calls[0][0] + "[batch]") if calls else "batch"

        async def once(u: _Url) -> None:
            pending = [i for i in range(n) if out[i] is _MISSING or isinstance(out[i], TransientRpcError)]
            first = self._next_ids(len(pending))
            body = orjson.dumps(
                [
                    {"jsonrpc": "2.0", "id": first + k, "method": calls[i][0], "params": calls[i][1]}
                    for k, i in enumerate(pending)
                ]
            )
            answer = await self._send(u, body, name)
            if isinstance(answer, dict):  # one error for the whole batch
                raise self._error(answer.get("error") or {"message": str(answer)[:200]})
            if not isinstance(answer, list):
                raise TransientRpcError(f"{name}: unexpected answer {str(answer)[:200]}")
            by_id = {a.get("id"): a for a in answer if isinstance(a, dict)}
            failed: RpcError | None = None
            answered = 0
            for k, i in enumerate(pending):
                a = by_id.get(first + k)
                if a is None:
                    out[i] = failed = TransientRpcError(f"batch answer misses call {i} ({calls[i][0]})")
                elif a.get("error") is not None:
                    out[i] = exc = self._error(a["error"])
                    if isinstance(exc, TransientRpcError):
                        failed = exc
                elif a.get("result") is None and need[i]:
                    out[i] = failed = TransientRpcError(f"{calls[i][0]} {calls[i][1]!r:.80}: null (the node lacks it)")
                else:
                    out[i] = a.get("result")
                    answered += 1
            if failed is not None:
                raise _Progressed(str(failed), failed.code) if answered else failed

        if n:
            try:
                await self._retrying(name, once)
            except TransientRpcError as exc:  # what still failed is in `out`
                for i, r in enumerate(out):
                    if isinstance(r, TransientRpcError):
                        r.args = (f"{calls[i][0]}: gave up ({exc}); this call: {r}",)
        return out

    async def batch(self, calls: Sequence[tuple[str, list[Any]]], require: Sequence[bool] | None = None) -> list[Any]:
        """batch_settled, raising the first element that failed for good."""
        out = await self.batch_settled(calls, require)
        for r in out:
            if isinstance(r, RpcError):
                raise r
            if r is _MISSING:
                raise TransientRpcError("batch element never answered")
        return out

    # ------------------------------------------------------------ typed helpers

    async def chain_id(self, provider: int | None = None, retry: RetryPolicy | None = None) -> int:
        return int(await self.call("eth_chainId", [], provider=provider, retry=retry), 16)

    async def code(self, address: str, block: int | str = "latest", provider: int | None = None) -> bytes:
        tag = hex(block) if isinstance(block, int) else block
        return _b(await self.call("eth_getCode", [address, tag], provider=provider) or "0x")

    @property
    def providers(self) -> int:
        return len(self._urls)

    async def header(self, block: int | str, require: bool = False) -> BlockRef | None:
        tag = hex(block) if isinstance(block, int) else block
        raw = await self.call("eth_getBlockByNumber", [tag, False], require=require)
        return parse_header(raw) if raw else None

    async def headers(self, numbers: Sequence[int], chunk: int = 500, require: bool = False) -> dict[int, BlockRef]:
        """Headers by number (batched). Numbers the node does not have are missing from the result,
        or, with `require`, retried (a lagging node behind a load balancer) until they come."""
        out: dict[int, BlockRef] = {}
        for i in range(0, len(numbers), chunk):
            part = numbers[i : i + chunk]
            results = await self.batch([("eth_getBlockByNumber", [hex(n), False]) for n in part], [require] * len(part))
            for raw in results:
                if raw:
                    h = parse_header(raw)
                    out[h.number] = h
        return out

    async def get_logs_raw(self, from_block: int, to_block: int, addresses: Sequence[str]) -> list[RawLog]:
        """The node's log objects, fields still hex."""
        logs, _ = await self.get_logs_checked(from_block, to_block, addresses, check=False)
        return logs

    async def get_logs_checked(
        self, from_block: int, to_block: int, addresses: Sequence[str], check: bool = True
    ) -> tuple[list[RawLog], BlockRef | None]:
        """eth_getLogs of a range, sent in ONE HTTP request with eth_getBlockByNumber(to_block): the
        answer counts only when the node that gave it also has to_block (its header is not null), so
        a lagging node behind a load balancer cannot answer "no logs" for blocks it does not have.
        Returns the logs (fields still hex, typed by msgspec) and that header (for the caller's hash
        check). Retried alone like any call."""
        params = [{"fromBlock": hex(from_block), "toBlock": hex(to_block), "address": list(addresses)}]
        first = self._next_ids(2)
        calls = [{"jsonrpc": "2.0", "id": first, "method": "eth_getLogs", "params": params}]
        if check:
            calls.append(
                {"jsonrpc": "2.0", "id": first + 1, "method": "eth_getBlockByNumber", "params": [hex(to_block), False]}
            )
        body = orjson.dumps(calls if check else calls[0])

        async def once(u: _Url) -> tuple[list[RawLog], BlockRef | None]:
            answer = await self._send(u, body, "eth_getLogs", self._max_logs_bytes, _LOGS_BATCH.decode)
            if isinstance(answer, _LogsElem):  # the single call, or an error for the whole batch
                if check and answer.error is None:
                    raise TransientRpcError(f"eth_getLogs: a single answer to a batch {str(answer)[:200]}")
                answer = [_LogsElem(first, answer.result, answer.error)]
            by_id = {a.id: a for a in answer}
            logs_elem, head_elem = by_id.get(first), by_id.get(first + 1)
            if logs_elem is None:
                raise TransientRpcError("eth_getLogs: the batch answer misses the call")
            if logs_elem.error is not None:
                if self._observe:
                    self._observe("eth_getLogs", 0.0, "rpc_error")
                raise self._error(logs_elem.error)
            if not isinstance(logs_elem.result, list):
                raise TransientRpcError(f"eth_getLogs: answer without a list result ({str(logs_elem.result)[:100]})")
            if not check:
                return logs_elem.result, None
            head = head_elem.result if head_elem is not None else None
            if not isinstance(head, dict):
                raise TransientRpcError(
                    f"eth_getLogs {from_block}..{to_block}: the answering node does not have block {to_block}"
                    " (lagging behind the load balancer's head): not trusted, retrying"
                )
            return logs_elem.result, parse_header(head)

        return await self._retrying("eth_getLogs", once, span=to_block - from_block + 1)

    async def get_logs_by_hash(self, block_hash: bytes, addresses: Sequence[str]) -> list[Log]:
        return [parse_log(raw_log_dict(r)) for r in await self.get_logs_by_hash_raw(block_hash, addresses)]

    async def get_logs_by_hash_raw(self, block_hash: bytes, addresses: Sequence[str]) -> list[RawLog]:
        """EIP-234: a node that does not have the block answers an error, which is retried."""
        raw = await self.call("eth_getLogs", [{"blockHash": "0x" + block_hash.hex(), "address": list(addresses)}])
        if not isinstance(raw, list):
            raise TransientRpcError(f"eth_getLogs returned {type(raw).__name__}")
        try:
            return msgspec.convert(raw, list[RawLog])
        except msgspec.ValidationError as exc:
            raise TransientRpcError(f"eth_getLogs: malformed log object from the node: {exc}") from None

    async def receipts_logs(self, block_hash: bytes, addresses: Sequence[str]) -> list[Log]:
        return [parse_log(raw_log_dict(r)) for r in await self.receipts_logs_raw(block_hash, addresses)]

    async def receipts_logs_raw(self, block_hash: bytes, addresses: Sequence[str]) -> list[RawLog]:
        """Logs of our addresses read from the block's receipts (the bloom cross-check). A node that
        does not have the block answers null: retried, never read as "no logs"."""
        receipts = await self.call("eth_getBlockReceipts", ["0x" + block_hash.hex()], require=True)
        wanted = {a.lower() for a in addresses}
        out = []
        try:
            for r in receipts:
                for raw in r.get("logs", []):
                    if raw["address"].lower() in wanted:
                        out.append(msgspec.convert(raw, RawLog))
        except (AttributeError, KeyError, TypeError, msgspec.ValidationError) as exc:
            raise TransientRpcError(f"eth_getBlockReceipts: malformed answer ({exc})") from None
        return out
