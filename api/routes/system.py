"""/health (liveness), /ready (PostgreSQL reachable and the indexer within bounds; Redis state
reported), /metrics (Prometheus), /openapi.json and /docs."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from api import connections, feed_guard
from api.clientip import Network, is_ip, is_trusted, networks
from api.context import as_of_json, in_use
from api.encode import JSONBody
from api.errors import FieldError, error_response
from api.openapi import render_docs, spec
from api.schemas import AS_OF, BOOL, INT, STR, TIME, enum, model, null, obj
from core.pgerrors import CONNECTION_GONE, pooled
from core.schema import schema_problem

log = structlog.get_logger("api.system")

if TYPE_CHECKING:
    from api.app import Runtime

READY_SQL = """
SELECT h.head_block, h.updated_at, c.block_number AS indexed_block, c.block_hash, h.safe_block, h.finalized_block,
       now() AS now
  FROM (SELECT 1) one
  LEFT JOIN idx.chain_heads h ON h.chain_id = $1
  LEFT JOIN idx.checkpoints c ON c.chain_id = $1
"""

HEALTH = model("Health", obj({"status": enum("ok")}))
READY = model(
    "Ready",
    obj(
        {
            "status": enum("ready", "degraded"),
            "checks": obj(
                {
                    "database": enum("ok"),
                    "writes": STR,
                    "indexer": obj({"lag_blocks": INT, "head_age_s": {"type": "number"}}),
                    "redis": STR,
                    "outbox": obj({"seq": null(INT), "listening": BOOL}),
                },
                optional=("indexer",),
            ),
            "asOf": AS_OF,
            "time": TIME,
        },
        description=(
            "degraded: Redis is down (answers come from PostgreSQL, no cache, no rate limits), or the primary"
            " does not take writes (checks.writes: sign-in and read marks answer 503; reads answer)"
        ),
    ),
)


def _indexer_check(r: Any, max_lag: int, max_age: int) -> tuple[dict[str, Any] | None, list[str]]:
    """One chain's indexer: its lag and head age, and what is wrong with them (pure)."""
    if r["indexed_block"] is None or r["head_block"] is None:
        return None, ["no checkpoint or chain head yet"]
    lag = int(r["head_block"]) - int(r["indexed_block"])
    age = (r["now"] - r["updated_at"]).total_seconds()
    problems = []
    if lag > max_lag:
        problems.append(f"lags {lag} blocks (bound {max_lag})")
    if age > max_age:
        problems.append(f"chain head not refreshed for {int(age)} s (bound {max_age} s)")
    return {"lag_blocks": lag, "head_age_s": round(age, 3)}, problems


WRITABLE_SQL = "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"


# A probe's pooled connection the server ended (a restart, a failover) is not a database that is down: the
# probe asks again once, on a fresh connection, before it says so (core.pgerrors.CONNECTION_GONE).


async def _probe(pool: asyncpg.Pool, sql: str, *args: Any, many: bool = False) -> Any:
    """`sql` on the probe pool (fetchval, or fetchrow of each args tuple with `many`), once more on a
    fresh connection if the pooled one was ended by the server."""
    for attempt in (1, 2):
        try:
            async with pooled(pool, 2) as conn:
                if many:
                    return [await conn.fetchrow(sql, *a, timeout=2) for a in args]
                return await conn.fetchval(sql, *args, timeout=2)
        except CONNECTION_GONE:
            if attempt == 2:
                raise
            await pool.expire_connections()
    raise AssertionError("unreachable")


async def _schema_check(pool: asyncpg.Pool) -> str | None:
    """What is wrong with the database's schema for this build, checked while running, not only at start
    (review h1: an API of an earlier build, still running after the indexer migrated, relayed the new
    indexer's trades as `data: null`); None when it matches or when the database does not answer (the
    database check says so)."""
    try:
        async with pooled(pool, 2) as conn:
            return await schema_problem(conn)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
        return None


async def _writes_check(pool: asyncpg.Pool) -> str:
    """Whether the primary (dsn) takes writes: "ok", or why sign-in and read marks answer 503."""
    try:
        if await _probe(pool, WRITABLE_SQL):
            return "ok"
        await pool.expire_connections()  # the session's read-only default is fixed at its start
        return "read-only (a hot standby or a failover): sign-in and read marks answer 503"
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        return f"primary unreachable ({type(exc).__name__}): sign-in and read marks answer 503"


def _may_scrape(scope: Any, scrapers: tuple[Network, ...], proxies: tuple[Network, ...]) -> bool:
    """The client is in `scrapers`, or is the peer itself and no IP address: a Unix socket (uvicorn --uds)
    or an in-process test client, both on this machine. A non-IP address a proxy forwarded is not.
    A request forwarded by a peer that is not a named proxy (`forwarded_allow_ips`) came from a client
    nobody vouches for: behind an unlisted proxy on a private address, every Internet client looked
    like that private address, which the default scrapers' networks trust (review h3)."""
    ip = str(scope.get("gl_client_ip") or "")
    peer = scope.get("client")
    forwarded = any(k in (b"x-forwarded-for", b"forwarded") for k, _ in scope.get("headers", ()))
    if forwarded and not (peer is not None and is_trusted(str(peer[0]), proxies)):
        return False
    return is_trusted(ip, scrapers) or ((peer is None or ip == peer[0]) and not is_ip(ip))


