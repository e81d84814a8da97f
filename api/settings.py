"""The API's settings: one frozen dataclass built from the [api] section (plus [database],
[redis], [chain]) of the config file, validated at start; errors name the key.

The JWT secret comes from the environment (``GL_API_JWT_SECRET``) or a file
(``api.jwt_secret_file``), never from the TOML itself, and never appears in a repr or a log line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.config import (
    ChainSettings,
    ConfigError,
    DatabaseSettings,
    Ranges,
    RedisSettings,
    check_port,
    check_range,
    check_ranges,
    section,
)
from core.warm import DEFAULT_API_PORT

JWT_SECRET_ENV = "GL_API_JWT_SECRET"


@dataclasses.dataclass(frozen=True, slots=True)
class ApiSection:
    """Keys of the [api] table (every one documented in docs/api.md)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_API_PORT  # HTTP port; the keeper warms the cache through it (core.warm)
    # Chains this API and feed serve (one indexer per chain writes the same database); requests pick
    # one with ?chainId= (feed: ws://…/?chainId=). Empty = only [chain].chain_id, the default.
    chain_ids: tuple[int, ...] = ()
    feed_host: str = "127.0.0.1"
    feed_port: int = 58081
    workers: int = 1
    db_role: str = "api"  # SET ROLE on every pooled connection: the read-only role from sql/002
    pool_min: int = 2
    pool_max: int = 10
    pool_acquire_timeout_s: float = 2.0  # a request waits this long for a connection, then 503 + Retry-After
    # requests of one client address (IPv6: its /64) waiting on or holding a database connection at once
    # while half the pool (pool_max) is busy; beyond, 429 + Retry-After: one address within its rate limit
    # used up the read pool (review h3)
    db_requests_per_ip: int = 6
    write_pool_max: int = 3  # the primary: nonces, notification marks (the outbox pumps have their own)
    feed_pool_max: int = 3  # the feed's replays: never the HTTP pool
    retry_after_s: int = 1  # Retry-After on a 503 for a busy pool or database
    shutdown_timeout_s: float = 10.0  # SIGTERM: in-flight requests get this long, then are cancelled
    statement_timeout_ms: int = 5000
    cache_enabled: bool = True
    cache_ttl_s: int = 300
    cache_prefix: str = "gl"
    aggregate_cache_ttl_s: int = 60  # stats and leaderboards: TTL only, not invalidated per event
    rate_limit_enabled: bool = True
    rate_limit_window_s: int = 900
    rate_limit_ip: int = 100
    rate_limit_user: int = 1000
    # Proxies whose X-Forwarded-For is believed (IPs or CIDRs); empty = the peer is the client.
    forwarded_allow_ips: tuple[str, ...] = ()
    # Clients (after forwarded_allow_ips) that may read /metrics; others get 404. Loopback and private ranges:
    # where a Prometheus server scrapes from. ["0.0.0.0/0", "::/0"] makes it public.
    metrics_allow_ips: tuple[str, ...] = (
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    )
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 65536
    body_timeout_s: float = 10.0  # a request body must arrive within this (408 otherwise)
    head_timeout_s: float = 10.0  # a request's line and headers must arrive within this, or the connection is cut
    max_head_bytes: int = 16384  # request line + headers larger than this: 431, connection closed
    write_timeout_s: float = 30.0  # an answer of which the client reads nothing for this long: the connection is cut
    max_connections_per_ip: int = 64  # open HTTP connections per client (IPv6: per /64; forwarded_allow_ips exempt)
    max_connections: int = 4096  # open HTTP connections in all (per worker); beyond, new ones are closed
    jwt_secret_file: str = ""
    jwt_ttl_s: int = 900  # access tokens are short-lived; renew with POST /v1/auth/refresh
    session_max_s: int = 86_400  # no token outlives this after sign-in (refresh included): sign in again
    signin_rate_limit: int = 10  # nonce + verify + refresh requests per IP per rate-limit window
    siwe_domain: str = "localhost"
    siwe_uri: str = "http://localhost"
    siwe_nonce_ttl_s: int = 600
    admin_addresses: tuple[str, ...] = ()
    ready_max_lag_blocks: int = 30
    ready_max_head_age_s: int = 120
    outbox_poll_s: float = 1.0
    cursor_secret_file: str = ""
    feed_queue_max: int = 1000
    feed_buffer_max_bytes: int = 1 << 20  # unread bytes per connection before it is cut (4008)
    feed_max_rooms: int = 50
    feed_max_frame_bytes: int = 4096
    feed_heartbeat_s: float = 15.0
    feed_replay_max: int = 10000
    feed_replay_stall_s: float = 10.0  # a replaying client that takes no page for this long is cut (4008)
    feed_max_connections_per_ip: int = 20
    feed_max_connections: int = 10000  # feed sockets in all, handshakes included; beyond, closed at once
    feed_handshake_timeout_s: float = 3.0  # a socket that has not finished its websocket handshake by then is closed
    feed_resumes_per_minute: int = 30  # subscribes with since per client address (a replay reads the outbox)
    feed_resume_burst: int = 5  # ... of which at most this many at once (never more than the per-minute budget)
    feed_frames_per_s: float = 5.0  # client frames per connection (token bucket) ...
    feed_frame_burst: int = 20  # ... with this burst; beyond it frames are refused, 4x beyond it closes (1008)
    docs_enabled: bool = True
    web_enabled: bool = True  # the reference page at / (api/static)
    public_feed_url: str = ""  # the feed's address as browsers reach it; "" = ws://<page's host>:feed_port
    agg_max_age_s: int = 900  # keeper aggregates (agg.*) older than this are ignored (live SQL instead)
    # rows of a leaderboard ranked live (a chain the keeper has never ranked: api/rankings.py); the keeper's
    # rankings hold its own leaderboard_size (the same default)
    leaderboard_size: int = 100

    @property
    def db_answer_s(self) -> float:
        """How long a query may wait for the database's answer on the client side: the server's
        statement_timeout answers first when the server is there to answer."""
        return self.statement_timeout_ms / 1000 + 2


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    chain_id: int
    dsn: str
    read_dsn: str
    redis_url: str
    api: ApiSection
    jwt_secret: str = dataclasses.field(repr=False)
    cursor_secret: bytes = dataclasses.field(repr=False)

    def __repr__(self) -> str:  # DSNs and URLs may hold passwords
        return f"Settings(chain_id={self.chain_id}, api={self.api!r}, dsn=<redacted>, jwt_secret=<redacted>)"

    @property
    def chains(self) -> tuple[int, ...]:
        """Every chain served; the first is the default ([chain].chain_id)."""
        return (self.chain_id, *(c for c in self.api.chain_ids if c != self.chain_id))

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(a.lower() for a in self.api.admin_addresses)


