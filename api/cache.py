"""Redis cache-aside with the seed's key convention, invalidated from the indexer's outbox.

Keys (namespaced `{prefix}:{chain_id}:` so chains and deployments never collide):

    market:{id}               market detail, price history, candles, holders (hash fields per variant)
    market:{id}:trades        a market's trades pages
    markets:list              every variant of the market list (one hash: one DEL drops them all)
    markets:trending          trending markets
    user:{address}            user summary, activity, holdings, dividends
    user:{address}:positions  user positions
    creator:{address}         creator detail, holders, trades, candles, dividends
    creators:list             creator list
    leaderboard:traders       trader leaderboards (every window and order)   } TTL only (60 s),
    leaderboard:creators      creator leaderboards                           } not invalidated
    stats                     platform statistics                            } per event

Each key is a Redis hash whose fields are the request variants (a hash of the parameters), so
invalidating a key drops every variant at once. An outbox row invalidates the keys of its rooms
plus the global keys; `chain:reorg` drops the whole namespace. A TTL is only a safety net.

Two levels: a small in-process LRU (L1) in front of Redis. Every API instance runs its own outbox
pump, so each invalidates its own L1 at the same moment it deletes the Redis keys; an L1 entry
also expires after `l1_ttl_s` in case the pump stalls. A hit in L1 costs no network round trip.

Race: a request that read PostgreSQL before an invalidation must not write its stale answer
after it — `set` is skipped when its key was invalidated since the request read the generation
(per key: a trade in one market does not stop a slow answer about another from being cached, and
an outbox row that invalidates nothing, `chain:finalized`, moves nothing).

Answers that depend on other keys' data (review h5: a user's positions are valued at each market's
price and status, which other traders' trades and a proposal change; holdings and dividends at each
creator's): `set(..., deps=["market:7", ...])` stores with the answer each dependency's epoch, a
random token in that key's hash (field `__epoch`, made when missing). Invalidating the dependency
deletes its hash and so the token: a read whose tokens no longer match is a miss. In L1 the same
answer is dropped once a dependency's generation moves. Beyond MAX_DEPS dependencies, the answer
depends on ANY_EVENT instead (cached until the next event).

Redis down: every call fails fast, counts as `error`, and the API answers from PostgreSQL;
`api_redis_up` and /ready report it. Calls are retried after a back-off shared with the rate
limiter (api/redis_health.py: 1 s doubling to 30 s while Redis keeps failing). An invalidation
that fails (Redis down or stalled as an outbox row arrives) is owed: until those keys (or the
whole namespace) are deleted, nothing is read from or written to Redis — otherwise the answers
cached before the change would be served again for up to `cache_ttl_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from api.errors import ApiError
from api.metrics import Metrics
from api.redis_health import RedisHealth
from core import warm as _warm

log = structlog.get_logger("api.cache")

GLOBAL_KEYS = ("markets:list", "markets:trending", "creators:list")
# Whole-platform aggregates: recomputing them on every block would cost more than they are worth,
# so they are not invalidated per event but live `aggregate_cache_ttl_s` (60 s) — documented.
AGGREGATE_KEYS = ("leaderboard:traders", "leaderboard:creators", "stats")
MAX_VARIANTS = 1000
FIELDS_PER_VARIANT = 3  # its body, its end (#exp) and, for some, its dependencies (#deps)
MAX_DEPS = 256  # an answer depending on more keys (a user in more markets) depends on ANY_EVENT instead
ANY_EVENT = "markets:list"  # a key every outbox row invalidates (GLOBAL_KEYS)
EPOCH = "__epoch"  # the field of a key's hash holding its epoch token (never a variant's hash)
KEY_GENERATIONS_MAX = 10_000  # keys whose last invalidation is remembered; beyond, all count as invalidated


def coarse(deps: Sequence[str]) -> tuple[str, ...]:
    """An answer's dependencies as stored: each once, or, beyond MAX_DEPS, the one key every event
    invalidates (a user in thousands of markets is cached until the next event, not recomputed on
    every view: review h7)."""
    unique = tuple(sorted(set(deps)))
    return unique if len(unique) <= MAX_DEPS else (ANY_EVENT,)


def keys_for(event: str, rooms: Sequence[str]) -> set[str] | None:
    """Seed keys an outbox row makes stale; None means everything: a reorg, or a stretch the indexer
    wrote without per-event messages (`chain:gap`: what it touched is not listed)."""
    if event in ("chain:reorg", "chain:gap"):
        return None
    if event == "chain:finalized":
        return set()
    keys = set(GLOBAL_KEYS)
    for room in rooms:
        kind, _, ident = room.partition(":")
        if kind == "market":
            keys.update((f"market:{ident}", f"market:{ident}:trades"))
        elif kind == "user":
            keys.update((f"user:{ident}", f"user:{ident}:positions"))
        elif kind == "creator":
            keys.add(f"creator:{ident}")
    return keys


# Failures of a leader that any request for the same variant would get now: not found, and the database
# timing out or unavailable (503). Not 429 (the leader's own address) nor 400 (checked before the lead).
SHARED_FAILURES = frozenset({404, 503})


@dataclasses.dataclass(slots=True)
class Lead:
    """A request computing a variant that others may join (Cache.lead / join / release)."""

    key: str
    field: str
    generation: int
    answer: asyncio.Future[bytes | ApiError | None]


def _ms(raw: bytes | str) -> int:
    """A variant's end (epoch milliseconds) as stored by Cache.set; an unreadable one is already past."""
    try:
        return int(raw)
    except ValueError:
        return 0


