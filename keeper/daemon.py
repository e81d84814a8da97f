"""The keeper daemon: APScheduler 3.x AsyncIOScheduler (max_instances=1, coalesce=True); every job
runs only on the leader (PostgreSQL advisory lock + fencing epoch); a standby polls for the lock.
`--once` runs the chosen jobs once, follows the transactions to confirmation and returns; `--dry-run`
decides and simulates, sends and records nothing. HTTP on keeper.http_port: /health (process
alive), /ready (database + node reachable, not halted), /metrics (Prometheus).

Failures: a job's items fail one by one (keeper/jobs.py marks the item failed, counts it in
`keeper_item_failures_total{job,stage}` and goes on). A job that fails as a whole is retried on its
next tick and never stops the process — unless the fault is systemic (`systemic_fault`: the
database or every RPC URL unreachable, the signer unusable) for `max_consecutive_failures` runs in a
row: then the daemon halts with exit 1 and its supervisor (scripts/run.py, ops/systemd) restarts it
with back-off.

One-off jobs asked while a daemon leads (`keeper run --once` finds the lock taken) arrive as rows in
keeper.job_requests; the leader runs them under its lock within leader_poll_s and records the outcome
(a database error mid-way is healed by its next poll).

A distribution missed while no leader ran, or whose run failed, is caught up by the leader (catch_up):
pending from taking the lock until a catch-up finds the period done, tried again each poll after a
database error and with back-off after a failed run.

Shutdown (SIGINT/SIGTERM): stop the scheduler → wait for the running job → release the lock →
close the pool and the RPC session. Pending transactions stay in the ledger and are followed
by the next leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import orjson
import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.config import ConfigError, listen_failed
from core.contracts import load_chain_deployment
from core.pgerrors import DB_CONFIG, DB_UNREACHABLE, db_config_error, db_unreachable
from core.rpc import WrongChain
from core.schema import schema_problem
from core.warm import warm
from keeper import KeeperError, Unreachable, decide, jobs, store
from keeper.aggregate import refresh_aggregates
from keeper.keys import KeyLoadError, TxSignError, load_signer
from keeper.leader import Leader
from keeper.metrics import Metrics
from keeper.notify import emit_ending_soon
from keeper.rpc import Rpc, RpcError
from keeper.settings import Settings, crontab_trigger
from keeper.store import FencedError
from keeper.tx import TxManager

log = structlog.get_logger("keeper")
# Consecutive systemic faults a job may see before the daemon halts, as a multiple of
# keeper.max_consecutive_failures. The tracker runs every few seconds, so it gets a proportionally
# larger budget (a node blip must not kill the keeper).
FAULT_BUDGET = {"track": 30}
JOB_NAMES = ("resolve", "finalize", "expire", "distribute", "aggregate", "warm", "notify", "track")
DEFAULT_ONCE_JOBS = ("resolve", "finalize", "expire", "distribute", "aggregate")
# The resolution steps, in the order a pass runs them (each on keeper.resolve_interval_s).
RESOLUTION_JOBS = ("resolve", "finalize", "expire")
LOOKBACK_DAYS = (2, 8, 32, 367)  # last_distribution_due: windows looked back, the nearest first
NODE_RECHECK_S = 60.0  # a node that was down at start is asked its chain id again this often
NOT_LEADER = 3  # main()'s return code when --once finds another keeper holding the lock
ONCE_WAIT_S = 120.0  # `run --once` follows its transactions this long, then exits 1 (they stay in the ledger)


# The database could not be reached or dropped the connection: asyncpg's connection errors, and the ones
# keeper.store.connection raises when no pooled connection can be had (a socket error, the acquire timeout).
DATABASE_GONE: tuple[type[BaseException], ...] = (
    store.DatabaseUnreachable,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
)
# Jobs whose failures say nothing about the keeper's own database, node or signer: never a systemic fault,
# never a reason for /ready to fail (warm only asks the API; its failures are logged and counted).
NEVER_SYSTEMIC = frozenset({"warm"})


DISTRIBUTE_RETRY_S = 60.0  # a failed distribution is tried again after this, doubling per failure ...
DISTRIBUTE_RETRY_MAX_S = 900.0  # ... up to this (the period's next firing takes over from there)


class DistributionDeferred(KeeperError):
    """A distribute run left due creators unsent because the node did not answer their reads or simulations
    (rate limit, timeout): the run fails — not a systemic fault — and the period is retried (Daemon.catch_up)."""

    def __init__(self, period: str, counts: dict[str, int]) -> None:
        super().__init__(
            f"distribution {period}: {counts.get('deferred', 0)} due creators not sent, the node did not answer"
            " (rate limit, timeout); the period is retried"
        )
        self.counts = counts


class JobTimeout(KeeperError):
    """A job run outlived keeper.job_timeout_s and was cancelled (a lock or a socket that never answers)."""


def systemic_fault(exc: BaseException) -> str | None:
    """The fault class of a job failure that no single item explains, or None for an ordinary failure.
    Only these can halt the daemon."""
    if isinstance(exc, JobTimeout):
        return "job_timeout"
    if isinstance(exc, RpcError) and exc.transient:
        return "rpc_unreachable"  # Rpc tried every URL (with retries) before raising this
    if isinstance(exc, KeyLoadError | TxSignError):
        return "signer_unusable"
    if isinstance(exc, DATABASE_GONE):
        # only the database's own connection errors: an OSError or TimeoutError from anywhere else (the API
        # the warm job asks, a file) is an ordinary failure — every OSError was this before review h6, and an
        # API that was down halted the keeper as a database fault
        return "database_unreachable"
    if isinstance(exc, asyncpg.exceptions.ReadOnlySQLTransactionError):
        return "database_read_only"  # a failover left [database].dsn on a standby: no item can be recorded
    return None


def leader_check_hint(exc: BaseException) -> str:
    """What an operator does about a failed leadership check (logged with it)."""
    if isinstance(exc, asyncpg.exceptions.ReadOnlySQLTransactionError):
        return (
            "the database refuses writes (a hot standby, or default_transaction_read_only): point"
            " [database].dsn at the primary; no keeper can lead until it accepts writes"
        )
    return "check that PostgreSQL runs and [database].dsn reaches it; the keeper retries every leader_poll_s"


class Daemon:
    def __init__(self, settings: Settings, dry_run: bool = False) -> None:
        self.settings = settings
        self.dry_run = dry_run or settings.keeper.dry_run
        # parsed once (settings checked it): the scheduler's trigger and the period of a run are one schedule
        self.distribute_trigger = crontab_trigger(settings.keeper.distribute_cron)
        self.metrics = Metrics()
        self.stop = asyncio.Event()
        self.halted: str | None = None
        self.failures: dict[str, int] = {}  # consecutive failed runs per job (any cause): /ready
        self.faults: dict[str, int] = {}  # consecutive systemic faults per job: the halt budget
        self.last_detail: dict[str, dict[str, Any]] = {}
        self._requests: asyncio.Task[int] | None = None
        self._serving = asyncio.Lock()  # one serve_requests pass at a time
        self._unrecorded: dict[int, tuple[str, dict[str, Any]]] = {}  # request id → outcome not written yet
        # loop time the next catch-up (Daemon.catch_up) is due; None = nothing to catch up. Set on taking the
        # lock and after a failed distribute run; cleared only by a catch-up that found the period done
        self._catch_up_at: float | None = None
        self._distribute_failures = 0  # distribute runs failed in a row: the retry's back-off
        self._replanned: set[int] = set()  # dropped distributions of the period already run again (catch_up)
        # the lease: PostgreSQL ends a silent leader's lock session after leader_lease_s; the Leader's own
        # heartbeat task keeps it alive meanwhile, including during the inline recovery in lead()
        self.leader = Leader(
            settings.database.dsn,
            settings.chain.chain_id,
            timeouts=settings.db_timeouts,
            lease_s=settings.keeper.leader_lease_s,
        )
        self._ready_checks: dict[str, bool] = {"db": False, "rpc": False, "leadership": True}
        self._schema_logged: str | None = None  # the schema problem last logged (once, not per probe)
        self.leader_check_failures = 0  # leadership checks or takeovers failed in a row (not "held elsewhere")
        self._running: set[asyncio.Task[Any]] = set()
        self._job_locks: dict[str, asyncio.Lock] = {}
        self._resolution_lock = asyncio.Lock()  # RESOLUTION_JOBS run one at a time (run_job)
        self._started: dict[str, float] = {}  # job → loop time its running run started
        self._unchecked: set[int] = set()  # chain.rpc_urls indexes whose chain id is not confirmed yet
        self._next_node_check = 0.0

    # -------------------------------------------------------------- jobs

    async def run_job(self, name: str, fn: Callable[[], Awaitable[Any]], wait: bool = False) -> str:
        """One run of a job, never overlapping another run of the same job (the scheduler's
        max_instances=1 covers its own runs; this lock also covers the runs started on failover and
        on request). `wait`: wait for a running one to finish instead of skipping. Returns the outcome
        (ok, failed, skipped)."""
        if self.halted or (not self.dry_run and not self.leader.is_leader):
            return "skipped"
        lock = self._job_locks.setdefault(name, asyncio.Lock())
        if lock.locked() and not wait:
            log.info("job_skipped_overlap", job=name)
            if name == "distribute" and not self.dry_run:  # the run in progress may serve another period
                self._catch_up_at = asyncio.get_running_loop().time() + DISTRIBUTE_RETRY_S
            return "skipped"
        epoch = self.leader.fence.epoch if self.leader.fence else None
        async with lock:
            if name not in RESOLUTION_JOBS:
                with structlog.contextvars.bound_contextvars(job=name, epoch=epoch):
                    return await self._run_job(name, fn)
            # resolve, finalize and expire each read the ledger for the others' pending transactions ("an
            # expiry not mined yet would make a proposal revert: wait a pass"); run at once (their triggers
            # share resolve_interval_s) both read it before either recorded, and both sent for one market
            # (review s20 hk). One waits for the other instead: each still runs every interval. The wait
            # counts as running for the shutdown, and what may have changed meanwhile is checked again after
            # it (review s20 hf: a job that waited ran after a halt, or after the shutdown had moved on).
            task = asyncio.current_task()
            if task is not None:
                self._running.add(task)
            try:
                async with self._resolution_lock:
                    if self.halted or self.stop.is_set() or (not self.dry_run and not self.leader.is_leader):
                        return "skipped"
                    with structlog.contextvars.bound_contextvars(job=name, epoch=epoch):
                        return await self._run_job(name, fn)
            finally:
                if task is not None:
                    self._running.discard(task)

    def stuck_after(self, name: str) -> float:
        """Seconds a run of `name` may take before it counts as stuck (/ready fails,
        keeper_jobs_stuck): ten of its intervals, at least a minute, at most keeper.job_timeout_s."""
        k = self.settings.keeper
        interval = {
            "resolve": k.resolve_interval_s,
            "finalize": k.resolve_interval_s,
            "expire": k.resolve_interval_s,
            "aggregate": k.aggregate_interval_s,
            "notify": k.notify_interval_s,
            "warm": k.warm_interval_s,
            "track": k.track_interval_s,
        }.get(name)
        if interval is None:
            return k.job_timeout_s
        return min(k.job_timeout_s, max(60.0, 10.0 * interval))

    def stuck_jobs(self, now: float | None = None) -> list[str]:
        """Jobs whose current run has lasted longer than stuck_after (loop time)."""
        now = asyncio.get_running_loop().time() if now is None else now
        stuck = sorted(j for j, t in self._started.items() if now - t >= self.stuck_after(j))
        self.metrics.jobs_stuck.set(len(stuck))
        return stuck

    async def _run_job(self, name: str, fn: Callable[[], Awaitable[Any]]) -> str:
        started = dt.datetime.now(dt.UTC)
        detail: Any = {}
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        self._started[name] = asyncio.get_running_loop().time()
        limit = self.settings.keeper.job_timeout_s
        try:
            run = asyncio.timeout(limit)
            try:
                async with run:
                    detail = await fn()
            except TimeoutError as exc:
                if not run.expired():
                    raise  # a timeout inside the job (a pool acquire, a database command), not the run's own
                raise JobTimeout(
                    f"{name} ran longer than {limit:g} s (keeper.job_timeout_s) and was cancelled"
                ) from exc
            outcome = "ok"
            self.failures[name] = 0
            self.faults[name] = 0
            self.metrics.last_success.labels(job=name).set(started.timestamp())
        except FencedError as exc:
            outcome = "failed"
            detail = {"error": "fenced"}
            log.error("leader_fenced", job=name, error=str(exc))
            await self.leader.release()
            self.metrics.is_leader.set(0)
        except Exception as exc:
            outcome = "failed"
            detail = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            if isinstance(exc, DistributionDeferred):
                detail.update(exc.counts)
            self.failures[name] = self.failures.get(name, 0) + 1
            fault = None if name in NEVER_SYSTEMIC else systemic_fault(exc)
            if fault is None:  # one job run failed: the next tick retries; never a reason to stop
                self.faults[name] = 0
                log.error("job_failed", job=name, error=detail["error"], consecutive=self.failures[name])
            else:
                self.faults[name] = self.faults.get(name, 0) + 1
                self.metrics.systemic_faults.labels(fault=fault).inc()
                if fault == "database_read_only":  # sessions opened during a failover stay read-only
                    await self.pool.expire_connections()
                detail["fault"] = fault
                log.error("job_failed", job=name, error=detail["error"], fault=fault, consecutive=self.faults[name])
                budget = FAULT_BUDGET.get(name, 1) * self.settings.keeper.max_consecutive_failures
                if self.faults[name] >= budget:
                    self.halted = f"{name}: {fault} {self.faults[name]} times in a row"
                    log.critical("keeper_halted", reason=self.halted, fault=fault)
                    self.stop.set()
        finally:
            if task is not None:
                self._running.discard(task)
            self._started.pop(name, None)
        self.metrics.jobs_total.labels(job=name, outcome=outcome).inc()
        if not self.dry_run and name != "track":
            with contextlib.suppress(Exception):
                async with store.connection(self.pool) as conn:
                    await conn.execute(
                        "INSERT INTO keeper.job_runs (chain_id, job, epoch, started_at, outcome, detail)"
                        " VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
                        self.settings.chain.chain_id,
                        name,
                        self.leader.fence.epoch if self.leader.fence else None,
                        started,
                        outcome,
                        orjson.dumps(detail if isinstance(detail, dict) else {}).decode(),
                    )
        self.last_detail[name] = detail if isinstance(detail, dict) else {}
        if name == "distribute" and not self.dry_run:
            self._distribution_ran(outcome)
        return outcome

    def _distribution_ran(self, outcome: str) -> None:
        """A distribute run that failed (the node or the database down at 00:00, creators the node did not
        answer for) is retried within its period, with back-off: the schedule fires once a day, and a failed
        run used to leave the day's distribution to the next day (review h6)."""
        if outcome == "ok":
            self._distribute_failures = 0
            # looked at again at the next poll against the period due THEN: a retry of day D still running
            # when the schedule fired for D+1 made that firing `skipped` (the lock), and clearing here lost
            # D+1 with no alert (review h8); catch_up clears it once the current period has its `ok` run
            self._catch_up_at = asyncio.get_running_loop().time()
        elif outcome == "failed":
            self._distribute_failures += 1
            delay = min(DISTRIBUTE_RETRY_MAX_S, DISTRIBUTE_RETRY_S * 2 ** min(self._distribute_failures - 1, 10))
            self._catch_up_at = asyncio.get_running_loop().time() + delay
            self.metrics.distribution_retries.inc()
            log.warning("distribution_retry_scheduled", in_s=delay, failures_in_a_row=self._distribute_failures)

    async def serve_requests(self) -> int:
        """Runs the one-off jobs operators asked for (keeper.job_requests) under this leader's lock, one pass at
        a time. A pass starts with no request of this process in progress, so every unfinished request is
        claimable: one an earlier epoch claimed (that leader stopped, crashed or was fenced mid-way) and one an
        earlier pass of this leader claimed and never ran (a database error, a cancelled task, review h6: it
        was stranded until a failover). A request whose job ran but whose outcome could not be written keeps
        its outcome here and is written first by the next pass (the job is not run twice)."""
        async with self._serving:
            fence = self.leader.fence
            if fence is None:
                return 0
            await self._write_unrecorded()
            return await self._serve_claimed(fence.epoch)

    async def _write_unrecorded(self) -> None:
        for request_id, (outcome, detail) in sorted(self._unrecorded.items()):
            async with store.connection(self.pool) as conn:
                await conn.execute(
                    "UPDATE keeper.job_requests SET finished_at = now(), outcome = $2, detail = $3::jsonb"
                    " WHERE id = $1 AND finished_at IS NULL",
                    request_id,
                    outcome,
                    orjson.dumps(detail, default=str).decode(),
                )
            del self._unrecorded[request_id]
            log.info("job_request_recorded", request_id=request_id, outcome=outcome, late=True)

    async def _serve_claimed(self, epoch: int) -> int:
        table = self.job_table()
        async with store.connection(self.pool) as conn:
            rows = await conn.fetch(
                """
                WITH claim AS (
                    SELECT id, epoch AS prior_epoch FROM keeper.job_requests
                     WHERE chain_id = $1 AND finished_at IS NULL AND (epoch IS NULL OR epoch <= $2)
                       AND NOT (id = ANY($3::bigint[]))
                     ORDER BY id LIMIT 20 FOR UPDATE SKIP LOCKED)
                UPDATE keeper.job_requests r SET started_at = now(), epoch = $2 FROM claim WHERE r.id = claim.id
                RETURNING r.id, r.job, r.requested_by, claim.prior_epoch
                """,
                self.settings.chain.chain_id,
                epoch,
                list(self._unrecorded),
            )
        for r in sorted(rows, key=lambda r: r["id"]):
            if r["prior_epoch"] is not None:
                self.metrics.job_requests_reclaimed.inc()
                log.warning("job_request_reclaimed", job=r["job"], request_id=r["id"], prior_epoch=r["prior_epoch"])
            log.info("job_requested", job=r["job"], request_id=r["id"], requested_by=r["requested_by"])
            outcome = await self.run_job(r["job"], table[r["job"]], wait=True)
            if outcome == "skipped":  # not the leader any more (or halted): back to the queue for the next one
                async with store.connection(self.pool) as conn:
                    await conn.execute(
                        "UPDATE keeper.job_requests SET started_at = NULL, epoch = NULL"
                        " WHERE id = $1 AND finished_at IS NULL",
                        r["id"],
                    )
                log.warning("job_request_returned", job=r["job"], request_id=r["id"], reason="not_leader")
                continue
            detail: dict[str, Any] = self.last_detail.get(r["job"], {})
            # kept until written: a failed write (the error ends this pass) is retried by the next pass, and the
            # requests this pass claimed but did not reach are claimed again by it
            self._unrecorded[r["id"]] = ("ok" if outcome == "ok" else "failed", detail)
            await self._write_unrecorded()
        return len(rows)

    async def warm(self) -> dict[str, int]:
        """Warms the API's hot Redis keys through the API itself (core.warm), so what is cached and how
        it is invalidated has one definition."""
        # bounded well inside job_timeout_s: a hung API fails this run (WarmError), never the job timeout
        deadline = min(120.0, self.settings.keeper.job_timeout_s / 2)
        statuses: dict[str, int] = await warm(self.settings.keeper.api_base_url, deadline_s=deadline)
        bad = {p: s for p, s in statuses.items() if s >= 500}
        if bad:
            raise RuntimeError(f"warming got server errors: {bad}")
        return {"paths": len(statuses)}

    async def distribute(self, period: str) -> dict[str, int]:
        """jobs.distribute; a run that left due creators unsent for want of an answer from the node fails
        (DistributionDeferred), so it is not the period's `ok` run and is retried."""
        counts = await jobs.distribute(self.ctx, period)
        if counts.get("deferred"):
            raise DistributionDeferred(period, counts)
        return counts

    async def aggregate(self) -> dict[str, int]:
        k = self.settings.keeper
        if self.dry_run:
            return {}
        counts = await refresh_aggregates(self.pool, self.settings.chain.chain_id, k.leaderboard_size, k.trending_size)
        async with store.connection(self.pool) as conn:  # bookkeeping rows are kept for keeper.history_days
            for table, column in (("job_runs", "started_at"), ("decisions", "created_at")):
                await conn.execute(
                    f"DELETE FROM keeper.{table} WHERE chain_id = $1 AND {column} < now() - make_interval(days => $2)",
                    self.settings.chain.chain_id,
                    k.history_days,
                )
        log.info("aggregates_refreshed", **counts)
        return counts

    async def track(self) -> dict[str, Any]:
        if self.dry_run:
            return {}
        s = await self.tx.track()
        if s.dropped:  # a distribution of this period may have been dropped after its `ok` run: catch_up looks
            self._catch_up_at = asyncio.get_running_loop().time()
        return {"live": s.live, "mined": s.mined, "replaced": s.replaced, "reorged": s.reorged}

    async def notify(self) -> dict[str, int]:
        if self.dry_run:
            return {}
        now = await jobs.chain_time(self.rpc)
        return await emit_ending_soon(self.pool, self.settings.chain.chain_id, now, self.settings.keeper.ending_soon_s)

    def job_table(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        return {
            "resolve": lambda: jobs.resolve(self.ctx),
            "finalize": lambda: jobs.finalize(self.ctx),
            "expire": lambda: jobs.expire(self.ctx),
            "distribute": lambda: self.distribute(self.distribution_period()),
            "aggregate": self.aggregate,
            "warm": self.warm,
            "notify": self.notify,
            "track": self.track,
        }

    # -------------------------------------------------------------- leadership

    async def lead(self) -> None:
        """Standby until the lock is free; on taking it, recover the ledger before any job runs."""
        while not self.stop.is_set():
            if self._unchecked and asyncio.get_running_loop().time() >= self._next_node_check:
                self._next_node_check = asyncio.get_running_loop().time() + NODE_RECHECK_S
                try:
                    self._unchecked = await self.rpc.check_chain_ids(
                        self.settings.chain.chain_id, sorted(self._unchecked)
                    )
                except WrongChain as exc:
                    self.halted = str(exc)
                    log.critical("keeper_halted", reason=self.halted, fault="wrong_chain")
                    self.stop.set()
                    break
            try:
                if self.leader.is_leader:
                    await self.leader.check()
                    await self._catch_up_if_due()
                else:
                    fence = await self.leader.try_acquire()
                    if fence is not None:
                        self.metrics.is_leader.set(1)
                        self.tx._next = None  # resync nonces from chain + ledger under the new epoch
                        # recovery runs inline: the Leader's heartbeat task keeps the lease meanwhile, and a
                        # lease lost mid-way makes the remaining runs skip (run_job checks is_leader)
                        await self.run_job("track", self.track)  # follow what the last leader left
                        # due work does not wait a whole interval after a restart or failover; the resolution
                        # jobs first: a missed distribution first waits (up to 2 min) for a block of its day,
                        # which a quiet chain may not have yet (review s19 h1)
                        table = self.job_table()
                        for name in RESOLUTION_JOBS:
                            await self.run_job(name, table[name])
                        self._catch_up_at = asyncio.get_running_loop().time()
                        await self._catch_up_if_due()
                if self.leader.is_leader and (self._requests is None or self._requests.done()):
                    # in a task: a long requested job must not delay the leader's own check
                    self._requests = asyncio.create_task(self._serve_requests_logged())
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                # a standby that cannot even try for the lock is not a healthy standby: /ready says so
                # (a database turned read-only by a failover left every keeper idle behind a 200: review h2)
                self.leader_check_failures += 1
                self.metrics.leader_check_failures.inc()
                log.warning(
                    "leader_check_failed",
                    error=f"{type(exc).__name__}: {exc}"[:300],
                    failures_in_a_row=self.leader_check_failures,
                    hint=leader_check_hint(exc),
                )
            else:
                self.leader_check_failures = 0
            self.metrics.is_leader.set(1 if self.leader.is_leader else 0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.keeper.leader_poll_s):
                    await self.stop.wait()

    async def _serve_requests_logged(self) -> int:
        try:
            return await self.serve_requests()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # the next poll serves them: unfinished requests are claimed again, unwritten outcomes written
            self.metrics.job_request_errors.inc()
            log.warning(
                "job_requests_failed",
                error=f"{type(exc).__name__}: {exc}"[:300],
                unrecorded=len(self._unrecorded),
                action="retried at the next leader poll",
            )
            return 0

    def last_distribution_due(self, now: dt.datetime | None = None) -> dt.datetime | None:
        """The latest time distribute_cron fired at or before `now`, looked for two days back, then further
        up to a year (the load check's bound): a weekly schedule looked at on a Thursday lost its catch-up
        and ran under the day's own period (review s20 hk)."""
        trigger = self.distribute_trigger
        now = now or dt.datetime.now(dt.UTC)

        def fires_by_now(start: dt.datetime) -> dt.datetime | None:
            fire: dt.datetime | None = trigger.get_next_fire_time(None, start)
            return fire if fire is not None and fire <= now else None

        for days in LOOKBACK_DAYS:
            lo = now - dt.timedelta(days=days)
            if fires_by_now(lo) is None:
                continue
            # the latest start whose next firing is still at or before now, to the second (review s20 hf:
            # walking firing by firing cost 44,644 calls for a schedule of every minute of January)
            hi = now
            while hi - lo > dt.timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if fires_by_now(mid) is not None:
                    lo = mid
                else:
                    hi = mid
            for start in (hi, lo):  # hi may fire at or before now when the last firing is at `now` itself
                fire = fires_by_now(start)
                if fire is not None:
                    return fire
        return None

    def distribution_period(self, now: dt.datetime | None = None) -> str:
        """The period a distribution run belongs to: the UTC day of the schedule's last firing, not of
        the run's own clock — a run late past midnight (misfire grace, a catch-up after downtime) is
        the day it was due, and does not use up the next day's."""
        now = now or dt.datetime.now(dt.UTC)
        return jobs.period_of(self.last_distribution_due(now) or now)

    async def _catch_up_if_due(self) -> None:
        """catch_up when one is pending and due. Its own database error (PostgreSQL restarting, a pool acquire
        timing out) leaves it pending for the next leader poll: it ran once, inline on taking the lock, and an
        error there lost the day's distribution (review h6)."""
        loop = asyncio.get_running_loop()
        if self._catch_up_at is None or not self.leader.is_leader or loop.time() < self._catch_up_at:
            return
        try:
            await self.catch_up()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self.metrics.catch_up_failures.inc()
            log.warning(
                "catch_up_failed",
                error=f"{type(exc).__name__}: {exc}"[:300],
                action="tried again at the next leader poll",
            )

    async def catch_up(self) -> None:
        """A distribution whose scheduled time passed while no leader ran (downtime, failover), or whose run
        failed, runs now; the period key keeps it to once per day. Clears the pending catch-up once the period
        has its `ok` run (a failed run schedules the next try, _distribution_ran)."""
        last_due = self.last_distribution_due()
        if last_due is None:
            self._catch_up_at = None
            return
        period = jobs.period_of(last_due)
        async with store.connection(self.pool) as conn:
            done = await conn.fetchval(
                "SELECT true FROM keeper.job_runs WHERE chain_id = $1 AND job = 'distribute' AND outcome = 'ok'"
                " AND started_at >= $2 LIMIT 1",
                self.settings.chain.chain_id,
                last_due,
            )
            # A distribution of the period dropped (its nonce used by another signer of the keeper key) frees its
            # job key, and the schedule fires once a day: the period is run once more for it (review s21 hk: the
            # creator was not distributed that day). Once per dropped row, so a creator the run then skips does
            # not make every poll run the job.
            dropped = {
                r["id"]
                for r in await conn.fetch(
                    "SELECT t.id FROM keeper.txs t WHERE t.chain_id = $1 AND t.job = 'distribute'"
                    " AND t.status = 'dropped' AND t.job_key LIKE '%:' || $2 AND t.error NOT LIKE $3"
                    " AND NOT EXISTS (SELECT 1 FROM"
                    " keeper.txs l WHERE l.chain_id = $1 AND l.job_key = t.job_key AND l.status <> 'dropped')",
                    self.settings.chain.chain_id,
                    period,
                    decide.ABANDONED + "%",  # every broadcast refused: the operator's call, not re-sent all day
                )
            }
        replan = dropped - self._replanned
        self._replanned = dropped  # this period's only: bounded by its creators
        if done and replan:
            log.info("distribution_replanned", period=period, dropped=len(replan))
            done = False
        if done:
            self._catch_up_at = None
            self._distribute_failures = 0
            return
        log.info("distribution_catch_up", scheduled_at=last_due.isoformat())
        outcome = await self.run_job("distribute", lambda: self.distribute(jobs.period_of(last_due)))
        if outcome != "ok":  # re-planned only by a run that went through (review s21 hf2: a failed one was not retried)
            self._replanned -= replan
        if outcome == "skipped":  # a run in progress decides (or this process stopped leading): look again later
            self._catch_up_at = asyncio.get_running_loop().time() + DISTRIBUTE_RETRY_S

    # -------------------------------------------------------------- http

    async def start_http(self) -> web.AppRunner | None:
        port = self.settings.http_port
        if port < 0:
            return None

        async def health(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok", "role": "leader" if self.leader.is_leader else "standby"})

        async def ready(_: web.Request) -> web.Response:
            ok = await self.check_ready()
            body = {
                "ready": ok,
                "checks": self._ready_checks,
                "halted": self.halted,
                "role": "leader" if self.leader.is_leader else "standby",
                "dry_run": self.dry_run,
            }
            return web.json_response(body, status=200 if ok else 503)

        async def metrics(_: web.Request) -> web.Response:
            self.stuck_jobs()  # keeper_jobs_stuck is current whenever it is scraped
            return web.Response(
                body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_get("/ready", ready)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.settings.keeper.http_host, port).start()
        except OSError as exc:  # a port in use: one line naming the key, exit 2 (never a traceback)
            await runner.cleanup()
            raise listen_failed(
                self.settings.http_port_key,
                self.settings.keeper.http_host,
                port,
                exc,
                " (-1: no HTTP server)",
                "keeper.http_host",
            ) from None
        log.info("http_listening", host=self.settings.keeper.http_host, port=port)
        return runner

    async def check_ready(self) -> bool:
        try:
            async with asyncio.timeout(3):
                async with store.connection(self.pool) as conn:
                    # reachable and writable: a standby answers SELECT 1 but records nothing
                    writable = await conn.fetchval(
                        "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"
                    )
                    # checked while running, not only at start: a newer build may have migrated it since
                    schema = await schema_problem(conn)
            self._ready_checks["db"] = bool(writable)
            self._ready_checks["schema"] = schema is None
            if schema is not None and schema != self._schema_logged:
                log.error("schema_mismatch", problem=schema, hint="restart the keeper on the build that matches it")
            self._schema_logged = schema
            if not writable:  # a session keeps the read-only default it started with: open fresh ones
                await self.pool.expire_connections()
        except Exception:
            self._ready_checks["db"] = False
        try:
            async with asyncio.timeout(3):
                await self.rpc.call("eth_blockNumber")
            self._ready_checks["rpc"] = True
        except Exception:
            self._ready_checks["rpc"] = False
        failing = [
            j
            for j, n in self.failures.items()
            if n >= self.settings.keeper.max_consecutive_failures and j not in NEVER_SYSTEMIC
        ]
        self._ready_checks["jobs"] = not failing
        self._ready_checks["jobs_not_stuck"] = not self.stuck_jobs()
        self._ready_checks["leadership"] = self.leader_check_failures == 0
        return all(self._ready_checks.values()) and self.halted is None

    # -------------------------------------------------------------- main

    async def main(self, once: bool, once_jobs: Sequence[str], plan_out: Callable[[dict[str, Any]], None]) -> int:
        s = self.settings
        signer = load_signer(s)
        deployment = load_chain_deployment(s.chain)  # ConfigError naming chain.deployment: exit 2
        log.info("keeper_starting", chain_id=s.chain.chain_id, address=signer.address, dry_run=self.dry_run, once=once)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        async with (
            Rpc(s.chain.rpc_urls, batch_size=s.keeper.rpc_batch_size) as rpc,
            contextlib.AsyncExitStack() as stack,
        ):
            pool_cm = store.create_pool(s.database.dsn, s.db_timeouts, min_size=1, max_size=max(2, s.database.pool_max))
            try:  # a database down at start is exit 3 with one line, never a traceback (docs/keeper.md)
                pool = await pool_cm
                stack.push_async_callback(store.close_pool, pool)
            except DB_CONFIG as exc:  # a wrong DSN: exit 2
                raise ConfigError(db_config_error(exc)) from None
            except DB_UNREACHABLE as exc:
                raise Unreachable(db_unreachable(exc)) from None
            async with store.connection(pool) as conn:  # a schema behind or ahead of this build: exit 2, never a loop
                problem = await schema_problem(conn)
            if problem:
                raise ConfigError(problem)
            self.rpc, self.pool = rpc, pool
            # every node must serve [chain].chain_id (a wrong one would fail queue entries, hide receipts,
            # and feed foreign nonces into the gap filler); one down now is checked again each leader poll
            self._unchecked = await rpc.check_chain_ids(s.chain.chain_id, range(rpc.providers))
            if once and len(self._unchecked) == rpc.providers:  # a one-off cannot wait for a node to come back
                raise Unreachable(
                    f"no node of chain.rpc_urls ({rpc.providers}) answered eth_chainId; check [chain].rpc_urls"
                )
            self.tx = TxManager(rpc, pool, signer, s, lambda: self.leader.fence, self.metrics)
            self.ctx = jobs.Context(
                settings=s,
                pool=pool,
                rpc=rpc,
                deployment=deployment,
                metrics=self.metrics,
                tx=self.tx,
                signer_address=signer.address,
                epoch=lambda: self.leader.fence.epoch if self.leader.fence else None,
                dry_run=self.dry_run,
                plan=plan_out,
            )
            runner = None if once else await self.start_http()
            try:
                if once:
                    return await self._once(once_jobs)
                await self._daemon()
            finally:
                if runner is not None:
                    await runner.cleanup()
                await self.leader.release()
        return 1 if self.halted else 0

    async def _once(self, names: Sequence[str]) -> int:
        table = self.job_table()
        if not self.dry_run:
            try:
                fence = await self.leader.try_acquire()
            except DB_UNREACHABLE as exc:
                raise Unreachable(db_unreachable(exc)) from None
            if fence is None:
                log.info("not_leader", detail="another keeper holds the lock; the caller may ask it")
                return NOT_LEADER
            await self.run_job("track", self.track)
        for name in names:
            await self.run_job(name, table[name])
        if not self.dry_run and not self.halted:
            try:
                await self.tx.wait_idle(timeout_s=ONCE_WAIT_S, poll_s=0.3)
            except TimeoutError as exc:  # recorded and sent: the next keeper run follows them
                log.error(
                    "transactions_still_open",
                    detail=str(exc),
                    action="they are in the ledger; a running keeper or the next `keeper run --once` follows them"
                    " (`keeper txs --status pending`)",
                )
                return 1
        return 1 if self.halted or any(self.failures.values()) else 0

    async def _daemon(self) -> None:
        k = self.settings.keeper
        table = self.job_table()
        sched = AsyncIOScheduler(timezone=dt.UTC)
        common: dict[str, Any] = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 3600}

        def add(name: str, trigger: Any) -> None:
            fn = table[name]

            async def job() -> None:
                await self.run_job(name, fn)

            sched.add_job(job, trigger, id=name, name=name, **common)

        for name in RESOLUTION_JOBS:
            add(name, IntervalTrigger(seconds=k.resolve_interval_s, timezone=dt.UTC))
        add("distribute", self.distribute_trigger)
        add("aggregate", IntervalTrigger(seconds=k.aggregate_interval_s, timezone=dt.UTC))
        add("notify", IntervalTrigger(seconds=k.notify_interval_s, timezone=dt.UTC))
        if k.warm_interval_s > 0 and k.warm_enabled:
            add("warm", IntervalTrigger(seconds=k.warm_interval_s, timezone=dt.UTC))
        add("track", IntervalTrigger(seconds=k.track_interval_s, timezone=dt.UTC))
        sched.start()
        # a dry run never takes the lock: bumping the epoch would fence the real leader
        lead = None if self.dry_run else asyncio.create_task(self.lead())
        if self.dry_run:
            for name in (*RESOLUTION_JOBS, "distribute"):
                await self.run_job(name, table[name])
        await self.stop.wait()
        log.info("keeper_stopping", halted=self.halted)
        sched.shutdown(wait=False)
        if lead is not None:
            await lead
        if self._requests is not None and not self._requests.done():
            await asyncio.wait([self._requests], timeout=30)
        running = [t for t in self._running if not t.done()]
        if running:  # running jobs finish their step before the lock is released
            await asyncio.wait(running, timeout=30)