# Every numeric [api] key: (low, high, unit, above_low); checked at load with the key named (review s15
# F3: 0 made the feed's heartbeat spin a core and its queues unbounded, a negative statement timeout
# failed at start with a traceback).
RANGES: Ranges = {
    "workers": (1, 64, "processes", False),
    "pool_min": (0, 1_000, "connections", False),
    "pool_max": (1, 1_000, "connections", False),
    "db_requests_per_ip": (1, 1_000, "requests", False),
    "write_pool_max": (1, 1_000, "connections", False),
    "feed_pool_max": (1, 1_000, "connections", False),
    "pool_acquire_timeout_s": (0, 600, "seconds", True),
    "retry_after_s": (1, 3_600, "seconds", False),
    "shutdown_timeout_s": (0, 3_600, "seconds", True),
    "statement_timeout_ms": (1, 600_000, "ms", False),
    "cache_ttl_s": (1, 604_800, "seconds", False),
    "aggregate_cache_ttl_s": (1, 604_800, "seconds", False),
    "rate_limit_window_s": (1, 604_800, "seconds", False),
    "rate_limit_ip": (1, 10**12, "requests a window", False),
    "rate_limit_user": (1, 10**12, "requests a window", False),
    "signin_rate_limit": (1, 10**12, "requests a window", False),
    "max_body_bytes": (1, 1 << 30, "bytes", False),
    "body_timeout_s": (0, 3_600, "seconds", True),
    "head_timeout_s": (0, 3_600, "seconds", True),
    "write_timeout_s": (0, 3_600, "seconds", True),
    "max_head_bytes": (1_024, 1 << 20, "bytes", False),
    "max_connections_per_ip": (1, 1_000_000, "connections", False),
    "max_connections": (1, 1_000_000, "connections", False),
    "jwt_ttl_s": (60, 86_400, "seconds", False),
    "session_max_s": (60, 30 * 86_400, "seconds", False),
    "siwe_nonce_ttl_s": (10, 86_400, "seconds", False),
    "ready_max_lag_blocks": (0, 10_000_000, "blocks", False),
    "ready_max_head_age_s": (1, 604_800, "seconds", False),
    "outbox_poll_s": (0.01, 3_600, "seconds", False),
    "feed_queue_max": (1, 10_000_000, "messages", False),
    "feed_buffer_max_bytes": (1, 1 << 30, "bytes", False),
    "feed_max_rooms": (1, 100_000, "rooms", False),
    "feed_max_frame_bytes": (64, 1 << 20, "bytes", False),
    "feed_heartbeat_s": (0.05, 3_600, "seconds", False),
    "feed_replay_max": (1, 10_000_000, "events", False),
    "feed_replay_stall_s": (0, 3_600, "seconds", True),
    "feed_max_connections_per_ip": (1, 1_000_000, "connections", False),
    "feed_max_connections": (1, 1_000_000, "connections", False),
    "feed_handshake_timeout_s": (0, 600, "seconds", True),
    "feed_resumes_per_minute": (1, 1_000_000, "subscribes", False),
    "feed_resume_burst": (1, 1_000_000, "subscribes", False),
    "feed_frames_per_s": (0, 100_000, "frames", True),
    "feed_frame_burst": (1, 1_000_000, "frames", False),
    "agg_max_age_s": (1, 604_800, "seconds", False),
    "leaderboard_size": (1, 100_000, "rows", False),
}


