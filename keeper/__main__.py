"""`python -m keeper run|status|txs|queue|resolve|cancel|rule --config FILE`.

run: the daemon. APScheduler 3.x AsyncIOScheduler (max_instances=1, coalesce=True): every job
runs only on the leader (PostgreSQL advisory lock + fencing epoch); a standby polls for the lock.
`run --once` runs the chosen jobs once, follows the transactions to confirmation and exits;
`--dry-run` decides and simulates, sends and records nothing, and prints the plan (JSON lines).
HTTP on keeper.http_port: /health (process alive), /ready (database + node reachable, not
halted), /metrics (Prometheus).

Shutdown (SIGINT/SIGTERM): stop the scheduler → wait for the running job → release the lock →
close the pool and the RPC session. Pending transactions stay in the ledger and are followed
by the next leader.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import getpass
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import orjson
import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.config import ConfigError
from core.contracts import load_deployment
from core.logs import configure_logging
from keeper import jobs
from keeper.aggregate import refresh_aggregates
from keeper.decide import OUTCOME_NAMES, OUTCOMES
from keeper.keys import KeyLoadError, load_signer
from keeper.leader import Leader
from keeper.metrics import Metrics
from keeper.notify import emit_ending_soon
from keeper.rpc import Rpc
from keeper.settings import Settings, load_settings
from keeper.store import FencedError
from keeper.tx import TxManager

log = structlog.get_logger("keeper")
# Consecutive failures of these halt the daemon (pymaker/Silverback style). The tracker runs every few
# seconds, so it gets a proportionally larger budget (a node blip must not kill the keeper).
CRITICAL_JOBS = {"resolve": 1, "distribute": 1, "track": 30}
DEFAULT_ONCE_JOBS = ("resolve", "distribute", "aggregate")


class Daemon:
    def __init__(self, settings: Settings, dry_run: bool = False) -> None:
        self.settings = settings
        self.dry_run = dry_run or settings.keeper.dry_run
        self.metrics = Metrics()
        self.stop = asyncio.Event()
        self.halted: str | None = None
        self.failures: dict[str, int] = {}
        self.leader = Leader(settings.database.dsn, settings.chain.chain_id)
        self._ready_checks: dict[str, bool] = {"db": False, "rpc": False}
        self._running: set[asyncio.Task[Any]] = set()
        self._job_locks: dict[str, asyncio.Lock] = {}

    # -------------------------------------------------------------- jobs

    async def run_job(self, name: str, fn: Callable[[], Awaitable[Any]]) -> None:
        """One run of a job, never overlapping another run of the same job (the scheduler's
        max_instances=1 covers its own runs; this lock also covers the runs started on failover)."""
        if self.halted or (not self.dry_run and not self.leader.is_leader):
            return
        lock = self._job_locks.setdefault(name, asyncio.Lock())
        if lock.locked():
            log.info("job_skipped_overlap", job=name)
            return
        epoch = self.leader.fence.epoch if self.leader.fence else None
        async with lock:
            with structlog.contextvars.bound_contextvars(job=name, epoch=epoch):
                await self._run_job(name, fn)

    async def _run_job(self, name: str, fn: Callable[[], Awaitable[Any]]) -> None:
        started = dt.datetime.now(dt.UTC)
        detail: Any = {}
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            detail = await fn()
            outcome = "ok"
            self.failures[name] = 0
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
            self.failures[name] = self.failures.get(name, 0) + 1
            level = log.error if name in CRITICAL_JOBS else log.warning
            level("job_failed", job=name, error=detail["error"], consecutive=self.failures[name])
            budget = CRITICAL_JOBS.get(name, 0) * self.settings.keeper.max_consecutive_failures
            if budget and self.failures[name] >= budget:
                self.halted = f"{name} failed {self.failures[name]} times in a row"
                log.critical("keeper_halted", reason=self.halted)
                self.stop.set()
        finally:
            if task is not None:
                self._running.discard(task)
        self.metrics.jobs_total.labels(job=name, outcome=outcome).inc()
        if not self.dry_run and name != "track":
            with contextlib.suppress(Exception):
                async with self.pool.acquire() as conn:
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

    async def warm(self) -> dict[str, int]:
        """Warms the API's hot Redis keys through the API itself (api.cache.warm), so what is cached
        and how it is invalidated has one definition."""
        from api.cache import warm

        statuses: dict[str, int] = await warm(self.settings.keeper.api_base_url)
        bad = {p: s for p, s in statuses.items() if s >= 500}
        if bad:
            raise RuntimeError(f"warming got server errors: {bad}")
        return {"paths": len(statuses)}

    async def aggregate(self) -> dict[str, int]:
        k = self.settings.keeper
        if self.dry_run:
            return {}
        counts = await refresh_aggregates(self.pool, self.settings.chain.chain_id, k.leaderboard_size, k.trending_size)
        async with self.pool.acquire() as conn:  # bookkeeping rows are kept for keeper.history_days
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
        return {"live": s.live, "mined": s.mined, "replaced": s.replaced, "reorged": s.reorged}

    async def notify(self) -> dict[str, int]:
        if self.dry_run:
            return {}
        now = await jobs.chain_time(self.rpc)
        return await emit_ending_soon(
            self.pool, self.settings.redis.url, self.settings.chain.chain_id, now, self.settings.keeper.ending_soon_s
        )

    def job_table(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        return {
            "resolve": lambda: jobs.resolve(self.ctx),
            "distribute": lambda: jobs.distribute(self.ctx),
            "aggregate": self.aggregate,
            "warm": self.warm,
            "notify": self.notify,
            "track": self.track,
        }

    # -------------------------------------------------------------- leadership

    async def lead(self) -> None:
        """Standby until the lock is free; on taking it, recover the ledger before any job runs."""
        while not self.stop.is_set():
            try:
                if self.leader.is_leader:
                    if not await self.leader.check():
                        self.metrics.is_leader.set(0)
                else:
                    fence = await self.leader.try_acquire()
                    if fence is not None:
                        self.metrics.is_leader.set(1)
                        self.tx._next = None  # resync nonces from chain + ledger under the new epoch
                        await self.run_job("track", self.track)  # recovery: follow what the last leader left
                        await self.catch_up()
                        # due work does not wait a whole interval after a restart or failover
                        await self.run_job("resolve", lambda: jobs.resolve(self.ctx))
                    else:
                        self.metrics.is_leader.set(0)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("leader_check_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.keeper.leader_poll_s):
                    await self.stop.wait()

    async def catch_up(self) -> None:
        """A distribution whose scheduled time passed while no leader ran (downtime, failover) runs now;
        the period key keeps it to once per day."""
        trigger = CronTrigger.from_crontab(self.settings.keeper.distribute_cron, timezone=dt.UTC)
        now = dt.datetime.now(dt.UTC)
        fire = trigger.get_next_fire_time(None, now - dt.timedelta(days=2))
        last_due = None
        while fire is not None and fire <= now:
            last_due = fire
            fire = trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
        if last_due is None:
            return
        async with self.pool.acquire() as conn:
            done = await conn.fetchval(
                "SELECT true FROM keeper.job_runs WHERE chain_id = $1 AND job = 'distribute' AND outcome = 'ok'"
                " AND started_at >= $2 LIMIT 1",
                self.settings.chain.chain_id,
                last_due,
            )
        if not done:
            log.info("distribution_catch_up", scheduled_at=last_due.isoformat())
            await self.run_job("distribute", lambda: jobs.distribute(self.ctx))

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
            return web.Response(
                body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_get("/ready", ready)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.settings.keeper.http_host, port).start()
        log.info("http_listening", host=self.settings.keeper.http_host, port=port)
        return runner

    async def check_ready(self) -> bool:
        try:
            async with asyncio.timeout(3):
                async with self.pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
            self._ready_checks["db"] = True
        except Exception:
            self._ready_checks["db"] = False
        try:
            async with asyncio.timeout(3):
                await self.rpc.call("eth_blockNumber")
            self._ready_checks["rpc"] = True
        except Exception:
            self._ready_checks["rpc"] = False
        failing = [j for j, n in self.failures.items() if n >= self.settings.keeper.max_consecutive_failures]
        self._ready_checks["jobs"] = not failing
        return all(self._ready_checks.values()) and self.halted is None

    # -------------------------------------------------------------- main

    async def main(self, once: bool, once_jobs: Sequence[str], plan_out: Callable[[dict[str, Any]], None]) -> int:
        s = self.settings
        signer = load_signer(s)
        deployment = load_deployment(s.chain.deployment)
        if deployment.chain_id != s.chain.chain_id:
            raise ConfigError(
                f"deployment {s.chain.deployment} is for chain {deployment.chain_id}, "
                f"chain.chain_id is {s.chain.chain_id}"
            )
        log.info("keeper_starting", chain_id=s.chain.chain_id, address=signer.address, dry_run=self.dry_run, once=once)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        async with (
            Rpc(s.chain.rpc_urls, batch_size=s.keeper.rpc_batch_size) as rpc,
            asyncpg.create_pool(s.database.dsn, min_size=1, max_size=max(2, s.database.pool_max)) as pool,
        ):
            self.rpc, self.pool = rpc, pool
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
            if await self.leader.try_acquire() is None:
                log.error("not_leader", detail="another keeper holds the lock; nothing done")
                return 3
            await self.run_job("track", self.track)
        for name in names:
            await self.run_job(name, table[name])
        if not self.dry_run and not self.halted:
            await self.tx.wait_idle(timeout_s=120, poll_s=0.3)
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

        add("resolve", IntervalTrigger(seconds=k.resolve_interval_s, timezone=dt.UTC))
        add("distribute", CronTrigger.from_crontab(k.distribute_cron, timezone=dt.UTC))
        add("aggregate", IntervalTrigger(seconds=k.aggregate_interval_s, timezone=dt.UTC))
        add("notify", IntervalTrigger(seconds=k.notify_interval_s, timezone=dt.UTC))
        if k.warm_interval_s > 0 and k.warm_enabled:
            add("warm", IntervalTrigger(seconds=k.warm_interval_s, timezone=dt.UTC))
        add("track", IntervalTrigger(seconds=k.track_interval_s, timezone=dt.UTC))
        sched.start()
        # a dry run never takes the lock: bumping the epoch would fence the real leader
        lead = None if self.dry_run else asyncio.create_task(self.lead())
        if self.dry_run:
            for name in ("resolve", "distribute"):
                await self.run_job(name, table[name])
        await self.stop.wait()
        log.info("keeper_stopping", halted=self.halted)
        sched.shutdown(wait=False)
        if lead is not None:
            await lead
        running = [t for t in self._running if not t.done()]
        if running:  # running jobs finish their step before the lock is released
            await asyncio.wait(running, timeout=30)


# ------------------------------------------------------------------------ CLI commands


async def _connect(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(settings.database.dsn)


def say(text: str, err: bool = False) -> None:
    """CLI output (stdout for results, stderr for errors); the daemon itself only logs."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _who(by: str | None) -> str:
    return by or f"{getpass.getuser()}@{socket.gethostname()}"


