"""The keeper's calls over the one JSON-RPC client (core/rpc.py), with the keeper's signatures:
`call(method, *params)`, `batch(calls)` whose failed elements are RpcError values. Hex is turned into
ints/bytes by the helpers below, once, at this boundary.

The client is made with node_errors="final": a JSON-RPC error (a revert, "nonce too low") comes back
for the keeper to read; transport failures (timeouts, refused connections, HTTP 429/5xx) are retried
by core with backoff over every URL, `retries` attempts per call. A JSON-RPC error that is node
trouble rather than the chain's answer (`node_trouble`: a rate limit such as -32005 per batch element,
a node timeout, "header not found") is asked again here, `retries` attempts in all with a short backoff
(review h6: one rate-limited batch element skipped a creator's distribution for the day); broadcasts
(eth_sendRawTransaction) never are — the transaction manager reads those answers itself.

Errors: RpcError(method, code, message, data) — core's RpcError (same `revert_data`, `transient`),
also a KeeperError; `transient` and code -1 when the node was unreachable or timed out; `node_trouble`
when the node did not answer the question (transient, or a rate limit/overload in its JSON-RPC error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from core import rpc as core_rpc
from core.rpc_errors import RateLimited, classify, wait_hint
from core.rpc_errors import RpcError as CoreRpcError
from keeper import KeeperError

# A node's JSON-RPC error in these words is trouble of the node (it did not evaluate the call), never the
# chain's answer; a message naming a revert, or carrying revert data, is always the chain's answer.
NODE_TROUBLE = (
    "rate limit",
    "too many requests",
    "timeout",
    "timed out",
    "try again",
    "temporarily",
    "capacity",
    "busy",
    "unavailable",
    "overloaded",
    "internal error",
    "header not found",
    "missing trie node",
    "unknown block",
    "no backend",
)
NEVER_ASKED_AGAIN = frozenset({"eth_sendRawTransaction"})  # tx.py reads every broadcast answer itself
RETRY_BASE_S = 0.5  # first wait before asking node trouble again; doubles, at most RETRY_CAP_S
RETRY_CAP_S = 5.0


class RpcError(CoreRpcError, KeeperError):
    def __init__(self, method: str, code: int, message: str, data: Any = None, transient: bool = False) -> None:
        super().__init__(message, code, data)
        self.args = (f"{method}: {message} (code {code})",)
        self.method = method
        self.transient = transient

    @property
    def node_trouble(self) -> bool:
        """The node did not answer the question (unreachable, rate-limited, overloaded, behind): worth asking
        again later, and never a decision about the work — unlike a revert or a refused transaction."""
        if self.transient:
            return True
        low = self.message.lower()
        if self.revert_data is not None or "revert" in low:
            return False
        if self.code in (429, -32005) or isinstance(classify(self.code, self.message), RateLimited):
            return True
        return any(w in low for w in NODE_TROUBLE)

    @classmethod
    def of(cls, method: str, exc: CoreRpcError) -> RpcError:
        """core's error as the keeper's: code -1 for a node that could not be reached."""
        if exc.transient:
            return cls(method, -1, f"node unreachable: {exc}", exc.data, transient=True)
        return cls(method, exc.code if exc.code is not None else 0, exc.message, exc.data)


class Rpc:
    """`urls` used together (core scores them by errors and latency); use as an async context manager."""

    def __init__(
        self, urls: tuple[str, ...] | list[str], timeout_s: float = 30.0, retries: int = 3, batch_size: int = 500
    ) -> None:
        if not urls:
            raise ValueError("at least one RPC URL is needed")
        self.batch_size = max(1, batch_size)
        self.retries = max(1, retries)
        policy = core_rpc.RetryPolicy(attempts=max(1, retries), seconds=timeout_s * max(1, retries), base=0.2)
        self._rpc = core_rpc.Rpc(list(urls), timeout_s, retry=policy, node_errors="final")

    async def __aenter__(self) -> Rpc:
        await self._rpc.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._rpc.__aexit__(None, None, None)

    def __repr__(self) -> str:  # URLs may embed API keys
        return f"Rpc(<{self._rpc.providers} urls>)"

    @property
    def providers(self) -> int:
        return self._rpc.providers

    async def check_chain_ids(self, expected: int, indexes: Sequence[int]) -> set[int]:
        """The indexes (of `indexes`) whose node did not answer eth_chainId; core.rpc.WrongChain (a
        ConfigError naming chain.rpc_urls[i]) when one serves another chain."""
        _matched, unreachable = await self._rpc.check_chain_ids(expected, indexes)
        return unreachable

    async def call(self, method: str, *params: Any) -> Any:
        for attempt in range(1, self.retries + 1):
            try:
                return await self._rpc.call(method, list(params))
            except CoreRpcError as exc:
                err = RpcError.of(method, exc)
                if not self._ask_again(method, err, attempt):
                    raise err from None
                await asyncio.sleep(self._wait(err, attempt))
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns or raises

    def _ask_again(self, method: str, err: RpcError, attempt: int) -> bool:
        """A JSON-RPC error of node trouble, not retried by core (transient ones were, `retries` times)."""
        return attempt < self.retries and not err.transient and err.node_trouble and method not in NEVER_ASKED_AGAIN

    @staticmethod
    def _wait(err: RpcError, attempt: int) -> float:
        hint = wait_hint(err.message)
        return min(RETRY_CAP_S, hint if hint is not None else RETRY_BASE_S * 2 ** (attempt - 1))

    def pick_node(self) -> int:
        """One provider, drawn as for any request, to pass as `node` to several batches."""
        return self._rpc.pick()

    async def batch(self, calls: list[tuple[str, list[Any]]], node: int | None = None) -> list[Any]:
        """Results in order; an element is an RpcError where that call failed. Sent in chunks of
        `batch_size` (hosted providers cap JSON-RPC batch sizes); a node refusing a whole batch raises.
        The elements that failed with node trouble, in every chunk, are asked again together after one
        wait, `retries` attempts in all; the others' answers are kept.
        `node` (pick_node): every chunk and retry goes to that URL, so the answers describe one chain state
        (a null receipt next to a nonce from another, fresher node proves nothing)."""
        out: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(1, self.retries + 1):
            again: list[int] = []
            wait = 0.0
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                try:
                    results = await self._rpc.batch_settled([calls[i] for i in chunk], provider=node)
                except CoreRpcError as exc:
                    raise RpcError.of("batch", exc) from None
                for i, r in zip(chunk, results, strict=True):
                    out[i] = RpcError.of(calls[i][0], r) if isinstance(r, CoreRpcError) else r
                    if isinstance(out[i], RpcError) and self._ask_again(calls[i][0], out[i], attempt):
                        again.append(i)
                        wait = max(wait, self._wait(out[i], attempt))
            if not again:
                break
            todo = again  # asked again together, after one wait for the whole call (review h8: a wait per
            await asyncio.sleep(wait)  # chunk made a rate-limited run of many chunks reach job_timeout_s)
        return out


def to_int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def to_bytes(value: str | None) -> bytes:
    return b"" if not value else bytes.fromhex(value[2:] if value.startswith("0x") else value)


def hx(value: bytes | int) -> str:
    return hex(value) if isinstance(value, int) else "0x" + value.hex()
