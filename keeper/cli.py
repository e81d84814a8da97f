"""`python -m keeper run|status|txs|queue|resolve|cancel|rule --config FILE` — the operator's CLI.

run: the daemon (keeper/daemon.py). `run --once` while another keeper leads does not fight for the
lock: it asks the leader (keeper.job_requests), waits up to `--wait` seconds for the outcome and
says plainly what happened.

resolve, cancel and rule validate their input where it enters (core/resolution.py: the same rules
as the admin HTTP API; the market facts come from the chain) and record who and why. Output:
results on stdout (JSON lines for listings), errors on stderr naming the input and what to do.
Exit codes: 0 done, 1 a job failed, 2 refused input or configuration, 3 the chain or database is
unreachable, 4 a request to the leader not finished within --wait.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
import structlog

from core import resolution as R
from core.args import seconds, whole_number
from core.config import ConfigError
from core.contracts import load_chain_deployment
from core.logs import configure_logging
from core.pgerrors import DB_CONFIG, db_config_error, db_unreachable
from core.schema import schema_problem
from keeper import Unreachable
from keeper.daemon import DEFAULT_ONCE_JOBS, JOB_NAMES, NOT_LEADER, Daemon
from keeper.keys import KeyLoadError
from keeper.settings import Settings, load_settings

log = structlog.get_logger("keeper")
REFUSED, UNREACHABLE, PENDING = 2, 3, 4
MAX_TXS_LIMIT = 10_000  # rows `keeper txs` prints at most
MAX_WAIT_S = 86_400.0  # `run --once --wait`: a day; every wait has an end


async def _connect(settings: Settings) -> asyncpg.Connection:
    """A connection to a database at this build's schema: a wrong DSN or a schema behind or ahead of the
    build is one line and exit 2 (review h4: a traceback), a database that does not answer exit 3."""
    try:
        t = settings.db_timeouts  # bounded as the daemon's: a row locked elsewhere fails after lock_s (review s20 hk)
        connecting = asyncpg.connect(
            settings.database.dsn, server_settings=t.server_settings, command_timeout=t.command_timeout
        )
        conn = await asyncio.wait_for(connecting, 15)
    except DB_CONFIG as exc:
        raise ConfigError(db_config_error(exc)) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Unreachable(db_unreachable(exc)) from None
    try:
        problem = await schema_problem(conn)
    except BaseException:
        await conn.close()
        raise
    if problem:
        await conn.close()
        raise ConfigError(problem)
    return conn


def say(text: str, err: bool = False) -> None:
    """CLI output (stdout for results, stderr for errors); the daemon itself only logs."""
    stream = sys.stderr if err else sys.stdout
    # an echoed argument may hold bytes argv decoding kept as lone surrogates (a non-UTF-8 terminal): shown
    # escaped, never a UnicodeEncodeError traceback
    stream.write(text.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")
    stream.flush()


def _who(by: str | None) -> str:
    """--by, else user@host; a uid with no user name (a container's arbitrary uid, no $USER) is uid<N>@host
    instead of a KeyError that stopped `keeper run`, the daemon included (review s20 hk)."""
    if by:
        return by
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _print_rows(rows: Sequence[dict[str, Any]]) -> None:
    for r in rows:
        say(orjson.dumps(r, default=str).decode())


async def _chain_facts(settings: Settings, market_id: int) -> tuple[R.MarketFacts | None, int]:
    deployment = load_chain_deployment(settings.chain)
    return await R.read_market(settings.chain.rpc_urls, deployment.opinion_market, market_id)


async def cmd_resolve(settings: Settings, market_id: Any, outcome: Any, reason: Any, by: str | None) -> int:
    """Queues an operator outcome after checking the request and the market on chain."""
    try:
        mid = R.parse_market_id(market_id, "MARKET_ID")
        code = R.parse_outcome(outcome, "OUTCOME")
        why = R.parse_text(reason, "--reason")
        who = R.parse_text(_who(by), "--by", R.MAX_WHO)
        facts, now = await _chain_facts(settings, mid)
        R.check_due(mid, facts, now, "on chain", "MARKET_ID")
    except R.ChainUnavailable as exc:
        say(f"refused: {exc.message}", err=True)
        return UNREACHABLE
    except R.RequestError as exc:
        say(f"refused: {exc}", err=True)
        return REFUSED
    conn = await _connect(settings)
    try:
        q = await R.queue_resolution(conn, settings.chain.chain_id, mid, code, why, who)
    except R.Conflict as exc:
        say(f"refused: {exc.message}", err=True)
        return REFUSED
    finally:
        await conn.close()
    say(f"queued #{q.id}: market {mid} → {R.OUTCOME_NAMES[code]} ({why}) by {who}")
    return 0


async def cmd_cancel(settings: Settings, queue_id: Any, reason: Any, by: str | None) -> int:
    try:
        qid = R.parse_queue_id(queue_id)
        why = R.parse_text(reason, "--reason")
        who = R.parse_text(_who(by), "--by", R.MAX_WHO)
    except R.RequestError as exc:
        say(f"refused: {exc}", err=True)
        return REFUSED
    conn = await _connect(settings)
    try:
        market_id = await R.cancel_resolution(conn, settings.chain.chain_id, qid, why, who)
    except R.NotCancellable as exc:
        say(f"refused: {exc.message}", err=True)
        return REFUSED
    finally:
        await conn.close()
    say(f"cancelled #{qid} (market {market_id}) by {who}: {why}")
    return 0


async def cmd_rule(settings: Settings, a: argparse.Namespace) -> int:
    try:
        rule = R.FeedRule(
            market_id=R.parse_market_id(a.market_id, "MARKET_ID"),
            feed=R.parse_address(a.feed, "--feed"),
            comparison=R.parse_comparison(a.op, "--op"),
            threshold=R.parse_threshold(a.threshold, "--threshold"),
            outcome_if_true=R.parse_outcome(a.if_true, "--if-true"),
            outcome_if_false=R.parse_outcome(a.if_false, "--if-false"),
        )
        why = None if a.reason is None else R.parse_text(a.reason, "--reason")
        who = R.parse_text(_who(a.by), "--by", R.MAX_WHO)
        facts, _now = await _chain_facts(settings, rule.market_id)
        R.check_bindable(rule.market_id, facts, "on chain", "MARKET_ID")
        problem = await R.feed_problem(settings.chain.rpc_urls, rule.feed)
        if problem is not None:
            raise R.RequestError("--feed", f"{problem}; pass the AggregatorV3 feed's address")
    except R.ChainUnavailable as exc:
        say(f"refused: {exc.message}", err=True)
        return UNREACHABLE
    except R.RequestError as exc:
        say(f"refused: {exc}", err=True)
        return REFUSED
    conn = await _connect(settings)
    try:
        await R.bind_feed(conn, settings.chain.chain_id, rule, why, who)
    finally:
        await conn.close()
    say(R.describe_rule(rule) + f" (by {who})")
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
    _print_rows([{**dict(r), "outcome": R.OUTCOME_NAMES.get(r["outcome"], r["outcome"])} for r in rows])
    return 0


async def cmd_txs(settings: Settings, limit: int, status: str | None) -> int:
    conn = await _connect(settings)
    try:
        rows = await conn.fetch(
            """
            SELECT t.id, t.job_key, t.nonce, t.status, t.epoch, '0x' || encode(t.mined_tx_hash, 'hex') AS tx_hash,
                   t.mined_block, t.fee_paid::text AS fee_paid_wei, t.reorg_count, t.error, t.created_at,
                   count(a.id) AS attempts, max(a.max_fee_per_gas)::text AS max_fee_per_gas,
                   l.broadcast_error AS last_broadcast_error, l.refusals AS broadcast_refusals,
                   l.is_cancel AS cancelling
              FROM keeper.txs t LEFT JOIN keeper.tx_attempts a ON a.tx_id = t.id
              LEFT JOIN LATERAL (SELECT broadcast_error, refusals, is_cancel FROM keeper.tx_attempts
                                  WHERE tx_id = t.id ORDER BY attempt DESC LIMIT 1) l ON true
             WHERE t.chain_id = $1 AND ($2::text IS NULL OR t.status = $2)
             GROUP BY t.id, l.broadcast_error, l.refusals, l.is_cancel ORDER BY t.id DESC LIMIT $3
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
        markets = await conn.fetchrow(
            """
            SELECT count(*) FILTER (WHERE status = 'proposed') AS proposed,
                   count(*) FILTER (WHERE status = 'disputed') AS disputed,
                   count(*) FILTER (WHERE status = 'proposed' AND challenge_ends <= now()) AS awaiting_finalize
              FROM idx.markets WHERE chain_id = $1
            """,
            cid,
        )
        disputed = await conn.fetch(
            "SELECT market_id, proposed_outcome, first_seen_at FROM keeper.disputed_markets WHERE chain_id = $1"
            " ORDER BY market_id",
            cid,
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
        requests = await conn.fetch(
            "SELECT id, job, requested_by, requested_at, started_at FROM keeper.job_requests"
            " WHERE chain_id = $1 AND finished_at IS NULL ORDER BY id",
            cid,
        )
    finally:
        await conn.close()
    out = {
        "chain_id": cid,
        "leader": dict(leader) if leader else None,
        "txs": {r["status"]: r["n"] for r in counts},
        "queue": {r["status"]: r["n"] for r in queue},
        "resolution": dict(markets) if markets else {},
        "disputed_markets": [dict(r) for r in disputed],
        "overdue_markets": [dict(r) for r in overdue],
        "last_runs": {r["job"]: {"outcome": r["outcome"], "started_at": r["started_at"]} for r in runs},
        "open_job_requests": [dict(r) for r in requests],
    }
    say(orjson.dumps(out, default=str, option=orjson.OPT_INDENT_2).decode())
    return 0


async def cmd_request_jobs(settings: Settings, names: Sequence[str], by: str | None, wait_s: float) -> int:
    """Asks the running leader to run `names` (keeper.job_requests) and waits for the outcomes."""
    cid = settings.chain.chain_id
    names = list(dict.fromkeys(names))
    conn = await _connect(settings)
    try:
        leader = await conn.fetchrow("SELECT epoch, holder FROM keeper.leaders WHERE chain_id = $1", cid)
        ids = [
            int(
                await conn.fetchval(
                    "INSERT INTO keeper.job_requests (chain_id, job, requested_by) VALUES ($1, $2, $3) RETURNING id",
                    cid,
                    name,
                    _who(by),
                )
            )
            for name in names
        ]
        holder = f"{leader['holder']}, epoch {leader['epoch']}" if leader else "unknown"
        say(
            f"another keeper is the leader ({holder}); asked it to run {', '.join(names)}"
            f" (request {', '.join(f'#{i}' for i in ids)}); waiting up to {wait_s:.0f} s for the outcome…"
        )
        deadline = time.monotonic() + wait_s
        rows: list[asyncpg.Record] = []
        while time.monotonic() < deadline:
            rows = list(
                await conn.fetch(
                    "SELECT id, job, outcome, detail::text AS detail FROM keeper.job_requests"
                    " WHERE id = ANY($1::bigint[]) AND finished_at IS NOT NULL ORDER BY id",
                    ids,
                )
            )
            if len(rows) == len(ids):
                break
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    for r in rows:
        say(f"the leader ran {r['job']} (request #{r['id']}): {r['outcome']} {r['detail']}")
    if len(rows) < len(ids):
        say(
            f"{len(ids) - len(rows)} request(s) not finished yet: the leader runs them at its next poll"
            " (keeper.leader_poll_s), or the next leader if this one stops first;"
            " `python -m keeper status` lists open requests"
        )
        return PENDING  # not a success: a cron `run --once … || alert` must see it (review h4)
    return 0 if all(r["outcome"] == "ok" for r in rows) else 1


def build_parser() -> argparse.ArgumentParser:
    # --config is accepted before or after the command; the subcommands' copy must not overwrite a
    # value given before the command with its default (argparse applies sub-parser defaults last)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=argparse.SUPPRESS, help="TOML config (default $GL_CONFIG or config/local.toml)"
    )
    p = argparse.ArgumentParser(prog="python -m keeper", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--config", default=os.environ.get("GL_CONFIG", "config/local.toml"))
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", parents=[common], help="the daemon")
    run.add_argument("--once", action="store_true", help="run the jobs once, follow the txs to the end, exit")
    run.add_argument("--jobs", default=",".join(DEFAULT_ONCE_JOBS), help=f"jobs for --once: {','.join(JOB_NAMES)}")
    run.add_argument("--dry-run", action="store_true", help="decide and simulate; send and record nothing")
    run.add_argument(
        "--wait",
        type=seconds(0, MAX_WAIT_S, "--wait 300"),
        default=300.0,
        help=f"--once while another keeper leads: seconds to wait for it (0..{MAX_WAIT_S:g})",
    )
    run.add_argument("--by", help="who asks (default user@host), recorded with a request to the leader")
    sub.add_parser("status", parents=[common], help="leader, ledger counts, overdue markets, last runs")
    txs = sub.add_parser("txs", parents=[common], help="recent ledger transactions (JSON lines)")
    txs.add_argument(
        "--limit",
        type=whole_number(1, MAX_TXS_LIMIT, "--limit 50"),
        default=50,
        help=f"rows to print, newest first (1..{MAX_TXS_LIMIT})",
    )
    txs.add_argument("--status", choices=("pending", "mined", "confirmed", "reverted", "dropped"))
    q = sub.add_parser("queue", parents=[common], help="the operator resolution queue")
    q.add_argument("--all", action="store_true", help="include resolved, skipped, failed and cancelled entries")
    r = sub.add_parser("resolve", parents=[common], help="queue an operator resolution")
    # ids stay text here: core.resolution validates them with a message naming the input
    r.add_argument("market_id", metavar="MARKET_ID")
    r.add_argument("outcome", metavar="OUTCOME", help="yes | no | invalid")
    r.add_argument("--reason", required=True)
    r.add_argument("--by", help="who asks (default user@host)")
    c = sub.add_parser("cancel", parents=[common], help="cancel a queued resolution before it is sent")
    c.add_argument("queue_id", metavar="QUEUE_ID")
    c.add_argument("--reason", required=True)
    c.add_argument("--by")
    rule = sub.add_parser("rule", parents=[common], help="bind a market to a price feed")
    rule.add_argument("market_id", metavar="MARKET_ID")
    rule.add_argument("--feed", required=True, help="AggregatorV3 address")
    rule.add_argument("--op", required=True, help="gt | gte | lt | lte")
    rule.add_argument("--threshold", required=True, help="in the feed's decimals")
    rule.add_argument("--if-true", default="yes", help="yes | no | invalid")
    rule.add_argument("--if-false", default="no", help="yes | no | invalid")
    rule.add_argument("--reason", help="why this market follows this feed")
    rule.add_argument("--by")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        say(f"config error: {exc}", err=True)
        return REFUSED
    configure_logging()
    try:
        if args.cmd == "run":
            names = [n.strip() for n in args.jobs.split(",") if n.strip()]
            unknown = [n for n in names if n not in JOB_NAMES]
            if unknown or not names:
                got = ", ".join(unknown) if unknown else repr(args.jobs)
                say(f"refused: --jobs: unknown or no job ({got}); choose from {','.join(JOB_NAMES)}", err=True)
                return REFUSED
            try:  # recorded with a request to the leader (keeper.job_requests.requested_by)
                args.by = R.parse_text(_who(args.by), "--by", R.MAX_WHO)
            except R.RequestError as exc:
                say(f"refused: {exc}; pass a name such as --by alice", err=True)
                return REFUSED

            def plan(row: dict[str, Any]) -> None:
                say(orjson.dumps({"plan": row}).decode())

            code = asyncio.run(Daemon(settings, args.dry_run).main(args.once, names, plan))
            if code == NOT_LEADER and args.once:
                return asyncio.run(cmd_request_jobs(settings, names, args.by, args.wait))
            return code
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
    except Unreachable as exc:
        say(f"error: {exc}", err=True)
        return UNREACHABLE
    except asyncpg.LockNotAvailableError:
        say(
            f"error: a row this command changes is locked by another session for more than"
            f" {settings.db_timeouts.lock_s:g} s (keeper.db_lock_timeout_s); end that session"
            " (pg_stat_activity) or retry",
            err=True,
        )
        return UNREACHABLE
    except asyncpg.QueryCanceledError as exc:
        say(f"error: the database cancelled the command ({exc}); retry", err=True)
        return UNREACHABLE
    except (KeyLoadError, ConfigError) as exc:
        log.error("startup_failed", error=str(exc))
        return REFUSED
    return REFUSED