def routes(rt: Runtime) -> list[Route]:
    document: dict[str, Any] = spec(rt.settings)
    docs_html = render_docs(document)

    async def health(request: Request) -> Response:
        request.scope["gl_route"] = "/health"
        return JSONBody({"status": "ok"})

    # /ready is exempt from rate limits (probes must get through) and costs a query and a Redis round
    # trip: concurrent requests share the check in flight, so however many arrive at once (a loop of
    # anonymous probes) they run one check, on /ready's own connection (state.probe_pool), never the
    # requests' pool: every read connection busy with slow requests is load, not a database that is down.
    in_flight: list[asyncio.Task[Response]] = []
    seen_schema: list[str | None] = [None]  # the schema problem last logged (logged once, not per probe)

    async def ready(request: Request) -> Response:
        request.scope["gl_route"] = "/ready"
        if not in_flight or in_flight[0].done():
            in_flight[:] = [asyncio.create_task(check_ready(request.url.path))]
        return await asyncio.shield(in_flight[0])  # a client going away does not cancel the others' check

    async def check_ready(path: str) -> Response:
        state = rt.state
        if state is None:
            return error_response(503, "Not ready", path, [FieldError("app", "starting")])
        a = rt.settings.api
        problems: list[FieldError] = []
        checks: dict[str, Any] = {}
        try:
            chains = list(rt.settings.chains)
            got = await _probe(state.probe_pool, READY_SQL, *[(c,) for c in chains], many=True)
            rows = dict(zip(chains, got, strict=True))
            rt.metrics.db_up.set(1)
            checks["database"] = "ok"
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            rt.metrics.db_up.set(0)
            return error_response(
                503, "Not ready", path, [FieldError("database", f"unreachable: {type(exc).__name__}")]
            )
        per_chain = {}
        for chain, r in rows.items():
            assert r is not None
            field = "indexer" if chain == rt.settings.chain_id else f"indexer:{chain}"
            indexer, found = _indexer_check(r, a.ready_max_lag_blocks, a.ready_max_head_age_s)
            problems += [FieldError(field, p) for p in found]
            if chain == rt.settings.chain_id and indexer is not None:
                rt.metrics.indexer_lag.set(indexer["lag_blocks"])
            per_chain[chain] = {
                "indexer": indexer,
                "asOf": as_of_json(chain, r["indexed_block"], r["block_hash"], r["safe_block"], r["finalized_block"]),
            }
        schema = await _schema_check(state.probe_pool)
        if schema is not None:  # a load balancer takes this process out until it runs the matching build
            problems.append(FieldError("schema", f"{schema}; restart this API on the build that matches it"))
            if schema != seen_schema[0]:
                log.error("schema_mismatch", problem=schema, hint="restart this API on the build that matches it")
        seen_schema[0] = schema
        writes = await _writes_check(state.write_probe_pool)
        checks["writes"] = writes
        redis_ok = await state.cache.ping()
        checks["redis"] = "ok" if redis_ok else "down (answering from PostgreSQL; no cache, no rate limits)"
        checks["outbox"] = {"seq": state.pump.last_seq, "listening": state.pump.listening}
        if problems:
            return error_response(503, "Not ready", path, problems)
        default = per_chain.pop(rt.settings.chain_id)
        checks["indexer"] = default["indexer"]
        body: dict[str, Any] = {
            "status": "ready" if redis_ok and writes == "ok" else "degraded",
            "checks": checks,
            "asOf": default["asOf"],
            "time": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        }
        if per_chain:  # the other served chains, by chain id
            body["chains"] = {str(c): v for c, v in per_chain.items()}
        return JSONBody(body)

    # /metrics is for the operator's Prometheus, not the public: it names every route, pool and error count,
    # and is not rate-limited. Clients outside api.metrics_allow_ips get the 404 of an unknown path.
    scrapers = networks(rt.settings.api.metrics_allow_ips)

    async def metrics(request: Request) -> Response:
        request.scope["gl_route"] = "/metrics"
        if not _may_scrape(request.scope, scrapers, rt.trusted_proxies):
            return error_response(404, f"no route for {request.url.path}", request.url.path)
        if rt.state is not None:  # read when scraped (review s19 h3: the gauge was never set)
            st = rt.state
            pools = {
                "read": st.read_pool,
                "write": st.write_pool,
                "feed": st.hub.pool,  # the feed's replays
                "feed_primary": st.hub.primary,  # the feed's reads of the primary
                "pump": st.pump.pool,  # the outbox pumps (cache invalidation, live events)
            }
            for name, pool in pools.items():
                rt.metrics.pool_in_use.labels(name).set(in_use(pool))
        body = b"".join(generate_latest(r) for r in (rt.metrics.registry, connections.REGISTRY, feed_guard.REGISTRY))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        request.scope["gl_route"] = "/openapi.json"
        return JSONBody(document)

    async def docs(request: Request) -> Response:
        request.scope["gl_route"] = "/docs"
        return HTMLResponse(docs_html)

    out = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    if rt.settings.api.docs_enabled:
        out.append(Route("/docs", docs, methods=["GET"]))
    return out
