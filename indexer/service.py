"""The indexer process: writer lock, startup verification, backfill pipeline, tip, reorgs, watchdog.

    run(settings, stop) -> exit code

Order of work per iteration: refresh the node's head/safe/finalized → if far behind, backfill
ranges (several eth_getLogs in flight, committed strictly in order, one transaction each) → near
the tip, block by block by hash, each header checked against the stored parent hash. Any
disagreement walks back to the common ancestor (chain.find_ancestor) and rolls back in one
transaction (reorg.rollback) before continuing.

Exit codes: 0 clean stop · 1 unexpected error or too many consecutive failures ·
2 configuration error · 3 ReorgTooDeep · 4 stall watchdog.

Error handling: each RPC call is retried alone inside indexer/rpc.py (backoff, jitter, Retry-After,
several providers); what still fails, and lost database connections, are retried with backoff at the
loop top; `max_failures` consecutive failures end the process (a supervisor restarts it).

Start-up checks (StartupCheckFailed, exit 2): every configured node reports [chain].chain_id, the
deployment's contracts have code, and its deploy_block is not above the head nor after the
contracts already existed.

The watchdog tells "degraded" (no commit for stall_seconds, but the providers still answer: retries
are making their way through a bad provider) from "stuck" (no answer either, or degraded for four
times stall_seconds): only stuck exits (code 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import structlog

from core.config import ConfigError
from indexer import checkpoint, maintenance, outbox_gap, read, reorg, rescan, write
from indexer import fold as F
from indexer.chain import (
    BlockRef,
    ChainMismatch,
    Cursor,
    ReorgTooDeep,
    SpanPolicy,
    finalized_block,
    find_ancestor,
)
from indexer.decode import DecodeError, EventDecoder, Log
from indexer.fetch import ChildConfig, FetchProcess, Prepared, RangeFetcher
from indexer.live import HeadWatcher, tip_logs
from indexer.metrics import Metrics
from indexer.migrate import apply_migrations
from indexer.rows import DERIVED
from indexer.rpc import FatalRpcError, RetryPolicy, Rpc, RpcError, TransientRpcError
from indexer.settings import Settings
from indexer.spawn import Child, discard

log = structlog.get_logger("indexer")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_REORG_TOO_DEEP, EXIT_STALLED = 0, 1, 2, 3, 4


class StartupCheckFailed(ConfigError):
    """The node or the deployment does not match the configuration (the message names the key)."""


@dataclasses.dataclass(slots=True)
class Status:
    """What /ready, the watchdog and the progress display read (updated by the loop only)."""

    head: int = 0
    safe: int | None = None
    finalized: int = 0
    indexed: int = -1
    last_progress: float = dataclasses.field(default_factory=time.monotonic)
    head_moved: float = dataclasses.field(default_factory=time.monotonic)
    last_answer: float = dataclasses.field(default_factory=time.monotonic)  # a provider's last good answer
    degraded: bool = False
    role: str = "starting"  # starting | standby | writer
    events: int = 0


DB_ERRORS = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A backend terminated mid-protocol can surface as "cannot switch to state N; another operation
    # is in progress" (MagicStack/asyncpg#1069): the connection is gone, so reconnect like the others.
    asyncpg.InternalClientError,
    ConnectionError,
    OSError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)

PRUNE_EVERY_S = 60.0  # between outbox retention passes when there is no backlog


class Indexer:
    def __init__(
        self,
        settings: Settings,
        rpc: Rpc,
        metrics: Metrics,
        status: Status,
        on_commit: Callable[[int], None] | None = None,
        early_child: Child | None = None,
    ) -> None:
        self.s = settings
        self.o = settings.options
        self.chain_id = settings.chain.chain_id
        self.rpc = rpc
        self.m = metrics
        self.status = status
        self.on_commit = on_commit
        dep = settings.deployment
        self.addresses = [dep.opinion_market, dep.creator_shares]
        self.address_bytes = [bytes.fromhex(a[2:]) for a in self.addresses]
        self.decoder = EventDecoder({self.address_bytes[0]: "OpinionMarket", self.address_bytes[1]: "CreatorShares"})
        self.policy = SpanPolicy(self.o.initial_span, self.o.max_span, self.o.target_events)
        self.span = self.o.initial_span
        self.fetcher: RangeFetcher | FetchProcess
        if self.o.fetch_process:
            urls = tuple(settings.chain.rpc_urls)
            cfg = ChildConfig(
                urls,
                self.o.request_timeout,
                self.chain_id,
                tuple(self.addresses),
                self.policy,
                self.o.max_response_mb << 20,
                retry_policy(settings),
            )
            self.fetcher = FetchProcess(
                cfg, answered(metrics, status), self._range_split, metrics.fetch_process_started, early=early_child
            )
        else:
            discard(early_child)
            self.fetcher = RangeFetcher(rpc, self.chain_id, self.addresses, self.policy, self._range_split)
        self.heads = checkpoint.Heads(0, None, 0)
        self.cursor: Cursor | None = None
        self.floor = 0
        self.watcher: HeadWatcher | None = None
        self.progress: Any = None
        self.last_finalized_announced = -1
        self.head_hash = b""
        self.heads_read_at = 0.0
        # Rows inserted into each derived table since we last ran ANALYZE on it, and its size then.
        self.inserted = dict.fromkeys(DERIVED, 0)
        self.analyzed = dict.fromkeys(DERIVED, 0)
        self.deferred: list[str] = []  # secondary indexes dropped for the initial sync (maintenance.defer_indexes)
        self.next_prune = 0.0  # monotonic time of the next outbox retention pass
        self.gap: outbox_gap.Gap | None = None  # a stretch indexed without outbox messages, still open
        self.gap_writes: dict[int, tuple[outbox_gap.Gap | None, outbox_gap.Gap | None]] = {}  # by batch end
        self.rescan_next = settings.deployment.deploy_block
        self.checked: set[int] = set()  # rpc_urls (by index) that reported our chain id
        self.rescan_enabled = True  # run() turns it off for a one-shot backfill (--exit-at-head)
        # the first pass one interval after start: a one-shot backfill (--exit-at-head) just read it all
        self.next_rescan = time.monotonic() + self.o.rescan_interval

    # ------------------------------------------------------------ node view

    def heads_from_watcher(self) -> checkpoint.Heads | None:
        """The head announced over newHeads, when it is ahead of us and finality was read recently:
        the tip then starts on the announcement without a round trip to the node."""
        w = self.watcher
        if w is None or w.latest is None or time.monotonic() - self.heads_read_at > 2.0:
            return None
        h = w.latest
        if self.cursor is None or h.number != self.cursor.number + 1 or h.parent_hash != self.cursor.hash:
            return None
        if h.number > self.status.head:
            self.status.head_moved = time.monotonic()
        self.head_hash = h.hash
        self.heads = checkpoint.Heads(h.number, self.heads.safe, self.heads.finalized)
        self.status.head = h.number
        self.m.set_heads(h.number, self.heads.safe, self.heads.finalized, self.status.indexed)
        return self.heads

    async def refresh_heads(self) -> checkpoint.Heads:
        self.heads_read_at = time.monotonic()
        if self.o.finality == "tag":
            # The elements fail independently: a node without `safe`/`finalized` tags (or one that
            # keeps failing them) falls back to head - finality_depth.
            latest, safe, fin = await self.rpc.batch_settled(
                [
                    ("eth_getBlockByNumber", ["latest", False]),
                    ("eth_getBlockByNumber", ["safe", False]),
                    ("eth_getBlockByNumber", ["finalized", False]),
                ],
                [True, False, False],
            )
            if isinstance(latest, RpcError):
                raise latest
            safe = None if isinstance(safe, RpcError) else safe
            fin = None if isinstance(fin, RpcError) else fin
            head = int(latest["number"], 16)
            self.head_hash = bytes.fromhex(latest["hash"][2:])
            safe_n = int(safe["number"], 16) if safe else None
            fin_n = int(fin["number"], 16) if fin else None
        else:
            latest = await self.rpc.call("eth_getBlockByNumber", ["latest", False], require=True)
            head, safe_n, fin_n = int(latest["number"], 16), None, None
            self.head_hash = bytes.fromhex(latest["hash"][2:])
        finalized = finalized_block(head, fin_n, self.s.chain.finality_depth)
        if head > self.status.head:
            self.status.head_moved = time.monotonic()
        # A lagging node (head going backwards) is not a reorg: keep the highest finality seen.
        finalized = max(finalized, self.heads.finalized)
        self.heads = checkpoint.Heads(head, safe_n, finalized)
        self.status.head, self.status.safe, self.status.finalized = head, safe_n, finalized
        self.m.set_heads(head, safe_n, finalized, self.status.indexed)
        return self.heads

    # ------------------------------------------------------------ startup

    async def check_node(self) -> None:
        """The start-up checks the docs promise; StartupCheckFailed names the key to fix."""
        dep = self.s.deployment
        for i in range(self.rpc.providers):
            if i in self.checked:
                continue
            try:
                got = await self.rpc.chain_id(provider=i, retry=RetryPolicy(attempts=3, seconds=10.0))
            except RpcError as exc:  # down now: the others carry the load; checked at the next start
                log.warning("provider_not_checked", provider=i, error=str(exc)[:200])
                continue
            if got == self.chain_id:
                self.checked.add(i)
            else:
                raise StartupCheckFailed(
                    f"chain.chain_id is {self.chain_id} but the node at chain.rpc_urls[{i}] reports chain id {got}:"
                    " point chain.rpc_urls at a node of that chain, or fix chain.chain_id"
                )
        head = (await self.rpc.header("latest", require=True)).number  # type: ignore[union-attr]
        where = f"chain.deployment ({self.s.chain.deployment or f'deployments/{self.chain_id}.json'})"
        if dep.deploy_block > head:
            raise StartupCheckFailed(
                f"{where}: deploy_block {dep.deploy_block} is above the node's head {head}: wrong deployment file"
                " for this node, or the node is still syncing"
            )
        for name, address in (("OpinionMarket", dep.opinion_market), ("CreatorShares", dep.creator_shares)):
            if not await self.rpc.code(address):
                raise StartupCheckFailed(
                    f"{where}: contracts.{name} {address} has no code on chain {self.chain_id}: wrong address"
                    " or deployment file (redeploy with scripts/deploy, or fix chain.deployment)"
                )
            if dep.deploy_block > 0:
                try:
                    before = await self.rpc.code(address, dep.deploy_block - 1)
                except RpcError as exc:  # a pruned node cannot answer for old state: not checkable here
                    log.info("deploy_block_not_checked", contract=name, error=str(exc)[:200])
                    continue
                if before:
                    raise StartupCheckFailed(
                        f"{where}: deploy_block {dep.deploy_block} is after contracts.{name} was deployed (it has"
                        f" code at block {dep.deploy_block - 1}): events before it would be missed; set"
                        " deploy_block to the deployment transaction's block"
                    )

    async def start(self, conn: asyncpg.Connection) -> None:
        dep = self.s.deployment
        await self.check_node()
        await checkpoint.ensure_contracts(
            conn,
            self.chain_id,
            [
                ("OpinionMarket", self.address_bytes[0], dep.deploy_block),
                ("CreatorShares", self.address_bytes[1], dep.deploy_block),
            ],
        )
        for r in await conn.fetch(
            "SELECT relname, greatest(reltuples, 0)::bigint AS n FROM pg_class"
            " WHERE relnamespace = 'idx'::regnamespace AND relname = ANY($1::text[])",
            list(DERIVED),
        ):
            self.analyzed[r["relname"]] = r["n"]
        stored = await checkpoint.load_cursor(conn, self.chain_id)
        if stored.cursor is None:
            base_n = max(0, dep.deploy_block - 1)
            base = await self.rpc.header(base_n)
            if base is None:
                raise TransientRpcError(f"node has no block {base_n} yet")
            self.cursor = await checkpoint.init_cursor(conn, self.chain_id, base)
            self.floor = 0
        else:
            self.cursor, self.floor = stored.cursor, stored.final_floor
        self.status.indexed = self.cursor.number
        self.gap = await outbox_gap.load(conn, self.chain_id)
        self.gap_writes.clear()
        self.deferred = await maintenance.deferred_indexes(conn)
        self.m.deferred_indexes.set(len(self.deferred))
        await self.refresh_heads()
        # A reorg that happened while we were down: compare every stored unfinalized hash.
        await self.check_reorg(conn, reason="startup")
        log.info(
            "indexer_started",
            chain_id=self.chain_id,
            cursor=self.cursor.number,
            head=self.heads.head,
            finalized=self.heads.finalized,
        )

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

    # ------------------------------------------------------------ commit

    def _committed(self, seq: int | None) -> None:
        if seq is not None and self.on_commit is not None:
            self.on_commit(seq)

    async def commit(
        self,
        conn: asyncpg.Connection,
        first: int,
        last: BlockRef,
        logs: Sequence[Log],
        headers: dict[int, BlockRef],
    ) -> int:
        """Decodes, folds and writes blocks first..last.number in one transaction (the tip; the backfill
        pipelines the same _build/_write steps); returns events written."""
        assert self.cursor is not None
        events = self.decoder.decode(logs, {n: h.time for n, h in headers.items()})
        # Snapshot read, fold and write in one transaction: the rows' locators (ctid) stay valid.
        async with conn.transaction():
            snap = await read.load_snapshot(conn, self.chain_id, F.keys_of(events))
            batch = self._build(self.cursor, first, last, events, headers, None, snap, frozenset())
            seq = await write.write_batch(conn, self.chain_id, batch)
            await self._write_gap(conn, batch)
        self._finish(batch, seq)
        return len(events)

    def _build(
        self,
        start: Cursor,
        first: int,
        last: BlockRef,
        events: list[Any],
        headers: dict[int, BlockRef],
        raw: dict[str, bytes] | None,
        snap: F.Snapshot,
        upserts: frozenset[tuple[str, Any]],
    ) -> write.Batch:
        """Folds the events over the snapshot into the batch that continues `start` (pure but for reads of self)."""
        fin = min(self.heads.finalized, last.number)
        outbox_from = 0 if self.o.outbox_max_lag == 0 else self.heads.head - self.o.outbox_max_lag
        ctx = F.Context(self.chain_id, journal_above=fin, outbox_from=outbox_from)
        changes = F.fold(snap, events, ctx)
        counts: dict[int, int] = {}
        for e in events:
            counts[e.block_number] = counts.get(e.block_number, 0) + 1
        if self.o.outbox_max_lag > 0:
            before = self.gap
            self.gap, closed = outbox_gap.advance(before, first, last.number, outbox_from, counts)
            if closed is not None:  # one message for the whole stretch, before this batch's own
                changes.messages.insert(0, outbox_gap.message(self.chain_id, closed))
            if closed is not None or self.gap != before:
                self.gap_writes[last.number] = (self.gap, closed)
        keep = [
            h
            for n, h in sorted(headers.items())
            if first <= n <= last.number and (n > self.heads.finalized or n in counts or n == last.number)
        ]
        extra: list[F.Message] = []
        near_tip = self.heads.head - last.number <= self.o.tip_blocks
        if near_tip and fin > self.last_finalized_announced >= 0:
            payload = {"chain_id": self.chain_id, "block_number": fin}
            extra.append(F.Message("chain:finalized", ("global:all",), None, None, None, payload))
        end = Cursor(last.number, last.hash)
        deltas = frozenset(
            [*(("positions", k) for k in snap.blind), *(("share_holdings", k) for k in snap.blind_holdings)]
        )
        return write.Batch(
            start, end, events, changes, keep, counts, self.heads, extra, snap.locators, raw, upserts, deltas
        )

    async def _write_gap(self, conn: asyncpg.Connection, batch: write.Batch) -> None:
        """The open gap as this batch leaves it, in the batch's transaction."""
        change = self.gap_writes.pop(batch.end.number, None)
        if change is None:
            return
        still_open, closed = change
        await outbox_gap.save(conn, self.chain_id, still_open)
        if closed is not None:
            self.m.gap()
            log.info(
                "outbox_gap_announced",
                from_block=closed.from_block,
                to_block=closed.to_block,
                events=closed.events,
            )

    def _finish(self, batch: write.Batch, seq: int | None) -> None:
        """Bookkeeping once a batch has committed."""
        # Rows neither read nor overlaid were inserted; a delta row (batch.deltas) may have been either,
        # and counts as inserted: at worst a table is analyzed a little early.
        for table, rows in batch.changes.derived():
            for r in rows.values():
                key = (table, F.row_key(table, r))
                if key not in batch.locators and key not in batch.upserts:
                    self.inserted[table] += 1
        fin = min(batch.heads.finalized, batch.end.number)
        self.last_finalized_announced = max(self.last_finalized_announced, fin)
        self.cursor = batch.end
        self.floor = max(self.floor, fin)
        self.status.indexed = batch.end.number
        self.status.last_progress = time.monotonic()
        self.status.events += len(batch.events)
        self.m.committed(batch.end.number, len(batch.events))
        self._committed(seq)

    async def _write(self, conn: asyncpg.Connection, batch: write.Batch) -> None:
        started = time.perf_counter()
        async with conn.transaction():
            seq = await write.write_batch(conn, self.chain_id, batch)
            await self._write_gap(conn, batch)
        self.m.batch_seconds(time.perf_counter() - started)
        self._finish(batch, seq)
        if not self.progress:
            log.info(
                "batch_committed",
                from_block=batch.start.number + 1,
                to_block=batch.end.number,
                events=len(batch.events),
                head=self.heads.head,
                span=self.span,
            )

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

    # ------------------------------------------------------------ deferred indexes

    async def defer_indexes(self, conn: asyncpg.Connection) -> None:
        """Before an initial sync (nothing indexed yet): drop the readers' secondary indexes."""
        assert self.cursor is not None
        if self.deferred or not self.o.defer_indexes or self.cursor.number >= self.s.deployment.deploy_block:
            return
        others = await maintenance.other_chains(conn, self.chain_id)
        if others:
            log.info("indexes_kept", reason="other chains share this database", chains=others)
            return
        self.deferred = await maintenance.defer_indexes(conn, self.chain_id)
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
                self.status.last_progress = time.monotonic()
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
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(second.close(), 5)

    # ------------------------------------------------------------ backfill

    def _range_split(self, kind: str = "split", **fields: Any) -> None:
        """What a provider's answers needed (fetch.RangeFetcher's on_split): logged and counted."""
        self.m.answer_repaired(kind, int(fields.get("duplicates", 1)))
        if kind == "split":
            log.info("getlogs_range_reduced", **fields)
        elif kind == "duplicates":
            log.warning("getlogs_duplicates_dropped", **fields)
        else:
            log.warning("getlogs_missed_logs_recovered", **fields)

    async def _ranges(self, start: int, target: int) -> AsyncIterator[Prepared]:
        """Fetches ranges start..target with up to `concurrency` in flight, yielding them in order."""
        pending: deque[asyncio.Task[Prepared]] = deque()
        nxt = start
        # One range until a response has sized the span: a first span that is far too large (a dense
        # chain, a node with no result cap) would otherwise arrive `concurrency` times at once.
        width = 1
        try:
            while True:
                while len(pending) < width and nxt <= target:
                    r = range(nxt, min(target, nxt + self.span - 1) + 1)
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
        """Ranges committed in order, pipelined: while batch N is written on `conn`, batch N+1's
        snapshot is read on a second connection and folded (see _prefetch)."""
        assert self.cursor is not None
        started = time.perf_counter()
        first = self.cursor.number
        events = 0
        waited = 0.0  # time spent waiting for the next fetched range (when the fetch side is the bottleneck)
        t_wait = started
        reader = await connect(self.s, "reader")
        writing: asyncio.Task[None] | None = None
        written: write.Batch | None = None  # the batch `writing` commits
        self._progress_open(first, target)
        try:
            async for got in self._ranges(self.cursor.number + 1, target):
                end = written.end if written is not None else self.cursor
                a = got.blocks.start
                if a != end.number + 1:
                    raise ChainMismatch("range does not continue the checkpoint")
                if got.headers[a].parent_hash != end.hash:
                    raise ChainMismatch(f"block {a} does not link to the checkpoint block {end.number}")
                t0 = time.perf_counter()
                waited += t0 - t_wait
                self.m.fetch_wait(t0 - t_wait)
                last = got.headers[got.blocks.stop - 1]
                # wholly at or below finality: nothing is journaled, so positions can be folded blind
                keys = F.keys_of(got.events, blind=last.number <= self.heads.finalized)
                snap, upserts = await self._prefetch(reader, keys, written)
                batch = self._build(end, a, last, got.events, got.headers, got.raw, snap, upserts)
                if writing is not None:
                    await writing
                    await self.analyze_grown(conn)
                writing = asyncio.create_task(self._write(conn, batch))
                written = batch
                n = len(got.events)
                events += n
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
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.close(), 5)
            self._progress_close()
        elapsed = time.perf_counter() - started
        assert self.cursor is not None
        log.info(
            "backfill_done",
            from_block=first + 1,
            to_block=self.cursor.number,
            events=events,
            seconds=round(elapsed, 3),
            events_per_second=round(events / elapsed) if elapsed else None,
            fetch_wait_seconds=round(waited, 3),
        )

    # ------------------------------------------------------------ tip

    async def tip(self, conn: asyncpg.Connection, target: int) -> None:
        """Block by block up to target: parent check, bloom, logs by hash."""
        assert self.cursor is not None
        while self.cursor.number < target:
            n = self.cursor.number + 1
            header = self.watcher.take(n) if self.watcher else None
            if header is None or header.parent_hash != self.cursor.hash:
                header = await self.rpc.header(n)
            if header is None:
                return  # the node (or the one we failed over to) does not have it yet: not a reorg
            if header.parent_hash != self.cursor.hash:
                if not await self.check_reorg(conn, reason="parent_mismatch"):
                    raise TransientRpcError(
                        f"block {n} parent differs from our block {n - 1} but the node agrees "
                        "with our stored hashes: inconsistent node, retrying"
                    )
                continue
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
        the node does not report: logged and counted only (a node dropping them is the likelier cause).
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
        node = await rescan.node_identities(self.rpc, a, b, self.addresses, width)
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
            repair=bool(diff.missing and self.o.rescan_repair),
        )
        if not diff.missing or not self.o.rescan_repair:
            self.rescan_next = b + 1
            return True
        await maintenance.reset_chain(conn, self.chain_id)
        log.warning("reindex_started", reason="rescan_mismatch", from_block=self.s.deployment.deploy_block)
        self.rescan_next = self.s.deployment.deploy_block
        self.last_finalized_announced = -1
        await self.start(conn)
        return True

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

    # ------------------------------------------------------------ one iteration

    async def step(self, conn: asyncpg.Connection, stop: asyncio.Event) -> bool:
        """Does one unit of work; returns False when at the head (nothing to do)."""
        assert self.cursor is not None
        heads = self.heads_from_watcher() or await self.refresh_heads()
        target = heads.head - max(0, self.s.chain.confirmations - 1)
        if self.deferred and target - self.cursor.number <= self.o.tip_blocks:
            await self.restore_indexes(conn, stop)  # the initial sync is over
        if target < self.cursor.number:
            # Our checkpoint is above the node's head: a lagging node, or a reorg to a shorter chain.
            if await self.check_reorg(conn, reason="head_below_checkpoint"):
                return True
            self.status.last_progress = time.monotonic()
            return await self.rescan(conn)  # idle as well (a load balancer's lagging backend answered)
        if target == self.cursor.number:
            await checkpoint.set_heads(conn, self.chain_id, heads)  # idle: keep indexer_status fresh
            await self.prune_outbox(conn)
            if await self.rescan(conn):
                return True  # a pass done (more may be due), or repaired: the chain is indexed again
            if heads.head == target and self.head_hash and self.head_hash != self.cursor.hash:
                # Same height, another hash: a reorg that did not (yet) make the chain longer.
                return await self.check_reorg(conn, reason="head_hash_changed")
            self.status.last_progress = time.monotonic()
            return False
        try:
            if target - self.cursor.number > self.o.tip_blocks:
                await self.defer_indexes(conn)
                await self.backfill(conn, target, stop)
            else:
                await self.tip(conn, target)
        except ChainMismatch as exc:
            log.info("chain_changed_while_fetching", error=str(exc))
            self.gap = await outbox_gap.load(conn, self.chain_id)  # batches built but not written
            self.gap_writes.clear()
            await self.check_reorg(conn, reason="fetch_mismatch")
        return True


