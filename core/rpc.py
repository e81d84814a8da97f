"""The one JSON-RPC client (aiohttp + orjson), used by the indexer (indexer/rpc.py adds its typed eth_
methods) and the keeper (keeper/rpc.py keeps its call signatures over it).

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
- A provider's answer counts as a success (its failures reset, its latency scored, the observer told
  "ok") only once it parsed into a usable result: a JSON-RPC error inside an HTTP 200 is a failure
  (backoff grows, the score drops), except the deterministic ones a "final" client reads (a revert).
- An answer too large (max_response_mb, or a refusal that is not a fixed cap of that provider) lowers
  that provider's score (no backoff) and the call goes to another provider; only when every provider
  refused it does the caller get the RangeTooLarge (and split its range).

Errors: core/rpc_errors.py (RpcError and its subclasses, classify).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar

import aiohttp
import msgspec
import orjson
import structlog

from core import answers
from core.config import ConfigError
from core.rpc_errors import (
    _TRANSIENT,
    AnswerTooLarge,
    BadAnswer,
    FatalRpcError,
    NodeError,
    RangeTooLarge,
    RateLimited,
    RpcError,
    TimedOut,
    TransientRpcError,
    batch_refused,
    batch_unsupported,
    classify,
    retry_after_header,
)

__all__ = [
    "BadAnswer",
    "FatalRpcError",
    "NodeError",
    "RangeTooLarge",
    "RateLimited",
    "RetryPolicy",
    "Rpc",
    "RpcError",
    "TimedOut",
    "TransientRpcError",
    "WrongChain",
]

log = structlog.get_logger("rpc")
T = TypeVar("T")


Observer = Callable[[str, float, str], None]  # (method, seconds, outcome: ok | error | rate_limited)


@dataclasses.dataclass(slots=True)
class Provider:
    url: str
    index: int
    latency: float = 0.05  # EWMA of successful round trips (seconds)
    errors: float = 0.0  # EWMA of the failure rate (0..1)
    failures: int = 0  # consecutive
    down_until: float = 0.0  # monotonic: left alone until then (backoff or Retry-After)
    span_cap: int | None = None  # the eth_getLogs block-range cap it stated, once it did
    batch_cap: int | None = None  # the most calls per JSON-RPC batch it takes, once it refused more
    lacks: set[str] = dataclasses.field(default_factory=set)  # methods it said it does not have

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


ANSWERED_CAP = 1.0  # longest backoff after an error a provider answered at once (see Rpc._failed)


def backoff(failures: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential backoff with full jitter in [half, whole] (pure but for the rng)."""
    whole: float = min(policy.cap, policy.base * float(1 << max(0, min(failures - 1, 16))))
    return whole * rng.uniform(0.5, 1.0)


_MISSING = object()


NO_BATCHES = (
    "no provider takes JSON-RPC batches, and eth_getLogs ranges are sent with eth_getBlockByNumber in one"
    " batch of 2 (to prove the answering node has the range): add to [chain].rpc_urls a provider that takes"
    " batches"
)


def _keep(kept: RpcError | None, new: RpcError) -> RpcError:
    """Of the failures of one batch attempt, the one that asks the longest wait: a rate-limited element's,
    whichever element failed after it (review s20 hf: the last failure won, and the wait was lost)."""

    def asked(e: RpcError) -> float:
        return (e.retry_after or 0.0) if isinstance(e, RateLimited) else -1.0

    return new if kept is None or asked(new) >= asked(kept) else kept


class _Progressed(TransientRpcError):
    """A batch attempt in which some elements failed and others succeeded. It keeps the wait a
    rate-limited element asked for (`retry_after`), so the elements left are not sent before it."""

    def __init__(self, failed: RpcError) -> None:
        super().__init__(str(failed), failed.code)
        self.retry_after = failed.retry_after if isinstance(failed, RateLimited) else None