def _print_rows(rows: Sequence[dict[str, Any]]) -> None:
    for r in rows:
        say(orjson.dumps(r, default=str).decode())


async def cmd_resolve(settings: Settings, market_id: int, outcome: str, reason: str, by: str | None) -> int:
    conn = await _connect(settings)
    try:
        try:
            qid = await conn.fetchval(
                "INSERT INTO keeper.resolution_queue (chain_id, market_id, outcome, reason, requested_by)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                settings.chain.chain_id,
                market_id,
                OUTCOMES[outcome],
                reason,
                _who(by),
            )
        except asyncpg.UniqueViolationError:
            existing = await conn.fetchrow(
                "SELECT id, status FROM keeper.resolution_queue WHERE chain_id = $1 AND market_id = $2"
                " AND status IN ('queued', 'sent')",
                settings.chain.chain_id,
                market_id,
            )
            what = "?" if existing is None else f"id {existing['id']}, {existing['status']}"
            say(f"market {market_id} already has an active queue entry ({what}); cancel it first", err=True)
            return 2
        known = await conn.fetchval(
            "SELECT true FROM idx.markets WHERE chain_id = $1 AND market_id = $2", settings.chain.chain_id, market_id
        )
    finally:
        await conn.close()
    say(f"queued #{qid}: market {market_id} → {outcome} ({reason}) by {_who(by)}")
    if not known:
        say(
            f"note: market {market_id} is not in idx.markets yet; the keeper checks the contract before sending",
            err=True,
        )
    return 0


