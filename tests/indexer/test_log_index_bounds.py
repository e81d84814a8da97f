"""Review hp (independent fault injection): a log index PostgreSQL cannot store ends the run.

rpc.suspect() checks that a log's index is hex and not negative; nothing bounds it above. The raw event
tables and the outbox store log_index as `int` (sql/001_init.sql), so one eth_getLogs answer holding a log
with logIndex 0x80000000 (2**31: a corrupted or padded field, well-typed hex) reaches the batch's COPY,
which PostgreSQL refuses with NumericValueOutOfRangeError, and, on the tip path, asyncpg's encoder with
DataError ("value out of int32 range"). Neither is one of service.ITERATION_ERRORS, so the malformed
answer is not asked again: the run ends (`python -m indexer`: indexer_crashed with a traceback, exit 1;
restarted, it fails the same way whenever the provider sends it again).

Expected (docs/indexer.md, Malformed answers: "never a Python error ending the run"): the answer is
refused inside the call and asked again; the run reaches the head equal to a fresh index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.indexer.faultproxy import FaultProxy, Faults
from tests.indexer.helpers import Node, assert_same_index, dump, index_to_head, make_settings, run_through, sim
from tests.indexer.test_faults import QUIET


class BigIndexProxy(FaultProxy):
    """The first eth_getLogs answer holding logs gets its first log's logIndex set to 2**31."""

    forged = False

    async def _after(
        self, c: dict[str, Any], a: dict[str, Any], head: int | None, session: aiohttp.ClientSession
    ) -> dict[str, Any]:
        a = await super()._after(c, a, head, session)
        result = a.get("result")
        if c.get("method") == "eth_getLogs" and isinstance(result, list) and result and not self.forged:
            self.forged = True
            self._count("big_log_index")
            return {**a, "result": [{**result[0], "logIndex": hex(2**31)}, *result[1:]]}
        return a


@pytest.mark.anvil
@pytest.mark.pg
@pytest.mark.parametrize("tip_blocks", [pytest.param(0, id="backfill"), pytest.param(10**6, id="tip")])
def test_a_log_index_beyond_int4_is_asked_again_not_the_end_of_the_run(
    tip_blocks: int, node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    sim(node.url, node.deployment, seed=79, max_events=10)
    want_dsn = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, want_dsn, tmp_path)) == 0
    proxy = BigIndexProxy(node.url, 79, Faults(**{**QUIET, "range_cap": 10**6}))
    code = run_through(proxy, make_settings(proxy.url, node.deployment, db_dsn, tmp_path, tip_blocks=tip_blocks))
    assert proxy.counts.get("big_log_index", 0) == 1, "the scenario did not happen"
    assert code == 0, f"the run ended with {code!r} after one log with logIndex 2**31"
    assert_same_index(dump(db_dsn), dump(want_dsn))
