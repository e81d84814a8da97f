"""Backfill: far behind the head, block ranges (plan: chain.plan_range, sized by the span policy)
fetched with several in flight (fetch.py), committed strictly in order, pipelined: while batch N is
written, batch N+1's snapshot is read on a second connection and folded (_prefetch)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import structlog

from indexer import checkpoint, read, write
from indexer import fold as F
from indexer.batch_writer import BatchWriter
from indexer.chain import ChainMismatch, plan_range
from indexer.fetch import Prepared
from indexer.pipeline import close_quietly, connect
from indexer.tip import Tip

log = structlog.get_logger("indexer")


@dataclasses.dataclass(slots=True)
class LoopStats:
    """Where a backfill's loop went (logged with backfill_done), in seconds."""

    events: int = 0
    fetch_wait: float = 0.0  # waiting for the next fetched range (the fetch side the bottleneck)
    reading: float = 0.0  # snapshot keys and reads
    folding: float = 0.0  # fold, build and encoding
    write_wait: float = 0.0  # waiting for the batch before to commit


class Backfill(Tip):
    async def _prefetch(
        self, reader: asyncpg.Connection, keys: F.Keys, written: write.Batch | None
    ) -> tuple[F.Snapshot, frozenset[tuple[str, Any]]]:
        """The snapshot of the next batch while the previous one (`written`) is still being written.

        Rows that batch changes come from its fold (the overlay); every other row is read on a second
        connection: no uncommitted batch touches it, so its committed value and its ctid are the
        ones the next batch's write will find. Overlaid rows are written by key (upserts).

        A row the previous batch folded blind is only a delta there: it is read too, in one
        REPEATABLE READ snapshot with the checkpoint, which says whether that batch had committed
        (the row already includes the delta) or not (fold.apply_delta adds it)."""
        if written is None:
            return await read.load_snapshot(reader, self.chain_id, keys), frozenset()
        overlay = written.changes
        deltas = {k for t, k in written.deltas if t == "positions"}
        holding_deltas = {k for t, k in written.deltas if t == "share_holdings"}
        creators = set(keys.creators) | {overlay.markets[m].creator for m in keys.markets if m in overlay.markets}
        db_keys = F.Keys(
            frozenset(m for m in keys.markets if m not in overlay.markets),
            frozenset(k for k in keys.positions if k not in overlay.positions or k in deltas),
            frozenset(c for c in creators if c not in overlay.creators),
            frozenset(k for k in keys.holdings if k not in overlay.holdings or k in holding_deltas),
            keys.market_positions,
            keys.creator_holdings,
            keys.blind,
            keys.blind_holdings,
        )
        composed = [k for k in deltas if k in keys.positions or k[0] in keys.market_positions]
        composed_holdings = [k for k in holding_deltas if k in keys.holdings or k[0] in keys.creator_holdings]
        if composed or composed_holdings:
            async with reader.transaction(isolation="repeatable_read", readonly=True):
                snap = await read.load_snapshot(reader, self.chain_id, db_keys)
                seen = (await checkpoint.load_cursor(reader, self.chain_id)).cursor
            committed = seen == written.end
            if not committed and seen != written.start:
                raise checkpoint.StaleCursor(f"checkpoint is {seen}, expected {written.start} or {written.end}")
        else:
            snap = await read.load_snapshot(reader, self.chain_id, db_keys)
        upserts: set[tuple[str, Any]] = set()
        blind_rows: tuple[tuple[str, dict[Any, Any], dict[Any, Any], list[Any]], ...] = (
            ("positions", snap.positions, overlay.positions, composed),
            ("share_holdings", snap.holdings, overlay.holdings, composed_holdings),
        )
        for table, rows, source, wanted in blind_rows:
            if wanted:
                rows.update(F.with_deltas(rows, {k: source[k] for k in wanted}, committed))
                for k in wanted:
                    snap.locators.pop((table, k), None)
                    upserts.add((table, k))

        def take(table: str, rows: dict[Any, Any], source: dict[Any, Any], wanted: Any) -> None:
            for k in wanted:
                if k in source:
                    rows[k] = source[k]
                    key = k if isinstance(k, tuple) else (k,)
                    snap.locators.pop((table, key), None)
                    upserts.add((table, key))

        # Every overlay row the batch reads: its keys, plus all rows of a market being resolved or a
        # creator distributing (load_snapshot read those from the database; the overlay's are newer).
        take("markets", snap.markets, overlay.markets, keys.markets)
        take(
            "positions",
            snap.positions,
            overlay.positions,
            [
                k
                for k in overlay.positions
                if (k in keys.positions or k[0] in keys.market_positions) and k not in deltas
            ],
        )
        # creators of every market in the snapshot: the overlay's, else read with db_keys / the markets
        take("creators", snap.creators, overlay.creators, creators | {m.creator for m in snap.markets.values()})
        take(
            "share_holdings",
            snap.holdings,
            overlay.holdings,
            [
                k
                for k in overlay.holdings
                if (k in keys.holdings or k[0] in keys.creator_holdings) and k not in holding_deltas
            ],
        )
        return snap, frozenset(upserts)

    async def analyze_grown(self, conn: asyncpg.Connection) -> None:
        """ANALYZE a derived table once it has doubled since its last statistics (at least 10k rows).

        A backfill grows these tables far faster than autovacuum analyzes them; with statistics from
        an almost empty table the planner served full-key snapshot probes from a one-column index
        and filtered hundreds of rows per key (seconds per batch instead of ~0.1 s).

        Not while the secondary indexes are deferred: the primary key is then the only index a probe
        can use, so statistics cannot mislead it (~0.9 s of PostgreSQL per 1M events saved);
        restore_indexes analyzes once they are back."""
        if self.deferred:
            return
        for table, n in self.inserted.items():
            if n >= max(10_000, self.analyzed[table]):
                await self._analyze(conn, table)

    async def _analyze(self, conn: asyncpg.Connection, table: str) -> None:
        started = time.perf_counter()
        await conn.execute(f"ANALYZE idx.{table}")
        self.analyzed[table] += self.inserted[table]
        self.inserted[table] = 0
        log.debug("analyzed", table=table, rows=self.analyzed[table], seconds=time.perf_counter() - started)

    # ------------------------------------------------------------ backfill

    async def _ranges(self, start: int, target: int) -> AsyncIterator[Prepared]:
        """Fetches ranges start..target with up to `concurrency` in flight, yielding them in order."""
        pending: deque[asyncio.Task[Prepared]] = deque()
        nxt = start
        # One range until a response has sized the span: a first span that is far too large (a dense
        # chain, a node with no result cap) would otherwise arrive `concurrency` times at once.
        width = 1
        try:
            while True:
                while len(pending) < width:
                    r = plan_range(nxt - 1, target, self.span)
                    if r is None:
                        break
                    nxt = r.stop
                    pending.append(asyncio.create_task(self.fetcher.fetch(r, self.span, self.heads.finalized)))
                if not pending:
                    return
                got = await pending.popleft()
                width = self.o.concurrency
                self.span = got.span
                for size in got.spans:
                    self.m.span(size)
                yield got
        finally:
            for t in pending:
                t.cancel()
            for t in pending:
                with contextlib.suppress(BaseException):
                    await t

    async def backfill(self, conn: asyncpg.Connection, target: int, stop: asyncio.Event) -> None:
        """Ranges committed in order, pipelined: while batch N is written (on the BatchWriter's thread
        and connection), batch N+1's snapshot is read on a second connection and folded (_prefetch)."""
        assert self.cursor is not None
        started = time.perf_counter()
        first = self.cursor.number
        log.info("backfill_started", from_block=first + 1, to_block=target, head=self.heads.head)
        async with contextlib.AsyncExitStack() as stack:
            reader = await connect(self.s, "reader")
            stack.push_async_callback(close_quietly, reader)
            batches = await stack.enter_async_context(BatchWriter(self.s))
            self._progress_open(first, target)
            stack.callback(self._progress_close)
            stats = await self._backfill(conn, target, stop, reader, batches)
        elapsed = time.perf_counter() - started
        log.info(
            "backfill_done",
            from_block=first + 1,
            to_block=self.cursor.number,
            events=stats.events,
            seconds=round(elapsed, 3),
            events_per_second=round(stats.events / elapsed) if elapsed else None,
            fetch_wait_seconds=round(stats.fetch_wait, 3),
            read_seconds=round(stats.reading, 3),
            fold_seconds=round(stats.folding, 3),
            write_wait_seconds=round(stats.write_wait, 3),
        )

    async def _backfill(
        self,
        conn: asyncpg.Connection,
        target: int,
        stop: asyncio.Event,
        reader: asyncpg.Connection,
        batches: BatchWriter,
    ) -> LoopStats:
        assert self.cursor is not None
        stats = LoopStats()
        t_wait = time.perf_counter()
        writing: asyncio.Task[None] | None = None
        written: write.Batch | None = None  # the batch `writing` commits
        try:
            async for got in self._ranges(self.cursor.number + 1, target):
                end = written.end if written is not None else self.cursor
                a = got.blocks.start
                if a != end.number + 1:
                    raise ChainMismatch("range does not continue the checkpoint")
                if got.headers[a].parent_hash != end.hash:
                    raise ChainMismatch(f"block {a} does not link to the checkpoint block {end.number}")
                t0 = time.perf_counter()
                stats.fetch_wait += t0 - t_wait
                self.m.fetch_wait(t0 - t_wait)
                last = got.headers[got.blocks.stop - 1]
                # wholly at or below finality: nothing is journaled, so positions can be folded blind
                keys = self.stored_keys(F.keys_of(got.events, blind=last.number <= self.heads.finalized))
                snap, upserts = await self._prefetch(reader, keys, written)
                t1 = time.perf_counter()
                batch = self._build(end, a, last, got.events, got.headers, got.raw, snap, upserts)
                batch = write.encode(self.chain_id, batch)  # while the batch before is written
                t2 = time.perf_counter()
                stats.reading += t1 - t0
                stats.folding += t2 - t1
                if writing is not None:
                    await writing
                    stats.write_wait += time.perf_counter() - t2
                    await self.analyze_grown(conn)
                writing = asyncio.create_task(self._write(conn, batch, batches))
                written = batch
                n = len(got.events)
                stats.events += n
                self._progress_update(got.blocks.stop - got.blocks.start, n)
                if stop.is_set():
                    break
                t_wait = time.perf_counter()
            if writing is not None:
                await writing
        finally:
            if writing is not None and not writing.done():
                # Something failed while a batch was being written: let that write finish (it is valid
                # work, and the checkpoint then says where to resume); its own error is the caller's.
                with contextlib.suppress(Exception):
                    await writing
        return stats

    # ------------------------------------------------------------ progress display

    def _progress_open(self, first: int, target: int) -> None:
        mode = self.o.progress
        import sys

        if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
            from tqdm import tqdm

            self.progress = tqdm(total=target - first, unit="blk", desc=f"chain {self.chain_id}", dynamic_ncols=True)
            self._bar_started = time.perf_counter()

    def _progress_update(self, blocks: int, events: int) -> None:
        if self.progress:
            self.progress.update(blocks)
            el = max(1e-9, time.perf_counter() - self._bar_started)
            self.progress.set_postfix(events=self.status.events, ev_s=f"{self.status.events / el:,.0f}")

    def _progress_close(self) -> None:
        if self.progress:
            self.progress.close()
            self.progress = None
