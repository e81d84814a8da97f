"""The live feed: a raw `websockets` server on its own port.

Protocol (docs/feed.md):

    → {"op":"subscribe","rooms":["market:7","user:0xab…"],"since":123}   since optional
    ← {"type":"subscribed","rooms":[…],"seq":HEAD}
    ← {"type":"event","event":"market:trade","seq":124,"id":{chain_id,block_number,log_index,block_hash},
       "finality":"unsafe|safe|finalized","rooms":[…],"data":{…},"ts":"…"}
    ← {"type":"replayed","from":123,"to":HEAD}                           after a `since` replay
    → {"op":"unsubscribe","rooms":[…]}   ← {"type":"unsubscribed",…}
    → {"op":"ping"}                       ← {"type":"pong","seq":HEAD}
    ← {"type":"heartbeat","seq":HEAD,"ts":…}                             every feed_heartbeat_s
    ← {"type":"error","code":"…","message":"…"}                         malformed or refused frame

`chain:reorg`, `chain:finalized` and `system:maintenance` go to every connection whatever its
rooms. Resume: `since` on the connection's first subscribe replays every matching outbox row with
seq > since, then continues live — the writer drops anything at or below the last seq it sent, and
live rows arriving during the replay wait in a bounded list, so there is no gap and no duplicate.

Memory: every connection has a bounded queue; when the fan-out finds it full the connection is
closed with 4008 (slow consumer) and dropped from the rooms at once — one slow client never holds
memory or delays the others. Messages are encoded once per event and shared by all recipients.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from api.metrics import Metrics
from api.outbox import encode_row

log = structlog.get_logger("api.feed")

CLOSE_SLOW = 4008
ALL_ROOMS_EVENTS = ("chain:reorg", "chain:finalized", "system:maintenance")
_ROOM = re.compile(r"^(global:all|market:(0|[1-9][0-9]{0,17})|(user|creator):0x[0-9a-fA-F]{40})$")

REPLAY_SQL = """
SELECT seq, event, rooms, block_number, log_index, block_hash, payload::text AS payload, created_at
  FROM idx.outbox
 WHERE chain_id = $1 AND seq > $2 AND seq <= $3
   AND (rooms && $4::text[] OR event = ANY($5::text[]))
 ORDER BY seq
 LIMIT 500
