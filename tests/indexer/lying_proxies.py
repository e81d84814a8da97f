"""Proxies of review hr's tests (an independent fault injector)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.indexer.faultproxy import FaultProxy


class HidingProxy(FaultProxy):
    """FaultProxy that leaves out of every eth_getLogs (and eth_getBlockReceipts) answer the logs whose
    (block number, log index) is in `hidden`: a node that consistently drops one true log."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.hidden: set[tuple[int, int]] = set()
        super().__init__(*args, **kw)

    def _keep(self, log: dict[str, Any]) -> bool:
        ident = (int(log["blockNumber"], 16), int(log["logIndex"], 16))
        if ident in self.hidden:
            self._count("hidden")
            return False
        return True

    async def _after(
        self, c: dict[str, Any], a: dict[str, Any], head: int | None, session: aiohttp.ClientSession
    ) -> dict[str, Any]:
        a = await super()._after(c, a, head, session)
        m, result = c.get("method"), a.get("result")
        if m == "eth_getLogs" and isinstance(result, list):
            return {**a, "result": [r for r in result if self._keep(r)]}
        if m == "eth_getBlockReceipts" and isinstance(result, list):
            return {
                **a,
                "result": [{**rc, "logs": [lg for lg in rc.get("logs", []) if self._keep(lg)]} for rc in result],
            }
        return a


class LaggingTagsProxy(FaultProxy):
    """FaultProxy whose `safe` and `finalized` tags answer blocks `behind` lower than the node's (a node
    that restarted and is re-deriving finality, or a provider lagging on it): numbers only."""

    behind = 0

    async def _after(
        self, c: dict[str, Any], a: dict[str, Any], head: int | None, session: aiohttp.ClientSession
    ) -> dict[str, Any]:
        a = await super()._after(c, a, head, session)
        p, result = c.get("params") or [], a.get("result")
        if c.get("method") == "eth_getBlockByNumber" and p and p[0] in ("safe", "finalized") and self.behind:
            if isinstance(result, dict):
                self._count("tag_behind")
                return {**a, "result": {**result, "number": hex(max(0, int(result["number"], 16) - self.behind))}}
        return a
