"""RpcProxy (tests/keeper/rpcproxy.py) with the lies of real providers (review s15):

proxy.lie.add("eth_sendRawTransaction")  # forwarded to anvil, then answered with an error anyway
proxy.erigon_dups = True                 # a repeat of a pooled tx: erigon's "existing tx with same hash"
proxy.stale_count = 5                    # eth_getTransactionCount answers this older count (a lagging node)
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.keeper.rpcproxy import RpcProxy

LIE = {"code": -32603, "message": "internal error"}
# erigon txpool DiscardReason DuplicateHash, as its RPC reports it
ERIGON_DUP = {"code": -32000, "message": "INTERNAL_ERROR: existing tx with same hash"}


class LyingProxy(RpcProxy):
    def __init__(self, upstream: str) -> None:
        self.lie: set[str] = set()  # methods forwarded, then answered with LIE
        self.stale_count: int | None = None  # eth_getTransactionCount answered with this
        self.lies = 0
        self.erigon_dups = False  # a repeated eth_sendRawTransaction of a pooled tx: erigon's DuplicateHash answer
        self._seen: set[str] = set()
        super().__init__(upstream)

    async def _handle(self, body: bytes, session: aiohttp.ClientSession) -> web.Response:
        resp = await super()._handle(body, session)
        if not self.lie and self.stale_count is None and not self.erigon_dups:
            return resp
        msg = orjson.loads(body)
        calls: list[dict[str, Any]] = msg if isinstance(msg, list) else [msg]
        got = orjson.loads(resp.body)  # type: ignore[arg-type]
        answers = got if isinstance(got, list) else [got]
        out = []
        for c, a in zip(calls, answers, strict=True):
            m = c.get("method")
            if m in self.lie:
                self.lies += 1
                a = {"jsonrpc": "2.0", "id": c.get("id"), "error": LIE}
            elif m == "eth_sendRawTransaction" and self.erigon_dups:
                raw = c["params"][0]
                if raw in self._seen:
                    self.lies += 1
                    a = {"jsonrpc": "2.0", "id": c.get("id"), "error": ERIGON_DUP}
                elif "result" in a:
                    self._seen.add(raw)
            elif m == "eth_getTransactionCount" and self.stale_count is not None:
                a = {"jsonrpc": "2.0", "id": c.get("id"), "result": hex(self.stale_count)}
            out.append(a)
        return web.json_response(out if isinstance(msg, list) else out[0], dumps=lambda o: orjson.dumps(o).decode())
