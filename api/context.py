"""What a route handler receives (Ctx), what the app holds for its lifetime (State), and how an
endpoint is declared (Endpoint): method, path, parameters, auth, cache key — from which the app
builds its routes and api/openapi.py the OpenAPI document."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

import asyncpg
from starlette.requests import Request

from api.params import Param
from api.settings import Settings
from core.pgerrors import pooled

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    from api.auth import Principal
    from api.cache import Cache
    from api.feed import Hub
    from api.metrics import Metrics
    from api.outbox import Pump
    from api.rankings import Rankings
    from api.ratelimit import RateLimiter

Record = asyncpg.Record
if TYPE_CHECKING:
    Conn = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
Auth = Literal["user", "admin"] | None


class Lease:
    """A request's one pool connection (Ctx.conn), taken for the request's exchange, which a handler can hand
    back while it waits on work another request does (a live ranking, api/rankings.py): a crowd of requests
    waiting on one ranking held a connection each, doing nothing, until the pool was theirs (session 18's
    open item). A handed-back lease takes a connection again only when asked (`retake`): a waiter whose
    answer arrived needs none, and asking for one made it wait on a busy pool for nothing (review s19 h3).

        async with Lease(pool, acquire_s) as lease:
            lease.conn                          # the connection; None while handed back
            await lease.release(); await lease.retake()
            lease.acquiring                     # True while waiting for the pool (a timeout is "busy")
    """

    def __init__(self, pool: asyncpg.Pool, acquire_s: float, state: State | None = None) -> None:
        self.pool = pool
        self._acquire_s = acquire_s
        self._state = state  # its db_in_flight counts the lease while it holds or waits for a connection
        self._counted = False
        self._held: contextlib.AbstractAsyncContextManager[Any] | None = None
        self.conn: Any = None
        self.acquiring = False

    def _count(self, on: bool) -> None:
        if self._state is not None and on != self._counted:
            self._state.db_in_flight += 1 if on else -1
            self._counted = on

    async def retake(self) -> None:
        """Takes a connection (waiting at most acquire_s) unless the lease holds one. Counted in flight at
        once, before any wait: a burst of requests is counted as it arrives (app._answer's exemption)."""
        if self._held is not None:
            return
        self._count(True)
        held = pooled(self.pool, self._acquire_s)
        self.acquiring = True
        try:
            self.conn = await held.__aenter__()
        except BaseException:  # no connection (a timeout: `acquiring` stays True for the caller's message)
            self._count(False)  # and no __aexit__ follows a failed __aenter__
            raise
        self.acquiring = False
        self._held = held

    async def release(self) -> None:
        """Hands the connection back to the pool (ctx.conn is then unusable until `retake`)."""
        held, self._held, self.conn = self._held, None, None
        self._count(False)
        if held is not None:
            await held.__aexit__(None, None, None)

    async def __aenter__(self) -> Lease:
        await self.retake()
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        held, self._held, self.conn = self._held, None, None
        self._count(False)
        return None if held is None else await held.__aexit__(*exc)


@dataclasses.dataclass(frozen=True, slots=True)
class ChainParts:
    """What the API keeps per served chain: its cache namespace, outbox pump and feed hub."""

    cache: Cache
    pump: Pump
    hub: Hub


@dataclasses.dataclass(slots=True)
class State:
    settings: Settings
    metrics: Metrics
    read_pool: asyncpg.Pool
    write_pool: asyncpg.Pool
    cache: Cache  # the default chain's (settings.chain_id)
    limiter: RateLimiter
    pump: Pump
    hub: Hub
    # /ready's own connection (a pool of at most one): requests holding every read connection made a
    # probe wait and report the database down, though a busy pool is load (review s15 F2)
    probe_pool: asyncpg.Pool
    # and one on the primary (dsn) in a writable session: a failover that leaves it read-only answers
    # reads but refuses sign-in, and /ready says "degraded" (review h2)
    write_probe_pool: asyncpg.Pool
    rankings: Rankings
    chains: dict[int, ChainParts] = dataclasses.field(default_factory=dict)
    replica: bool = False  # the read pool reads another database than the primary (api read_dsn)
    db_requests: dict[str, int] = dataclasses.field(default_factory=dict)  # per address key: app._answer
    # requests holding or waiting for a connection, every address (Lease); one waiting on another's live
    # ranking holds none and is not counted (review s19 h3)
    db_in_flight: int = 0

    def pump_of(self, chain_id: int) -> Pump:
        """The outbox pump of a served chain (the default chain's when not served: a test's State)."""
        parts = self.chains.get(chain_id)
        return parts.pump if parts is not None else self.pump


@dataclasses.dataclass(slots=True)
class Ctx:
    request: Request
    state: State
    lease: Lease
    params: dict[str, Any]
    user: Principal | None
    body: Any = None
    chain: int | None = None  # the request's ?chainId=, validated; None = the default chain
    path: str = ""  # the endpoint's OpenAPI template (Endpoint.path): what a cursor is issued for
    # Epoch seconds after which the answer is wrong without any chain event: a market shown "active"
    # closes at its end time. The cache keeps the answer no longer than this (see api/app.py).
    fresh_until: float | None = None
    # The answer's `asOf` when it is older than the request (a kept live ranking); None = read now.
    as_of: dict[str, Any] | None = None
    # Cache keys whose invalidation makes this answer wrong besides its own (api/cache.py, deps).
    deps: list[str] = dataclasses.field(default_factory=list)

    @property
    def conn(self) -> Conn:
        """The request's connection (Lease); a handler never acquires a second one (Endpoint.db)."""
        conn: Conn | None = self.lease.conn
        if conn is None:
            raise RuntimeError("the request's connection was handed back: await ctx.lease.retake() first")
        return conn

    @property
    def chain_id(self) -> int:
        return self.state.settings.chain_id if self.chain is None else self.chain

    def depends_on(self, keys: Iterable[str]) -> None:
        """The answer being built is valued with these keys' data (a user's positions at their markets'
        prices): the cache drops it when one of them is invalidated."""
        self.deps.extend(keys)

    def stale_at(self, when: float) -> None:
        """The answer being built stops being true at `when` (epoch seconds)."""
        if self.fresh_until is None or when < self.fresh_until:
            self.fresh_until = when


Handler = Callable[[Ctx], Awaitable[dict[str, Any]]]
CacheKey = Callable[[dict[str, Any]], tuple[str, str]]


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str  # OpenAPI template, e.g. /v1/markets/{id}
    handler: Handler
    summary: str
    tag: str
    params: tuple[Param, ...] = ()
    auth: Auth = None
    cache: CacheKey | None = None  # (seed key, variant) for cache-aside
    body: dict[str, Any] | None = None  # JSON schema of the request body
    response: dict[str, Any] | None = None  # JSON schema of `data` (api/schemas.py)
    meta: dict[str, Any] | None = None  # JSON schema of `meta`; None = the `paged` kind's meta, or no meta
    status: int = 200  # the success status (the handler returns it as __status__ when not 200)
    errors: tuple[int, ...] = ()  # error statuses beyond the ones every endpoint can answer (api/openapi.py)
    paged: Literal["page", "cursor"] | None = None
    aggregate: bool = False  # cached with api.aggregate_cache_ttl_s, not invalidated per event
    description: str = ""
    # The one pool connection the handler gets (ctx.conn): "read" from the replica/read-only pool,
    # "write" from the primary for handlers that write the API's own tables. A handler never
    # acquires a second connection: a request holding one while waiting for another deadlocks the
    # pool under concurrency.
    db: Literal["read", "write"] = "read"


def in_use(pool: asyncpg.Pool) -> int:
    """The pool's connections checked out now."""
    return pool.get_size() - pool.get_idle_size()


AS_OF_SQL = """
SELECT c.block_number, c.block_hash, h.head_block, h.safe_block, h.finalized_block{held}
  FROM (SELECT 1) one
  LEFT JOIN idx.checkpoints c ON c.chain_id = $1
  LEFT JOIN idx.chain_heads h ON h.chain_id = $1
"""
# The outbox rows a database holds, every one up to it (the highest seq, or the highest pruned when
# retention emptied the outbox): on a replica, what it has replayed of the primary.
HELD_SEQ = """,
       greatest((SELECT coalesce(max(seq), 0) FROM idx.outbox),
                (SELECT coalesce(max(pruned_through), 0) FROM idx.outbox_pruned)) AS held_seq"""
AS_OF_ONLY_SQL = AS_OF_SQL.format(held="")
AS_OF_HELD_SQL = AS_OF_SQL.format(held=HELD_SEQ)


async def fetch_freshness(conn: Conn, chain_id: int, replica: bool) -> tuple[dict[str, Any], int | None]:
    """How fresh an answer is: the last indexed block and the node's safe/finalized tags (`asOf`), and,
    read from a `replica`, the outbox seq it holds every row up to (None from the primary, which holds
    every row the pumps read: nothing to compare, no cost on every request)."""
    r = await conn.fetchrow(AS_OF_HELD_SQL if replica else AS_OF_ONLY_SQL, chain_id)
    assert r is not None
    as_of = as_of_json(chain_id, r["block_number"], r["block_hash"], r["safe_block"], r["finalized_block"])
    return as_of, int(r["held_seq"]) if replica else None


def as_of_json(
    chain_id: int, block_number: int | None, block_hash: bytes | None, safe: int | None, finalized: int | None
) -> dict[str, Any]:
    """The `asOf` block of every answer (and of /ready), one shape."""
    return {
        "chainId": chain_id,
        "blockNumber": block_number,
        "blockHash": None if block_hash is None else "0x" + bytes(block_hash).hex(),
        "safeBlock": safe,
        "finalizedBlock": finalized,
    }
