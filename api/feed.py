"""The live feed: a raw `websockets` server on its own port.

Protocol (docs/feed.md):

    → {"op":"auth","token":"<JWT from POST /v1/auth/verify>"}          (or Authorization: Bearer at connect)
    ← {"type":"authenticated","address":"0x…","expiresAt":"…"}
    → {"op":"subscribe","rooms":["market:7","user:0xab…"],"since":123}   since optional
    ← {"type":"subscribed","rooms":[…],"seq":HEAD}
    ← {"type":"event","event":"market:trade","seq":124,"id":{chainId,blockNumber,logIndex,blockHash},
       "finality":"unsafe|safe|finalized","rooms":[…],"data":{…},"ts":"…"}
    ← {"type":"replayed","seqFrom":123,"seqTo":HEAD,"events":N}          after a `since` replay
    → {"op":"unsubscribe","rooms":[…]}   ← {"type":"unsubscribed",…}
    → {"op":"ping"}                       ← {"type":"pong","seq":HEAD}
    ← {"type":"heartbeat","seq":HEAD,"ts":…}                             every feed_heartbeat_s
    ← {"type":"error","code":"…","message":"…"}                         malformed or refused frame

`chain:reorg`, `chain:finalized` and `system:maintenance` go to every connection whatever its
rooms. Resume: `since` on the connection's first subscribe replays every matching outbox row with
seq > since, then continues live — the writer drops anything at or below the last seq it sent, and
live rows arriving during the replay wait in a bounded list, so there is no gap and no duplicate.

Privacy: on-chain events are public and reach anyone in their rooms; `notification` events (which
the HTTP API guards with a token) reach only a connection signed in as the room's user, until its
token expires (the next heartbeat signs it out with `auth_expired`; an auth frame with a fresh token
of the same address resumes them).

Memory: every connection has a bounded queue; when the fan-out finds it full the connection is
closed with 4008 (slow consumer) and dropped from the rooms at once — one slow client never holds
memory or delays the others. Messages are encoded once per event and shared by all recipients.
A replay reads bounded pages on the feed's own pool and holds no connection while it waits for
the client; a replaying client that takes no page for `feed_replay_stall_s` is closed with 4008.

Abuse: at most `feed_max_connections_per_ip` connections per client address (HTTP 429 at the
handshake), client frames limited per connection (token bucket; far beyond it, close 1008); sockets
capped per address and in all from the TCP connection on, handshakes timed (api/feed_guard.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import time
import urllib.parse
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import asyncpg
import orjson
import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from api import auth
from api.clientip import NETWORK_FACTOR, Network, client_ip, client_keys, count_in, count_out
from api.encode import iso
from api.feed_guard import HANDSHAKE_SLACK, Inbound, SocketCaps, capped, quiet_logger
from api.metrics import Metrics
from api.outbox import encode_row
from api.settings import Settings
from core.numbers import whole_number
from core.pgerrors import pooled

log = structlog.get_logger("api.feed")

CLOSE_SLOW = 4008
CLOSE_POLICY = 1008
ALL_ROOMS_EVENTS = ("chain:reorg", "chain:finalized", "chain:gap", "system:maintenance")
PRIVATE_EVENTS = ("notification",)  # only to a connection signed in as the room's user
PAGE_ACQUIRE_S = 2.0
DRAIN_POLL_S = 0.02  # how often the end of a replay looks whether the client's queue has room for live events
REPLICA_WAIT_S = 2.0  # how long a resume waits for a read replica to reach the head before replay_unavailable
RESUME_KEYS_MAX = 10_000  # client addresses whose resume budget is tracked
# A resume reads the outbox rows between `since` and the head, ours or not: more than this many
# times feed_replay_max rows behind is refused before any read (each read is then bounded).
SPAN_PER_REPLAY_MAX = 10
_ROOM = re.compile(r"^(global:all|market:(0|[1-9][0-9]{0,17})|(user|creator):0x[0-9a-fA-F]{40})$")

# The highest seq of this chain retention deleted (sql/083): a resume from below it may miss rows.
PRUNED_SQL = "SELECT coalesce(max(pruned_through), 0) FROM idx.outbox_pruned WHERE chain_id = $1"
# A page of the replay and, in the same statement (one snapshot), the chain's watermark: retention
# running while a replay reads its pages must not make a page start past rows it deleted (review s19 h2).
# No row of the page: one row with seq NULL, still carrying the watermark.
REPLAY_PAGE = 500  # rows a replay reads at once; a page with fewer is the replay's last
REPLAY_SQL = f"""
SELECT w.pruned, m.*
  FROM (SELECT coalesce(max(pruned_through), 0) AS pruned FROM idx.outbox_pruned WHERE chain_id = $1) w
  LEFT JOIN LATERAL (
    SELECT seq, event, rooms, block_number, log_index, block_hash, payload::text AS payload, created_at
      FROM idx.outbox_messages  -- trades' payloads built from their event rows (sql/082)
     WHERE chain_id = $1 AND seq > $2 AND seq <= $3
       AND (rooms && $4::text[] OR event = ANY($5::text[]))
     ORDER BY seq
     LIMIT {REPLAY_PAGE}) m ON true
 ORDER BY m.seq