"""
MIN_SEQ_SQL = "SELECT min(seq) FROM idx.outbox WHERE chain_id = $1"
HEADS_SQL = "SELECT safe_block, finalized_block FROM idx.chain_heads WHERE chain_id = $1"

Item = tuple[int | None, bytes]


def normalize_room(room: Any) -> str | None:
    """Canonical room name (addresses lowercased) or None when not a valid room (pure)."""
    if not isinstance(room, str) or not _ROOM.match(room):
        return None
    kind, _, ident = room.partition(":")
    return f"{kind}:{ident.lower()}" if kind in ("user", "creator") else room


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented RFC 6455 text frame (server → client) — pure."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload


def _msg(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def _error(code: str, message: str) -> bytes:
    return _msg(type="error", code=code, message=message)


class Client:
    __slots__ = ("closed", "last_seq", "pending", "queue", "replaying", "rooms", "started", "ws")

    def __init__(self, ws: ServerConnection, queue_max: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=queue_max)
        self.rooms: set[str] = set()
        self.last_seq = 0
        self.replaying = False
        self.pending: list[Item] = []
        self.started = False  # a subscribe has been processed (since only allowed before)
        self.closed = False


class Hub:
    def __init__(
        self,
        pool: asyncpg.Pool,
        chain_id: int,
        metrics: Metrics,
        queue_max: int = 1000,
        max_rooms: int = 50,
        max_frame: int = 4096,
        heartbeat_s: float = 15.0,
        replay_max: int = 10000,
        buffer_max: int = 1 << 20,
    ) -> None:
        self.pool = pool
        self.chain_id = chain_id
        self.metrics = metrics
        self.queue_max = queue_max
        self.max_rooms = max_rooms
        self.max_frame = max_frame
        self.heartbeat_s = heartbeat_s
        self.replay_max = replay_max
        self.buffer_max = buffer_max
        self.head_seq = 0
        self.clients: set[Client] = set()
        self.rooms: dict[str, set[Client]] = {}
        self.server: Server | None = None

    # ---------------------------------------------------------------- fan-out (no await inside)

    def _write_now(self, c: Client, seq: int, frame: bytes) -> bool:
        """Fast path: a live connection with nothing queued gets the event's pre-built frame written
        straight to its transport (encoded once for every recipient, no per-connection task
        switch). Order holds: an empty queue means the writer has already written everything
        earlier. A transport buffer above `buffer_max` means the client is not reading: cut it."""
        if c.closed or c.replaying or not c.queue.empty() or seq <= c.last_seq:
            return c.closed or seq <= c.last_seq
        transport = c.ws.transport
        if transport is None or transport.is_closing() or c.ws.protocol.state is not State.OPEN:
            return False
        if transport.get_write_buffer_size() > self.buffer_max:
            self._cut(c)
            return True
        transport.write(frame)
        c.last_seq = seq
        return True

    def _offer(self, c: Client, item: Item) -> None:
        if c.closed:
            return
        if c.replaying:
            if len(c.pending) >= self.queue_max:
                self._cut(c)
            else:
                c.pending.append(item)
            return
        try:
            c.queue.put_nowait(item)
        except asyncio.QueueFull:
            self._cut(c)

    def _cut(self, c: Client) -> None:
        """Drops a slow client from every room now and closes it with 4008."""
        self._forget(c)
        c.closed = True
        self.metrics.feed_slow_disconnects.inc()
        log.info("feed_slow_consumer_closed", queued=c.queue.qsize())
        asyncio.get_running_loop().create_task(self._close(c, CLOSE_SLOW, "slow consumer"))

    async def _close(self, c: Client, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await c.ws.close(code, reason)
        if c.ws.transport is not None and not c.ws.transport.is_closing():
            c.ws.transport.abort()

    def _forget(self, c: Client) -> None:
        self.clients.discard(c)
        for room in c.rooms:
            members = self.rooms.get(room)
            if members is not None:
                members.discard(c)
                if not members:
                    del self.rooms[room]

    async def publish(self, rows: Sequence[asyncpg.Record], safe: int | None, finalized: int | None) -> None:
        """Pump sink: fans each outbox row out to the clients of its rooms (chain:* to everyone)."""
        for row in rows:
            data = encode_row(self.chain_id, row, safe, finalized)
            seq = int(row["seq"])
            if row["event"] in ALL_ROOMS_EVENTS:
                targets: set[Client] | list[Client] = list(self.clients)
            else:
                targets = set()
                for room in row["rooms"]:
                    members = self.rooms.get(room)
                    if members:
                        targets |= members
            frame = text_frame(data)
            for c in targets:
                if not self._write_now(c, seq, frame):
                    self._offer(c, (seq, data))
            self.head_seq = seq
            self.metrics.feed_messages.labels("event").inc(len(targets))
            # one loop turn per event: writers drain between events, so a burst (a backfill's
            # batch of rows) is paced by the clients that keep up, and only those that do not fill up
            await asyncio.sleep(0)

    def broadcast(self, data: bytes) -> None:
        """Broadcast sink: an admin message (system:maintenance) to every connection, unsequenced."""
        for c in list(self.clients):
            self._offer(c, (None, data))
        self.metrics.feed_messages.labels("broadcast").inc(len(self.clients))

    def heartbeat(self) -> None:
        data = _msg(type="heartbeat", seq=self.head_seq, ts=dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"))
        for c in list(self.clients):
            self._offer(c, (None, data))

    # ---------------------------------------------------------------- connections

    async def handler(self, ws: ServerConnection) -> None:
        c = Client(ws, self.queue_max)
        self.clients.add(c)
        self.metrics.feed_connections.set(len(self.clients))
        writer = asyncio.get_running_loop().create_task(self._writer(c))
        try:
            async for frame in ws:
                if c.closed:
                    break
                await self._on_frame(c, frame)
        except ConnectionClosed:
            pass
        finally:
            c.closed = True
            self._forget(c)
            self.metrics.feed_connections.set(len(self.clients))
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def _writer(self, c: Client) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                seq, data = await c.queue.get()
                if seq is not None:
                    if seq <= c.last_seq:
                        continue
                    c.last_seq = seq
                await c.ws.send(data, text=True)

    def _reply(self, c: Client, data: bytes) -> None:
        self._offer(c, (None, data))

    async def _on_frame(self, c: Client, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self.metrics.feed_errors.inc()
            return self._reply(c, _error("binary_frame", "send JSON text frames"))
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError:
            self.metrics.feed_errors.inc()
            return self._reply(c, _error("bad_json", "frame is not valid JSON"))
        if not isinstance(msg, dict):
            self.metrics.feed_errors.inc()
            return self._reply(c, _error("bad_frame", "frame must be a JSON object with an op"))
        op = msg.get("op")
        if op == "ping":
            return self._reply(c, _msg(type="pong", seq=self.head_seq))
        if op not in ("subscribe", "unsubscribe"):
            self.metrics.feed_errors.inc()
            return self._reply(c, _error("unknown_op", "op must be subscribe, unsubscribe or ping"))
        unknown = sorted(set(msg) - {"op", "rooms", "since"})
        if unknown:
            self.metrics.feed_errors.inc()
            return self._reply(c, _error("unknown_field", f"unknown field(s): {', '.join(unknown)}"))
        rooms_raw = msg.get("rooms")
        if not isinstance(rooms_raw, list) or not rooms_raw:
            self.metrics.feed_errors.inc()
            return self._reply(c, _error("bad_rooms", "rooms must be a non-empty list"))
        rooms: list[str] = []
        for r in rooms_raw:
            n = normalize_room(r)
            if n is None:
                self.metrics.feed_errors.inc()
                return self._reply(
                    c,
                    _error(
                        "bad_room", f"invalid room {str(r)[:80]!r}: global:all, market:ID, user:0xADDR, creator:0xADDR"
                    ),
                )
            rooms.append(n)
        rooms = list(dict.fromkeys(rooms))
        if op == "unsubscribe":
            for r in rooms:
                c.rooms.discard(r)
                members = self.rooms.get(r)
                if members is not None:
                    members.discard(c)
                    if not members:
                        del self.rooms[r]
            return self._reply(c, _msg(type="unsubscribed", rooms=rooms, seq=self.head_seq))
        since = msg.get("since")
        if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
            self.metrics.feed_errors.inc()
            return self._reply(c, _error("bad_since", "since must be a non-negative integer seq"))
        if since is not None and c.started:
            self.metrics.feed_errors.inc()
            return self._reply(c, _error("since_not_first", "since is only accepted on a connection's first subscribe"))
        if len(c.rooms | set(rooms)) > self.max_rooms:
            self.metrics.feed_errors.inc()
            return self._reply(c, _error("too_many_rooms", f"at most {self.max_rooms} rooms per connection"))
        c.started = True
        for r in rooms:
            c.rooms.add(r)
            self.rooms.setdefault(r, set()).add(c)
        target = self.head_seq
        self._reply(c, _msg(type="subscribed", rooms=sorted(c.rooms), seq=target))
        if since is None:
            return None
        c.replaying = True  # live rows from now on (all > target) wait in c.pending
        await self._replay(c, since, target, sorted(c.rooms))
        return None

    async def _replay(self, c: Client, since: int, target: int, rooms: list[str]) -> None:
        cursor = since
        sent = 0
        try:
            async with self.pool.acquire() as conn:
                oldest = await conn.fetchval(MIN_SEQ_SQL, self.chain_id)
                if oldest is not None and since + 1 < oldest:
                    self._reply(
                        c, _error("since_too_old", f"the outbox starts at seq {oldest}; reload state over HTTP")
                    )
                    return
                heads = await conn.fetchrow(HEADS_SQL, self.chain_id)
                safe = heads["safe_block"] if heads else None
                fin = heads["finalized_block"] if heads else None
                while cursor < target and not c.closed:
                    rows = await conn.fetch(REPLAY_SQL, self.chain_id, cursor, target, rooms, list(ALL_ROOMS_EVENTS))
                    if not rows:
                        break
                    for row in rows:
                        if sent >= self.replay_max:
                            self._reply(
                                c,
                                _error(
                                    "since_too_old", f"more than {self.replay_max} events to replay; reload over HTTP"
                                ),
                            )
                            return
                        await c.queue.put((int(row["seq"]), encode_row(self.chain_id, row, safe, fin)))
                        sent += 1
                    cursor = int(rows[-1]["seq"])
        finally:
            pending, c.pending = c.pending, []
            c.replaying = False
            if not c.closed:
                self._reply(c, _msg(type="replayed", seq_from=since, seq_to=target, events=sent))
                for item in pending:
                    self._offer(c, item)

    # ---------------------------------------------------------------- server

    async def serve(self, host: str, port: int, stop: asyncio.Event) -> None:
        async with serve(
            self.handler,
            host,
            port,
            max_size=self.max_frame,
            max_queue=16,
            ping_interval=self.heartbeat_s,
            ping_timeout=self.heartbeat_s * 2,
            close_timeout=2,
            write_limit=64 * 1024,
            compression=None,
            reuse_port=True,
        ) as server:
            self.server = server
            log.info("feed_listening", host=host, port=port)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._heartbeats(stop))
                await stop.wait()
            server.close(close_connections=True)
        self.server = None

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat_s):
                    await stop.wait()
            if not stop.is_set():
                self.heartbeat()

    @property
    def port(self) -> int | None:
        if self.server is None:
            return None
        for sock in self.server.sockets:
            return int(sock.getsockname()[1])
        return None