class Cache:
    def __init__(
        self,
        client: aioredis.Redis | None,
        prefix: str,
        chain_id: int,
        ttl_s: int,
        metrics: Metrics,
        enabled: bool = True,
        l1_max: int = 2048,
        l1_ttl_s: float = 10.0,
        l1_max_bytes: int = 64 << 20,
        health: RedisHealth | None = None,
    ) -> None:
        self.client = client
        self.ns = f"{prefix}:{chain_id}:"
        self.ttl_s = ttl_s
        self.metrics = metrics
        self.enabled = enabled and client is not None
        self.generation = 0
        # shared with the rate limiter and the other chains' caches (one client): api/redis_health.py
        self.health = health if health is not None else RedisHealth(metrics, up=client is not None)
        # (key, field) -> (expires, body, dependencies, generation when stored)
        self.l1: OrderedDict[tuple[str, str], tuple[float, bytes, tuple[str, ...], int]] = OrderedDict()
        self.l1_max = l1_max
        self.l1_max_bytes = l1_max_bytes  # the bodies held: 2,048 list pages of ~100 KB were 200 MB (review s15)
        self.l1_bytes = 0
        self.l1_ttl_s = l1_ttl_s
        self.seen_seq = 0  # the outbox seq this worker's invalidation has reached (processed)
        self.hold_seq = 0  # a seq committed or invalidated elsewhere: no L1 until seen_seq reaches it (announced)
        self.inflight: dict[tuple[str, str], Lead] = {}
        # The generation at which each key, or everything, was last invalidated (stale()).
        self.key_generation: dict[str, int] = {}
        self.all_generation = 0
        # Deletions Redis did not take: keys, or everything (a reorg, a gap, keys unknown).
        self.owed: set[str] = set()
        self.owed_all = False

    # Concurrent misses of one variant share one query: the first leads, the others join it (at
    # most as long as the leader's own bound). Without it N requests for an uncached variant ran N
    # queries at once, the expensive ones included.
    def lead(self, key: str, field: str) -> Lead | None:
        if (key, field) in self.inflight:  # a leader the caller did not join (timed out): alone
            return None
        lead = Lead(key, field, self.generation, asyncio.get_running_loop().create_future())
        self.inflight[(key, field)] = lead
        return lead

    def release(self, lead: Lead, answer: bytes | ApiError | None, deps: Sequence[str] = ()) -> None:
        """Hands the leader's answer to the requests that joined it, or None (they ask themselves) when
        the key or one of the answer's dependencies was invalidated while it was computed (review h7:
        joiners got a summary valued before another trader's trade). An ApiError is the leader's
        failure that is the variant's, not the leader's own (SHARED_FAILURES): the joiners answer it too
        instead of all running the query that just failed at once (review s20 ha)."""
        if self.inflight.get((lead.key, lead.field)) is lead:
            del self.inflight[(lead.key, lead.field)]
        if isinstance(answer, ApiError) and answer.status not in SHARED_FAILURES:
            answer = None
        if answer is not None and self.stale(lead.key, lead.generation, deps):
            answer = None
        if not lead.answer.done():
            lead.answer.set_result(answer)

    async def join(self, key: str, field: str, wait_s: float) -> bytes | None:
        """The answer of a request computing this variant now, unless the key was invalidated since
        it began; None when there is none (or it failed, or took longer than `wait_s`)."""
        lead = self.inflight.get((key, field))
        if lead is None or self.stale(key, lead.generation):
            return None
        try:
            async with asyncio.timeout(wait_s):
                answer = await asyncio.shield(lead.answer)
        except TimeoutError:
            return None
        if answer is not None:
            self.metrics.cache.labels("shared").inc()
        if isinstance(answer, ApiError):  # a copy: one exception object is not raised in several tasks
            raise ApiError(answer.status, answer.message, list(answer.errors), dict(answer.headers))
        return answer

    def stale(self, key: str, generation: int, deps: Sequence[str] = ()) -> bool:
        """Was `key`, or one of `deps`, invalidated after `generation` (read before the answer was computed)?"""
        if self.all_generation > generation or self.key_generation.get(key, 0) > generation:
            return True
        return any(self.key_generation.get(d, 0) > generation for d in deps)

    def _invalidated(self, keys: set[str] | None) -> None:
        self.generation += 1
        if keys is None or len(self.key_generation) + len(keys) > KEY_GENERATIONS_MAX:
            self.all_generation = self.generation
            self.key_generation.clear()
            if keys is None:
                return
        for k in keys:
            self.key_generation[k] = self.generation

    def _available(self) -> bool:
        return self.enabled and self.health.available()

    def _owe(self, keys: set[str] | None) -> None:
        if keys is None:
            self.owed_all, self.owed = True, set()
        elif not self.owed_all:
            self.owed |= keys

    async def _settled(self) -> bool:
        """True when Redis owes no deletion (paying what is owed first, when Redis may be back)."""
        if not (self.owed_all or self.owed):
            return True
        if not self._available():
            return False
        assert self.client is not None
        everything, keys = self.owed_all, self.owed
        self.owed_all, self.owed = False, set()
        try:
            n = await self._clear_redis() if everything else int(await self.client.delete(*(self.ns + k for k in keys)))
        except (RedisError, OSError) as exc:
            self._owe(None if everything else keys)
            self._failed("invalidate", exc)
            return False
        self._ok()
        log.info("cache_invalidation_caught_up", keys=n, everything=everything)
        self.metrics.cache_invalidations.inc(n)
        return True

    def _failed(self, op: str, exc: Exception) -> None:
        self.health.failed(op, exc)

    def _ok(self) -> None:
        self.health.succeeded()

    def announced(self, seq: int) -> None:
        """Outbox rows up to `seq` are committed (the indexer said so) or invalidated by another worker, and
        this worker's pump has not invalidated them yet: this process's level is dropped and not used again
        until it has. A client that hears of a change from another worker's feed and asks this one got this
        one's old answer for up to l1_ttl_s (review s21 hy)."""
        if seq > self.seen_seq and seq > self.hold_seq:
            self.hold_seq = seq
            self.clear_local()

    def processed(self, seq: int) -> None:
        """This worker's invalidation has reached outbox seq `seq`."""
        self.seen_seq = max(self.seen_seq, seq)

    def _l1_get(self, key: str, field: str) -> bytes | None:
        if self.hold_seq > self.seen_seq:
            return None
        entry = self.l1.get((key, field))
        if entry is None:
            return None
        if entry[0] < time.monotonic() or (entry[2] and self.stale(key, entry[3], entry[2])):
            self._l1_del((key, field))
            return None
        self.l1.move_to_end((key, field))
        return entry[1]

    def _l1_put(
        self,
        key: str,
        field: str,
        value: bytes,
        ttl_s: float | None = None,
        deps: tuple[str, ...] = (),
        generation: int = 0,
    ) -> None:
        self._l1_del((key, field))  # an older body for the key goes, whether or not this one is kept
        if self.l1_max <= 0 or len(value) > self.l1_max_bytes // 16 or self.hold_seq > self.seen_seq:
            return
        life = self.l1_ttl_s if ttl_s is None else min(self.l1_ttl_s, ttl_s)
        self.l1[(key, field)] = (time.monotonic() + life, value, deps, generation)
        self.l1_bytes += len(value)
        while len(self.l1) > self.l1_max or self.l1_bytes > self.l1_max_bytes:
            _, evicted = self.l1.popitem(last=False)
            self.l1_bytes -= len(evicted[1])

    def _l1_del(self, k: tuple[str, str]) -> None:
        entry = self.l1.pop(k, None)
        if entry is not None:
            self.l1_bytes -= len(entry[1])

    def clear_local(self) -> None:
        """Drops this process's level (what another API worker sees: Redis only)."""
        self.l1.clear()
        self.l1_bytes = 0

    def _l1_drop(self, keys: set[str] | None) -> None:
        if keys is None:
            self.clear_local()
        else:
            for k in [k for k in self.l1 if k[0] in keys]:
                self._l1_del(k)

    def get_local(self, key: str, field: str) -> bytes | None:
        """The in-process level only (no await): the Edge's fast path for repeated URLs."""
        if not self.enabled:
            return None
        local = self._l1_get(key, field)
        if local is not None:
            self.metrics.cache_hit_local.inc()
        return local

    async def get(self, key: str, field: str) -> bytes | None:
        if not self.enabled:
            return None
        local = self.get_local(key, field)
        if local is not None:
            return local
        if not self._available() or ((self.owed_all or self.owed) and not await self._settled()):
            self.metrics.cache.labels("error").inc()
            return None
        assert self.client is not None
        before = self.generation
        deps: tuple[str, ...] = ()
        try:
            # with the key's remaining life: L1 keeps the answer no longer than Redis does (review h5:
            # a market page cached to its end time stayed "active" in another worker's L1 past it)
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hget(self.ns + key, field)
                pipe.hget(self.ns + key, field + "#deps")
                pipe.hget(self.ns + key, field + "#exp")
                got, stamped, ends = await pipe.execute()
            # every variant has its own end (set); one without (an older build's) is a miss, replaced
            left_ms = 0 if ends is None else _ms(ends) - int(time.time() * 1000)
            if left_ms <= 0:
                got = None
            if got is not None and stamped is not None:
                try:
                    epochs = orjson.loads(stamped)
                except orjson.JSONDecodeError:
                    epochs = None
                if not isinstance(epochs, dict) or not await self._epochs_hold(epochs):
                    got = None
                else:
                    deps = tuple(epochs)
        except (RedisError, OSError) as exc:
            self._failed("get", exc)
            self.metrics.cache.labels("error").inc()
            return None
        self._ok()
        value: bytes | None = got
        if value is not None and not await self._readable(key, field, value):
            value = None
        self.metrics.cache.labels("hit" if value is not None else "miss").inc()
        if value is not None and not self.stale(key, before, deps):  # not invalidated while we waited
            self._l1_put(key, field, value, left_ms / 1000, deps, before)
        return value

    async def _readable(self, key: str, field: str, value: bytes) -> bool:
        """Does a body read from Redis begin and end as a JSON object's text ({...}), as this code stores
        them? Anything else (bytes that are not JSON) is a miss: answered from PostgreSQL and replaced,
        never served (review s20 ha). The ends only, not a parse, so a body cut after an inner object would
        pass: parsing an 83 KB list page costs 164 µs (orjson, this machine), on every Redis hit."""
        if value[:1] == b"{" and value.rstrip()[-1:] == b"}":
            return True
        log.warning("cache_unreadable", key=key, field=field, length=len(value), start=value[:32].hex())
        assert self.client is not None
        with contextlib.suppress(RedisError, OSError):
            await cast(Any, self.client).hdel(self.ns + key, field, field + "#deps", field + "#exp")
        return False

    async def _epochs_hold(self, epochs: dict[str, str]) -> bool:
        """Do the dependencies still carry the epochs an answer was stored with (none invalidated since)?"""
        assert self.client is not None
        async with self.client.pipeline(transaction=False) as pipe:
            for dep in epochs:
                pipe.hget(self.ns + dep, EPOCH)
            now = await pipe.execute()
        return all(n is not None and n.decode() == e for n, e in zip(now, epochs.values(), strict=True))

    async def _epochs(self, deps: Sequence[str], ttl_s: int) -> dict[str, str] | None:
        """Each dependency's epoch token, made where missing (its hash then lives `ttl_s` at most);
        None when one vanished meanwhile (invalidated, expired): the answer is then not stored."""
        assert self.client is not None
        async with self.client.pipeline(transaction=False) as pipe:
            for dep in deps:
                pipe.hsetnx(self.ns + dep, EPOCH, secrets.token_hex(8))
                pipe.expire(self.ns + dep, ttl_s, nx=True)
                pipe.hget(self.ns + dep, EPOCH)
            out = await pipe.execute()
        tokens = [out[3 * i + 2] for i in range(len(deps))]
        if any(t is None for t in tokens):
            return None
        return {dep: t.decode() for dep, t in zip(deps, tokens, strict=True)}

    async def set(
        self, key: str, field: str, value: bytes, generation: int, ttl_s: int | None = None, deps: Sequence[str] = ()
    ) -> None:
        """Stores a variant unless an invalidation of it or of one of `deps` ran since `generation` was
        read, for `ttl_s` (the cache's TTL when None). Every variant keeps its own end (`field#exp`), read
        by get: a variant that lives shorter (an answer that goes stale at a market's end) no longer
        shortens its key, every variant with it (review s20 hf: one `status=closed` request cut the life of
        every /v1/markets variant to the next market end), and none outlives its own TTL when later writes
        keep its key alive (review s20 hg). The key lives as long as its longest-lived variant."""
        deps = coarse(deps)
        if self.stale(key, generation, deps):
            return
        self._l1_put(key, field, value, ttl_s, deps, generation)
        if not self._available() or ((self.owed_all or self.owed) and not await self._settled()):
            return
        assert self.client is not None
        full = self.ns + key
        try:
            epochs = await self._epochs(deps, ttl_s or self.ttl_s) if deps else None
            if deps and epochs is None:
                return
            life = ttl_s or self.ttl_s
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hset(full, field, cast(Any, value))
                if epochs is not None:
                    pipe.hset(full, field + "#deps", orjson.dumps(epochs).decode())
                else:
                    pipe.hdel(full, field + "#deps")
                pipe.hset(full, field + "#exp", str(int(time.time() * 1000) + life * 1000))
                pipe.expire(full, life, nx=True)  # a new key: this variant's life
                pipe.expire(full, life, gt=True)  # a key kept shorter so far: as long as this variant
                pipe.hlen(full)
                count = (await pipe.execute())[-1]
            if self.stale(key, generation, deps):  # invalidated while we were writing
                await self.client.delete(full)
            elif int(count) > FIELDS_PER_VARIANT * MAX_VARIANTS:
                await self.client.delete(full)
        except (RedisError, OSError) as exc:
            self._failed("set", exc)
            return
        self._ok()

    async def invalidate(self, rows: Iterable[tuple[str, Sequence[str]]]) -> bool:
        """Deletes the keys made stale by outbox rows (event, rooms); False when Redis did not take
        it (owed: paid before Redis is read or written again)."""
        keys: set[str] = set()
        everything = False
        for event, rooms in rows:
            k = keys_for(event, rooms)
            if k is None:
                everything = True
                break
            keys |= k
        if not everything and not keys:  # chain:finalized: nothing cached changed
            return not self.enabled or self.client is None or await self._settled()
        self._invalidated(None if everything else keys)
        self._l1_drop(None if everything else keys)
        if not self.enabled or self.client is None:
            return True
        self._owe(None if everything else keys)  # paid below, or by the next call once Redis is back
        return await self._settled()

    async def clear(self) -> bool:
        """Drops every key of this namespace (after a reorg); owed if Redis does not take it."""
        self._invalidated(None)
        self.clear_local()
        if self.client is None:
            return True
        self._owe(None)
        return await self._settled()

    async def _clear_redis(self) -> int:
        assert self.client is not None
        n = 0
        async for batch in _scan_batches(self.client, self.ns + "*"):
            n += int(await self.client.delete(*batch))
        return n

    async def ping(self) -> bool:
        if self.client is None:
            return False
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            self._failed("ping", exc)
            return False
        self._ok()
        return True


async def _scan_batches(client: aioredis.Redis, pattern: str) -> Any:
    batch: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=500):
        batch.append(key)
        if len(batch) >= 500:
            yield batch
            batch = []
    if batch:
        yield batch


# Warming lives in core.warm (the keeper runs it, the API is what it warms); re-exported here.
HOT_PATHS = _warm.HOT_PATHS
warm = _warm.warm