async def cmd_cancel(settings: Settings, queue_id: int, reason: str, by: str | None) -> int:
    conn = await _connect(settings)
    try:
        row = await conn.fetchrow(
            "UPDATE keeper.resolution_queue SET status = 'cancelled', cancelled_by = $2, cancelled_at = now(),"
            " cancel_reason = $3, updated_at = now() WHERE id = $1 AND status = 'queued' RETURNING market_id",
            queue_id,
            _who(by),
            reason,
        )
        if row is None:
            status = await conn.fetchval("SELECT status FROM keeper.resolution_queue WHERE id = $1", queue_id)
            say(f"queue entry {queue_id} cannot be cancelled (status: {status or 'not found'})", err=True)
            return 2
    finally:
        await conn.close()
    say(f"cancelled #{queue_id} (market {row['market_id']})")
    return 0


async def cmd_queue(settings: Settings, all_rows: bool) -> int:
    conn = await _connect(settings)
    try:
        rows = await conn.fetch(
            "SELECT id, market_id, outcome, status, reason, requested_by, requested_at, status_reason, tx_id,"
            " cancelled_by, cancel_reason FROM keeper.resolution_queue WHERE chain_id = $1"
            + ("" if all_rows else " AND status IN ('queued', 'sent')")
            + " ORDER BY id",
            settings.chain.chain_id,
        )
    finally:
        await conn.close()
    _print_rows([{**dict(r), "outcome": OUTCOME_NAMES[r["outcome"]]} for r in rows])
    return 0


