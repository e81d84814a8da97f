"""Upkeep, between batches or while idle at the head: the readers' secondary indexes dropped for an
initial sync and rebuilt after it, outbox retention, and the background re-scan of finalized blocks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

import asyncpg
import structlog

from indexer import maintenance, rescan
from indexer.backfill import Backfill
from indexer.pipeline import close_quietly, connect
from indexer.rows import DERIVED

log = structlog.get_logger("indexer")

PRUNE_EVERY_S = 60.0  # between outbox retention passes when there is no backlog


class Upkeep(Backfill):
    # ------------------------------------------------------------ deferred indexes

    async def defer_indexes(self, conn: asyncpg.Connection) -> None:
        """Before an initial sync (nothing indexed yet): drop the readers' secondary indexes."""
        assert self.cursor is not None
        nothing_indexed = self.cursor.number < self.s.deployment.deploy_block
        if self.deferred or self.indexes_kept or not self.o.defer_indexes or not nothing_indexed:
            return
        others = await maintenance.other_chains(conn, self.chain_id)
        if others:
            log.info("indexes_kept", reason="other chains share this database", chains=others)
            return
        try:
            self.deferred = await maintenance.defer_indexes(conn, self.chain_id)
        except asyncpg.LockNotAvailableError:
            # readers hold a table (readers queue behind a waiting DROP INDEX): keep the indexes
            self.indexes_kept = True
            log.warning("indexes_kept", reason=f"readers held a table for {maintenance.DROP_LOCK_WAIT}")
            return
        self.m.deferred_indexes.set(len(self.deferred))
        log.info("indexes_deferred", indexes=self.deferred)

    async def restore_indexes(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        """Builds the deferred indexes, one transaction each, two at a time: on the writer's connection
        and on a second one (a build sorts in parallel but writes its B-tree alone, so a second build
        fills the idle core: 18 indexes of the 1M-event chain in ~2.5 s against ~3.4 s one by one).
        A stop cancels the builds in progress (they roll back; the next start builds them); the
        watchdog sees progress while a large one sorts."""
        if not self.deferred or stop.is_set():
            return
        todo = deque(self.deferred)
        second = await connect(self.s, "indexes") if len(todo) > 1 else None

        async def build_on(c: asyncpg.Connection) -> None:
            while todo and not stop.is_set():
                name = todo.popleft()
                started = time.perf_counter()
                await maintenance.restore_index(c, name)
                self.deferred.remove(name)
                self.m.deferred_indexes.set(len(self.deferred))
                seconds = round(time.perf_counter() - started, 3)
                log.info("index_built", index=name, seconds=seconds, left=len(self.deferred))

        builders = [asyncio.ensure_future(build_on(c)) for c in (conn, second) if c is not None]
        everything = asyncio.gather(*builders)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not everything.done():
                await asyncio.wait((everything, stopping), timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
                self.status.last_progress = self.status.last_commit = time.monotonic()
                if stop.is_set() and not everything.done():
                    log.info("index_build_interrupted", indexes=sorted(self.deferred))
                    return
            everything.result()
            # the platform statistics paused during the initial sync (sql/025): rebuilt now, whichever
            # of the two builders deleted the last deferred row (neither may have seen it empty)
            rebuilt = await conn.fetchval("SELECT agg.rebuild_if_pending()")
            log.info("statistics_rebuilt" if rebuilt else "statistics_current")
            for table in DERIVED:  # statistics for the readers' plans over the new indexes
                await self._analyze(conn, table)
        finally:
            stopping.cancel()
            # each builder, not the gather: a gather that already failed (one builder raised) no
            # longer cancels the other, which may still be using a connection
            for b in builders:
                b.cancel()
            for b in builders:
                with contextlib.suppress(BaseException):
                    await b
            with contextlib.suppress(BaseException):
                await everything
            if second is not None:
                await close_quietly(second)

    async def prune_outbox(self, conn: asyncpg.Connection) -> None:
        """Outbox retention, while idle at the head: one bounded DELETE per pass, a pass a minute, or
        on the next idle step while a backlog remains (after downtime, or when first enabled)."""
        hours = self.o.outbox_retention_hours
        if hours <= 0 or time.monotonic() < self.next_prune:
            return
        rows = await maintenance.prune_outbox(conn, self.chain_id, hours)
        self.next_prune = 0.0 if rows == maintenance.PRUNE_ROWS else time.monotonic() + PRUNE_EVERY_S
        if rows:
            self.m.outbox_pruned(rows)
            log.info("outbox_pruned", rows=rows, older_than_hours=hours)

    async def rescan(self, conn: asyncpg.Connection) -> bool:
        """While idle: the next rescan_span finalized blocks read again and compared with what is
        stored (indexer/rescan.py). Logs the node has that we lack: logged, counted and, with
        rescan_repair, repaired by re-indexing from the deploy block (derived state folds every event
        since deployment, and finalized blocks have no undo data to roll back to). Logs we have that
        the node does not report: repaired the same way only when a second provider confirms it, else
        logged and counted (with one provider, a node dropping logs is as likely as a phantom stored).
        True when it did a pass."""
        interval = self.o.rescan_interval
        if not self.rescan_enabled or interval <= 0 or time.monotonic() < self.next_rescan or self.cursor is None:
            return False
        self.next_rescan = time.monotonic() + interval
        last_final = min(self.heads.finalized, self.cursor.number)
        a = self.rescan_next
        if a > last_final:
            return False
        # at most the backfill's current span (sized to target_events per answer) per pass
        width = max(1, min(self.o.rescan_span, self.span))
        b = min(last_final, a + width - 1)
        node, first_read_by = await rescan.node_identities(self.rpc, a, b, self.addresses, width)
        stored = await rescan.stored_identities(conn, self.chain_id, a, b)
        diff = rescan.compare(stored, node)
        self.m.rescanned(b - a + 1, bool(diff))
        if not diff:
            self.rescan_next = b + 1
            log.debug("rescan_matched", from_block=a, to_block=b, events=len(stored))
            return True
        log.error(
            "rescan_mismatch",
            from_block=a,
            to_block=b,
            first_block=diff.first_block(),
            missing=len(diff.missing),
            extra=len(diff.extra),
            repair=self.o.rescan_repair,
        )
        if not self.o.rescan_repair:
            self.rescan_next = b + 1
            return True
        # Never wipe the index on what may be the node's fault. Logs of a block we hold under another
        # hash: the node (or we) are on another fork below finality — an operator's call, as for
        # ReorgTooDeep, not an automatic re-index. Other missing logs: re-indexed only if a second
        # read still reports them, from another provider than the first read's when several are
        # configured (one lying provider cannot confirm itself). Repaired by a whole re-index, not
        # the range: derived rows fold every event since deployment, and finalized blocks keep no
        # undo data to roll back to.
        ours = {bn: h for bn, _, h in stored}
        forked = sorted({bn for bn, _, h in diff.missing if bn in ours and ours[bn] != h})
        if forked:
            log.error(
                "rescan_fork_disagreement",
                blocks=forked[:10],
                from_block=a,
                to_block=b,
                hint="a node in chain.rpc_urls serves another fork of finalized blocks (or this index does):"
                " check each node; python -m indexer reset re-indexes from the deploy block",
            )
            self.rescan_next = b + 1
            return True
        second, second_read_by = await rescan.node_identities(
            self.rpc, a, b, self.addresses, width, avoid=first_read_by
        )
        again = rescan.compare(stored, second)
        if not diff.missing <= again.missing:
            log.warning("rescan_unconfirmed", from_block=a, to_block=b, first_read=len(diff.missing))
            return True  # the same range on the next pass
        # Logs we hold that the node does not report (a phantom a lying provider once added, review h2)
        # are repaired only when another provider confirms they are not there: with one provider, a node
        # that drops logs would otherwise make us wipe true events and index the chain without them.
        # With logs missing too (review s21 hr): the re-index would go through the node that drops them.
        other = not (second_read_by & first_read_by)
        if diff.extra and not (other and diff.extra <= again.extra):
            log.warning(
                "rescan_extra_unconfirmed",
                from_block=a,
                to_block=b,
                extra=len(diff.extra),
                missing=len(diff.missing),
                hint="events stored that the node does not report; with a second provider in chain.rpc_urls"
                " the re-scan confirms and repairs them, else check the node and run python -m indexer reset",
            )
            self.rescan_next = b + 1
            return True
        await maintenance.reset_chain(conn, self.chain_id)
        self.status.best = -1  # indexed again from the deploy block: each block is progress again
        log.warning("reindex_started", reason="rescan_mismatch", from_block=self.s.deployment.deploy_block)
        self.rescan_next = self.s.deployment.deploy_block
        self.last_finalized_announced = -1
        await self.start(conn)
        return True
