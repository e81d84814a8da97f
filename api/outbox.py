"""The outbox pump: follows idx.outbox in seq order and hands each new batch of rows to the cache
(invalidation) and to the feed hub (fan-out), in that order — a client told about a trade finds
the cache already cleared.

Wake-ups: LISTEN gl_outbox on PostgreSQL, Redis pub/sub `gl:outbox:*` (the indexer publishes the
max seq after each commit; this is also how other instances hear about it), and a poll every
`outbox_poll_s` as a safety net. Whatever the wake-up, rows are read from the table by
`seq > last` so nothing is skipped or repeated. Admin broadcasts (`system:maintenance`) arrive on
Redis `{cache_prefix}:{chain_id}:feed:broadcast` and reach every instance of the deployment.

The pure part — turning a row into a feed message — is `encode_row`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from api.metrics import Metrics
from core.pgerrors import pooled

log = structlog.get_logger("api.outbox")

OUTBOX_SQL = """
SELECT seq, event, rooms, block_number, log_index, block_hash, payload::text AS payload, created_at
  FROM idx.outbox_messages  -- trades' payloads built from their event rows (sql/082)
 WHERE chain_id = $1 AND seq > $2
 ORDER BY seq
 LIMIT $3
"""
HEADS_SQL = "SELECT safe_block, finalized_block FROM idx.chain_heads WHERE chain_id = $1"
# Where the pump starts: the chain's newest row, or its retention watermark (sql/083) when that is higher (every
# row deleted): the feed's head (`subscribed`, heartbeats) then never names a seq a resume would be refused
# from (review s19 h3: a quiet chain given a watermark by sql/084 refused every resume from seq 0).
START_SEQ_SQL = """
SELECT greatest(coalesce(max(seq), 0),
                (SELECT coalesce(max(pruned_through), 0) FROM idx.outbox_pruned WHERE chain_id = $1))
  FROM idx.outbox WHERE chain_id = $1
"""
CHECKPOINT_SQL = "SELECT block_number FROM idx.checkpoints WHERE chain_id = $1"
# State changes the outbox does not announce (it carries the seed's events only): claims and
# withdrawals still change positions, holdings and creators, so their keys are invalidated too.
UNANNOUNCED_SQL = """
SELECT 'winnings:claimed' AS event, ARRAY['market:' || market_id, 'user:0x' || encode(holder, 'hex')] AS rooms
  FROM idx.ev_winnings_claimed WHERE chain_id = $1 AND block_number > $2 AND block_number <= $3
UNION ALL
SELECT 'dividends:claimed', ARRAY['creator:0x' || encode(creator, 'hex'), 'user:0x' || encode(holder, 'hex')]
  FROM idx.ev_dividends_claimed WHERE chain_id = $1 AND block_number > $2 AND block_number <= $3
UNION ALL
SELECT 'liquidity:withdrawn', ARRAY['market:' || market_id, 'user:0x' || encode(creator, 'hex')]
  FROM idx.ev_liquidity_withdrawn WHERE chain_id = $1 AND block_number > $2 AND block_number <= $3
UNION ALL
SELECT 'creator:fees', ARRAY['creator:0x' || encode(creator, 'hex')]
  FROM idx.ev_creator_fees_collected WHERE chain_id = $1 AND block_number > $2 AND block_number <= $3
UNION ALL
SELECT 'creator:fees', ARRAY['creator:0x' || encode(creator, 'hex')]
  FROM idx.ev_creator_fees_claimed WHERE chain_id = $1 AND block_number > $2 AND block_number <= $3
