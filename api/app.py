"""`create_app(settings)`: the Starlette application. Its lifespan owns the asyncpg pools (reads on
the optional replica as the read-only `api` role; a small primary pool for the API's own tables
and the outbox), the Redis client, the outbox pump and — unless told otherwise — the feed server.

Request path (outermost first): Edge (security headers, size limit, rate limit, metrics, the
seed's 500 body) → CORS → router → endpoint wrapper (validate → auth → cache → asOf + SQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import structlog
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import auth, pages
from api.cache import Cache
from api.clientip import Network, client_ip, count_in, count_out, networks
from api.context import ChainParts, Ctx, Endpoint, Lease, State, fetch_freshness
from api.encode import JSONBody, dumps, loads
from api.errors import (
    ApiError,
    FieldError,
    ValidationFailed,
    api_error_handler,
    error_body,
    http_error_handler,
)
from api.feed import Hub
from api.metrics import Metrics
from api.outbox import Pump, covers
from api.params import parse
from api.rankings import Rankings
from api.ratelimit import SIGNIN, RateLimiter, exempt
from api.redis_health import RedisHealth
from api.routes import ENDPOINTS, system
from api.settings import Settings
from core.numbers import whole_number
from core.pgerrors import PG_UNAVAILABLE, reset_or_drop

log = structlog.get_logger("api")

SECURITY_HEADERS = [
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


SLOTS_MAX = 4096  # URLs the fast path knows; the least recently answered goes first


@dataclasses.dataclass(slots=True)
class Runtime:
    """Filled by the lifespan; read by the middleware and the endpoint wrappers."""

    settings: Settings
    metrics: Metrics
    serve_feed: bool
    trusted_proxies: tuple[Network, ...] = ()
    state: State | None = None
    # Raw URL (path, query string) of a public cached GET -> (route, chain, key, field), learnt by the
    # endpoint wrapper after a full parse: the Edge answers an in-process cache hit for the same URL
    # without CORS, routing and parameter parsing. Bounded; cleared when full.
    slots: dict[tuple[str, bytes], tuple[str, int | None, str, str]] = dataclasses.field(default_factory=dict)
    csp: tuple[bytes, bytes] = (b"content-security-policy", b"default-src 'none'")

    def __post_init__(self) -> None:
        # The reference page's script talks to the feed on its own port (or api.public_feed_url).
        a = self.settings.api
        feed = a.public_feed_url or f"ws://*:{a.feed_port} wss://*:{a.feed_port}"
        policy = (
            "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; img-src 'self' data: https:; "
            f"connect-src 'self' {feed}; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
        )
        self.csp = (b"content-security-policy", policy.encode())


class Edge:
    """Pure ASGI middleware: security headers on every response, request size limit, rate limit
    with RateLimit-* headers, request metrics, and the seed's body for unhandled errors."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.rt = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        extra: list[tuple[bytes, bytes]] = [self.rt.csp, *SECURITY_HEADERS]
        status_box = [500]
        response_started = False

        async def send_wrapped(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                status_box[0] = message["status"]
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            authorization = length = forwarded = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value
                elif name == b"content-length":
                    length = value
                elif name == b"x-forwarded-for":
                    forwarded = value
            principal = None
            if authorization is not None:
                token = auth.bearer(authorization.decode("latin-1"))
                if token is not None:
                    principal = auth.decode_token(self.rt.settings, token)
            scope["gl_principal"] = principal
            client = scope.get("client")
            ip = client_ip(
                client[0] if client else None,
                None if forwarded is None else forwarded.decode("latin-1"),
                self.rt.trusted_proxies,
            )
            scope["gl_client_ip"] = ip
            limit = self.rt.settings.api.max_body_bytes
            size = None if length is None else whole_number(length.decode("latin-1"))
            if length is not None and (size is None or size > limit):
                await self._error(
                    scope,
                    send_wrapped,
                    413,
                    f"request body larger than {limit} bytes",
                    [FieldError("body", f"at most {limit} bytes")],
                )
                return
            state = self.rt.state
            if state is not None and scope["method"] != "OPTIONS" and not exempt(path):
                verdict = None
                if path in SIGNIN:
                    verdict = await state.limiter.check_signin(ip)
                if (verdict is None or verdict.allowed) and not (principal is not None and principal.is_admin):
                    verdict = await state.limiter.check(ip, principal.address if principal else None) or verdict
                if verdict is not None:
                    extra.extend((k.lower().encode(), v.encode()) for k, v in verdict.headers().items())
                    if not verdict.allowed:
                        await self._error(
                            scope,
                            send_wrapped,
                            429,
                            "Too many requests",
                            [
                                FieldError(
                                    "", f"limit {verdict.limit} per {verdict.window_s} s; retry in {verdict.reset_s} s"
                                )
                            ],
                        )
                        return
            if state is not None and scope["method"] == "GET" and await self._fast(scope, state, send_wrapped):
                return
            await self.app(scope, _limited(receive, limit), send_wrapped)
        except Exception as exc:
            log.error("request_failed", path=path, error=type(exc).__name__, exc_info=exc)
            if not response_started:
                await self._error(scope, send_wrapped, 500, "Internal server error", [])
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when api.shutdown_timeout_s ends; re-raised, each
            # was logged as "Exception in ASGI application" with a traceback (review s20 hl). One line
            # each instead, and the task ends: the connection is closed with the process.
            log.warning("request_cancelled", path=path, response_started=response_started)
            status_box[0] = 499  # the client got no complete answer
        finally:
            route = scope.get("gl_route") or ("unmatched" if status_box[0] == 404 else "other")
            self.rt.metrics.observe_request(route, scope["method"], status_box[0], time.perf_counter() - started)

    async def _fast(self, scope: Scope, state: State, send: Send) -> bool:
        """A GET whose URL the wrapper has seen answers from the in-process cache when it holds the
        answer; cross-origin requests (Origin) take the full path for their CORS headers."""
        url = (scope["path"], scope["query_string"])
        slot = self.rt.slots.get(url)
        if slot is None:
            return False
        for name, _ in scope["headers"]:
            if name == b"origin":
                return False
        route, chain, key, field = slot
        parts = state.chains.get(chain) if chain is not None else None
        body = (parts.cache if parts is not None else state.cache).get_local(key, field)
        if body is None:
            return False
        # least recently used first out: a client's stream of distinct URLs evicts its own one-off
        # URLs, not the ones every client keeps asking for
        self.rt.slots[url] = self.rt.slots.pop(url)
        scope["gl_route"] = route
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-cache", b"hit"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return True

    @staticmethod
    async def _error(scope: Scope, send: Send, status: int, message: str, errors: list[FieldError]) -> None:
        body = dumps(error_body(status, message, errors, scope["path"]))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class Cors(CORSMiddleware):
    """Starlette's CORS with its refusals in the seed's error body (it answers plain text)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            headers = Headers(scope=scope)
            if "origin" in headers and "access-control-request-method" in headers:
                response = self.preflight_response(request_headers=headers)
                if response.status_code == 400:
                    response = self._refusal(response, scope["path"])
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    @staticmethod
    def _refusal(response: Response, path: str) -> Response:
        text = bytes(response.body).decode()
        failures = text.removeprefix("Disallowed CORS ").split(", ")
        fields = {"origin": "Origin", "method": "Access-Control-Request-Method"}
        errors = [
            FieldError(fields.get(f, "Access-Control-Request-Headers"), f"{f} not allowed by the CORS policy")
            for f in failures
        ]
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}
        return JSONBody(error_body(400, text, errors, path), status_code=400, headers=headers)


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise ApiError(
                    413, f"request body larger than {limit} bytes", [FieldError("body", f"at most {limit} bytes")]
                )
        return message

    return wrapped


def _chain(state: State, query: list[tuple[str, str]]) -> int | None:
    """The request's ?chainId= (one of the served chains), or None for the default chain."""
    values = [v for k, v in query if k == "chainId"]
    if not values:
        return None
    served = state.settings.chains
    chain = whole_number(values[0]) if len(values) == 1 else None
    if chain is None or chain not in served:
        raise ValidationFailed([FieldError("chainId", f"one of {', '.join(map(str, served))}, given once")])
    return chain


def _route(ep: Endpoint, rt: Runtime) -> Route:
    async def call(request: Request) -> Response:
        request.scope["gl_route"] = ep.path
        state = rt.state
        if state is None:
            raise ApiError(503, "starting up")
        query = request.query_params.multi_items()
        chain = _chain(state, query)
        params = parse(ep.params, [(k, v) for k, v in query if k != "chainId"], request.path_params)
        user: auth.Principal | None = request.scope.get("gl_principal")
        if ep.auth is not None:
            if user is None:
                raise ApiError(
                    401,
                    "Authentication required",
                    [FieldError("Authorization", "send 'Bearer <token>' with a valid token from POST /v1/auth/verify")],
                )
            if ep.auth == "admin" and not user.is_admin:
                raise ApiError(403, "Admin role required", [FieldError("Authorization", "token lacks the admin role")])
        body: Any = None
        if ep.body is not None:
            body_s = state.settings.api.body_timeout_s
            try:
                async with asyncio.timeout(body_s):  # a body trickled byte by byte holds a task and a socket
                    raw = await request.body()
            except TimeoutError:
                raise ApiError(
                    408, "Request body too slow", [FieldError("body", f"must arrive within {body_s} s")]
                ) from None
            ctype = request.headers.get("content-type", "").split(";")[0].strip()
            if raw and ctype != "application/json":
                raise ApiError(
                    415,
                    "Content-Type must be application/json",
                    [FieldError("Content-Type", "must be application/json")],
                )
            try:
                body = loads(raw) if raw else {}  # no body = an empty object (e.g. POST /v1/auth/nonce)
            except ValueError:
                raise ApiError(400, "Validation failed", [FieldError("body", "is not valid JSON")]) from None
            if not isinstance(body, dict):
                raise ApiError(400, "Validation failed", [FieldError("body", "must be a JSON object")])
        key = field = None
        cache_header = "bypass"
        cache = state.chains[chain].cache if chain is not None else state.cache
        if ep.cache is not None:
            key, field = ep.cache(params)
            if ep.auth is None and ep.method == "GET":
                url = (request.scope["path"], request.scope["query_string"])
                if rt.slots.pop(url, None) is None and len(rt.slots) >= SLOTS_MAX:
                    del rt.slots[next(iter(rt.slots))]
                rt.slots[url] = (ep.path, chain, key, field)  # at the end: the most recently answered
            hit = await cache.get(key, field)
            if hit is not None:
                return JSONBody(hit, headers={"x-cache": "hit"})
            # a request computing the same variant is in flight: its answer, not a query of our own
            a = state.settings.api
            shared = await cache.join(key, field, a.pool_acquire_timeout_s + 2 * a.db_answer_s)
            if shared is not None:
                return JSONBody(shared, headers={"x-cache": "shared"})
            cache_header = "miss"
        lead = cache.lead(key, field) if key is not None and field is not None else None
        answer: tuple[bytes, int, list[str]] | None = None
        failed: ApiError | None = None
        try:
            answer = await _answer(ep, request, state, cache, params, user, body, chain, key, field)
        except ApiError as exc:
            failed = exc
            raise
        finally:
            if lead is not None:  # the requests that joined get the answer (None: they ask themselves)
                if answer is not None and answer[1] == 200:
                    cache.release(lead, answer[0], answer[2])
                else:
                    cache.release(lead, failed)
        headers = {"x-cache": cache_header}
        if private:  # a token, or a user's own data: never kept by a cache on the way (review h3)
            headers["cache-control"] = "no-store"
        return JSONBody(answer[0], status_code=answer[1], headers=headers)

    private = ep.auth is not None or ep.path.startswith("/v1/auth/")
    return Route(ep.path, call, methods=[ep.method], name=f"{ep.method} {ep.path}")


def _count_all(open_: dict[str, int], keys: list[str], cap: int) -> tuple[str, ...] | None:
    """count_in for each key; None, counting nothing, when any of them is full."""
    taken: tuple[str, ...] = ()
    for k in keys:
        got = count_in(open_, k, cap)
        if got is None:
            count_out(open_, taken)
            return None
        taken += got
    return taken


async def _answer(
    ep: Endpoint,
    request: Request,
    state: State,
    cache: Cache,
    params: dict[str, Any],
    user: Any,
    body: Any,
    chain: int | None,
    key: str | None,
    field: str | None,
) -> tuple[bytes, int, list[str]]:
    """The endpoint's answer from the database (and into the cache): (JSON bytes, status, the cache
    keys it depends on besides its own)."""
    generation = cache.generation
    # What this worker has invalidated for so far: an answer read from a database that does not hold it all
    # (a replica behind the primary the pump reads) may predate one of those writes and is not cached
    # (review s20 ha, hf: it would be kept past the only invalidation of that write, for cache_ttl_s)
    mark = state.pump_of(chain if chain is not None else state.settings.chain_id).mark()
    pool = state.write_pool if ep.db == "write" else state.read_pool
    a = state.settings.api
    retry = {"Retry-After": str(a.retry_after_s)}
    lease = Lease(pool, a.pool_acquire_timeout_s, state)
    # one client address's requests on the database at once, and a signed-in user's as well, admins exempt
    # (review h3: 40 concurrent uncached pages from one address, within its rate limit, held the whole read
    # pool and other clients got 503; review h5: counted by the user alone, one address with a throwaway
    # wallet signed in got twice its share)
    principal = request.scope.get("gl_principal")
    counted: tuple[str, ...] | None = ()
    if principal is None or not principal.is_admin:
        who = [str(request.scope.get("gl_client_ip") or "")]
        if principal is not None:
            who.append(f"user:{principal.address}")
        counted = _count_all(state.db_requests, who, a.db_requests_per_ip)
        # over its cap, an address still gets in while half the pool is idle: one user's tabs on a quiet
        # API are not refused (review h4), a crowd from one address is once it holds the pool (requests
        # waiting on another's live ranking hold no connection and are not counted, review s19 h3)
        if counted is None and state.db_in_flight < a.pool_max // 2:
            counted = ()
    if counted is None:
        state.metrics.rate_limited.inc()
        raise ApiError(
            429,
            "Too many requests",
            [FieldError("", f"at most {a.db_requests_per_ip} requests of one address on the database at once")],
            retry,
        )
    try:
        # One connection per request, waited for at most pool_acquire_timeout_s; the context
        # manager returns it on every exit, cancellation included. Its queries are bounded by
        # the pool's command_timeout (statement_timeout + a margin): a database that stops
        # answering (black-holed, paused) gets a 503, not a request hanging for TCP's minutes.
        # The whole exchange is bounded too: returning a connection after a timeout resets it,
        # which waits on the same silent database (asyncpg terminates it when cancelled).
        async with asyncio.timeout(a.pool_acquire_timeout_s + 2 * a.db_answer_s):
            async with lease:
                ctx = Ctx(request, state, lease, params, user, body, chain, ep.path)
                as_of, held_seq = await fetch_freshness(ctx.conn, ctx.chain_id, state.replica and ep.db == "read")
                out = await ep.handler(ctx)
    except TimeoutError:
        if not lease.acquiring:
            raise ApiError(503, "database did not answer in time", headers=retry) from None
        state.metrics.pool_timeouts.labels(ep.db).inc()
        raise ApiError(
            503,
            "Service busy",
            [FieldError("", f"no database connection free within {a.pool_acquire_timeout_s} s; retry shortly")],
            retry,
        ) from None
    except asyncpg.QueryCanceledError:
        raise ApiError(503, "query timed out; narrow the filters", headers=retry) from None
    except PG_UNAVAILABLE as exc:  # a restart, failover, no connections: 503 + Retry-After, never 500
        log.warning("database_unavailable", path=ep.path, error=f"{type(exc).__name__}: {exc}"[:200])
        if isinstance(exc, asyncpg.exceptions.ReadOnlySQLTransactionError):
            # a session keeps the read-only default it started with: once the primary takes writes
            # again, only new sessions see it (review h2: sign-in answered 500 during a failover)
            await pool.expire_connections()
        raise ApiError(503, "database unavailable", headers=retry) from None
    finally:
        count_out(state.db_requests, counted)
    status = int(out.pop("__status__", 200))
    out["asOf"] = ctx.as_of or as_of
    data = dumps(out)
    if key is not None and field is not None and status == 200 and not covers(mark, held_seq, as_of["blockNumber"]):
        state.metrics.cache.labels("replica_behind").inc()  # answered, not stored
    elif key is not None and field is not None and status == 200:
        ttl = a.aggregate_cache_ttl_s if ep.aggregate else a.cache_ttl_s
        if ctx.fresh_until is not None:  # e.g. a market shown "active" closes at its end time
            ttl = min(ttl, math.floor(ctx.fresh_until - time.time()))
        if ttl > 0:
            await cache.set(key, field, data, generation, ttl, ctx.deps)
    return data, status, ctx.deps


async def _chain_parts(
    chain: int,
    settings: Settings,
    metrics: Metrics,
    rt: Runtime,
    pump_pool: asyncpg.Pool,
    feed_pool: asyncpg.Pool,
    feed_primary_pool: asyncpg.Pool,
    client: aioredis.Redis,
    health: RedisHealth,
) -> ChainParts:
    """One served chain: its cache namespace, its outbox pump (cache invalidation, then its feed hub)."""
    a = settings.api
    cache = Cache(client, a.cache_prefix, chain, a.cache_ttl_s, metrics, a.cache_enabled, health=health)
    pump = Pump(pump_pool, settings.dsn, client, chain, a.outbox_poll_s, metrics, cache.ns)
    hub = Hub(feed_pool, settings, metrics, rt.trusted_proxies, chain, feed_primary_pool)
    await pump.start()
    hub.head_seq = pump.last_seq

    async def invalidate(rows: Any, safe: int | None, fin: int | None) -> None:
        await cache.invalidate([(r["event"], r["rooms"]) for r in rows])
        if rows:
            seq = max(r["seq"] for r in rows)
            cache.processed(seq)
            await pump.tell_invalidated(seq)  # the other workers hold their L1 until their pumps get here

    pump.sinks += [invalidate, hub.publish]
    pump.invalidators.append(cache.invalidate)
    pump.broadcast_sinks.append(hub.broadcast)
    pump.announced_sinks.append(cache.announced)
    return ChainParts(cache, pump, hub)


class _Closers(list[Callable[[], Awaitable[None]]]):
    """The pools' bounded closes, run together at shutdown (one after another, six pools could take six
    times shutdown_timeout_s/2: review s20 hl)."""

    async def close_all(self) -> None:
        await asyncio.gather(*(close() for close in self))


async def _pool(
    closers: _Closers,
    dsn: str,
    min_size: int,
    max_size: int,
    server_settings: dict[str, str],
    close_timeout_s: float,
    command_timeout_s: float,
) -> asyncpg.Pool:
    """A pool whose queries give up after command_timeout_s on the client side (a database that
    stopped answering never cancels anything itself), and whose close is bounded: connections still
    checked out after close_timeout_s are terminated rather than waited for."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings=server_settings,
        command_timeout=command_timeout_s,
        reset=reset_or_drop,  # type: ignore[arg-type]  # awaited by asyncpg; its stubs say a plain function
    )

    async def close() -> None:
        try:
            async with asyncio.timeout(close_timeout_s / 2):
                await pool.close()
        except TimeoutError:
            log.warning("pool_close_timed_out", terminated=pool.get_size() - pool.get_idle_size())
            pool.terminate()

    closers.append(close)
    return pool


def create_app(settings: Settings, serve_feed: bool = True) -> Starlette:
    metrics = Metrics()
    rt = Runtime(settings, metrics, serve_feed, networks(settings.api.forwarded_allow_ips))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        a = settings.api
        server_settings = {
            "application_name": "gl-api",
            "statement_timeout": str(a.statement_timeout_ms),
            "jit": "off",  # short OLTP queries: JIT compilation costs more than it saves
        }
        if a.db_role:
            server_settings["role"] = a.db_role
        read_only = {**server_settings, "default_transaction_read_only": "on"}
        answer_s = a.db_answer_s
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        closers = _Closers()
        stack.push_async_callback(closers.close_all)
        try:
            read_pool = await _pool(
                closers, settings.read_dsn, a.pool_min, a.pool_max, read_only, a.shutdown_timeout_s, answer_s
            )
            write_pool = await _pool(
                closers, settings.dsn, 1, a.write_pool_max, server_settings, a.shutdown_timeout_s, answer_s
            )
            # the feed's replays read pages on their own pool: a crowd of resuming feed clients
            # never takes a connection from an HTTP request
            feed_pool = await _pool(
                closers, settings.read_dsn, 0, a.feed_pool_max, read_only, a.shutdown_timeout_s, answer_s
            )
            # the outbox pumps read on connections of their own (the primary, as the write pool): a
            # crowd of sign-ins on the write pool never delays cache invalidation or the feed
            pump_pool = await _pool(
                closers, settings.dsn, 1, len(settings.chains), server_settings, a.shutdown_timeout_s, answer_s
            )
            probe_pool = await _pool(closers, settings.read_dsn, 1, 1, read_only, a.shutdown_timeout_s, answer_s)
            # and one on the primary, in a writable session: is it taking writes (sign-in, read marks)?
            write_probe_pool = await _pool(closers, settings.dsn, 0, 1, server_settings, a.shutdown_timeout_s, answer_s)
            # the feed's reads of the primary (a resume beyond this worker's head asks the newest seq issued):
            # never the pumps' connections, which a waiting resume held from cache invalidation (review s20 hb)
            feed_primary_pool = await _pool(closers, settings.dsn, 0, 2, read_only, a.shutdown_timeout_s, answer_s)
        except BaseException:
            await stack.aclose()
            raise
        client = aioredis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=0.25,
            socket_timeout=0.5,
            retry_on_timeout=False,
        )
        stack.push_async_callback(client.aclose)
        health = RedisHealth(metrics)  # one client: the caches and the limiter share its back-off
        chains = {
            c: await _chain_parts(c, settings, metrics, rt, pump_pool, feed_pool, feed_primary_pool, client, health)
            for c in settings.chains
        }
        default = chains[settings.chain_id]
        await default.cache.ping()
        limiter = RateLimiter(
            client,
            # not under a chain's cache namespace: a reorg or a gap clears that whole namespace (review s20 ha)
            f"{a.cache_prefix}:",
            a.rate_limit_window_s,
            a.rate_limit_ip,
            a.rate_limit_user,
            metrics,
            a.rate_limit_enabled,
            a.signin_rate_limit,
            health,
        )
        default.hub.share([p.hub for c, p in chains.items() if c != settings.chain_id])
        for p in chains.values():  # admin broadcasts arrive on the default chain's channel, for every feed
            if p is not default:
                default.pump.broadcast_sinks.append(p.hub.broadcast)
        rt.state = State(
            settings,
            metrics,
            read_pool,
            write_pool,
            default.cache,
            limiter,
            default.pump,
            default.hub,
            probe_pool,
            write_probe_pool,
            Rankings(a.aggregate_cache_ttl_s),
            chains,
            replica=settings.read_dsn != settings.dsn,
        )
        stop = asyncio.Event()
        tasks = [asyncio.create_task(p.pump.run(stop), name=f"outbox-pump-{c}") for c, p in chains.items()]
        if rt.serve_feed:
            tasks.append(asyncio.create_task(default.hub.serve(a.feed_host, a.feed_port, stop), name="feed"))
        log.info("api_started", chain_id=settings.chain_id, chains=list(chains), feed=rt.serve_feed)
        try:
            yield
        finally:
            # Shutdown order: uvicorn has stopped accepting and drained (or cancelled, after
            # api.shutdown_timeout_s) in-flight requests; then the pump and the feed stop (3 s),
            # then Redis and the pools close (each bounded by _pool's close timeout).
            stop.set()
            for t in tasks:
                try:
                    async with asyncio.timeout(3):
                        await t
                except (TimeoutError, Exception) as exc:
                    log.warning("task_stop_failed", task=t.get_name(), error=type(exc).__name__)
                    t.cancel()
            rt.state = None
            await stack.aclose()
            log.info("api_stopped")

    routes: list[BaseRoute] = [_route(ep, rt) for ep in ENDPOINTS]
    routes += system.routes(rt)
    if settings.api.web_enabled:
        routes += pages.routes(rt)
    middleware = [
        Middleware(Edge, runtime=rt),
        Middleware(
            Cors,
            allow_origins=list(settings.api.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
            expose_headers=["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"],
        ),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={ApiError: api_error_handler, HTTPException: http_error_handler},
    )
    app.state.runtime = rt
    return app
