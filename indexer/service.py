"""The indexer process: writer lock, startup verification, backfill pipeline, tip, reorgs, watchdog.

    run(settings, stop) -> exit code

Order of work per iteration: refresh the node's head/safe/finalized → if far behind, backfill
ranges (several eth_getLogs in flight, committed strictly in order, one transaction each) → near
the tip, block by block by hash, each header checked against the stored parent hash. Any
disagreement walks back to the common ancestor (chain.find_ancestor) and rolls back in one
transaction (reorg.rollback) before continuing.

Exit codes: 0 clean stop · 1 unexpected error or too many consecutive failures ·
2 configuration error · 3 ReorgTooDeep · 4 stall watchdog.

Error handling: each RPC call is retried alone inside core/rpc.py (backoff, jitter, Retry-After,
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
import time
from collections.abc import Callable

import asyncpg
import structlog

from core.config import ConfigError
from core.pgerrors import DB_CONFIG, DB_UNREACHABLE, PG_UNAVAILABLE, db_config_error, db_unreachable
from core.rpc import RetryPolicy, WrongChain
from core.schema import schema_problem
from indexer import checkpoint, maintenance, outbox_gap
from indexer.chain import ChainMismatch, ReorgTooDeep
from indexer.decode import DecodeError
from indexer.fetch import FetchProcess
from indexer.live import HeadWatcher
from indexer.metrics import Metrics
from indexer.migrate import LockWaitStopped, apply_migrations
from indexer.newkeys import NewKeys
from indexer.pipeline import Status as Status
from indexer.pipeline import answered, close_quietly, connect, retry_policy
from indexer.rows import DERIVED
from indexer.rpc import FatalRpcError, Rpc, RpcError, TransientRpcError
from indexer.settings import Settings
from indexer.spawn import Child
from indexer.upkeep import Upkeep

log = structlog.get_logger("indexer")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_REORG_TOO_DEEP, EXIT_STALLED = 0, 1, 2, 3, 4
OLD_STATE_RETRY = RetryPolicy(attempts=3, seconds=10.0)  # the start-up's read of code before deploy_block


class DatabaseUnreachable(Exception):
    """PostgreSQL could not be reached at start (migrate, reset, the run's first migration)."""


async def connect_at_start(settings: Settings, role: str) -> asyncpg.Connection:
    """connect(), with a database that cannot be reached as DatabaseUnreachable (one line, no traceback)."""
    try:
        return await connect(settings, role)
    except DB_CONFIG as exc:
        raise ConfigError(db_config_error(exc)) from None
    except DB_UNREACHABLE as exc:
        raise DatabaseUnreachable(db_unreachable(exc)) from None


class StartupCheckFailed(ConfigError):
    """The node or the deployment does not match the configuration (the message names the key)."""


DB_ERRORS: tuple[type[Exception], ...] = (
    *PG_UNAVAILABLE,  # core/pgerrors.py: the connection gone (mid-protocol too), a restart, a deadlock, …
    asyncpg.exceptions.LockNotAvailableError,  # a lock_timeout set for the role
)
# What fails one iteration (retried with back-off, max_failures in a row end the run).
ITERATION_ERRORS: tuple[type[Exception], ...] = (
    RpcError,
    checkpoint.StaleCursor,
    ChainMismatch,
    DecodeError,
    *DB_ERRORS,
)


class Indexer(Upkeep):
    # ------------------------------------------------------------ startup

    async def check_node(self) -> None:
        """The start-up checks the docs promise; StartupCheckFailed names the key to fix."""
        dep = self.s.deployment
        todo = [i for i in range(self.rpc.providers) if i not in self.checked]
        try:  # a node down now is skipped: the others carry the load; checked at the next start
            matched, _down = await self.rpc.check_chain_ids(self.chain_id, todo)
        except WrongChain as exc:
            raise StartupCheckFailed(str(exc)) from None
        self.checked |= matched
        await self.rpc.learn_seals()
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
                    # old state: a pruned node refuses it the same way every time, so a few tries, not the
                    # client's whole budget (with backoff growing on each refusal, 10 took ~25 s per contract)
                    before = await self.rpc.code(address, dep.deploy_block - 1, retry=OLD_STATE_RETRY)
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
        differences = await checkpoint.ensure_contracts(
            conn,
            self.chain_id,
            [
                ("OpinionMarket", self.address_bytes[0], dep.deploy_block),
                ("CreatorShares", self.address_bytes[1], dep.deploy_block),
            ],
        )
        if differences:
            raise StartupCheckFailed(
                f"chain.deployment ({self.s.chain.deployment or f'deployments/{self.chain_id}.json'}): this database"
                f" indexes chain {self.chain_id} for"
                f" other contracts: {'; '.join(differences)}. Run `python -m indexer reset --config FILE` to index"
                " this deployment from scratch, or point [database].dsn at another database"
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
        # finality is never lowered, across a restart too: a node lagging on its tag now must not make
        # idx.chain_heads say blocks announced final are not (review s21 hr)
        self.heads = checkpoint.Heads(self.heads.head, self.heads.safe, max(self.heads.finalized, self.floor))
        self.status.indexed = self.cursor.number
        self.gap = await outbox_gap.load(conn, self.chain_id)
        self.gap_writes.clear()
        self.deferred = await maintenance.deferred_indexes(conn)
        self.m.deferred_indexes.set(len(self.deferred))
        self.new_keys = await NewKeys.for_empty_tables(conn, self.chain_id)  # under the writer lock
        await self.refresh_heads()
        await self.refresh_heads()  # the second read confirms the first's finality (refresh_heads)
        # A reorg that happened while we were down: compare every stored unfinalized hash.
        await self.check_reorg(conn, reason="startup")
        log.info(
            "indexer_started",
            chain_id=self.chain_id,
            cursor=self.cursor.number,
            head=self.heads.head,
            finalized=self.heads.finalized,
        )

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
            self.status.last_progress = self.status.last_commit = time.monotonic()
            return await self.rescan(conn)  # idle as well (a load balancer's lagging backend answered)
        if target == self.cursor.number:
            await checkpoint.set_heads(conn, self.chain_id, heads)  # idle: keep indexer_status fresh
            await self.prune_outbox(conn)
            if await self.rescan(conn):
                return True  # a pass done (more may be due), or repaired: the chain is indexed again
            if heads.head == target and self.head_hash and self.head_hash != self.cursor.hash:
                # Same height, another hash: a reorg that did not (yet) make the chain longer.
                return await self.check_reorg(conn, reason="head_hash_changed")
            self.status.last_progress = self.status.last_commit = time.monotonic()
            return False
        try:
            if target - self.cursor.number > self.o.tip_blocks:
                await self.defer_indexes(conn)
                await self.backfill(conn, target, stop)
            elif not await self.tip(conn, target):
                self.mismatches = 0
                self.waiting_for_block = True
                return False  # the block the head read announced is not served yet: wait, then ask again
            self.mismatches = 0
        except ChainMismatch as exc:
            log.info("chain_changed_while_fetching", error=str(exc))
            self.gap = await outbox_gap.load(conn, self.chain_id)  # batches built but not written
            self.gap_writes.clear()
            if await self.check_reorg(conn, reason="fetch_mismatch"):
                self.mismatches = 0
            else:  # no reorg behind it: nodes disagreeing, again and again — back off like any failure
                self.mismatches += 1
                await _wait(stop, min(10.0, 0.2 * 2 ** min(self.mismatches, 6)))
        return True


# ---------------------------------------------------------------- process wiring


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


async def migrate(settings: Settings, stop: asyncio.Event | None = None) -> list[str]:
    """Applies pending sql/ migrations (under their advisory lock); returns the names applied.
    LockWaitStopped: `stop` was set while the lock was waited for."""
    conn = await connect_at_start(settings, "migrate")
    try:
        applied = await apply_migrations(conn, stop=stop)
        problem = await schema_problem(conn)  # a database a newer build migrated: nothing to apply, refused
    finally:
        await conn.close()
    log.info("migrations_applied", applied=applied)
    if problem:
        raise StartupCheckFailed(problem)
    return applied


async def check_schema(settings: Settings) -> None:
    """The database holds exactly this build's migrations (`--no-migrate`), else StartupCheckFailed."""
    conn = await connect_at_start(settings, "schema")
    try:
        problem = await schema_problem(conn)
    finally:
        await conn.close()
    if problem:
        raise StartupCheckFailed(problem)


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
                try:
                    await migrate(settings, stop)
                except LockWaitStopped:
                    log.info("stopped_before_migrating", note="the migration lock was held elsewhere; nothing applied")
                    return EXIT_OK
            else:
                await check_schema(settings)
            while not stop.is_set():
                conn: asyncpg.Connection | None = None
                try:
                    conn = await acquire_writer(settings, stop, status)
                    if conn is None:
                        break
                    await indexer.start(conn)
                    while not stop.is_set():
                        indexer.waiting_for_block = False
                        busy = await indexer.step(conn, stop)
                        failures = 0
                        if not busy:
                            # idle at the head; waiting for a block the node announced is not (review h10:
                            # --exit-at-head exited 0 below the head)
                            if until_head and not indexer.waiting_for_block:
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
                except FatalRpcError as exc:
                    log.error("indexer_failed", error=f"{type(exc).__name__}: {exc}")
                    return EXIT_ERROR
                except ITERATION_ERRORS as exc:
                    # A log abi/ cannot decode is a corrupt answer as often as contracts that differ
                    # from abi/: asked again, never fatal by itself; if it persists, max_failures ends
                    # the run with it in the log (decode_failed, at error level).
                    failures += 1
                    metrics.failure()
                    text = f"{type(exc).__name__}: {exc}"[:300]
                    if isinstance(exc, DecodeError):
                        log.error("decode_failed", error=text, failures=failures)
                    else:
                        log.warning("iteration_failed", error=text, failures=failures)
                    if failures >= settings.options.max_failures:
                        log.error("too_many_failures", failures=failures)
                        return EXIT_ERROR
                    await _wait(stop, min(10.0, 0.2 * 2 ** min(failures, 6)))
                finally:
                    if conn is not None:
                        await close_quietly(conn)
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
    providers still answer or ranges are still being fetched (retries are working through a bad or
    slow provider: logged, indexer_degraded = 1), "stuck" when neither, or when the checkpoint has not
    moved for four times stall_seconds whatever was fetched → stop with EXIT_STALLED."""
    limit = settings.options.stall_seconds
    while not stop.is_set():
        await _wait(stop, min(5.0, limit / 4))
        if status.role != "writer":
            continue
        now = time.monotonic()
        behind = status.head > status.indexed >= 0
        idle = now - status.last_commit
        if not (behind and idle > limit and status.head_moved > status.last_commit):
            if status.degraded:
                status.degraded = False
                if metrics is not None:
                    metrics.degraded.set(0)
                log.info("indexer_recovered", head=status.head, indexed=status.indexed)
            continue
        moving = now - status.last_answer <= limit or now - status.last_progress <= limit
        if moving and idle <= 4 * limit:
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