# ---------------------------------------------------------------- process wiring


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(attempts=settings.options.retries, seconds=settings.options.retry_seconds)


def answered(metrics: Metrics, status: Status) -> Callable[[str, float, str], None]:
    """The RPC observer: metrics, and the time of the last good answer (the watchdog's "degraded")."""

    def observe(method: str, seconds: float, outcome: str) -> None:
        metrics.rpc(method, seconds, outcome)
        if outcome == "ok":
            status.last_answer = time.monotonic()

    return observe


async def _wait(stop: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    if wake is not None:
        wake.clear()


async def connect(settings: Settings, role: str = "") -> asyncpg.Connection:
    """A connection of this chain's indexer (the writer's, or another `role` beside it)."""
    name = f"gl-indexer-{settings.chain.chain_id}" + (f"-{role}" if role else "")
    return await asyncpg.connect(
        settings.database.dsn,
        timeout=10,
        # short key lookups and COPYs: compiling costs more than it saves
        server_settings={"application_name": name, "jit": "off"},
    )


async def migrate(settings: Settings) -> list[str]:
    """Applies pending sql/ migrations (under their advisory lock); returns the names applied."""
    conn = await connect(settings, "migrate")
    try:
        applied = await apply_migrations(conn)
    finally:
        await conn.close()
    log.info("migrations_applied", applied=applied)
    return applied


async def acquire_writer(settings: Settings, stop: asyncio.Event, status: Status) -> asyncpg.Connection | None:
    """Connects and takes the chain's writer lock, standing by until it is free (None if stopped)."""
    key = checkpoint.WRITER_LOCK_BASE + settings.chain.chain_id
    announced = False
    while not stop.is_set():
        conn = await connect(settings)
        try:
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                status.role = "writer"
                log.info("writer_lock_acquired", chain_id=settings.chain.chain_id)
                return conn
        except BaseException:
            await conn.close()
            raise
        await conn.close()
        if not announced:
            status.role = "standby"
            log.info("standby_waiting", chain_id=settings.chain.chain_id)
            announced = True
        await _wait(stop, settings.options.standby_poll)
    return None


async def run(
    settings: Settings,
    stop: asyncio.Event,
    metrics: Metrics | None = None,
    status: Status | None = None,
    until_head: bool = False,
    publish: Callable[[int], None] | None = None,
    migrate_first: bool = False,
    child: Child | None = None,
    rescan: bool | None = None,
) -> int:
    """Runs until `stop` is set (or, with until_head, until caught up with the head); returns an exit code.

    The fetch process starts first (or is `child`, started by `python -m indexer` before its
    imports): its interpreter and imports (~0.6 s) overlap the writer's own, the migrations and the
    wait for the writer lock (a hot standby thus keeps a warm one, ready when it takes over).

    `rescan`: run the background re-scan of finalized blocks (default: not with until_head, whose
    backfill has just read them; with until_head and rescan, the run ends once every finalized block
    is re-scanned too)."""
    metrics = metrics or Metrics(settings.chain.chain_id)
    status = status or Status()
    failures = 0
    max_logs = settings.options.max_response_mb << 20
    observe = answered(metrics, status)
    async with Rpc(
        settings.chain.rpc_urls, settings.options.request_timeout, observe, max_logs, retry_policy(settings)
    ) as rpc:
        indexer = Indexer(settings, rpc, metrics, status, publish, early_child=child)
        indexer.rescan_enabled = (not until_head) if rescan is None else rescan
        watcher_task: asyncio.Task[None] | None = None
        if settings.options.use_websocket and settings.chain.ws_url and not until_head:
            indexer.watcher = HeadWatcher(settings.chain.ws_url)
            watcher_task = asyncio.create_task(indexer.watcher.run(stop))
        try:
            if isinstance(indexer.fetcher, FetchProcess):
                indexer.fetcher.warm()
            if migrate_first:
                await migrate(settings)
            while not stop.is_set():
                conn: asyncpg.Connection | None = None
                try:
                    conn = await acquire_writer(settings, stop, status)
                    if conn is None:
                        break
                    await indexer.start(conn)
                    while not stop.is_set():
                        busy = await indexer.step(conn, stop)
                        failures = 0
                        if not busy:
                            if until_head:
                                return EXIT_OK
                            await _wait(
                                stop, settings.options.poll_interval, indexer.watcher.event if indexer.watcher else None
                            )
                except ReorgTooDeep as exc:
                    log.error("reorg_too_deep", error=str(exc), block_number=exc.block_number)
                    return EXIT_REORG_TOO_DEEP
                except StartupCheckFailed as exc:
                    log.error("startup_check_failed", error=str(exc))
                    return EXIT_CONFIG
                except (DecodeError, FatalRpcError) as exc:
                    log.error("indexer_failed", error=f"{type(exc).__name__}: {exc}")
                    return EXIT_ERROR
                except (RpcError, checkpoint.StaleCursor, ChainMismatch, *DB_ERRORS) as exc:
                    failures += 1
                    metrics.failure()
                    log.warning("iteration_failed", error=f"{type(exc).__name__}: {exc}"[:300], failures=failures)
                    if failures >= settings.options.max_failures:
                        log.error("too_many_failures", failures=failures)
                        return EXIT_ERROR
                    await _wait(stop, min(10.0, 0.2 * 2 ** min(failures, 6)))
                finally:
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(conn.close(), 5)
                    status.role = "starting"
        finally:
            if watcher_task is not None:
                watcher_task.cancel()
                with contextlib.suppress(BaseException):
                    await watcher_task
            if isinstance(indexer.fetcher, FetchProcess):
                await indexer.fetcher.close()
    return EXIT_OK


async def watchdog(
    settings: Settings, status: Status, stop: asyncio.Event, stalled: list[bool], metrics: Metrics | None = None
) -> None:
    """Chain head moving while the checkpoint does not, for stall_seconds: "degraded" while the
    providers still answer (retries are working through a bad provider: logged, indexer_degraded = 1),
    "stuck" when they do not either, or after four times stall_seconds degraded → stop with EXIT_STALLED."""
    limit = settings.options.stall_seconds
    while not stop.is_set():
        await _wait(stop, min(5.0, limit / 4))
        if status.role != "writer":
            continue
        now = time.monotonic()
        behind = status.head > status.indexed >= 0
        idle = now - status.last_progress
        if not (behind and idle > limit and status.head_moved > status.last_progress):
            if status.degraded:
                status.degraded = False
                if metrics is not None:
                    metrics.degraded.set(0)
                log.info("indexer_recovered", head=status.head, indexed=status.indexed)
            continue
        if now - status.last_answer <= limit and idle <= 4 * limit:
            if not status.degraded:
                status.degraded = True
                if metrics is not None:
                    metrics.degraded.set(1)
                log.warning(
                    "indexer_degraded",
                    seconds=round(idle),
                    head=status.head,
                    indexed=status.indexed,
                    last_answer_seconds_ago=round(now - status.last_answer, 1),
                )
            continue
        log.error(
            "indexer_stalled",
            seconds=round(idle),
            head=status.head,
            indexed=status.indexed,
            last_answer_seconds_ago=round(now - status.last_answer, 1),
        )
        stalled.append(True)
        stop.set()
        return
