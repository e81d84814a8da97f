"""The indexer's state and the steps every stage shares: the node's heads, a batch built (fold) and
written (write) in one transaction, and the bookkeeping once it commits.

    Pipeline ← Tip (tip.py: block by block, reorgs) ← Backfill (backfill.py: ranges, pipelined)
             ← Upkeep (upkeep.py: indexes, outbox retention, re-scan) ← Indexer (service.py: start, step)

Each stage is a class adding its methods to the one before; the state lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from indexer import checkpoint, outbox_gap, read, write
from indexer import fold as F
from indexer.chain import BlockRef, Cursor, SpanPolicy, finalized_block, next_finality
from indexer.decode import EventDecoder, Log
from indexer.fetch import ChildConfig, FetchProcess, RangeFetcher
from indexer.live import HeadWatcher
from indexer.metrics import Metrics
from indexer.newkeys import NewKeys
from indexer.rows import DERIVED
from indexer.rpc import RetryPolicy, Rpc, RpcError
from indexer.settings import Settings
from indexer.spawn import Child, discard

if TYPE_CHECKING:
    from indexer.batch_writer import BatchWriter

log = structlog.get_logger("indexer")

GapChange = tuple[outbox_gap.Gap | None, outbox_gap.Gap | None]  # (still open, closed) as a batch leaves it
# The safe/finalized tags of a head read: asked once (a node without them answers at once). A failed tag
# falls back to head - finality_depth only on a node that has never answered it; otherwise that read
# leaves finality where it is.
TAGS_RETRY = RetryPolicy(attempts=1, seconds=2.0)
TAGS_GIVE_UP = 3  # head reads in a row where both tags failed: not asked for TAGS_REPROBE_S
TAGS_REPROBE_S = 300.0
OUTBOX_HEAD_SLACK = 16  # blocks: how far behind the head a load-balanced node's backend may lag
# A head read: `latest` (required) and the two tags, in one request
HEAD_READ = (
    ("eth_getBlockByNumber", ["latest", False]),
    ("eth_getBlockByNumber", ["safe", False]),
    ("eth_getBlockByNumber", ["finalized", False]),
)
HEAD_READ_REQUIRED = (True, False, False)


@dataclasses.dataclass(slots=True)
class Status:
    """What /ready, the watchdog and the progress display read (updated by the loop only)."""

    head: int = 0
    safe: int | None = None
    finalized: int = 0
    indexed: int = -1
    last_progress: float = dataclasses.field(default_factory=time.monotonic)  # a commit, or a range fetched
    last_commit: float = dataclasses.field(default_factory=time.monotonic)  # the checkpoint passing its best
    head_moved: float = dataclasses.field(default_factory=time.monotonic)
    last_answer: float = dataclasses.field(default_factory=time.monotonic)  # a provider's last good answer
    degraded: bool = False
    role: str = "starting"  # starting | standby | writer
    events: int = 0
    best: int = -1  # the highest checkpoint committed: progress is passing it
    fetched_best: int = -1  # the highest block of a range the providers answered (fetch.RangeFetcher)

    def committed(self, number: int) -> None:
        """The checkpoint is now `number`. Progress (the watchdog's, /ready's) only when it passes the
        highest it reached: blocks committed again after a rollback are not, so a commit/rollback
        cycle cannot keep the stall watchdog quiet for ever."""
        self.indexed = number
        if number > self.best:
            self.best = number
            self.last_progress = self.last_commit = time.monotonic()

    def fetched(self, number: int) -> None:
        """A range up to `number` answered. Progress when it passes the highest answered before: a long
        job through a slow, capped provider (hundreds of ranges before one commit) is moving, not stuck
        (review h2: exit 4 with answers arriving). Only commits count for the watchdog's hard bound
        (last_commit): a job that fails at its end and fetches up to a rising head again is not moving
        (review h4)."""
        if number > self.fetched_best:
            self.fetched_best = number
            self.last_progress = time.monotonic()


class Pipeline:
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
                self.o.log_level,
            )
            self.fetcher = FetchProcess(
                cfg, answered(metrics, status), self._range_split, metrics.fetch_process_started, early=early_child
            )
        else:
            discard(early_child)
            self.fetcher = RangeFetcher(rpc, self.chain_id, self.addresses, self.policy, self._range_split)
        self.heads = checkpoint.Heads(0, None, 0)
        self.mismatches = 0  # ChainMismatch in a row with no reorg found (backed off)
        self.finality_read: int | None = None  # finality the previous head read implied (start reads twice)
        self.cursor: Cursor | None = None
        self.floor = 0
        self.watcher: HeadWatcher | None = None
        self.progress: Any = None
        self.last_finalized_announced = -1
        self.head_hash = b""
        self.heads_read_at = 0.0
        # The head the feed's window (outbox_max_lag) is measured from: a head read only once the node
        # serves that block, when it would leave blocks we have not indexed without messages (review h9)
        self.outbox_head = 0
        self.waiting_for_block = False  # the last step stopped at a block the node does not serve yet
        self.tags_failed = 0  # head reads in a row whose safe and finalized tags both failed
        self.tags_off_until = 0.0  # monotonic time before which the tags are not asked (the node lacks them)
        self.tags_seen = False  # the node has answered the `finalized` tag
        # Rows inserted into each derived table since we last ran ANALYZE on it, and its size then.
        self.inserted = dict.fromkeys(DERIVED, 0)
        self.analyzed = dict.fromkeys(DERIVED, 0)
        self.deferred: list[str] = []  # secondary indexes dropped for the initial sync (maintenance.defer_indexes)
        self.indexes_kept = False  # readers held a table when they were to be dropped: indexed with them
        self.new_keys = NewKeys()  # keys certainly not stored (service.start tracks tables empty at start)
        self.next_prune = 0.0  # monotonic time of the next outbox retention pass
        self.gap: outbox_gap.Gap | None = None  # a stretch indexed without outbox messages, still open
        self.gap_writes: dict[int, GapChange] = {}  # by batch end
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
        self.outbox_head = max(self.outbox_head, h.number)  # announced and linked to our cursor: it exists
        self.heads = checkpoint.Heads(h.number, self.heads.safe, self.heads.finalized)
        self.status.head = h.number
        self.m.set_heads(h.number, self.heads.safe, self.heads.finalized, self.status.indexed)
        return self.heads

    async def _read_tags(self) -> tuple[BlockRef, int | None, int | None]:
        """`latest`, `safe` and `finalized` in one request. The tags are asked once (TAGS_RETRY):
        a node without them (geth before the merge, several L2 and sidechain nodes: "finalized block
        not found") falls back to head - finality_depth at once; with the client's policy every head
        read spent 5-9 s retrying them (review h9). After TAGS_GIVE_UP reads in a row that answered
        `latest` but neither tag, they are not asked for TAGS_REPROBE_S. `latest`, if it failed, is read
        again with the client's policy. A tag that failed or answered null is None."""
        latest, safe, fin = await self.rpc.batch_settled(
            HEAD_READ,
            HEAD_READ_REQUIRED,
            parse=self.rpc.parse_header,  # a malformed block object fails its element alone, asked again
            retry=TAGS_RETRY,
        )
        if isinstance(latest, RpcError):
            # The request failed as a whole (a 502, a 429): it says nothing about the tags, so all three
            # are asked again with the client's policy. Re-reading `latest` alone fell back to head -
            # finality_depth, and two such reads finalized blocks above the node's tag (review h10).
            latest, safe, fin = await self.rpc.batch_settled(HEAD_READ, HEAD_READ_REQUIRED, parse=self.rpc.parse_header)
            if isinstance(latest, RpcError):
                raise latest
        elif isinstance(safe, RpcError) and isinstance(fin, RpcError):  # answered, without the tags
            self.tags_failed += 1
            if self.tags_failed >= TAGS_GIVE_UP:
                self.tags_off_until = time.monotonic() + TAGS_REPROBE_S
                log.warning(
                    "finality_tags_unanswered",
                    reads=self.tags_failed,
                    error=str(fin)[:200],
                    note=("finality stays where it is" if self.tags_seen else "finality is head - finality_depth")
                    + f"; the tags are asked again in {TAGS_REPROBE_S:.0f} s",
                )
                self.tags_failed = 0
        else:
            self.tags_failed = 0
        # a `safe` above the head read with it is not the node's (review s21 hp): clamped like `finalized`
        safe_n = None if isinstance(safe, RpcError) or safe is None else min(safe.number, latest.number)
        fin_n = None if isinstance(fin, RpcError) or fin is None else fin.number
        if fin_n is not None:
            self.tags_seen = True
        return latest, safe_n, fin_n

    async def refresh_heads(self) -> checkpoint.Heads:
        if self.o.finality == "tag" and time.monotonic() >= self.tags_off_until:
            latest, safe_n, fin_n = await self._read_tags()
            head, self.head_hash = latest.number, latest.hash
        else:
            h = await self.rpc.call(
                "eth_getBlockByNumber", ["latest", False], require=True, parse=self.rpc.parse_header
            )
            head, safe_n, fin_n = h.number, None, None
            self.head_hash = h.hash
        self.heads_read_at = time.monotonic()  # after the read: a slow read does not age announcements
        if fin_n is None and self.tags_seen:
            # A node that has answered `finalized` before did not in this read (an error, null, or the tags
            # switched off after TAGS_GIVE_UP such reads): this read says nothing about finality, which
            # stays where it is (head - finality_depth may be above the node's tag: an L2's is ~500 behind;
            # review h10, and review s19 h4 for null and switched-off tags)
            read = self.heads.finalized
        else:
            read = finalized_block(head, fin_n, self.s.chain.finality_depth)
        if head > self.status.head:
            self.status.head_moved = time.monotonic()
        # One answer never moves finality: the lower of this read and the one before. Finality is kept
        # for good (undo data below it is never written, the floor is stored), so a single `latest`
        # or `finalized` far ahead (a backend of another network, a proxy's glitch) would otherwise
        # turn the next ordinary reorg into ReorgTooDeep at every start.
        # A lagging node (head going backwards) is not a reorg: keep the highest finality seen.
        before, self.finality_read = self.finality_read, read
        finalized = next_finality(self.heads.finalized, before, read)
        if finalized > max(self.heads.finalized, self.status.indexed):
            # Above every block we hold: the node must serve that block by number first. Two reads of a
            # `latest` no node had (a backend 1000 blocks ahead, twice at start) finalized the whole
            # index, and the next ordinary reorg was ReorgTooDeep, exit 3 (review h2). At the tip the
            # cursor is above finality and this costs nothing; in a backfill one header per head read.
            if await self.rpc.header(finalized) is None:
                log.warning(
                    "finality_unconfirmed",
                    claimed=finalized,
                    kept=self.heads.finalized,
                    note="the node does not have the block its head read implies is final: not taken",
                )
                finalized = self.heads.finalized
        await self._outbox_head(head)
        self.heads = checkpoint.Heads(head, safe_n, finalized)
        self.status.head, self.status.safe, self.status.finalized = head, safe_n, finalized
        self.m.set_heads(head, safe_n, finalized, self.status.indexed)
        return self.heads

    async def _outbox_head(self, head: int) -> None:
        """Moves the feed window's head. A head within outbox_max_lag of what we hold leaves every block
        still to index inside the window, so it is taken as read; one further up only once the node
        serves that block by number. One `latest` 1000 blocks ahead (a backend of another network, a
        proxy's glitch) otherwise wrote a chain:gap for live events and no message of their own (review
        h9; finality had the same guard since review h2). In a catch-up: one header per head read."""
        lag = self.o.outbox_max_lag
        if lag == 0 or head <= self.outbox_head:
            return
        if head - lag <= self.status.indexed or await self.rpc.header(head) is not None:
            self.outbox_head = head
            return
        # A load balancer's backend a few blocks behind the one that answered the head never serves
        # that block by number: a block OUTBOX_HEAD_SLACK lower stands in for it. Kept at 0 by such a
        # node, the window covered a whole catch-up with per-event messages (review h10).
        lower = head - OUTBOX_HEAD_SLACK
        if lower > self.outbox_head and await self.rpc.header(lower) is not None:
            self.outbox_head = lower
            return
        log.warning(
            "outbox_head_unconfirmed",
            claimed=head,
            kept=self.outbox_head,
            note="the node serves neither the block its head read claims nor one a little lower: the feed"
            " window stays where it was",
        )

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
            snap = await read.load_snapshot(conn, self.chain_id, self.stored_keys(F.keys_of(events)))
            batch = self._build(self.cursor, first, last, events, headers, None, snap, frozenset())
            seq = await write.write_batch(conn, self.chain_id, batch)
            await self._write_gap(conn, batch)
        self._finish(batch, seq)
        return len(events)

    def stored_keys(self, keys: F.Keys) -> F.Keys:
        """`keys` without the positions and holdings certainly not stored: nothing to read for them."""
        nk = self.new_keys
        if not (nk.tracks("positions") or nk.tracks("share_holdings")):
            return keys
        return dataclasses.replace(
            keys,
            positions=frozenset(k for k in keys.positions if not nk.absent("positions", k)),
            holdings=frozenset(k for k in keys.holdings if not nk.absent("share_holdings", k)),
        )

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
        lag = self.o.outbox_max_lag
        outbox_from = 0 if lag == 0 else min(self.heads.head, self.outbox_head) - lag
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
            # the finalized block too: a reorg just above it rolls back to it (review s21 hr: not stored
            # when empty mid-batch, such a reorg was ReorgTooDeep, exit 3)
            if first <= n <= last.number and (n >= self.heads.finalized or n in counts or n == last.number)
        ]
        extra: list[F.Message] = []
        near_tip = self.heads.head - last.number <= self.o.tip_blocks
        if near_tip and fin > self.last_finalized_announced >= 0:
            payload = {"chain_id": self.chain_id, "block_number": fin}
            extra.append(F.Message("chain:finalized", ("global:all",), None, None, None, payload))
        end = Cursor(last.number, last.hash)
        # Blind rows whose key is certainly not stored are whole rows (a delta from zero): COPYed like
        # any new row instead of added to by key. Then every key of this batch counts as stored.
        nk = self.new_keys
        deltas = frozenset(
            [
                *(("positions", k) for k in snap.blind if not nk.absent("positions", k)),
                *(("share_holdings", k) for k in snap.blind_holdings if not nk.absent("share_holdings", k)),
            ]
        )
        nk.mark("positions", changes.positions)
        nk.mark("share_holdings", changes.holdings)
        self.m.blind_copied(len(snap.blind) + len(snap.blind_holdings) - len(deltas))
        return write.Batch(
            start, end, events, changes, keep, counts, self.heads, extra, snap.locators, raw, upserts, deltas
        )

    async def _write_gap(self, conn: asyncpg.Connection, batch: write.Batch) -> None:
        """The open gap as this batch leaves it, in the batch's transaction (announced: _gap_written)."""
        change = self.gap_writes.pop(batch.end.number, None)
        await self._save_gap(conn, change)
        self._gap_written(change)

    async def _save_gap(self, conn: asyncpg.Connection, change: GapChange | None) -> None:
        if change is not None:
            await outbox_gap.save(conn, self.chain_id, change[0])

    def _gap_written(self, change: GapChange | None) -> None:
        closed = None if change is None else change[1]
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
        self.status.committed(batch.end.number)
        self.status.events += len(batch.events)
        self.m.committed(batch.end.number, len(batch.events))
        self._committed(seq)

    async def _write(self, conn: asyncpg.Connection, batch: write.Batch, via: BatchWriter | None = None) -> None:
        """Writes and commits `batch` on `conn`, or on `via`'s thread and connection (the backfill);
        the bookkeeping (_finish) runs here, on this loop, once it has committed."""
        started = time.perf_counter()
        gap = self.gap_writes.pop(batch.end.number, None)

        async def transaction(c: asyncpg.Connection) -> int | None:
            async with c.transaction():
                seq = await write.write_batch(c, self.chain_id, batch)
                await self._save_gap(c, gap)
            return seq

        seq = await (transaction(conn) if via is None else via.run(transaction))
        self._gap_written(gap)
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

    def _range_split(self, kind: str = "split", **fields: Any) -> None:
        """What a provider's answers needed (fetch.RangeFetcher's on_split): logged and counted; and each
        range answered (kind "fetched"), the watchdog's progress."""
        if kind == "fetched":  # not a repair: a range answered
            self.status.fetched(int(fields["to_block"]))
            return
        self.m.answer_repaired(kind, int(fields.get("duplicates", 1)))
        if kind == "split":
            log.info("getlogs_range_reduced", **fields)
        elif kind == "duplicates":
            log.warning("getlogs_duplicates_dropped", **fields)
        else:
            log.warning("getlogs_missed_logs_recovered", **fields)

    async def check_reorg(self, conn: asyncpg.Connection, reason: str) -> bool:
        raise NotImplementedError  # tip.py

    async def start(self, conn: asyncpg.Connection) -> None:
        raise NotImplementedError  # service.py


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(attempts=settings.options.retries, seconds=settings.options.retry_seconds)


def answered(metrics: Metrics, status: Status) -> Callable[[str, float, str], None]:
    """The RPC observer: metrics, and the time of the last good answer (the watchdog's "degraded")."""

    def observe(method: str, seconds: float, outcome: str) -> None:
        metrics.rpc(method, seconds, outcome)
        if outcome == "ok":
            status.last_answer = time.monotonic()

    return observe


async def connect(settings: Settings, role: str = "") -> asyncpg.Connection:
    """A connection of this chain's indexer (the writer's, or another `role` beside it)."""
    name = f"gl-indexer-{settings.chain.chain_id}" + (f"-{role}" if role else "")
    return await asyncpg.connect(
        settings.database.dsn,
        timeout=10,
        # short key lookups and COPYs: compiling costs more than it saves
        server_settings={"application_name": name, "jit": "off"},
    )


async def close_quietly(conn: asyncpg.Connection, seconds: float = 5.0) -> None:
    """Closes a connection on the way out: bounded, and its error (a dead server) is not the caller's."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.close(), seconds)
