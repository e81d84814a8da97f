"""The feed port against connection floods, below the websocket handshake.

The feed's per-address cap (`feed_max_connections_per_ip`, a 429 at the handshake) counts only
connections that finished it. A client that opens sockets and never completes a handshake was
counted nowhere: each held a file descriptor for the handshake timeout, and the process's
descriptors (shared with the HTTP port, the database pools and Redis) ran out. So, from the TCP
connection on:

- at most `feed_max_connections_per_ip + HANDSHAKE_SLACK` sockets per client address (an IPv6 host
  per /64, and its /48 NETWORK_FACTOR times that; the proxies in `api.forwarded_allow_ips` are
  exempt, their clients are capped at the handshake), and `feed_max_connections` in all: beyond,
  the socket is closed at once, after a fixed 429 naming the cap;
- a handshake must finish within `feed_handshake_timeout_s`;
- websockets' own log lines (a failed handshake logs a traceback per socket) are at most one a
  second, without the traceback: `feed_log_lines_dropped_total` counts the rest;
- what a client sends is metered below the app, control frames included (`Inbound`): websockets
  answers every ping with a pong before the app sees a frame, so a ping flood took the event loop
  (shared with the HTTP port) and, unread, the pongs' memory without bound (review h3: 72 → 779 MB,
  `/health` p50 1.8 s). Over its byte or frame budget, or with more unread output than
  `feed_buffer_max_bytes` after a read, the socket is closed (1008 when the close frame can still be
  sent), counted in `feed_sockets_cut_total{reason}`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode
from websockets.protocol import State

from api.clientip import Network, count_in, count_out, is_trusted
from api.connections import refusal

HANDSHAKE_SLACK = 8  # sockets per address beyond the established cap: handshakes in progress, a 429 to answer

REGISTRY = CollectorRegistry()  # below the app, per process; /metrics serves it with the others
REFUSED = Counter(
    "feed_sockets_refused_total",
    "feed sockets closed before the handshake",
    ["reason"],  # per_ip | total
    registry=REGISTRY,
)
DROPPED = Counter("feed_log_lines_dropped_total", "websockets log lines over one a second", registry=REGISTRY)
CUT = Counter(
    "feed_sockets_cut_total",
    "feed sockets closed for what they sent",
    ["reason"],  # bytes | frames | unread
    registry=REGISTRY,
)
CLOSE_GRACE_S = 1.0  # a cut socket gets this long to take its close frame, then it is aborted


@dataclasses.dataclass(frozen=True, slots=True)
class Inbound:
    """What one feed socket may send (token buckets: a rate and a burst), and the unread output it may
    leave. Bytes include the handshake and control frames; frames are every frame, pings included."""

    bytes_per_s: float
    bytes_burst: float
    frames_per_s: float
    frames_burst: float
    unread_max: int

    @classmethod
    def for_feed(cls, frames_per_s: float, frame_burst: int, max_frame: int, unread_max: int) -> Inbound:
        """From the app's data-frame budget (`feed_frames_per_s`, `feed_frame_burst`, which closes a
        client 4x beyond its burst): every frame may be as large as `feed_max_frame_bytes`, and twice
        as many frames are allowed here, pings and pongs included."""
        frame = max_frame + 14  # the largest header
        rate = max(frames_per_s, 1.0)
        return cls(rate * frame, frame_burst * frame, 2 * rate, 4 * frame_burst, unread_max)


UNLIMITED = Inbound(float("inf"), float("inf"), float("inf"), float("inf"), 1 << 62)


class SocketCaps:
    """Open feed sockets per address key and in all."""

    def __init__(self, per_ip: int, total: int, proxies: tuple[Network, ...]) -> None:
        self.per_ip = per_ip
        self.total = total
        self.proxies = proxies
        self.open: dict[str, int] = {}
        self.count = 0

    def admit(self, peer: str) -> tuple[bool, tuple[str, ...]]:
        """(admitted, the keys counted for it: none for a proxy or a refusal). An IPv6 client counts
        per /64 and its /48 NETWORK_FACTOR times that (clientip.count_in)."""
        if self.count >= self.total:
            REFUSED.labels("total").inc()
            return False, ()
        keys: tuple[str, ...] = ()
        if not is_trusted(peer, self.proxies):
            counted = count_in(self.open, peer, self.per_ip)
            if counted is None:
                REFUSED.labels("per_ip").inc()
                return False, ()
            keys = counted
        self.count += 1
        return True, keys

    def release(self, keys: tuple[str, ...]) -> None:
        self.count -= 1
        count_out(self.open, keys)


def capped(caps: SocketCaps, inbound: Inbound = UNLIMITED) -> type[ServerConnection]:
    """A ServerConnection class (websockets' `create_connection`) counted in `caps` from the TCP
    connection on, and held to `inbound`. A refused socket is closed before websockets starts its
    handshake (no task, no log line)."""

    class Capped(ServerConnection):
        _counted = False
        _keys: tuple[str, ...] = ()
        _cut = False
        _bytes = inbound.bytes_burst
        _frames = inbound.frames_burst
        _at = 0.0

        def data_received(self, data: bytes) -> None:
            if self._cut:
                return
            now = time.monotonic()
            elapsed, self._at = now - self._at, now
            self._bytes = min(inbound.bytes_burst, self._bytes + elapsed * inbound.bytes_per_s) - len(data)
            self._frames = min(inbound.frames_burst, self._frames + elapsed * inbound.frames_per_s)
            if self._bytes < 0:  # checked before websockets parses it (and answers its pings)
                self.cut("bytes")
                return
            super().data_received(data)
            if not self._cut and self.transport.get_write_buffer_size() > inbound.unread_max:
                self.cut("unread")

        def process_event(self, event: Any) -> None:
            if self._cut:
                return
            self._frames -= 1
            if self._frames < 0:
                self.cut("frames")
                return
            super().process_event(event)

        def cut(self, reason: str) -> None:
            """Closes the socket for what it sent: a close frame 1008 naming the reason when the client
            still reads, then the socket, aborted CLOSE_GRACE_S later at the latest."""
            self._cut = True
            CUT.labels(reason).inc()
            transport = self.transport
            if reason != "unread" and self.protocol.state is State.OPEN:
                try:
                    self.protocol.fail(CloseCode.POLICY_VIOLATION, f"too much sent ({reason}): slow down")
                    self.send_data()
                except Exception:  # best effort: the socket goes either way
                    pass
            transport.pause_reading()
            transport.close()
            self.loop.call_later(CLOSE_GRACE_S, transport.abort)

        def connection_made(self, transport: Any) -> None:
            peer = transport.get_extra_info("peername")
            admitted, self._keys = caps.admit(str(peer[0]) if peer else "unknown")
            if not admitted:
                Connection.connection_made(self, transport)  # the transport only: no handshake task
                # a fixed 429, nothing read (review h3: a client behind a NAT saw a reset, no reason)
                transport.write(refusal("feed_connections_per_ip" if caps.count < caps.total else "feed_connections"))
                transport.close()
                self.loop.call_later(CLOSE_GRACE_S, transport.abort)  # a client that never reads it
                return
            self._counted = True
            self._at = time.monotonic()
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._counted:
                self._counted = False
                caps.release(self._keys)
            super().connection_lost(exc)

    return Capped


class _OncePerSecond(logging.Filter):
    """At most one record a second, its traceback folded into one line."""

    def __init__(self) -> None:
        super().__init__()
        self.next = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now < self.next:
            DROPPED.inc()
            return False
        self.next = now + 1.0
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {record.exc_info[1]!r}"[:300]
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_logger() -> logging.Logger:
    """The logger websockets' server writes to (its `logger=` argument)."""
    logger = logging.getLogger("api.feed.websockets")
    if not any(isinstance(f, _OncePerSecond) for f in logger.filters):
        logger.addFilter(_OncePerSecond())
    return logger