"""
# The highest seq this database ever issued (every chain's: admin broadcasts reach every chain's clients), 0
# before the first; it survives retention pruning and an empty outbox (sql/077 grants it to the api role)
ISSUED_SEQ_SQL = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM idx.outbox_seq_seq"
MAX_SEQ_SQL = "SELECT max(seq) FROM idx.outbox"  # what a replica holds (_replica_at)
BACKLOG_SQL = """
SELECT count(*) FROM (SELECT 1 FROM idx.outbox
                       WHERE chain_id = $1 AND seq > $2 AND seq <= $3
                         AND (rooms && $4::text[] OR event = ANY($5::text[]))
                       LIMIT $6) AS b
"""
RELOAD = "you are not subscribed: reload state over HTTP (asOf says the block), then subscribe without since"
HEADS_SQL = "SELECT safe_block, finalized_block FROM idx.chain_heads WHERE chain_id = $1"

Item = tuple[int | None, bytes]


def owner_rooms(event: str, rooms: Sequence[str]) -> list[str]:
    """The user rooms a private event may reach ([] = none); public events return every room (pure)."""
    if event in PRIVATE_EVENTS:
        return [r for r in rooms if r.startswith("user:")]
    return list(rooms)


def may_receive(event: str, rooms: Sequence[str], address: str | None) -> bool:
    """A private event reaches a connection only when it is signed in as one of the event's users."""
    if event not in PRIVATE_EVENTS:
        return True
    return address is not None and f"user:{address}" in rooms


class Bucket:
    """A token bucket (pure but for the clock passed in)."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def has(self, now: float) -> bool:
        """Whether a token is there now (nothing taken)."""
        return min(float(self.burst), self.tokens + (now - self.updated) * self.rate) >= 1

    def take(self, now: float) -> float:
        """Takes one token; returns the balance (negative = over the limit by that much)."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1
        return self.tokens


def normalize_room(room: Any) -> str | None:
    """Canonical room name (addresses lowercased) or None when not a valid room (pure)."""
    if not isinstance(room, str) or not _ROOM.fullmatch(room):
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
    __slots__ = (
        "address",
        "auth_until",
        "bucket",
        "closed",
        "gone",
        "ip",
        "last_seq",
        "pending",
        "queue",
        "replaying",
        "rooms",
        "signed_as",
        "started",
        "ws",
    )

    def __init__(self, ws: ServerConnection, queue_max: int, ip: str, bucket: Bucket) -> None:
        self.ws = ws
        self.ip = ip
        self.bucket = bucket
        self.address: str | None = None  # set by a valid token (header at connect or an auth frame) until it expires
        self.auth_until = 0.0  # the token's exp (unix seconds): the heartbeat signs the connection out after it
        self.signed_as: str | None = None  # the address it signed in as, kept after expiry: one address a connection
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=queue_max)
        self.rooms: set[str] = set()
        self.last_seq = 0
        self.replaying = False
        self.pending: list[Item] = []
        self.started = False  # a subscribe has been processed (since only allowed before)
        self.closed = False  # cut by us, or the connection ended (its writer saw it close)
        self.gone = asyncio.Event()  # set with `closed`: wakes a replay waiting for room in the queue


