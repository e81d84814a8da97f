"""Review hp (independent fault injection): a header whose timestamp a provider altered is committed.

Every event's block_time (ev_*.block_time, markets.created_at and the other times folded from it, the
outbox payloads' "time") is the timestamp of a block header as some provider answered it: the backfill's
rpc.headers batch, the tip's eth_getBlockByNumber. A header is checked for its number, its hash (logs must
carry it) and its parent hash (links), never for its other fields: wire.sealed() tells whether the block
object hashes to its block hash, but only the bloom check reads it (an unsealed header's bloom is not
trusted; its timestamp is). On anvil, and on every chain of Ethereum's header layout, a genuine header is
sealed, so an altered one is detectable; the re-scan compares event identities (block, index, hash), so it
never repairs a wrong time either.

Here rpc_urls has two providers: anvil itself and a proxy in front of it that adds one day to the
timestamp of every block object it returns (hash, number and parent unchanged). The run reaches the head
without a warning about it, and the index is not equal to a fresh one through anvil alone: the events of
the blocks whose header came from the proxy carry a time one day off, for good.

Expected: a header that does not hash to its block hash, on a chain whose headers do, is not trusted
(asked again, of another provider when there is one); the index equals a fresh one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.indexer.faultproxy import FaultProxy, Faults
from tests.indexer.helpers import Node, assert_same_index, dump, index_to_head, make_settings, run_through, sim
from tests.indexer.test_faults import QUIET


class ShiftedTimeProxy(FaultProxy):
    """Every block object answered with its timestamp one day later."""

    async def _after(
        self, c: dict[str, Any], a: dict[str, Any], head: int | None, session: aiohttp.ClientSession
    ) -> dict[str, Any]:
        a = await super()._after(c, a, head, session)
        result = a.get("result")
        if c.get("method") in ("eth_getBlockByNumber", "eth_getBlockByHash") and isinstance(result, dict):
            self._count("shifted")
            return {**a, "result": {**result, "timestamp": hex(int(result["timestamp"], 16) + 86400)}}
        return a


@pytest.mark.anvil
@pytest.mark.pg
@pytest.mark.parametrize("tip_blocks", [pytest.param(0, id="backfill"), pytest.param(10**6, id="tip")])
def test_a_header_with_an_altered_timestamp_is_not_committed(
    tip_blocks: int, node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    sim(node.url, node.deployment, seed=83, max_events=20)
    want_dsn = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, want_dsn, tmp_path)) == 0
    proxy = ShiftedTimeProxy(node.url, 83, Faults(**{**QUIET, "range_cap": 10**6}))
    try:
        # small ranges: many header reads, each drawn between the two providers
        s = make_settings(
            [node.url, proxy.url], node.deployment, db_dsn, tmp_path, tip_blocks=tip_blocks, initial_span=4, max_span=4
        )
        assert index_to_head(s) == 0
    finally:
        proxy.stop()
    assert proxy.counts.get("shifted", 0) > 0, "the scenario did not happen"
    got, want = dump(db_dsn), dump(want_dsn)
    off = sum(len(set(got[t]) - set(want[t])) for t in got if t.startswith("ev_"))
    total = sum(len(want[t]) for t in want if t.startswith("ev_"))
    assert off == 0, f"{off} of {total} event rows committed with a block time the proxy shifted by one day"
    assert_same_index(got, want)


class HugeTimeProxy(FaultProxy):
    """The 8th block object read by number answered with timestamp 2**64 - 1 (once)."""

    reads = 0

    async def _after(
        self, c: dict[str, Any], a: dict[str, Any], head: int | None, session: aiohttp.ClientSession
    ) -> dict[str, Any]:
        a = await super()._after(c, a, head, session)
        result, p = a.get("result"), c.get("params") or []
        if c.get("method") == "eth_getBlockByNumber" and isinstance(result, dict) and p and str(p[0]).startswith("0x"):
            self.reads += 1
            if self.reads == 8:
                self._count("huge_time")
                return {**a, "result": {**result, "timestamp": hex(2**64 - 1)}}
        return a


@pytest.mark.anvil
@pytest.mark.pg
def test_one_header_with_a_timestamp_out_of_range_on_the_tip_is_asked_again(
    node: Node, db_dsn: str, tmp_path: Path
) -> None:
    """The same unchecked field, out of range: on the tip path (block by block in the parent process) one
    header answered with timestamp 2**64 - 1 reaches rows.ts() / datetime, whose OverflowError ("timestamp
    out of range for platform time_t") is not an iteration error: the run ends (`python -m indexer`:
    indexer_crashed, exit 1). The backfill's fetch process turns the same error into a retried
    TransientRpcError. Expected: a failed iteration (or the header refused in the call), the head reached."""
    sim(node.url, node.deployment, seed=83, max_events=10)
    proxy = HugeTimeProxy(node.url, 83, Faults(**{**QUIET, "range_cap": 10**6}))
    code = run_through(proxy, make_settings(proxy.url, node.deployment, db_dsn, tmp_path, tip_blocks=10**6))
    assert proxy.counts.get("huge_time", 0) == 1, "the scenario did not happen"
    assert code == 0, f"the run ended with {code!r} after one header with timestamp 2**64 - 1"


def test_unsealed_headers_are_taken_only_after_a_quiet_time_without_a_sealed_one() -> None:
    """Seals' way out for a header layout it does not know (a fork that added a field, every provider): the
    count of refusals alone is not enough (one batch of 50 from one liar, review s21 hf); no sealed header
    from any provider for UNSEALED_QUIET_S is needed too, and a sealed one starts the wait again."""
    from indexer.chain import BlockRef
    from indexer.rpc import UNSEALED_QUIET_S, UNSEALED_REFUSED, BadAnswer, Seals

    now = [0.0]
    seals = Seals(lambda: now[0])
    good, altered = (
        BlockRef(1, b"\1" * 32, b"\0" * 32, 1, b"", True),
        BlockRef(2, b"\2" * 32, b"\1" * 32, 2, b"", False),
    )
    seals.check(good)
    for _ in range(UNSEALED_REFUSED * 3):  # a batch of 150 from one liar, at once
        with pytest.raises(BadAnswer):
            seals.check(altered)
    now[0] += UNSEALED_QUIET_S - 1
    with pytest.raises(BadAnswer):
        seals.check(altered)
    seals.check(good)  # an honest provider answers: the wait starts again
    now[0] += UNSEALED_QUIET_S
    for _ in range(UNSEALED_REFUSED - 1):
        with pytest.raises(BadAnswer):
            seals.check(altered)
    assert seals.check(altered) is altered  # quiet for the whole wait, and refused enough: taken
    assert not seals.chain_seals
