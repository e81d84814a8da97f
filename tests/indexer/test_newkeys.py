"""Keys certainly not stored (indexer/newkeys.py): an initial sync COPYs blind rows with new keys and
skips reading keys it never wrote; the index equals one where every blind row is added to by key and
every key is read."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from indexer import bulk
from indexer import newkeys as N
from indexer.metrics import Metrics
from tests.indexer.helpers import Node, dump, index_to_head, make_settings, sim

pytestmark = [pytest.mark.anvil, pytest.mark.pg]


def test_a_key_is_absent_until_marked_and_untracked_tables_never_say_absent() -> None:
    nk = N.NewKeys(["positions"])
    key = (7, b"\xaa" * 20)
    assert nk.tracks("positions")
    assert not nk.tracks("share_holdings")
    assert nk.absent("positions", key)
    assert not nk.absent("share_holdings", (b"\x01" * 20, b"\x02" * 20))  # not tracked: may exist
    nk.mark("positions", [key])
    assert not nk.absent("positions", key)
    nk.mark("share_holdings", [(b"\x01" * 20, b"\x02" * 20)])  # no effect, no error
    assert not nk.absent("share_holdings", (b"\x01" * 20, b"\x02" * 20))
    # a key hashing to a marked bit looks written (upserted: correct, only slower), never the reverse
    marked = [(m, b"\xbb" * 20) for m in range(50_000)]
    nk.mark("positions", marked)
    assert not any(nk.absent("positions", k) for k in marked)


def test_only_tables_without_rows_of_the_chain_are_tracked(db_dsn: str) -> None:
    async def go() -> tuple[set[str], set[str], set[str]]:
        conn = await asyncpg.connect(db_dsn)
        try:
            empty = set((await N.NewKeys.for_empty_tables(conn, 31337)).maps)
            await conn.execute(
                "INSERT INTO idx.positions (chain_id, market_id, holder, updated_block)"
                " VALUES (31337, 1, '\\xaa'::bytea, 1)"
            )
            after = set((await N.NewKeys.for_empty_tables(conn, 31337)).maps)
            other_chain = set((await N.NewKeys.for_empty_tables(conn, 1)).maps)
            return empty, after, other_chain
        finally:
            await conn.close()

    empty, after, other_chain = asyncio.run(go())
    assert empty == {"positions", "share_holdings"}
    assert after == {"share_holdings"}
    assert other_chain == {"positions", "share_holdings"}


@pytest.mark.parametrize("small_rows", [bulk.SMALL_ROWS, 0], ids=["as_configured", "bulk_paths_only"])
def test_initial_sync_copying_new_blind_rows_equals_adding_every_delta_by_key(
    node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_rows: int
) -> None:
    monkeypatch.setattr(bulk, "SMALL_ROWS", small_rows)
    sim(node.url, node.deployment, seed=21, max_events=150, resolve=True)
    node.anvil.mine(70)  # below anvil's finalized block (head - 64): batches fold blind
    copied: list[int] = []
    real = Metrics.blind_copied

    def count(self: Metrics, rows: int) -> None:
        copied.append(rows)
        real(self, rows)

    monkeypatch.setattr(Metrics, "blind_copied", count)
    spans = {"initial_span": 2, "max_span": 4, "concurrency": 3}
    assert index_to_head(make_settings(node.url, node.deployment, db_dsn, tmp_path, **spans)) == 0
    assert sum(copied) > 0  # the new path was taken

    async def untracked(cls: Any, conn: Any, chain_id: int) -> N.NewKeys:
        return N.NewKeys()  # every key may exist: every blind row added to by key, every key read

    monkeypatch.setattr(N.NewKeys, "for_empty_tables", classmethod(untracked))
    copied.clear()
    other = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, other, tmp_path, **spans)) == 0
    assert sum(copied) == 0
    got, want = dump(db_dsn), dump(other)
    assert want["positions"]
    assert want["share_holdings"]
    for table in want:
        assert got[table] == want[table], table