class Rpc:
    """JSON-RPC client over several URLs. Use as an async context manager (owns the session).

    node_errors="classify" (the indexer): a JSON-RPC error is mapped by classify() and retried when
    transient. "final" (the keeper): every JSON-RPC error is a NodeError for the caller to read (a
    revert, "nonce too low"); only transport failures (timeouts, HTTP 429/5xx) are retried."""

    def __init__(
        self,
        urls: Sequence[str],
        timeout: float = 10.0,
        observe: Observer | None = None,
        max_logs_bytes: int = 32 << 20,
        retry: RetryPolicy | None = None,
        seed: int | None = None,
        node_errors: str = "classify",
    ) -> None:
        if not urls:
            raise ValueError("at least one RPC URL")
        self._max_logs_bytes = max_logs_bytes
        self._urls = [Provider(u, i) for i, u in enumerate(urls)]
        self._timeout = timeout
        self._observe = observe
        self._retry = retry or RetryPolicy()
        self._rng = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None
        self._id = 0
        self._reported: set[str] = set()  # unrecognised error texts already logged (bounded)
        if node_errors not in ("classify", "final"):
            raise ValueError(f"node_errors must be 'classify' or 'final', not {node_errors!r}")
        self._node_errors_final = node_errors == "final"

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=32, keepalive_timeout=30),
            json_serialize=lambda o: orjson.dumps(o).decode(),
        )
        return self

    def __repr__(self) -> str:  # URLs may embed API keys
        return f"Rpc(<{len(self._urls)} urls>)"

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------ provider choice and retries

    def span_limit(self) -> int | None:
        """The widest eth_getLogs range some provider accepts, once every provider stated a cap."""
        caps = [u.span_cap for u in self._urls]
        return None if any(c is None for c in caps) else max(c for c in caps if c is not None)

    def _pick(self, now: float, span: int | None = None, avoid: frozenset[int] = frozenset()) -> Provider:
        """A provider that is not backing off (and takes a range of `span` blocks), drawn by weight
        1/score (several share the load); when all are backing off, the one free soonest. Providers in
        `avoid` are not drawn unless they are all there are."""
        urls = [u for u in self._urls if u.index not in avoid] or self._urls
        # an eth_getLogs range (`span`) goes with its header check in one batch of 2 (indexer.rpc):
        # not to a provider that takes no batches
        able = [u for u in urls if span is None or ((u.span_cap is None or u.span_cap >= span) and u.batch_cap != 1)]
        if not able:
            if all(u.batch_cap == 1 for u in self._urls):
                raise FatalRpcError(NO_BATCHES)
            widest = max(u.span_cap or 1 for u in self._urls)
            raise RangeTooLarge(f"every provider caps eth_getLogs below {span} blocks", None, widest, True)
        ready = [u for u in able if u.down_until <= now]
        if not ready:
            return min(able, key=lambda u: u.down_until)
        if len(ready) == 1:
            return ready[0]
        weights = [1.0 / u.score() for u in ready]
        return self._rng.choices(ready, weights)[0]

    def pick(self) -> int:
        """The index of a provider drawn as for any request: pass it as `provider` to ask several calls
        of one node (a consistent view: its head, a nonce and receipts from the same chain state)."""
        return self._pick(time.monotonic()).index

    def _succeeded(self, u: Provider, method: str, seconds: float) -> None:
        """Provider `u` gave a usable answer (parsed, or a deterministic error a "final" client reads)."""
        u.failures = 0
        u.errors *= 0.9
        u.latency = 0.8 * u.latency + 0.2 * seconds
        if self._observe:
            self._observe(method, seconds, "ok")

    @staticmethod
    def _scored_down(u: Provider) -> None:
        """One more error in provider `u`'s recent-error EWMA (it is drawn less often)."""
        u.errors = 0.9 * u.errors + 0.1

    def _failed(self, u: Provider, exc: RpcError) -> float:
        """Records a failure; returns how long the provider is left alone. A provider that answered at once
        with an error (a JSON-RPC error, a malformed answer) backs off up to ANSWERED_CAP, not the policy's
        cap: it is up and a random error is likely gone on the next try (with 10 s a provider failing a
        third of its calls cost a faulted run minutes of waiting); rate limits, 5xx and timeouts use it all."""
        u.failures += 1
        self._scored_down(u)
        policy = self._retry
        if not isinstance(exc, RateLimited) and (exc.code is not None or isinstance(exc, BadAnswer)):
            policy = dataclasses.replace(policy, cap=min(policy.cap, ANSWERED_CAP))
        wait = backoff(u.failures, policy, self._rng)
        asked = exc.retry_after if isinstance(exc, RateLimited | _Progressed) else None
        if asked is not None:
            wait = max(wait, min(asked, self._retry.seconds))
        u.down_until = max(u.down_until, time.monotonic() + wait)
        return wait

    async def _retrying(
        self,
        method: str,
        once: Callable[[Provider], Awaitable[T]],
        only: int | None = None,
        span: int | None = None,
        policy: RetryPolicy | None = None,
        avoid: frozenset[int] = frozenset(),
    ) -> T:
        """`once` on a provider until it succeeds; FatalRpcError is not retried, nor a range (`span` >
        1) that timed out twice: the caller narrows it (a range too heavy for the provider times out
        every time, and retrying it would stall the indexer for good). A RangeTooLarge goes to each
        other provider once (in that provider's error score, without a backoff), then to the caller. `avoid`:
        providers not asked while another one is configured (a confirming read)."""
        policy = policy or self._retry
        deadline = time.monotonic() + policy.seconds
        last: RpcError | None = None
        refused: set[int] = set()  # providers that answered RangeTooLarge (not a fixed cap of theirs)
        lacked: FatalRpcError | None = None
        beyond = ""  # why the call ended before its budget did
        attempt = failed = timeouts = 0
        # Rate-limited attempts and batches that got some answers do not use up `attempts` (they are
        # not the call failing); the time budget bounds them.
        while failed < policy.attempts:
            attempt += 1
            now = time.monotonic()
            lacking = frozenset(p.index for p in self._urls if method in p.lacks)
            u = self._pick(now, span, avoid | refused | lacking) if only is None else self._urls[only]
            if lacked is not None and u.index in lacking:  # only those that lack it are left
                raise lacked
            if u.down_until > now:
                if u.down_until > deadline:
                    attempt -= 1  # not sent
                    beyond = self._beyond_budget(method, u, last, deadline - now)
                    break
                await asyncio.sleep(u.down_until - now)
            try:
                return await once(u)
            except RangeTooLarge as exc:
                if exc.per_provider and exc.suggested_span and span and span > 1 and only is None:
                    # a fixed cap of this provider: remembered; another provider may take the range
                    u.span_cap = min(exc.suggested_span, span - 1)
                    log.info("provider_range_cap", provider=u.index, span_cap=u.span_cap)
                    continue
                # Too large from this provider (its result cap, or an answer above max_response_mb — a
                # dense range, or a provider padding its answers): the others are asked before the
                # caller splits the range. It counts in the provider's error score, which picks it less
                # often, but puts it in no backoff: refusing a range is an answer, and the split range
                # goes straight back (a backoff per refusal cost a faulted run 65 s of waiting).
                self._scored_down(u)
                self._report(method, u, attempt, exc, 0.0)
                refused.add(u.index)
                if only is not None or all(p.index in refused or p.index in avoid for p in self._urls):
                    raise
                continue
            except FatalRpcError as exc:
                # This node lacks the method (or a node of a provider that lacks it answered): the
                # others are asked; the run ends only when none has it (review s21 hp: one of two
                # providers without batches ended it with exit 1).
                if only is not None or all(p.index == u.index or method in p.lacks for p in self._urls):
                    raise
                u.lacks.add(method)
                lacked = exc
                self._scored_down(u)
                log.warning("provider_lacks_method", provider=u.index, method=method, error=str(exc)[:160])
                continue
            except TransientRpcError as exc:
                # Kept without its traceback: the traceback holds this frame (so a cycle through
                # `last`) and the failed attempt's frames with their answers (a batch's headers),
                # which only a full garbage collection frees, and the daemons run the collector
                # rarely (runtime.tune_gc). Under a rate-limited provider that grew the fetch process
                # ~10 MB per 100 blocks. The final `raise last` gives it a traceback from here.
                last = exc.with_traceback(None)
                if not isinstance(exc, RateLimited | _Progressed):
                    failed += 1
                wait = self._failed(u, exc)
                self._report(method, u, attempt, exc, wait)
                if isinstance(exc, TimedOut) and span is not None and span > 1:
                    timeouts += 1
                    if timeouts >= 2:
                        raise last from None
            if time.monotonic() >= deadline:
                break
        if last is None:
            raise RateLimited(f"{method}: every provider is backing off past the retry budget", None)
        last.args = (f"{method}: gave up after {attempt} attempt(s): {last}{beyond}",)
        raise last

    def _beyond_budget(self, method: str, u: Provider, last: RpcError | None, left: float) -> str:
        """The provider asked to be left alone past this call's budget: the call ends (a retryable
        failure of the iteration, which asks again later), logged with the provider's own value."""
        asked = last.retry_after if isinstance(last, RateLimited | _Progressed) else None
        log.warning(
            "rpc_retry_after_beyond_budget",
            method=method,
            provider=u.index,
            retry_after=asked,
            budget_left=round(max(0.0, left), 3),
        )
        if asked is None:
            return f" (provider {u.index} backing off past the retry budget)"
        return f" (provider {u.index} asked to wait {asked:g} s, beyond the {max(0.0, left):.1f} s left)"

    def _report(self, method: str, u: Provider, attempt: int, exc: RpcError, wait: float) -> None:
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
        # Only a range of logs can be split, and a block's receipts read another way (its logs by hash,
        # indexer.rpc): any other answer that large (a header, a batch of them) is a provider padding or
        # garbling it, asked again with backoff like any bad answer; as RangeTooLarge it ended every
        # iteration without a retry (review h2: stuck at a block).
        too_large = RangeTooLarge if method.startswith(("eth_getLogs", "eth_getBlockReceipts")) else AnswerTooLarge
        if size is not None:
            raise too_large(f"{method} response of {size} bytes exceeds {limit} ([indexer].max_response_mb)")
        buf = bytearray()  # chunked transfer: count as it arrives
        async for chunk in resp.content.iter_chunked(1 << 20):
            buf += chunk
            if len(buf) > limit:
                raise too_large(f"{method} response exceeds {limit} bytes ([indexer].max_response_mb)")
        return bytes(buf)

    async def _send(
        self,
        u: Provider,
        body: bytes,
        method: str,
        limit: int | None = None,
        decode: Callable[[bytes], Any] = orjson.loads,
    ) -> tuple[Any, float]:
        """One HTTP request to provider `u`: (the answer as `decode` parses it, seconds). HTTP-level
        failures raise TransientRpcError (RateLimited for 429 and for 503 with Retry-After), JSON that
        does not parse BadAnswer. The caller counts the provider's success (_succeeded) once the answer
        is usable."""
        assert self._session is not None, "use Rpc as an async context manager"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.post(u.url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    status = resp.status
                    retry_after = retry_after_header(resp.headers.get("Retry-After"))
                    # every answer is bounded: a block's receipts, a header or an error page as much as logs
                    raw = await self._body(resp, method, self._max_logs_bytes if limit is None else limit)
            if status == 429 or (status == 503 and retry_after is not None):
                raise RateLimited(f"HTTP {status} from node: {raw[:200]!r}", status, retry_after)
            if status in (504, 524):  # a gateway's timeout (524: Cloudflare's)
                raise TimedOut(f"HTTP {status} from node: {raw[:200]!r}", None)
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
            raise TimedOut(f"{method} timed out after {self._timeout}s", None) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientRpcError(f"{method}: {type(exc).__name__}: {exc}", None) from None
        except (orjson.JSONDecodeError, msgspec.DecodeError) as exc:
            # msgspec.ValidationError (a DecodeError) names the path: "Expected `str`, got `int` -
            # at `$.result[3].blockNumber`"
            raise BadAnswer(f"provider {u.index}, {method}: invalid JSON: {exc}", None) from None
        except RecursionError:  # msgspec on JSON nested thousands deep
            raise BadAnswer(f"provider {u.index}, {method}: JSON nested too deep", None) from None
        # Not a success yet: the caller counts it (_succeeded) once the answer parsed into a result.
        return answer, time.perf_counter() - started

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
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """One call, retried alone. `require`: a null result (a node without the block asked for) is
        retried too. `provider`: only that URL (start-up checks of each configured node). `retry`:
        another policy than the client's. `parse`: what is returned for a non-null result; its
        TransientRpcError (a malformed answer) is retried like any failure of the call."""
        body = self._body_of(method, params)

        async def once(u: Provider) -> Any:
            answer, seconds = await self._send(u, body, method, limit)
            if not isinstance(answer, dict):
                raise BadAnswer(f"provider {u.index}, {method}: expected a JSON object, got {str(answer)[:200]}")
            try:
                result = self._result(method, answer.get("error"), answer)
            except NodeError:  # a deterministic answer ("final" clients): the node did its job
                self._succeeded(u, method, seconds)
                raise
            if require and result is None:
                raise TransientRpcError(f"{method}{params!r:.120}: null result (the node lacks it)")
            if parse is not None and result is not None:
                try:
                    result = parse(result)
                except TransientRpcError as exc:
                    raise BadAnswer(f"provider {u.index}, {method}: {exc}") from None
            self._succeeded(u, method, seconds)
            return result

        return await self._retrying(method, once, provider, policy=retry)

    def _result(self, method: str, err: Any, answer: dict[str, Any]) -> Any:
        """The answer's result, or its JSON-RPC error classified."""
        if err is not None:
            if not isinstance(err, dict):
                raise TransientRpcError(f"{method}: malformed error object {str(err)[:200]}")
            raise self._error(err)
        if "result" not in answer:
            raise BadAnswer(f"{method}: answer without result")
        return answer["result"]

    def _error(self, err: Any) -> RpcError:
        if not isinstance(err, dict):
            return TransientRpcError(f"malformed error object {str(err)[:200]}")
        data = err.get("data")
        code = err.get("code")
        code = code if isinstance(code, int) else None
        message = str(err.get("message", ""))
        if self._node_errors_final:
            return NodeError(message, code, data)
        error = classify(code, message + (f" {data}" if data else ""))
        error.data = data
        return error

    async def batch_settled(
        self,
        calls: Sequence[tuple[str, list[Any]]],
        require: Sequence[bool] | None = None,
        parse: Callable[[Any], Any] | None = None,
        provider: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> list[Any]:
        """Several calls in one HTTP request; results in order. Elements fail independently: the
        ones that succeeded are kept and only the failed ones are sent again (retried like a call).
        An element that still fails is returned as its RpcError (RangeTooLarge and FatalRpcError at
        once); `require[i]`: a null result of call i is retried too; `parse`: applied to each non-null
        result, its TransientRpcError (a malformed answer) fails that element alone. `provider`: only
        that URL, retries included (every answer from one node). `retry`: another policy than the
        client's."""
        n = len(calls)
        out: list[Any] = [_MISSING] * n
        need = list(require) if require is not None else [False] * n
        name = (calls[0][0] + "[batch]") if calls else "batch"

        async def once(u: Provider) -> None:
            """The calls still unanswered, in batches of at most the provider's batch cap. A batch
            refused for its size halves the cap (remembered) and goes again at once: a provider that
            takes 10 calls per batch would otherwise refuse the same 500 for ever."""
            pending = [i for i in range(n) if out[i] is _MISSING or isinstance(out[i], TransientRpcError)]
            failed: RpcError | None = None
            answered = done = 0
            size = u.batch_cap or len(pending)  # this call's: halved for an answer above max_response_mb
            while done < len(pending):
                part = pending[done : done + min(size, u.batch_cap or size)]
                try:
                    part_failed, part_answered = await send(u, part)
                except RpcError as exc:
                    if len(part) > 1 and isinstance(exc, AnswerTooLarge):  # not remembered: padding is no cap
                        size = len(part) // 2
                        continue
                    # the provider's refusal of the batch's size, in its words; not our own bound on an
                    # answer (BadAnswer: a padded or garbled answer is asked again, review h2)
                    if len(part) > 1 and not isinstance(exc, BadAnswer) and batch_unsupported(str(exc)):
                        u.batch_cap = 1  # no batch at all: one call per request (review s21 hp)
                        log.info("provider_batch_cap", provider=u.index, batch_cap=1, error=str(exc)[:160])
                        continue
                    if len(part) > 1 and not isinstance(exc, BadAnswer) and batch_refused(str(exc)):
                        u.batch_cap = len(part) // 2
                        log.info("provider_batch_cap", provider=u.index, batch_cap=u.batch_cap, error=str(exc)[:160])
                        continue
                    if answered and isinstance(exc, TransientRpcError):
                        raise _Progressed(exc) from None
                    raise
                failed = _keep(failed, part_failed) if part_failed is not None else failed
                answered += part_answered
                done += len(part)
            if failed is not None:
                raise _Progressed(failed) if answered else failed

        async def send(u: Provider, pending: list[int]) -> tuple[RpcError | None, int]:
            first = self._next_ids(len(pending))
            items = [
                {"jsonrpc": "2.0", "id": first + k, "method": calls[i][0], "params": calls[i][1]}
                for k, i in enumerate(pending)
            ]
            single = u.batch_cap == 1  # a provider that takes no batches: one call per request
            answer, seconds = await self._send(u, orjson.dumps(items[0] if single else items), name)
            if single and isinstance(answer, dict) and answer.get("id") == first:
                answer = [answer]
            if isinstance(answer, dict):  # one error for the whole batch
                raise self._error(answer.get("error") or {"message": str(answer)[:200]})
            if not isinstance(answer, list):
                raise BadAnswer(f"provider {u.index}, {name}: expected a JSON array, got {str(answer)[:200]}")
            # our ids are ints: any other (a list, an object) is not an answer to one of our calls
            by_id = {a["id"]: a for a in answer if isinstance(a, dict) and type(a.get("id")) is int}
            failed: RpcError | None = None
            answered = 0
            for k, i in enumerate(pending):
                a = by_id.get(first + k)
                if a is None:
                    out[i] = missed = TransientRpcError(f"batch answer misses call {i} ({calls[i][0]})")
                    failed = _keep(failed, missed)
                elif a.get("error") is not None:
                    out[i] = exc = self._error(a["error"])
                    if isinstance(exc, TransientRpcError):
                        failed = _keep(failed, exc)
                elif a.get("result") is None and need[i]:
                    out[i] = null = TransientRpcError(f"{calls[i][0]} {calls[i][1]!r:.80}: null (the node lacks it)")
                    failed = _keep(failed, null)
                elif parse is None or a.get("result") is None:
                    out[i] = a.get("result")
                    answered += 1
                else:
                    try:
                        out[i] = parse(a["result"])
                        answered += 1
                    except TransientRpcError as exc:
                        out[i] = bad = BadAnswer(f"provider {u.index}, {calls[i][0]}: {exc}")
                        failed = _keep(failed, bad)
            if failed is None:  # every element usable (a deterministic error is an answer too)
                self._succeeded(u, name, seconds)
            return failed, answered

        if n:
            try:
                await self._retrying(name, once, provider, policy=retry)
            except TransientRpcError as exc:  # what still failed is in `out`
                for i, r in enumerate(out):
                    if isinstance(r, TransientRpcError):
                        r.args = (f"{calls[i][0]}: gave up ({exc}); this call: {r}",)
                    elif r is _MISSING:  # never answered (every attempt failed as a whole)
                        out[i] = TransientRpcError(f"{calls[i][0]}: gave up: {exc}", exc.code)
        return out

    async def batch(
        self,
        calls: Sequence[tuple[str, list[Any]]],
        require: Sequence[bool] | None = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> list[Any]:
        """batch_settled, raising the first element that failed for good."""
        out = await self.batch_settled(calls, require, parse)
        for r in out:
            if isinstance(r, RpcError):
                raise r
            if r is _MISSING:
                raise TransientRpcError("batch element never answered")
        return out

    # ------------------------------------------------------------ typed helpers

    async def chain_id(self, provider: int | None = None, retry: RetryPolicy | None = None) -> int:
        def parse(v: Any) -> int:
            return answers.quantity(v, "eth_chainId")

        chain: int = await self.call("eth_chainId", [], require=True, provider=provider, retry=retry, parse=parse)
        return chain

    async def code(
        self, address: str, block: int | str = "latest", provider: int | None = None, retry: RetryPolicy | None = None
    ) -> bytes:
        tag = hex(block) if isinstance(block, int) else block

        def parse(v: Any) -> bytes:
            return answers.data(v, f"eth_getCode({address}, {tag})")

        code: bytes | None = await self.call("eth_getCode", [address, tag], provider=provider, retry=retry, parse=parse)
        return code or b""

    @property
    def providers(self) -> int:
        return len(self._urls)

    async def check_chain_ids(self, expected: int, indexes: Sequence[int]) -> tuple[set[int], set[int]]:
        """Asks each provider in `indexes` for eth_chainId (3 tries in 10 s each): returns (those on
        `expected`, those that did not answer). A provider on another chain raises WrongChain naming
        its chain.rpc_urls index (never its URL: it may hold an API key)."""
        matched: set[int] = set()
        unreachable: set[int] = set()
        for i in indexes:
            try:
                got = await self.chain_id(provider=i, retry=RetryPolicy(attempts=3, seconds=10.0))
            except RpcError as exc:
                log.warning("provider_not_checked", provider=i, error=str(exc)[:200])
                unreachable.add(i)
                continue
            if got != expected:
                raise WrongChain(
                    f"chain.chain_id is {expected} but the node at chain.rpc_urls[{i}] reports chain id {got}:"
                    " point chain.rpc_urls at a node of that chain, or fix chain.chain_id"
                )
            matched.add(i)
        return matched, unreachable


class WrongChain(ConfigError):
    """A configured node serves another chain than [chain].chain_id (the message names the URL's index)."""
