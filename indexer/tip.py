"""Tip and reorgs: near the head, block by block by hash, each header checked against the stored
parent hash; a disagreement walks back to the common ancestor (chain.find_ancestor) and rolls back in
one transaction (reorg.rollback)."""

from __future__ import annotations

import time

import asyncpg
import structlog

from indexer import read, reorg
from indexer.chain import ChainMismatch, Cursor, find_ancestor
from indexer.live import tip_logs
from indexer.pipeline import Pipeline
from indexer.rpc import TransientRpcError

log = structlog.get_logger("indexer")


class Tip(Pipeline):
    unsealed_seen = False  # header_unsealed logged (once per process)

    # ------------------------------------------------------------ reorgs

    async def check_reorg(self, conn: asyncpg.Connection, reason: str) -> bool:
        """Compares stored hashes above the final floor with the node; rolls back if they differ."""
        assert self.cursor is not None
        stored = await read.stored_hashes(conn, self.chain_id, self.floor)
        numbers = sorted(n for n in stored if n <= self.cursor.number)
        canonical = {n: h.hash for n, h in (await self.rpc.headers(numbers)).items()}
        ancestor = find_ancestor({n: stored[n] for n in numbers}, canonical, self.floor)
        if ancestor is None:
            return False
        started = time.perf_counter()
        old = self.cursor
        result = await reorg.rollback(conn, self.chain_id, old, ancestor, self.heads)
        self.cursor = Cursor(ancestor, stored[ancestor])
        self.status.indexed = ancestor
        if self.watcher is not None:
            self.watcher.forget_above(ancestor)
        elapsed = time.perf_counter() - started
        self.m.reorg(result.depth, elapsed)
        log.warning(
            "reorg_detected",
            reason=reason,
            common_ancestor=ancestor,
            old_head=old.number,
            depth=result.depth,
            removed_events=result.removed,
            rollback_seconds=round(elapsed, 4),
        )
        self._committed(result.seq)
        return True

    # ------------------------------------------------------------ tip

    async def tip(self, conn: asyncpg.Connection, target: int) -> None:
        """Block by block up to target: parent check, bloom, logs by hash. A header announced over
        newHeads is used only while it links to our cursor; one that does not is evicted (a branch the
        node left: the block is read by number), and a rollback drops those above the ancestor, so a
        stale announcement cannot be committed again after the rollback it caused."""
        assert self.cursor is not None
        while self.cursor.number < target:
            n = self.cursor.number + 1
            header = self.watcher.take(n) if self.watcher else None
            if header is not None and header.parent_hash != self.cursor.hash:
                assert self.watcher is not None
                self.watcher.evict(n)
                header = None
            if header is None:
                header = await self.rpc.header(n)
            if header is None:
                return  # the node (or the one we failed over to) does not have it yet: not a reorg
            if header.parent_hash != self.cursor.hash:
                if self.watcher is not None:  # our block n - 1 is not this header's parent: not the node's
                    self.watcher.evict(n - 1)
                if not await self.check_reorg(conn, reason="parent_mismatch"):  # its rollback forgets those above
                    raise TransientRpcError(
                        f"block {n} parent differs from our block {n - 1} but the node agrees "
                        "with our stored hashes: inconsistent node, retrying"
                    )
                continue
            if not header.sealed and not self.unsealed_seen:
                self.unsealed_seen = True
                log.warning(
                    "header_unsealed",
                    block=n,
                    note="a block object that does not hash to its block hash (another chain's header layout, "
                    "or a node altering it): its logsBloom is not trusted, so blocks like it cost an eth_getLogs"
                    " by hash (and a receipts read when empty) each; logged once",
                )
            logs = await tip_logs(self.rpc, header, self.addresses, self.address_bytes)
            for lg in logs:
                if lg.block_hash != header.hash:
                    raise ChainMismatch(f"log of block {n} carries another block hash")
            unique = sorted({lg.log_index: lg for lg in logs}.values(), key=lambda lg: lg.log_index)
            if len(unique) != len(logs):  # a provider repeated a log: its identity is (block, log index)
                self._range_split("duplicates", from_block=n, to_block=n, duplicates=len(logs) - len(unique))
                logs = unique
            await self.commit(conn, n, header, logs, {n: header})
            if self.watcher is not None:
                t = self.watcher.arrived.pop(header.hash, None)
                if t is not None:
                    self.m.head_latency(time.perf_counter() - t)
