"""Tip and reorgs: near the head, block by block by hash, each header checked against the stored
parent hash; a disagreement walks back to the common ancestor (chain.find_ancestor) and rolls back in
one transaction (reorg.rollback)."""

from __future__ import annotations

import time

import asyncpg
import structlog

from indexer import outbox_gap, read, reorg
from indexer.chain import ChainMismatch, Cursor, ReorgTooDeep, find_ancestor
from indexer.decode import Log
from indexer.live import tip_logs
from indexer.pipeline import Pipeline
from indexer.rpc import RetryPolicy, RpcError, TransientRpcError

log = structlog.get_logger("indexer")


# A reorg below finality stops the indexer (exit 3, re-index from scratch): only once this many checks in a
# row, each on a provider that answers for our chain id, saw it. One provider answering from another network
# (same contracts at the same addresses) was taken for one, at once (review h2).
DEEP_REORG_CONFIRMATIONS = 3
CONFIRM_RETRY = RetryPolicy(attempts=2, seconds=10.0)  # per provider, per check
STALE_BLOCKS = 4  # a provider whose head is further behind the disagreeing ones' is stale: its agreement is no veto


class Tip(Pipeline):
    unsealed_seen = False  # header_unsealed logged (once per process)
    deep_reorg_seen = 0  # checks that confirmed a reorg below finality since a current provider last denied it

    # ------------------------------------------------------------ reorgs

    async def check_reorg(self, conn: asyncpg.Connection, reason: str) -> bool:
        """Compares stored hashes above the final floor with the node; rolls back if they differ."""
        assert self.cursor is not None
        stored = await read.stored_hashes(conn, self.chain_id, self.floor)
        numbers = sorted(n for n in stored if n <= self.cursor.number)
        canonical = {n: h.hash for n, h in (await self.rpc.headers(numbers)).items()}
        try:
            ancestor = find_ancestor({n: stored[n] for n in numbers}, canonical, self.floor)
        except ReorgTooDeep as exc:
            await self._confirm_deep_reorg(exc, stored[exc.block_number])
            raise
        # not reset here: a check answered by a stale node finds nothing (review h4); a provider that is
        # current and agrees with us resets it (_confirm_deep_reorg)
        if ancestor is None:
            return False
        started = time.perf_counter()
        old = self.cursor
        result = await reorg.rollback(conn, self.chain_id, old, ancestor, self.heads)
        self.gap = await outbox_gap.load(conn, self.chain_id)  # as the rollback trimmed it
        self.gap_writes.clear()
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

    async def _confirm_deep_reorg(self, exc: ReorgTooDeep, ours: bytes) -> None:
        """Raises TransientRpcError (the iteration fails and is tried again) unless, DEEP_REORG_CONFIRMATIONS
        checks in a row, the providers on our chain id that have the block disagree with our hash of it:
        the headers that disagreed may be one provider's, from another network (review h2). A provider
        that agrees counts only if it is not behind the ones that disagree (a node that stopped syncing
        before the reorg agrees by definition, and kept a real deep reorg from ever stopping, review h4)."""
        n = exc.block_number
        agree: list[tuple[int, int]] = []  # (provider, its head)
        disagree: list[int] = []  # heads of the providers that disagree
        for i in range(self.rpc.providers):
            try:
                if await self.rpc.chain_id(provider=i, retry=CONFIRM_RETRY) != self.chain_id:
                    continue  # a provider of another network is no evidence (check_chain_ids names it at start)
                h = await self.rpc.header(n, provider=i, retry=CONFIRM_RETRY)
                latest = await self.rpc.header("latest", provider=i, retry=CONFIRM_RETRY)
            except RpcError:
                continue  # unreachable now: no evidence either way
            if h is None or latest is None:
                continue
            if h.hash == ours:
                agree.append((i, latest.number))
            else:
                disagree.append(latest.number)
        if not disagree:
            self.deep_reorg_seen = 0
            raise TransientRpcError(
                f"no provider on chain {self.chain_id} now disagrees with our block {n} (below finality):"
                " not a reorg, asked again"
            )
        current = [i for i, head in agree if head >= max(disagree) - STALE_BLOCKS]
        if current:
            self.deep_reorg_seen = 0
            raise TransientRpcError(
                f"provider {current[0]} agrees with our block {n}, which others disagree with below finality:"
                " providers on two branches, asked again"
            )
        self.deep_reorg_seen += 1
        log.warning(
            "reorg_below_finality_seen",
            block_number=n,
            checks=self.deep_reorg_seen,
            needed=DEEP_REORG_CONFIRMATIONS,
            disagree=len(disagree),
            stale_agree=len(agree),
        )
        if self.deep_reorg_seen < DEEP_REORG_CONFIRMATIONS:
            raise TransientRpcError(
                f"the providers on chain {self.chain_id} disagree with our block {n}, below finality: checked"
                f" again before stopping ({self.deep_reorg_seen} of {DEEP_REORG_CONFIRMATIONS})"
            )

    # ------------------------------------------------------------ tip

    async def tip(self, conn: asyncpg.Connection, target: int) -> bool:
        """Block by block up to target: parent check, bloom, logs by hash. A header announced over
        newHeads is used only while it links to our cursor; one that does not is evicted (a branch the
        node left: the block is read by number), and a rollback drops those above the ancestor, so a
        stale announcement cannot be committed again after the rollback it caused.

        False when it stopped at a block the node does not serve yet (its head read came from a node
        ahead of the one answering by number): the caller waits before asking again (review h9: it
        asked again at once, 4,332 steps in 2 s)."""
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
                return False  # the node (or the one we failed over to) does not have it yet: not a reorg
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
            by_index: dict[int, Log] = {}
            for lg in logs:
                had = by_index.setdefault(lg.log_index, lg)
                if had is not lg and (had.tx_hash, had.address, had.topics, had.data) != (
                    lg.tx_hash,
                    lg.address,
                    lg.topics,
                    lg.data,
                ):  # one answer contradicts itself: neither copy is trusted (review h2)
                    raise TransientRpcError(
                        f"logs of block {n} hold two different logs at index {lg.log_index}: asked again"
                    )
            unique = sorted(by_index.values(), key=lambda lg: lg.log_index)
            if len(unique) != len(logs):  # a provider repeated a log: its identity is (block, log index)
                self._range_split("duplicates", from_block=n, to_block=n, duplicates=len(logs) - len(unique))
                logs = unique
            await self.commit(conn, n, header, logs, {n: header})
            if self.watcher is not None:
                t = self.watcher.arrived.pop(header.hash, None)
                if t is not None:
                    self.m.head_latency(time.perf_counter() - t)
        return True