class Hub:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        metrics: Metrics,
        trusted: tuple[Network, ...] = (),
        chain_id: int | None = None,
        primary: asyncpg.Pool | None = None,
    ) -> None:
        a = settings.api
        self.pool = pool
        # the primary's pool (the pumps'), for the outbox's newest seq: the feed's pool may read a replica
        # behind the seq a client got from another worker's pump
        self.primary = primary or pool
        self.replica = settings.read_dsn != settings.dsn  # the feed's pool reads a replica
        self.settings = settings
        self.chain_id = settings.chain_id if chain_id is None else chain_id
        self.hubs: dict[int, Hub] = {self.chain_id: self}  # the chains one server routes to (share())
        self.metrics = metrics
        self.trusted = trusted
        self.queue_max = a.feed_queue_max
        self.max_rooms = a.feed_max_rooms
        self.max_frame = a.feed_max_frame_bytes
        self.heartbeat_s = a.feed_heartbeat_s
        self.replay_max = a.feed_replay_max
        self.buffer_max = a.feed_buffer_max_bytes
        self.replay_stall_s = a.feed_replay_stall_s
        self.max_per_ip = a.feed_max_connections_per_ip
        # sockets from the TCP connection on, before any handshake (api/feed_guard.py)
        self.caps = SocketCaps(self.max_per_ip + HANDSHAKE_SLACK, a.feed_max_connections, trusted)
        self.handshake_timeout_s = a.feed_handshake_timeout_s
        self.frames_per_s = a.feed_frames_per_s
        self.frame_burst = a.feed_frame_burst
        self.head_seq = 0
        self.clients: set[Client] = set()
        self.rooms: dict[str, set[Client]] = {}
        self.per_ip: dict[str, int] = {}
        self.server: Server | None = None
        # Resumes read the outbox in pages on the feed's pool: budgeted per client address, whatever
        # the number of connections it opens and closes (reconnect loops).
        self.resumes_per_min = a.feed_resumes_per_minute
        self.resume_burst = min(a.feed_resume_burst, a.feed_resumes_per_minute)
        self.resumes: dict[str, Bucket] = {}

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
        transport = c.ws.transport
        if transport is not None and transport.get_write_buffer_size() > self.buffer_max:
            self._cut(c)  # not reading, whichever path last wrote to it
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
        """Drops a slow client from every room now and closes it with 4008 (once, whichever check
        saw it first: the replay's stall, the writer's, the queue's or the buffer's)."""
        if c.closed:
            return
        self._forget(c)
        c.closed = True
        c.gone.set()
        self.metrics.feed_slow_disconnects.inc()
        log.info("feed_slow_consumer_closed", queued=c.queue.qsize())
        asyncio.get_running_loop().create_task(self._close(c, CLOSE_SLOW, "slow consumer"))

    async def _close(self, c: Client, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await c.ws.close(code, reason)
        self._abort(c)

    def _forget(self, c: Client) -> None:
        self.clients.discard(c)
        for room in c.rooms:
            members = self.rooms.get(room)
            if members is not None:
                members.discard(c)
                if not members:
                    del self.rooms[room]

    def _relayable(self, row: asyncpg.Record) -> bool:
        """False for an outbox row without a payload: a trade whose event row is gone (deleted by hand;
        rollbacks and resets keep the payload first, sql/082). Relayed, clients would get `data: null`."""
        if row["payload"] is not None:
            return True
        self.metrics.feed_unbuilt.inc()
        log.error(
            "outbox_payload_missing",
            seq=row["seq"],
            outbox_event=row["event"],
            block_number=row["block_number"],
            log_index=row["log_index"],
            hint="its event row is not in the database: check idx.ev_trade / idx.ev_shares_traded at that position",
        )
        return False

    async def publish(self, rows: Sequence[asyncpg.Record], safe: int | None, finalized: int | None) -> None:
        """Pump sink: fans each outbox row out to the clients of its rooms (chain:* to everyone)."""
        for row in rows:
            if not self._relayable(row):
                continue
            data = encode_row(self.chain_id, row, safe, finalized)
            seq = int(row["seq"])
            event = row["event"]
            if event in ALL_ROOMS_EVENTS:
                targets: set[Client] | list[Client] = list(self.clients)
            else:
                targets = set()
                for room in owner_rooms(event, row["rooms"]):
                    members = self.rooms.get(room)
                    if members:
                        targets |= members
                if event in PRIVATE_EVENTS:
                    targets = {c for c in targets if may_receive(event, row["rooms"], c.address)}
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
        """A heartbeat to every connection; a connection whose token expired is signed out first (it
        gets no private event after its token's exp, give or take a heartbeat: review s15)."""
        now = time.time()
        data = _msg(type="heartbeat", seq=self.head_seq, ts=dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"))
        for c in list(self.clients):
            if c.address is not None and c.auth_until <= now:
                c.address = None
                at = iso(dt.datetime.fromtimestamp(c.auth_until, dt.UTC))
                expired = _error(
                    "auth_expired",
                    f"your token expired at {at}: private events stopped; send"
                    ' {"op":"auth","token":"<JWT>"} with a fresh one (POST /v1/auth/refresh) to resume them',
                )
                self._offer(c, (None, expired))
            self._offer(c, (None, data))

    # ---------------------------------------------------------------- connections

    def _peer(self, ws: ServerConnection, request: Request | None) -> str:
        """The client's address (api.clientip: an IPv6 host counts per /64, and its /48 in all)."""
        remote = ws.remote_address
        peer = str(remote[0]) if remote else None
        # Several X-Forwarded-For headers are one list (RFC 9110 5.3); .get() would raise on them.
        hops = request.headers.get_all("X-Forwarded-For") if request is not None else []
        return client_ip(peer, ", ".join(hops) if hops else None, self.trusted)

    def share(self, others: Sequence[Hub]) -> None:
        """Serves `others` (other chains) from this hub's server: ws://…/?chainId=N picks one; the
        per-address connection count and resume budget are one across them."""
        for h in others:
            self.hubs[h.chain_id] = h
            h.per_ip = self.per_ip
            h.resumes = self.resumes  # the resume budget is the address's, whichever chain (review s19 h2)
            h.hubs = self.hubs

    def route(self, path: str) -> Hub | None:
        """The hub of the connection's ?chainId= (this one without it); None for a chain not served."""
        values = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("chainId")
        if not values:
            return self
        chain = whole_number(values[0])
        return None if chain is None else self.hubs.get(chain)

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Handshake: refuses an unknown chain (400) and an address over its connection cap (429)
        before any state is kept."""
        if self.route(request.path) is None:
            served = ", ".join(str(c) for c in self.hubs)
            return ws.respond(HTTPStatus.BAD_REQUEST, f"chainId must be one of {served}\n")
        if len(request.headers.get_all("Authorization")) > 1:
            return ws.respond(HTTPStatus.BAD_REQUEST, "send at most one Authorization header\n")
        key, net = client_keys(self._peer(ws, request))
        # an IPv6 /48 gets NETWORK_FACTOR x the cap in all, behind a trusted proxy too (review s21 hx: 24 /64s
        # of one /48 held 24 connections with a cap of 1, where the socket cap skips the proxy's address)
        if self.per_ip.get(key, 0) >= self.max_per_ip or (
            net is not None and self.per_ip.get(net, 0) >= self.max_per_ip * NETWORK_FACTOR
        ):
            self.metrics.feed_refused.labels("per_ip").inc()
            response = ws.respond(
                HTTPStatus.TOO_MANY_REQUESTS,
                f"at most {self.max_per_ip} feed connections per client address"
                f" ({self.max_per_ip * NETWORK_FACTOR} per IPv6 /48)\n",
            )
            response.headers["Retry-After"] = "10"
            return response
        return None

    async def handler(self, ws: ServerConnection) -> None:
        hub = self.route(ws.request.path) if ws.request is not None else self
        await (hub or self).serve_connection(ws)

    async def serve_connection(self, ws: ServerConnection) -> None:
        ip = self._peer(ws, ws.request)
        c = Client(ws, self.queue_max, ip, Bucket(self.frames_per_s, self.frame_burst, time.monotonic()))
        if ws.request is not None:
            token = auth.bearer(next(iter(ws.request.headers.get_all("Authorization")), None))
            principal = auth.decode_token(self.settings, token) if token else None
            if principal is not None:
                c.address = c.signed_as = principal.address
                c.auth_until = principal.expires_at
        counted = count_in(self.per_ip, ip, 2**62)  # checked at the handshake: counted whatever
        self.clients.add(c)
        self.metrics.feed_connections.set(len(self.clients))
        writer = asyncio.get_running_loop().create_task(self._writer(c))
        try:
            async for frame in ws:
                if c.closed:
                    break
                balance = c.bucket.take(time.monotonic())
                if balance < -3 * self.frame_burst:
                    self.metrics.feed_errors.inc()
                    await self._close(c, CLOSE_POLICY, "too many frames")
                    break
                if balance < 0:
                    self.metrics.feed_errors.inc()
                    self._reply(
                        c, _error("rate_limited", f"at most {self.frames_per_s:g} frames/s (burst {self.frame_burst})")
                    )
                    continue
                await self._on_frame(c, frame)
        except ConnectionClosed:
            pass
        finally:
            c.closed = True
            self._forget(c)
            count_out(self.per_ip, counted or ())
            self.metrics.feed_connections.set(len(self.clients))
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def _writer(self, c: Client) -> None:
        """Sends the queued frames in order. A send that cannot finish within feed_replay_stall_s (the
        client stopped reading: the transport is paused) cuts the client — without it the writer
        waited for ever, heartbeats piled up behind it and, in quiet rooms, the connection and its
        buffers stayed for hours (feed_queue_max heartbeats)."""
        try:
            while True:
                seq, data = await c.queue.get()
                if seq is not None:
                    if seq <= c.last_seq:
                        continue
                    c.last_seq = seq
                try:
                    async with asyncio.timeout(self.replay_stall_s):
                        await c.ws.send(data, text=True)
                except TimeoutError:
                    if self._leaving(c):  # it sent its close: leaving, not slow
                        c.closed = True
                        self._abort(c)
                    else:
                        self._cut(c)
                    return
        except ConnectionClosed:
            c.closed = True  # the client left: nothing more can reach it (a replay stops, never a slow consumer)
        finally:
            c.gone.set()

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
        if op == "auth":
            return self._on_auth(c, msg)
        if op not in ("subscribe", "unsubscribe"):
            self.metrics.feed_errors.inc()
            return self._reply(c, _error("unknown_op", "op must be auth, subscribe, unsubscribe or ping"))
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
            self._leave(c, rooms)
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
        if since is not None and not self._may_resume(c.ip):
            self.metrics.feed_errors.inc()
            return self._reply(
                c,
                _error(
                    "rate_limited",
                    f"at most {self.resumes_per_min} resumes (subscribe with since) per minute per client address;"
                    " subscribe without since, or retry in a minute",
                ),
            )
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

    def _may_resume(self, ip: str) -> bool:
        """The client's resume budget, and its IPv6 /48's (NETWORK_FACTOR x, review s21 hx): both must allow."""
        now = time.monotonic()
        if len(self.resumes) > RESUME_KEYS_MAX:  # bounded: forget the addresses whose budget is full again
            for k in [k for k, b in self.resumes.items() if b.tokens + (now - b.updated) * b.rate >= b.burst]:
                del self.resumes[k]
        key, net = client_keys(ip)
        buckets = []
        scopes: list[tuple[str | None, int]] = [(key, 1), (net, NETWORK_FACTOR)]
        for scope, factor in scopes:
            if scope is None:
                continue
            bucket = self.resumes.get(scope)
            if bucket is None:
                rate, burst = factor * self.resumes_per_min / 60, factor * self.resume_burst
                bucket = self.resumes[scope] = Bucket(rate, burst, now)
            buckets.append(bucket)
        # taken from both only when both have one: a /64's refused tries must not spend its /48's budget,
        # nor a client retrying faster than the budget keep its own ever below zero (review s21 hu)
        if not all(b.has(now) for b in buckets):
            return False
        for b in buckets:
            b.take(now)
        return True

    def _leave(self, c: Client, rooms: list[str]) -> None:
        for r in rooms:
            c.rooms.discard(r)
            members = self.rooms.get(r)
            if members is not None:
                members.discard(c)
                if not members:
                    del self.rooms[r]

    def _on_auth(self, c: Client, msg: dict[str, Any]) -> None:
        token = msg.get("token")
        unknown = sorted(set(msg) - {"op", "token"})
        if unknown or not isinstance(token, str) or not token:
            self.metrics.feed_errors.inc()
            return self._reply(c, _error("bad_auth", 'send {"op":"auth","token":"<JWT>"}'))
        principal = auth.decode_token(self.settings, token)
        if principal is None:
            self.metrics.feed_errors.inc()
            return self._reply(
                c, _error("auth_failed", "token invalid or expired: sign in again over HTTP (POST /v1/auth/verify)")
            )
        if c.signed_as is not None and c.signed_as != principal.address:
            self.metrics.feed_errors.inc()
            return self._reply(c, _error("auth_failed", "this connection is signed in as another address"))
        c.address = c.signed_as = principal.address
        c.auth_until = principal.expires_at
        return self._reply(
            c,
            _msg(
                type="authenticated",
                address=principal.address,
                expiresAt=iso(dt.datetime.fromtimestamp(principal.expires_at, dt.UTC)),
            ),
        )

    async def _replay(self, c: Client, since: int, target: int, rooms: list[str]) -> None:
        """Events (since, target] of `rooms` in order, then `replayed`, then the live ones held
        meanwhile. A replay that cannot be complete (pruned, too long, the database unavailable)
        sends its error and leaves the connection unsubscribed: going live after a partial replay
        would look complete and silently miss events."""
        cursor = since
        sent = 0
        failed: bytes | None = None
        try:
            pruned, newest, heads, backlog = await self._replay_start(since, target, rooms)
            if newest is not None and since > newest:  # not a seq of this database: rebuilt or restored
                failed = _error(
                    "since_too_old",
                    f"since {since} is beyond the newest seq this database issued ({newest}): it was"
                    f" rebuilt or restored since; {RELOAD}",
                )
                return
            if since < pruned:  # review h11: compared with this chain's oldest row, a chain pruned empty
                # looked complete, and with several chains seqs of the others were taken for pruned rows
                failed = _error(
                    "since_too_old", f"the outbox no longer holds this chain's seqs up to {pruned}; {RELOAD}"
                )
                return
            if backlog > self.replay_max:  # counted first (or the span alone): refused before sending any of it
                failed = _error("since_too_old", f"more than {self.replay_max} events to replay; {RELOAD}")
                return
            # the client has everything up to since: a worker whose head lags it (since > target) must not
            # send (target, since] again, live or held (review s15); only once the resume is accepted
            c.last_seq = max(c.last_seq, since)
            safe = heads["safe_block"] if heads else None
            fin = heads["finalized_block"] if heads else None
            while cursor < target and not c.closed and c.ws.protocol.state is State.OPEN:  # gone: stop reading
                # one page per connection checkout: no pool connection is held while the client reads
                async with pooled(self.pool, PAGE_ACQUIRE_S) as conn:
                    rows = await conn.fetch(REPLAY_SQL, self.chain_id, cursor, target, rooms, list(ALL_ROOMS_EVENTS))
                pruned = int(rows[0]["pruned"])
                if pruned > cursor:  # retention deleted rows this replay had not read yet (review s19 h2)
                    failed = _error(
                        "since_too_old",
                        f"the outbox lost this chain's seqs up to {pruned} while the replay read them, after"
                        f" {sent} events (the last seq {cursor}); {RELOAD}",
                    )
                    return
                if rows[0]["seq"] is None:
                    break
                for row in rows:
                    if not may_receive(row["event"], row["rooms"], c.address) or not self._relayable(row):
                        continue
                    try:
                        if not await self._put(c, (int(row["seq"]), encode_row(self.chain_id, row, safe, fin))):
                            return  # the client went away
                    except TimeoutError:
                        self._cut(c)
                        return
                    sent += 1
                cursor = int(rows[-1]["seq"])
                if len(rows) < REPLAY_PAGE:  # every row up to target read: another page would only meet
                    break  # retention of other rooms' rows (review s19 h3: a complete replay was refused)
        except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("feed_replay_failed", error=type(exc).__name__, sent=sent)
            failed = _error(
                "replay_unavailable",
                f"the replay could not be read after {sent} events; you are not subscribed: reconnect and "
                "subscribe with since = the last seq you processed (or reload over HTTP)",
            )
        finally:
            if c.closed:
                c.pending, c.replaying = [], False
            elif failed is not None:  # not subscribed: nothing held goes out, the error waits for room like
                c.pending = []  # the replay (offered to the queue the replay filled, it was a 4008 instead)
                self.metrics.feed_errors.inc()
                self._leave(c, list(c.rooms))
                await self._end_replay(c, failed)
            else:
                await self._end_replay(c, _msg(type="replayed", seqFrom=since, seqTo=target, events=sent))

    async def _end_replay(self, c: Client, last: bytes) -> None:
        """`last` (`replayed`, or the error that ends a partial replay), then the live items held during the
        replay, into the client's queue with the replay's own bounded wait (a client that reads keeps up;
        one that takes nothing for replay_stall_s is cut). Live items arriving meanwhile are still held,
        behind these, and the replay stays on until the held list is empty and at most half the queue is
        used: live items are offered without waiting, and a full queue cuts. Offered to the queue the
        replay had filled, a full queue at its end cut a client that was reading steadily (review h11:
        4008 after ~294 of 300 events), and so did a burst of live events just after it (review s19 h2)."""
        items: list[Item] = [(None, last)]
        try:
            while not c.closed:
                for item in items:
                    if not await self._put(c, item):
                        return
                items, c.pending = c.pending, []
                if not items and await self._drained(c):
                    break
        except TimeoutError:
            self._cut(c)
        finally:
            c.pending = []
            c.replaying = False

    async def _put(self, c: Client, item: Item) -> bool:
        """`item` into the client's queue, waiting for room at most replay_stall_s (TimeoutError beyond:
        the client took nothing); False, not put, once the client is gone (closed by us or by itself: one
        that left during its replay was held replay_stall_s and then counted a slow consumer, review s19 h3)."""
        if c.closed:
            return False
        if not c.queue.full():
            c.queue.put_nowait(item)
            return True
        put = asyncio.ensure_future(c.queue.put(item))
        gone = asyncio.ensure_future(c.gone.wait())
        try:
            done, _ = await asyncio.wait({put, gone}, timeout=self.replay_stall_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not put.done():
                put.cancel()
        if put in done:
            return True
        if gone in done or self._leaving(c):
            return False
        raise TimeoutError("the client took nothing from its queue")

    @staticmethod
    def _leaving(c: Client) -> bool:
        """Gone, or closing (it sent its close frame): whatever is still queued for it is not slowness."""
        return c.closed or c.ws.protocol.state is not State.OPEN

    @staticmethod
    def _abort(c: Client) -> None:
        if c.ws.transport is not None and not c.ws.transport.is_closing():
            c.ws.transport.abort()

    async def _drained(self, c: Client) -> bool:
        """True once at most half of the client's queue is used (it may go live); False while live items
        wait in c.pending. TimeoutError when the client took nothing for replay_stall_s."""
        loop = asyncio.get_running_loop()
        size, moved = c.queue.qsize(), loop.time()
        while size > self.queue_max // 2 and not c.pending and not c.closed:
            if loop.time() - moved > self.replay_stall_s:
                if self._leaving(c):
                    return True  # it sent its close: nothing to wait for
                raise TimeoutError("the client took nothing from its queue")
            await asyncio.sleep(DRAIN_POLL_S)
            if c.queue.qsize() < size:
                size, moved = c.queue.qsize(), loop.time()
        return not c.pending

    async def _replay_start(
        self, since: int, target: int, rooms: list[str]
    ) -> tuple[int, int | None, asyncpg.Record | None, int]:
        """The highest seq of this chain the outbox's retention deleted, the newest seq (any chain's: a
        `since` beyond it was not issued by this database, review s15 F4), the chain's heads, and the
        events to replay (counted up to replay_max + 1, and only when the seq span is larger than
        replay_max; replay_max + 1 without counting when the span is more than SPAN_PER_REPLAY_MAX times
        replay_max: refused unread)."""
        if self.replica and target > since:
            await self._replica_at(target)
        async with pooled(self.pool, PAGE_ACQUIRE_S) as conn:
            pruned = int(await conn.fetchval(PRUNED_SQL, self.chain_id))
            heads = await conn.fetchrow(HEADS_SQL, self.chain_id)
            backlog = target - since
            if backlog > SPAN_PER_REPLAY_MAX * self.replay_max:
                backlog = self.replay_max + 1
            elif backlog > self.replay_max:
                backlog = await conn.fetchval(
                    BACKLOG_SQL, self.chain_id, since, target, rooms, list(ALL_ROOMS_EVENTS), self.replay_max + 1
                )
        newest = None
        if since > target:  # this worker's head may lag the table: ask the primary
            async with pooled(self.primary, PAGE_ACQUIRE_S) as conn:
                newest = await conn.fetchval(ISSUED_SEQ_SQL)
        return pruned, newest, heads, backlog

    async def _replica_at(self, target: int) -> None:
        """Waits (up to REPLICA_WAIT_S) until the replica the replay reads holds seq `target`, which the
        pump read on the primary: pages read from a replica behind it skipped the rows it lacked and
        still answered `replayed ... seqTo=target` (review s15). TimeoutError: replay_unavailable."""
        deadline = asyncio.get_running_loop().time() + REPLICA_WAIT_S
        while True:
            async with pooled(self.pool, PAGE_ACQUIRE_S) as conn:
                held = await conn.fetchval(MAX_SEQ_SQL)
            if held is not None and held >= target:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the read replica holds outbox seq {held}, the head is {target}")
            await asyncio.sleep(0.1)

    # ---------------------------------------------------------------- server

    async def serve(self, host: str, port: int, stop: asyncio.Event) -> None:
        async with serve(
            self.handler,
            host,
            port,
            process_request=self.process_request,
            create_connection=capped(
                self.caps, Inbound.for_feed(self.frames_per_s, self.frame_burst, self.max_frame, self.buffer_max)
            ),
            open_timeout=self.handshake_timeout_s,
            logger=quiet_logger(),
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
            for h in self.hubs.values():
                h.server = server
            async with asyncio.TaskGroup() as tg:
                for h in self.hubs.values():
                    tg.create_task(h._heartbeats(stop))
                await stop.wait()
            server.close(close_connections=True)
        for h in self.hubs.values():
            h.server = None

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
