"""The keeper's calls over the one JSON-RPC client (core/rpc.py), with the keeper's signatures:
`call(method, *params)`, `batch(calls)` whose failed elements are RpcError values. Hex is turned into
ints/bytes by the helpers below, once, at this boundary.

The client is made with node_errors="final": a JSON-RPC error (a revert, "nonce too low") comes back
at once for the keeper to read, never retried; transport failures (timeouts, refused connections,
HTTP 429/5xx) are retried by core with backoff over every URL, `retries` attempts per call.

Errors: RpcError(method, code, message, data) — core's RpcError (same `revert_data`, `transient`),
also a KeeperError; `transient` and code -1 when the node was unreachable or timed out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core import rpc as core_rpc
from core.rpc_errors import RpcError as CoreRpcError
from keeper import KeeperError


class RpcError(CoreRpcError, KeeperError):
    def __init__(self, method: str, code: int, message: str, data: Any = None, transient: bool = False) -> None:
        super().__init__(message, code, data)
        self.args = (f"{method}: {message} (code {code})",)
        self.method = method
        self.transient = transient

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
        try:
            return await self._rpc.call(method, list(params))
        except CoreRpcError as exc:
            raise RpcError.of(method, exc) from None

    def pick_node(self) -> int:
        """One provider, drawn as for any request, to pass as `node` to several batches."""
        return self._rpc.pick()

    async def batch(self, calls: list[tuple[str, list[Any]]], node: int | None = None) -> list[Any]:
        """Results in order; an element is an RpcError where that call failed. Sent in chunks of
        `batch_size` (hosted providers cap JSON-RPC batch sizes); a node refusing a whole batch raises.
        `node` (pick_node): every chunk and retry goes to that URL, so the answers describe one chain state
        (a null receipt next to a nonce from another, fresher node proves nothing)."""
        out: list[Any] = []
        provider = node
        for start in range(0, len(calls), self.batch_size):
            part = calls[start : start + self.batch_size]
            try:
                results = await self._rpc.batch_settled(part, provider=provider)
            except CoreRpcError as exc:
                raise RpcError.of("batch", exc) from None
            out += [
                RpcError.of(m, r) if isinstance(r, CoreRpcError) else r for (m, _), r in zip(part, results, strict=True)
            ]
        return out


def to_int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def to_bytes(value: str | None) -> bytes:
    return b"" if not value else bytes.fromhex(value[2:] if value.startswith("0x") else value)


def hx(value: bytes | int) -> str:
    return hex(value) if isinstance(value, int) else "0x" + value.hex()
