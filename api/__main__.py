"""`python -m api --config FILE`: the read API (uvicorn) and the websocket feed in one process.

With `api.workers > 1`, uvicorn forks workers; each runs its own outbox pump and feed server
(the feed port is bound with SO_REUSEPORT, so the kernel spreads connections across workers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

import asyncpg
import structlog
import uvicorn
from starlette.applications import Starlette

from api import connections
from api.app import create_app
from api.settings import Settings, load_settings
from core.config import ConfigError, listen_failed, load_config
from core.logs import LOG_LEVELS, configure_logging
from core.schema import schema_problem

log = structlog.get_logger("api")
CONFIG_ENV = "GL_API_CONFIG_FILE"


def _local_secret(path: str, chain_id: int) -> None:
    """On a local chain, creates the JWT secret file with a random secret when it is missing."""
    if not path or chain_id != 31337 or Path(path).exists() or os.environ.get("GL_API_JWT_SECRET"):
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
    log.info("jwt_secret_created", path=path)


def settings_from(path: str) -> Settings:
    config = load_config(path)
    api = config.get("api", {})
    chain = config.get("chain", {})
    if isinstance(api, dict) and isinstance(chain, dict):
        secret_file = api.get("jwt_secret_file", "")
        if isinstance(secret_file, str) and isinstance(chain.get("chain_id"), int):
            _local_secret(secret_file, chain["chain_id"])
    return load_settings(config)


def factory() -> Starlette:
    """uvicorn --factory entry for multi-worker runs."""
    configure_logging()
    return create_app(settings_from(os.environ[CONFIG_ENV]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--config", default=os.environ.get("GL_CONFIG", "config/local.toml"))
    parser.add_argument("--log-level", default="info", type=str.lower, choices=LOG_LEVELS)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        settings = settings_from(args.config)
        _check_listen(settings)
    except ConfigError as exc:
        log.error("config_invalid", error=str(exc))
        return 2
    a = settings.api
    needed = connections.open_files_needed(settings)
    soft, hard = connections.ensure_open_files(needed)
    if soft < needed:
        log.error(
            "config_invalid",
            error=f"api.max_connections ({a.max_connections}) + api.feed_max_connections ({a.feed_max_connections})"
            f" + the pools need up to {needed} open files, and this process may open {soft} (hard limit {hard}):"
            " lower those keys, or raise the limit (LimitNOFILE= in the systemd unit, ulimit -n)",
        )
        return 2
    try:
        asyncio.run(_check_database(settings))
    except ConfigError as exc:
        log.error("config_invalid", error=str(exc))
        return 2
    except DatabaseUnreachable as exc:
        log.error("database_unreachable", error=f"{exc}; start PostgreSQL or fix the DSN, then start again")
        return 1
    log.info(
        "api_starting",
        host=a.host,
        port=a.port,
        feed=f"ws://{a.feed_host}:{a.feed_port}",
        workers=a.workers,
        settings=repr(settings),
    )
    if a.workers > 1:
        os.environ[CONFIG_ENV] = args.config
        uvicorn.run("api.__main__:factory", factory=True, workers=a.workers, **server_options(settings))
        return 0
    uvicorn.Server(uvicorn.Config(create_app(settings), **server_options(settings))).run()
    return 0


class DatabaseUnreachable(Exception):
    """The database did not answer a first connection (names the DSN's key)."""


async def _check_database(settings: Settings) -> None:
    """One connection as the pools make them, before anything starts: a role that does not exist or may
    not be taken, a database or user that does not exist, is one line naming its key (exit 2), not a
    lifespan traceback and exit 3 (review s15 F3)."""
    a = settings.api
    for key, dsn in (("database.dsn", settings.dsn), ("database.read_dsn", settings.read_dsn)):
        try:
            conn = await asyncpg.connect(
                dsn, timeout=10, server_settings={"role": a.db_role} if a.db_role else None, command_timeout=10
            )
        except (asyncpg.InvalidParameterValueError, asyncpg.InsufficientPrivilegeError) as exc:
            if not a.db_role:  # the DSN's own options or the user's rights on the database
                raise ConfigError(f"{key}: {exc}") from None
            raise ConfigError(
                f"api.db_role = {a.db_role!r} (or {key}): {exc}; use the API's read-only role"
                " (sql/002_views.sql: api), granted to the DSN's user"
            ) from None
        except (
            asyncpg.InvalidAuthorizationSpecificationError,
            asyncpg.InvalidPasswordError,
            asyncpg.InvalidCatalogNameError,
        ) as exc:
            raise ConfigError(f"{key}: {exc}") from None
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnreachable(f"{key}: {type(exc).__name__}: {exc}") from None
        try:  # this build's schema, not one behind (a traceback and exit 3 before: review h4) or ahead
            problem = await schema_problem(conn)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnreachable(f"{key}: {type(exc).__name__}: {exc}") from None
        finally:
            await conn.close(timeout=5)
        if problem:
            raise ConfigError(f"{key}: {problem}")
        if settings.read_dsn == settings.dsn:
            return


def _check_listen(settings: Settings) -> None:
    """A port another process holds is one line naming its key (exit 2), not uvicorn's bind error
    or a traceback from the feed (both ports are tried before anything starts)."""
    a = settings.api
    ports = (
        ("api.port", "api.host", a.host, a.port, False),
        ("api.feed_port", "api.feed_host", a.feed_host, a.feed_port, True),
    )
    for key, host_key, host, port, reuse in ports:
        if port == 0:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse:  # the feed binds with SO_REUSEPORT (workers share it)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                raise listen_failed(key, host, port, exc, host_key=host_key) from None


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's settings. Its own proxy-header handling is off: it trusts loopback by default, so
    any local client could pick its rate-limit key; the app applies api.forwarded_allow_ips itself.
    SIGTERM: uvicorn stops accepting, gives in-flight requests `shutdown_timeout_s`, cancels the
    rest, then the lifespan stops the feed and the pump (3 s) and closes the pools (bounded)."""
    a = settings.api
    return {
        "host": a.host,
        "port": a.port,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
        "server_header": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": max(1, round(a.shutdown_timeout_s)),
        "timeout_keep_alive": 5,
        "http": connections.protocol(
            connections.Limits(
                a.head_timeout_s,
                a.max_head_bytes,
                a.max_connections_per_ip,
                a.max_connections,
                a.forwarded_allow_ips,
                a.write_timeout_s,
            )
        ),
        "ws": "none",  # the feed has its own port; no upgrade path around the limits above
    }


if __name__ == "__main__":
    sys.exit(main())