async def cmd_txs(settings: Settings, limit: int, status: str | None) -> int:
    conn = await _connect(settings)
    try:
        rows = await conn.fetch(
            """
            SELECT t.id, t.job_key, t.nonce, t.status, t.epoch, '0x' || encode(t.mined_tx_hash, 'hex') AS tx_hash,
                   t.mined_block, t.fee_paid::text AS fee_paid_wei, t.reorg_count, t.error, t.created_at,
                   count(a.id) AS attempts, max(a.max_fee_per_gas)::text AS max_fee_per_gas
              FROM keeper.txs t LEFT JOIN keeper.tx_attempts a ON a.tx_id = t.id
             WHERE t.chain_id = $1 AND ($2::text IS NULL OR t.status = $2)
             GROUP BY t.id ORDER BY t.id DESC LIMIT $3
            """,
            settings.chain.chain_id,
            status,
            limit,
        )
    finally:
        await conn.close()
    _print_rows([dict(r) for r in rows])
    return 0


async def cmd_status(settings: Settings) -> int:
    conn = await _connect(settings)
    try:
        cid = settings.chain.chain_id
        leader = await conn.fetchrow("SELECT epoch, holder, acquired_at FROM keeper.leaders WHERE chain_id = $1", cid)
        counts = await conn.fetch("SELECT status, count(*) AS n FROM keeper.txs WHERE chain_id = $1 GROUP BY 1", cid)
        queue = await conn.fetch(
            "SELECT status, count(*) AS n FROM keeper.resolution_queue WHERE chain_id = $1 GROUP BY 1", cid
        )
        overdue = await conn.fetch(
            "SELECT market_id, end_time, reason, first_reported_at FROM keeper.overdue_markets WHERE chain_id = $1"
            " ORDER BY end_time",
            cid,
        )
        runs = await conn.fetch(
            "SELECT DISTINCT ON (job) job, outcome, started_at, detail FROM keeper.job_runs WHERE chain_id = $1"
            " ORDER BY job, started_at DESC",
            cid,
        )
    finally:
        await conn.close()
    out = {
        "chain_id": cid,
        "leader": dict(leader) if leader else None,
        "txs": {r["status"]: r["n"] for r in counts},
        "queue": {r["status"]: r["n"] for r in queue},
        "overdue_markets": [dict(r) for r in overdue],
        "last_runs": {r["job"]: {"outcome": r["outcome"], "started_at": r["started_at"]} for r in runs},
    }
    say(orjson.dumps(out, default=str, option=orjson.OPT_INDENT_2).decode())
    return 0