"""
BATCH = 1000
ACQUIRE_S = 5.0  # the pump waits this long for a connection, then retries on its next wake-up


def finality(block_number: int | None, safe: int | None, finalized: int | None) -> str:
    if block_number is None:
        return "unsafe"
    if finalized is not None and block_number <= finalized:
        return "finalized"
    if safe is not None and block_number <= safe:
        return "safe"
    return "unsafe"


def camel(key: str) -> str:
    """snake_case → camelCase, the HTTP API's casing (pure)."""
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def camelize(value: Any) -> Any:
    """Every dict key in a JSON value camelCased (pure): the indexer's payloads are snake_case."""
    if isinstance(value, dict):
        return {camel(k): camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value


def encode_row(chain_id: int, row: asyncpg.Record | dict[str, Any], safe: int | None, finalized: int | None) -> bytes:
    """One feed message (JSON bytes) for an outbox row — encoded once, sent to every recipient,
    in the HTTP API's casing."""
    bh = row["block_hash"]
    created: dt.datetime = row["created_at"]
    raw = row["payload"]
    payload = camelize(orjson.loads(raw) if isinstance(raw, str | bytes) else raw)
    return orjson.dumps(
        {
            "type": "event",
            "event": row["event"],
            "seq": row["seq"],
            "id": {
                "chainId": chain_id,
                "blockNumber": row["block_number"],
                "logIndex": row["log_index"],
                "blockHash": None if bh is None else "0x" + bytes(bh).hex(),
            },
            "finality": finality(row["block_number"], safe, finalized),
            "rooms": list(row["rooms"]),
            "data": payload,
            "ts": created.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        }
    )


Sink = Callable[[Sequence[asyncpg.Record], int | None, int | None], Awaitable[None]]
Invalidator = Callable[[list[tuple[str, Sequence[str]]]], Awaitable[bool]]
BroadcastSink = Callable[[bytes], None]


class Pump:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        redis: aioredis.Redis | None,
        chain_id: int,
        poll_s: float,
        metrics: Metrics,
        namespace: str = "gl:",
    ) -> None:
        self.namespace = namespace
        self.pool = pool
        self.dsn = dsn
        self.redis = redis
        self.chain_id = chain_id
        self.poll_s = poll_s
        self.metrics = metrics
        self.last_seq = 0
        self.sinks: list[Sink] = []
        self.invalidators: list[Invalidator] = []
        self.checkpoint: int | None = None
        self.broadcast_sinks: list[BroadcastSink] = []
        # told a seq was committed (the indexer) or invalidated by another worker, before this pump has it
        self.announced_sinks: list[Callable[[int], None]] = []
        self._wake = asyncio.Event()
        self.listening = False

    @property
    def broadcast_channel(self) -> str:
        return f"{self.namespace}feed:broadcast"

    @property
    def invalidated_channel(self) -> str:
        """Where each worker says which seq its cache invalidation has reached (api/app.py)."""
        return f"{self.namespace}invalidated"

    def _announced(self, data: Any) -> None:
        try:
            seq = int(data)
        except (TypeError, ValueError):
            return
        for sink in self.announced_sinks:  # each compares with what it has processed itself
            sink(seq)

    async def start(self) -> None:
        async with pooled(self.pool, ACQUIRE_S) as conn:
            self.last_seq = int(await conn.fetchval(START_SEQ_SQL, self.chain_id))
            self.checkpoint = await conn.fetchval(CHECKPOINT_SQL, self.chain_id)
        self.metrics.outbox_seq.labels(str(self.chain_id)).set(self.last_seq)

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._listen_pg(stop))
            if self.redis is not None:
                tg.create_task(self._listen_redis(stop))
            tg.create_task(self._drain_loop(stop))

    async def _drain_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.drain()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                log.warning("outbox_read_failed", error=type(exc).__name__)
            except Exception:  # a bug in a sink: logged, and the pump goes on (it is the feed and the cache)
                log.exception("outbox_drain_failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                    try:
                        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for w in waits:
                            w.cancel()
            self._wake.clear()

    def mark(self) -> tuple[int, int | None]:
        """What this worker has invalidated the cache for so far: outbox rows up to last_seq, and claims and
        withdrawals (no outbox rows, _unannounced) up to the checkpoint block. Taken before an answer is read
        and compared with what the database read holds (covers)."""
        return self.last_seq, self.checkpoint

    async def drain(self) -> int:
        """Reads every row past last_seq and hands them to the sinks; returns how many."""
        total = await self._drain_outbox()
        await self._unannounced()
        return total

    async def _unannounced(self) -> None:
        """Invalidates keys of claims/withdrawals indexed since the last look (no outbox rows)."""
        if not self.invalidators:
            return
        async with pooled(self.pool, ACQUIRE_S) as conn:
            cp = await conn.fetchval(CHECKPOINT_SQL, self.chain_id)
            if cp is None or cp == self.checkpoint:
                return
            lo = -1 if self.checkpoint is None or cp < self.checkpoint else self.checkpoint
            rows = await conn.fetch(UNANNOUNCED_SQL, self.chain_id, lo, cp)
        if rows:
            for inv in self.invalidators:
                await inv([(r["event"], r["rooms"]) for r in rows])
        self.checkpoint = cp

    async def _drain_outbox(self) -> int:
        total = 0
        while True:
            async with pooled(self.pool, ACQUIRE_S) as conn:
                rows = await conn.fetch(OUTBOX_SQL, self.chain_id, self.last_seq, BATCH)
                heads = await conn.fetchrow(HEADS_SQL, self.chain_id) if rows else None
            if not rows:
                return total
            safe = heads["safe_block"] if heads else None
            fin = heads["finalized_block"] if heads else None
            for sink in self.sinks:  # each on its own: a sink's bug never starves the others (feed, cache)
                try:
                    await sink(rows, safe, fin)
                except Exception:
                    log.exception(
                        "outbox_sink_failed",
                        sink=getattr(sink, "__qualname__", repr(sink)),
                        seq_from=rows[0]["seq"],
                        seq_to=rows[-1]["seq"],
                    )
            self.last_seq = rows[-1]["seq"]
            self.metrics.outbox_seq.labels(str(self.chain_id)).set(self.last_seq)
            total += len(rows)
            if len(rows) < BATCH:
                return total

    async def _listen_pg(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.dsn, timeout=10, server_settings={"application_name": "gl-api-listen"}
                )
                await conn.add_listener("gl_outbox", lambda *_: self._wake.set())
                self.listening = True
                self._wake.set()  # catch up on whatever committed while we were not listening
                while not stop.is_set() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(5):
                            await stop.wait()
            except Exception as exc:  # any: the connection died while LISTEN was set up (InterfaceError), …
                # ending here would end the pump's task group, silently, until shutdown (review h2)
                log.warning("outbox_listen_failed", error=f"{type(exc).__name__}: {exc}"[:200])
            finally:
                self.listening = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        await stop.wait()

    async def _listen_redis(self, stop: asyncio.Event) -> None:
        assert self.redis is not None
        while not stop.is_set():
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(f"gl:outbox:{self.chain_id}")
                await pubsub.subscribe(self.broadcast_channel, self.invalidated_channel)
                while not stop.is_set():
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is None:
                        continue
                    channel = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
                    if channel == self.broadcast_channel:
                        data = msg["data"] if isinstance(msg["data"], bytes) else str(msg["data"]).encode()
                        for bsink in self.broadcast_sinks:
                            bsink(data)
                    elif channel == self.invalidated_channel:
                        self._announced(msg["data"])
                    else:
                        self._announced(msg["data"])  # the indexer's max seq: committed, not read here yet
                        self._wake.set()
            except Exception as exc:  # any (as _listen_pg): the pump must outlive each of its listeners' faults
                log.warning("outbox_redis_failed", error=f"{type(exc).__name__}: {exc}"[:200])
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        await stop.wait()
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def tell_invalidated(self, seq: int) -> None:
        """Best effort, bounded: the other workers' L1 waits for their own pumps (Cache.announced)."""
        if self.redis is None:
            return
        try:
            async with asyncio.timeout(1.0):
                await self.redis.publish(self.invalidated_channel, str(seq))
        except Exception as exc:
            log.debug("outbox_tell_invalidated_failed", error=f"{type(exc).__name__}: {exc}"[:200])

    async def publish_broadcast(self, data: bytes) -> bool:
        """Sends an admin broadcast to every instance (Redis); False means only this one got it."""
        if self.redis is not None:
            try:
                await self.redis.publish(self.broadcast_channel, data)
                return True
            except (RedisError, OSError):
                pass
        for bsink in self.broadcast_sinks:
            bsink(data)
        return False


def covers(mark: tuple[int, int | None], held_seq: int | None, block: int | None) -> bool:
    """Does a database that holds every outbox row up to `held_seq` and is indexed to `block` hold all the
    writes the invalidations up to `mark` (Pump.mark) were for? A replica behind the primary the pump reads
    may not: an answer read from it may predate one of them, and kept (cache, live ranking) it would outlive
    the only invalidation that write gets (review s20 ha, hf). `held_seq` None: read from the primary."""
    if held_seq is None:
        return True
    seq, checkpoint = mark
    return held_seq >= seq and (checkpoint is None or (block is not None and block >= checkpoint))
