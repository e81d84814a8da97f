"""Review h10: `tip` stops at a block the node does not serve by number yet and `step` reports idle;
`run(until_head=True)` (`--exit-at-head`) took that idle for "caught up with the head" and returned 0
with the checkpoint below the head it read. Now it waits, and exits 0 once the block is served and
indexed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.indexer.faultproxy import Faults
from tests.indexer.helpers import Node, fetch, index_to_head, make_settings
from tests.indexer.test_provider_lies import CLEAN, ForgingProxy


class HidingProxy(ForgingProxy):
    hide_from: int | None = None  # blocks at or above: null when read by number (`latest` still answered)

    async def _after(
        self, c: dict[str, Any], a: dict[str, Any], head: int | None, session: aiohttp.ClientSession
    ) -> dict[str, Any]:
        a = await super()._after(c, a, head, session)
        p = c.get("params") or []
        if (
            self.hide_from is not None
            and c.get("method") == "eth_getBlockByNumber"
            and p
            and isinstance(p[0], str)
            and p[0].startswith("0x")
            and int(p[0], 16) >= self.hide_from
        ):
            return {**a, "result": None}
        return a


@pytest.mark.anvil
@pytest.mark.pg
def test_exit_at_head_waits_for_a_block_not_served_yet(node: Node, db_dsn: str, tmp_path: Path) -> None:
    node.anvil.mine(5)
    proxy = HidingProxy(node.url, 9, Faults(**CLEAN))
    try:
        s = make_settings(proxy.url, node.deployment, db_dsn, tmp_path)
        assert index_to_head(s) == 0
        node.anvil.mine(3)  # within tip_blocks: the tip path
        rows = fetch(db_dsn, "SELECT block_number FROM idx.checkpoints WHERE chain_id = 31337")
        start = rows[0]["block_number"]
        proxy.hide_from = start + 2  # the by-number backend is behind `latest`
        served = threading.Timer(3.0, lambda: setattr(proxy, "hide_from", None))  # until it catches up
        served.start()
        try:
            code = index_to_head(s)
        finally:
            served.cancel()
        assert proxy.hide_from is None  # it returned only after the blocks were served
    finally:
        proxy.stop()
    end = fetch(db_dsn, "SELECT block_number FROM idx.checkpoints WHERE chain_id = 31337")[0]["block_number"]
    assert (code, end) == (0, start + 3)