async def cmd_rule(settings: Settings, a: argparse.Namespace) -> int:
    conn = await _connect(settings)
    try:
        await conn.execute(
            """
            INSERT INTO keeper.price_feed_rules (chain_id, market_id, feed, comparison, threshold, outcome_if_true,
                                                 outcome_if_false, created_by)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (chain_id, market_id) DO UPDATE SET feed = EXCLUDED.feed, comparison = EXCLUDED.comparison,
                threshold = EXCLUDED.threshold, outcome_if_true = EXCLUDED.outcome_if_true,
                outcome_if_false = EXCLUDED.outcome_if_false, created_by = EXCLUDED.created_by, created_at = now()
            """,
            settings.chain.chain_id,
            a.market_id,
            bytes.fromhex(a.feed.removeprefix("0x")),
            a.op,
            a.threshold,
            OUTCOMES[a.if_true],
            OUTCOMES[a.if_false],
            _who(a.by),
        )
    finally:
        await conn.close()
    say(f"market {a.market_id}: {a.if_true} if answer {a.op} {a.threshold} at end time, else {a.if_false}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    # --config is accepted before or after the command; the subcommands' copy must not overwrite a
    # value given before the command with its default (argparse applies sub-parser defaults last)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=argparse.SUPPRESS, help="TOML config (default $GL_CONFIG or config/local.toml)"
    )
    p = argparse.ArgumentParser(prog="python -m keeper", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=os.environ.get("GL_CONFIG", "config/local.toml"))
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", parents=[common], help="the daemon")
    run.add_argument("--once", action="store_true", help="run the jobs once, follow the txs to the end, exit")
    run.add_argument(
        "--jobs",
        default=",".join(DEFAULT_ONCE_JOBS),
        help="jobs for --once: resolve,distribute,aggregate,warm,notify,track",
    )
    run.add_argument("--dry-run", action="store_true", help="decide and simulate; send and record nothing")
    sub.add_parser("status", parents=[common], help="leader, ledger counts, overdue markets, last runs")
    txs = sub.add_parser("txs", parents=[common], help="recent ledger transactions (JSON lines)")
    txs.add_argument("--limit", type=int, default=50)
    txs.add_argument("--status", choices=("pending", "mined", "confirmed", "reverted", "dropped"))
    q = sub.add_parser("queue", parents=[common], help="the operator resolution queue")
    q.add_argument("--all", action="store_true", help="include resolved, skipped and cancelled entries")
    r = sub.add_parser("resolve", parents=[common], help="queue an operator resolution")
    r.add_argument("market_id", type=int)
    r.add_argument("outcome", choices=tuple(OUTCOMES))
    r.add_argument("--reason", required=True)
    r.add_argument("--by", help="who asks (default user@host)")
    c = sub.add_parser("cancel", parents=[common], help="cancel a queued resolution before it is sent")
    c.add_argument("queue_id", type=int)
    c.add_argument("--reason", required=True)
    c.add_argument("--by")
    rule = sub.add_parser("rule", parents=[common], help="bind a market to a price feed")
    rule.add_argument("market_id", type=int)
    rule.add_argument("--feed", required=True, help="AggregatorV3 address")
    rule.add_argument("--op", required=True, choices=("gt", "gte", "lt", "lte"))
    rule.add_argument("--threshold", required=True, type=int, help="in the feed's decimals")
    rule.add_argument("--if-true", default="yes", choices=tuple(OUTCOMES))
    rule.add_argument("--if-false", default="no", choices=tuple(OUTCOMES))
    rule.add_argument("--by")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        say(f"config error: {exc}", err=True)
        return 2
    configure_logging()
    try:
        if args.cmd == "run":
            names = [n.strip() for n in args.jobs.split(",") if n.strip()]
            unknown = [n for n in names if n not in ("resolve", "distribute", "aggregate", "warm", "notify", "track")]
            if unknown:
                say(f"unknown job(s): {', '.join(unknown)}", err=True)
                return 2

            def plan(row: dict[str, Any]) -> None:
                say(orjson.dumps({"plan": row}).decode())

            return asyncio.run(Daemon(settings, args.dry_run).main(args.once, names, plan))
        if args.cmd == "status":
            return asyncio.run(cmd_status(settings))
        if args.cmd == "txs":
            return asyncio.run(cmd_txs(settings, args.limit, args.status))
        if args.cmd == "queue":
            return asyncio.run(cmd_queue(settings, args.all))
        if args.cmd == "resolve":
            return asyncio.run(cmd_resolve(settings, args.market_id, args.outcome, args.reason, args.by))
        if args.cmd == "cancel":
            return asyncio.run(cmd_cancel(settings, args.queue_id, args.reason, args.by))
        if args.cmd == "rule":
            return asyncio.run(cmd_rule(settings, args))
    except (KeyLoadError, ConfigError) as exc:
        log.error("startup_failed", error=str(exc))
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