def _same_host(a: str, b: str) -> bool:
    """Could two listeners on these hosts collide on one port (a wildcard address takes every one)?"""
    wild = {"0.0.0.0", "::", ""}
    return a == b or a in wild or b in wild


def _secret(path: str, env: Mapping[str, str], env_name: str, key: str) -> str:
    if env.get(env_name):
        return env[env_name]
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{key}: {path} is not UTF-8 text: write the secret as UTF-8") from None
    return ""


def load_settings(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Builds Settings from a loaded config (core.config.load_config)."""
    env = os.environ if environ is None else environ
    raw_api = config.get("api")
    if isinstance(raw_api, dict) and "trust_forwarded_for" in raw_api:
        raise ConfigError(
            "api.trust_forwarded_for was removed: list the proxies whose X-Forwarded-For to believe in "
            "api.forwarded_allow_ips (IPs or CIDRs)"
        )
    api = section(config, "api", ApiSection)
    db = section(config, "database", DatabaseSettings)
    redis = section(config, "redis", RedisSettings)
    chain = section(config, "chain", ChainSettings)
    for i, a in enumerate(api.admin_addresses):
        if len(a) != 42 or not a.startswith("0x"):
            raise ConfigError(f"api.admin_addresses[{i}] must be a 0x-prefixed 20-byte hex address, got {a!r}")
    if api.chain_ids and chain.chain_id not in api.chain_ids:
        raise ConfigError(
            f"api.chain_ids must include chain.chain_id ({chain.chain_id}), the default chain; "
            f"got {list(api.chain_ids)}"
        )
    for key in ("forwarded_allow_ips", "metrics_allow_ips"):
        for i, net in enumerate(getattr(api, key)):
            try:
                ipaddress.ip_network(net, strict=False)
            except (ValueError, TypeError):
                raise ConfigError(
                    f"api.{key}[{i}] must be an IP address or CIDR (e.g. 10.0.0.0/8), got {net!r}"
                ) from None
    check_ranges("api", api, RANGES)
    if api.pool_min > api.pool_max:
        raise ConfigError(f"api.pool_min ({api.pool_min}) must be at most api.pool_max ({api.pool_max})")
    for i, c in enumerate(api.chain_ids):
        check_range(f"api.chain_ids[{i}]", c, 1, 2**63 - 1, "(a chain id)")
    free = {0: "a free port the system picks (tests)"}
    check_port("api.port", api.port, free)
    check_port("api.feed_port", api.feed_port, free)
    if api.port and api.port == api.feed_port and _same_host(api.host, api.feed_host):
        raise ConfigError(
            f"api.feed_port ({api.feed_port}) is api.port: the HTTP API and the feed need a port each; "
            "set api.feed_port to another port"
        )
    jwt_secret = _secret(api.jwt_secret_file, env, JWT_SECRET_ENV, "api.jwt_secret_file")
    if len(jwt_secret) < 32:
        raise ConfigError(f"the JWT secret must be at least 32 characters: set {JWT_SECRET_ENV} or api.jwt_secret_file")
    cursor = _secret(api.cursor_secret_file, env, "GL_API_CURSOR_SECRET", "api.cursor_secret_file") or jwt_secret
    return Settings(
        chain_id=chain.chain_id,
        dsn=db.dsn,
        read_dsn=db.read_dsn or db.dsn,
        redis_url=redis.url,
        api=api,
        jwt_secret=jwt_secret,
        cursor_secret=("cursor:" + cursor).encode(),
    )
