"""python -m indexer [run|migrate|reset] [--config FILE]

    run      (default) index the configured chain: backfill, then follow the tip
    migrate  apply sql/ migrations and exit
    reset    delete everything the indexer wrote for the chain (re-index from scratch)

Shutdown order on SIGTERM/SIGINT: the stop event is set → the loop finishes (or abandons) the
current fetch and commits nothing half-done → the websocket and RPC session close → the HTTP
server stops → exit 0. Everything happens within a few seconds (the budget is 15 s).

--config defaults to $GL_CONFIG, then config/local.toml (as for the keeper and the API).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import os
import signal
import time
from collections.abc import Callable

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.config import ConfigError, listen_failed
from core.logs import configure_logging
from core.schema import schema_problem
from indexer.maintenance import WriterRunning, reset_chain
from indexer.metrics import Metrics
from indexer.migrate import MigrationError
from indexer.runtime import tune_gc
from indexer.service import (
    EXIT_CONFIG,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_STALLED,
    DatabaseUnreachable,
    Status,
    connect_at_start,
    run,
    watchdog,
)
from indexer.service import migrate as apply_pending_migrations
from indexer.settings import Settings, load_settings
from indexer.spawn import Child, discard

EXIT_INTERRUPTED = 130  # migrate or reset cut short by Ctrl-C (the shell's 128 + SIGINT)

log = structlog.get_logger("indexer")


def health_app(settings: Settings, status: Status, metrics: Metrics) -> web.Application:
    """/health: the process runs. /ready: writer, lag within bound, progress recent (evaluated per request)."""

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "role": status.role})

    async def ready(_: web.Request) -> web.Response:
        lag = max(0, status.head - status.indexed) if status.indexed >= 0 else None
        idle = time.monotonic() - status.last_progress
        ok = (
            status.role == "writer"
            and lag is not None
            and lag <= settings.options.ready_max_lag
            and idle <= settings.options.ready_max_idle
        )
        body = {
            "ready": ok,
            "role": status.role,
            "head": status.head,
            "indexed": status.indexed,
            "lag": lag,
            "finalized": status.finalized,
            "seconds_since_progress": round(idle, 1),
        }
        return web.json_response(body, status=200 if ok else 503)

    async def prom(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes([web.get("/health", health), web.get("/ready", ready), web.get("/metrics", prom)])
    return app


def redis_publisher(settings: Settings) -> tuple[object | None, Callable[[int], None]]:
    """Best-effort PUBLISH gl:outbox:{chain_id} <max seq> after each commit; never blocks the loop."""
    if settings.redis is None:
        return None, lambda seq: None
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(settings.redis.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    channel = f"gl:outbox:{settings.chain.chain_id}"
    tasks: set[asyncio.Task[None]] = set()

    async def send(seq: int) -> None:
        try:
            await asyncio.wait_for(client.publish(channel, str(seq)), 1.0)
        except Exception as exc:  # best effort: the feed also wakes on NOTIFY gl_outbox and polls
            log.debug("redis_publish_failed", error=str(exc)[:200])

    def publish(seq: int) -> None:
        if len(tasks) > 100:
            return  # Redis is slow or down: drop notices, never queue without bound
        t = asyncio.get_running_loop().create_task(send(seq))
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    return client, publish


async def serve(
    settings: Settings, until_head: bool = False, migrate_first: bool = True, child: Child | None = None
) -> int:
    status = Status()
    metrics = Metrics(settings.chain.chain_id)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner: web.AppRunner | None = None
    if settings.metrics_port >= 0:
        runner = web.AppRunner(health_app(settings, status, metrics), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.options.metrics_host, settings.metrics_port)
        try:
            await site.start()
        except OSError as exc:  # a port in use: one line naming the key, exit 2 (never a traceback)
            await runner.cleanup()
            key = "indexer.metrics_port" if settings.options.metrics_port else "services.indexer_metrics_port"
            raise listen_failed(
                key,
                settings.options.metrics_host,
                settings.metrics_port,
                exc,
                " (indexer.metrics_port = -1: off)",
                "indexer.metrics_host",
            ) from None
    client, publish = redis_publisher(settings)
    stalled: list[bool] = []
    dog = asyncio.create_task(watchdog(settings, status, stop, stalled, metrics))
    main = asyncio.create_task(
        run(
            settings,
            stop,
            metrics,
            status,
            until_head=until_head,
            publish=publish,
            migrate_first=migrate_first,
            child=child,
        )
    )
    try:
        code = await _until_done_or_stuck(main, stop, status)
    finally:
        stop.set()
        dog.cancel()
        with contextlib.suppress(BaseException):
            await dog
        if runner is not None:
            await runner.cleanup()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()  # type: ignore[attr-defined]
    if stalled:
        metrics.stalled.set(1)
        return EXIT_STALLED
    log.info("indexer_stopped", exit_code=code)
    return code


STOP_GRACE_S = 30.0  # after SIGTERM or the watchdog: the time to finish the call in flight


async def _until_done_or_stuck(main: asyncio.Task[int], stop: asyncio.Event, status: Status) -> int:
    """The run's exit code. A stop (SIGTERM, the watchdog) is checked only between steps: a call that
    never returns (a database host gone without a reset, a lock held by a session whose network
    died) would keep the process alive for ever with /health green. STOP_GRACE_S after a stop the
    run is cancelled; if even that does not end it, the process exits at once."""
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({main, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not main.done():
            done, _ = await asyncio.wait({main}, timeout=STOP_GRACE_S)
            if not done:
                log.error("indexer_stuck_in_a_call", waited_s=STOP_GRACE_S, indexed=status.indexed)
                main.cancel()
                done, _ = await asyncio.wait({main}, timeout=STOP_GRACE_S / 3)
                if not done:
                    log.error("indexer_exiting_without_cleanup")
                    os._exit(EXIT_STALLED)
    finally:
        stopping.cancel()
    try:
        return main.result()
    except asyncio.CancelledError:
        return EXIT_STALLED


async def migrate(settings: Settings) -> int:
    await apply_pending_migrations(settings)
    return EXIT_OK


async def reset(settings: Settings) -> int:
    conn = await connect_at_start(settings, "reset")
    try:
        problem = await schema_problem(conn)  # review s20 hi: a traceback on an unmigrated database
        if problem:
            log.error("config_invalid", error=f"database.dsn: {problem}")
            return EXIT_CONFIG
        await reset_chain(conn, settings.chain.chain_id)
    except WriterRunning as exc:
        log.error("reset_refused", error=str(exc))
        return EXIT_CONFIG
    finally:
        await conn.close()
    log.info("chain_reset", chain_id=settings.chain.chain_id)
    return EXIT_OK


COMMANDS = ("run", "migrate", "reset")


def main(argv: list[str] | None = None, child: Child | None = None) -> int:
    """`child`: a fetch process started before the imports (indexer/spawn.py); `run` adopts it,
    every other way out closes it."""
    try:
        return _main(argv, child)
    finally:
        discard(child)


def _main(argv: list[str] | None, child: Child | None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m indexer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # no `choices`: with them, a misspelled option (`--confg FILE`) is reported as FILE being a bad command
    parser.add_argument("command", nargs="?", default="run", help="run (default), migrate or reset")
    parser.add_argument(
        "--config",
        default=os.environ.get("GL_CONFIG", "config/local.toml"),
        help="TOML config file (GL_<SECTION>__<KEY> env overrides); default $GL_CONFIG, then config/local.toml",
    )
    parser.add_argument("--no-migrate", action="store_true", help="do not apply migrations at start")
    parser.add_argument(
        "--exit-at-head",
        action="store_true",
        help="stop once caught up with the head (a rebuild or a one-shot backfill)",
    )
    args, extra = parser.parse_known_args(argv)
    if extra:
        options = [o for a in parser._actions for o in a.option_strings]
        near = difflib.get_close_matches(extra[0].split("=")[0], options, n=1)
        parser.error(
            f"unrecognized argument(s): {' '.join(extra)}"
            + (f" (did you mean {near[0]}?)" if near else f"; options: {', '.join(options)}")
        )
    if args.command not in COMMANDS:
        parser.error(f"unknown command {args.command!r}: choose from {', '.join(COMMANDS)}")
    try:
        # migrations are the same for every chain: `migrate` works before the first deploy, or on a host
        # without deployments/ (review h4)
        settings = load_settings(args.config, need_deployment=args.command != "migrate")
    except ConfigError as exc:
        configure_logging()
        log.error("config_invalid", error=str(exc))
        return EXIT_CONFIG
    configure_logging(settings.options.log_level)
    tune_gc()
    try:
        if args.command == "migrate":
            return asyncio.run(migrate(settings))
        if args.command == "reset":
            return asyncio.run(reset(settings))
        return asyncio.run(
            serve(settings, until_head=args.exit_at_head, migrate_first=not args.no_migrate, child=child)
        )
    except KeyboardInterrupt:
        # `run` stops cleanly on Ctrl-C (serve handles SIGINT); a migrate or reset cut short did not finish:
        # not success, or `migrate && restart` would go on with nothing applied (review s20 hi)
        return EXIT_OK if args.command == "run" else EXIT_INTERRUPTED
    except (asyncpg.InsufficientPrivilegeError, asyncpg.ReadOnlySQLTransactionError) as exc:
        log.error(
            "config_invalid",
            error=f"database.dsn: {type(exc).__name__}: {exc}; the indexer writes: it needs the writers' role"
            " (the one that ran the migrations, docs/operations.md) on the primary, not a read-only login or a replica",
        )
        return EXIT_CONFIG
    except ConfigError as exc:  # found once running: a port in use (names the key)
        log.error("config_invalid", error=str(exc))
        return EXIT_CONFIG
    except DatabaseUnreachable as exc:  # exit 1, not 3: 3 is ReorgTooDeep, which supervisors do not restart
        log.error("database_unreachable", error=str(exc))
        return EXIT_ERROR
    except MigrationError as exc:  # a file failed (rolled back, named) or the lock stayed held: one line
        log.error("migration_failed", error=str(exc))
        return EXIT_ERROR
    except Exception as exc:
        log.exception("indexer_crashed", error=f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR
