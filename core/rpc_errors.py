"""The JSON-RPC error hierarchy and how providers' wordings map onto it (pure: no I/O).

RpcError                 base: message, code, data (revert_data), transient
├── RangeTooLarge        the provider refused an eth_getLogs range or result size; carries
│                        the span it suggests (parsed from its message) when it gives one
├── TransientRpcError    timeouts, connection errors, 5xx, "header not found", and any wording we
│   │                    do not recognise: retried by the client (logged with the provider's text)
│   ├── RateLimited      HTTP 429 or a rate-limit message; carries Retry-After when given
│   ├── TimedOut         no answer within the request timeout (or a gateway's 504)
│   └── BadAnswer        an answer of the wrong shape or type (a field missing, not hex, nested too
│                        deep, an id that is not ours): names the provider, the method and what was
│                        expected; retried like any transient failure
├── FatalRpcError        the method does not exist on this node: another provider is asked; with
│                        none left, a bad config
└── NodeError            (node_errors="final" clients) any JSON-RPC error, for the caller to read

classify(code, message) -> RpcError
batch_refused(message) -> bool   a whole JSON-RPC batch refused for its size
batch_unsupported(message) -> bool   no JSON-RPC batch taken at all
"""

from __future__ import annotations

import re
from typing import Any


def revert_bytes(data: Any) -> bytes | None:
    """The revert reason bytes in a JSON-RPC error's `data`: "0x…", or nested as {"data": "0x…"} (some
    providers); None when there are none or they are not hex."""
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


class RpcError(RuntimeError):
    """`code`: the JSON-RPC (or HTTP) error code, None for transport failures; `data`: the error's
    data member (a revert's encoded reason); `transient`: worth retrying later."""

    transient: bool = False

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @property
    def revert_data(self) -> bytes | None:
        """The revert reason bytes a node put in `data` (eth_call, eth_estimateGas), if any."""
        return revert_bytes(self.data)


class NodeError(RpcError):
    """A JSON-RPC error the caller interprets itself (a revert, a refused transaction): returned as
    is, never retried (clients made with node_errors="final", the keeper's)."""


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
    transient = True


class TimedOut(TransientRpcError):
    """No answer within the request timeout (or a gateway's HTTP 504): on an eth_getLogs range, a range
    too heavy for the provider as often as a blip, so the caller narrows it after a second one."""


class RateLimited(TransientRpcError):
    def __init__(self, message: str, code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


class BadAnswer(TransientRpcError):
    """A well-formed JSON answer that is not what the method returns (answers.py reads every field)."""


class AnswerTooLarge(BadAnswer):
    """An answer other than a range of logs above max_response_mb: a provider padding or garbling it,
    asked again; a batch of calls that large is sent again in halves (for that call only)."""


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
    "rate exceeded",  # Infura: -32005 "project ID request rate exceeded"
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
    if (
        code == -32601
        or "method not found" in low
        or (_NO_METHOD.search(low) and "method" in low and not _FOR_NOW.search(low))
    ):
        # the method itself is missing on this node ("the method eth_getBlockReceipts does not exist/is
        # not available"); "block 0x… does not exist" from a node that is behind is not (review s21 hp)
        return FatalRpcError(message, code)
    if code == 429 or any(s in low for s in _RATE_LIMITED):
        return RateLimited(message, code, wait_hint(message))
    if code == -32005:  # EIP-1474 "Limit exceeded": a rate limit, or a range cap (cdk-erigon: "limit exceeded")
        hint = wait_hint(message)
        if hint is not None:  # a wait to honour: a rate limit
            return RateLimited(message, code, hint)
        # no wording says which: retried as unknown, so an eth_getLogs range that keeps failing is narrowed
        # (review s19 h4: read as a rate limit, a range never narrowed and the indexer never moved)
        return TransientRpcError(message, code)
    # Everything else (including unknown wording and invalid-params errors, which some providers use
    # for a node that is behind: "block height is 127 but requested was 130") is retried, reported
    # with the provider's text; retries and max_failures bound it. eth_getLogs ranges that keep
    # failing with an unknown error are split (fetch.py): an unknown range-cap wording still narrows.
    return TransientRpcError(message, code)


# A whole batch refused for its size, as providers word it: geth's "batch too large"
# (--rpc.batch-request-limit), "Batch size too large. Max batch size is 100", "exceeded max batch size
# of 50", "batch limit exceeded", "too many requests in batch", "Batch requests are limited to 10".
_BATCH_REFUSED = re.compile(
    r"batch.{0,40}(too large|too big|too many|limit|exceed|max|more than)|(too many|max).{0,30}batch"
    r"|payload too large",
    re.IGNORECASE,
)


_RATE = re.compile(r"rate|per second|throughput|credit|compute units", re.IGNORECASE)
_NO_METHOD = re.compile(r"does not exist|not supported|unsupported|not available|not enabled|disabled")
# ... but for now only: "method eth_getLogs is not available at the moment, try again" (review s21 hf)
_FOR_NOW = re.compile(r"try again|retry|temporar|at the moment|right now|currently|later|overload|busy")
# A node that takes no batch at all: "Batch requests are not supported", "batching is disabled",
# "this server does not support batch requests".
_NO_BATCHES = re.compile(
    r"batch.{0,40}(not supported|unsupported|not allowed|disabled|not enabled)|(not|n't) support.{0,20}batch",
    re.IGNORECASE,
)


def batch_refused(message: str) -> bool:
    """A refusal of the batch's size; not a rate limit that mentions batches ("batch rate limit
    exceeded"), which is waited out, not answered with more and smaller requests."""
    return _BATCH_REFUSED.search(message) is not None and _RATE.search(message) is None


def batch_unsupported(message: str) -> bool:
    """A refusal of any batch at all, in a provider's words: it gets one call per request. Not one that
    names a size ("Batch of more than 3 requests are not allowed"): that is batch_refused, which halves
    (review s21 hf: taken for no batches at all, a single such provider ended the run)."""
    return (
        _NO_BATCHES.search(message) is not None and not batch_refused(message) and not any(c.isdigit() for c in message)
    )
