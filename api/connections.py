"""The HTTP port against slow and greedy clients, below the app: uvicorn's httptools protocol with
the limits it lacks (uvicorn 0.54 arms no timer until a first response, and keeps every header).

- A request's line and headers must arrive within `head_timeout_s` of the connection opening or of
  the request's first byte, and a connection that asks nothing within `head_timeout_s` of its last
  answer is closed too (a slowloris client, a socket that sends nothing, CRLFs trickled to
  dodge uvicorn's keep-alive timer): `api_connections_cut_total{reason="head_timeout"}`. One sweep
  per server per second looks (a timer per request cost more than the rest of the guard).
- They may take at most `max_head_bytes`: beyond, 431 and the connection is closed.
- At most MAX_PIPELINED requests may wait behind the one being answered (HTTP/1.1 pipelining:
  uvicorn parses a whole read of back-to-back requests before it pauses reading, ~2.4 KB each): a
  client that sends more without reading the answers is cut, `reason="pipelined"` (review s15 F1:
  1 MB of pipelined requests, never read, held 68 MB a connection).
- An answer the client stops reading (the transport's buffer full, writing paused, and not one byte
  of it read) for `write_timeout_s` is cut: the connection is aborted (close() would wait for the
  buffer to drain), `reason="write_timeout"`. A slow reader that drains WRITE_PROGRESS bytes within
  each `write_timeout_s` is never cut; one that trickles less is.
- At most `max_per_ip` open connections per client address (an IPv6 client counts per /64, the
  least any host owns, and its /48 NETWORK_FACTOR times that) and `max_total` in all; beyond, the
  new connection is closed at once. The proxies in `api.forwarded_allow_ips` carry everyone's
  connections and are not capped per address.

The app's own limits (body size, rate limits, pool timeouts) start once the head is complete.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import resource
import weakref
from typing import Any

import orjson
import structlog
from prometheus_client import CollectorRegistry, Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.clientip import Network, count_in, count_out, is_trusted, networks

log = structlog.get_logger("api.connections")

# Per server (uvicorn's ServerState): open connections per address key.
_OPEN: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()
# Below the app, so per process rather than per app registry; /metrics serves both.
REGISTRY = CollectorRegistry()
CUT = Counter(
    "api_connections_cut_total",
    "HTTP connections closed below the app",
    ["reason"],  # head_timeout | head_too_large | pipelined | write_timeout | connections_per_ip | connections_total
    registry=REGISTRY,
)


@dataclasses.dataclass(frozen=True)
class Limits:
    head_timeout_s: float
    max_head_bytes: int
    max_per_ip: int
    max_total: int
    trusted: tuple[str, ...] = ()  # the proxies (api.forwarded_allow_ips): not capped per address
    write_timeout_s: float = 30.0  # an answer not read for this long: the connection is aborted

    @functools.cached_property
    def proxies(self) -> tuple[Network, ...]:
        return networks(self.trusted)


OTHER_FILES = 64  # listening sockets, Redis, logs, the interpreter's own files: a margin


def open_files_needed(settings: Any) -> int:
    """What the API's caps can hold open at once: both ports' connections and the pools (the outbox
    pumps' has a connection per chain, /ready has one)."""
    a = settings.api
    pools = a.pool_max + a.write_pool_max + a.feed_pool_max + len(settings.chains) + 1  # + /ready's
    return int(a.max_connections + a.feed_max_connections + pools + OTHER_FILES)


def ensure_open_files(needed: int) -> tuple[int, int]:
    """Raises this process's soft limit on open files towards `needed` (up to the hard limit) and
    returns (soft, hard) after. The caps are worth nothing past the limit: accept() fails with EMFILE
    for every port, the database pools and Redis included."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft, hard


def protocol(limits: Limits) -> Any:
    """What uvicorn.Config(http=...) takes: a picklable factory (workers > 1 start by spawn)."""
    return functools.partial(GuardedHttp, limits=limits)


_REFUSAL_LOGGED = [float("-inf")]  # loop time of the last connection_refused line


@functools.cache
def refusal(reason: str) -> bytes:
    """The 429 written to a connection refused before anything is read (the seed's error body; no path:
    no request was read). Shared by the feed's socket caps (api/feed_guard.py)."""
    what = "open connections of this address" if reason.endswith("per_ip") else "open connections"
    body = orjson.dumps(
        {
            "statusCode": 429,
            "message": "Too many connections",
            "errors": [{"field": "", "message": f"too many {what} ({reason}); close some and retry"}],
            "path": "",
        }
    )
    head = (
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


MAX_PIPELINED = 16  # requests parsed and waiting behind the one being answered, per connection
WRITE_PROGRESS = 4096  # bytes a paused answer must drain to restart write_timeout_s (a trickle does not)
SWEEP_S = 1.0  # how often a server looks for heads past their deadline (one timer per server)
_SWEEPING: weakref.WeakSet[Any] = weakref.WeakSet()  # the servers (ServerState) with a sweep scheduled


def _sweep(server_state: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Closes the connections whose request head is overdue, then runs again while any is open.
    One timer per server rather than one per request: arming and cancelling a timer on every
    request cost more than the rest of the guard (bench/http_guard.py)."""
    now = loop.time()
    for p in list(server_state.connections):
        if not isinstance(p, GuardedHttp):
            continue
        if p.write_paused_at is not None:
            left = p.transport.get_write_buffer_size()
            if left <= p.write_paused_left - WRITE_PROGRESS:  # the client read some: slow, not stalled
                p.write_paused_at, p.write_paused_left = now, left
            elif now - p.write_paused_at > p.limits.write_timeout_s:
                CUT.labels("write_timeout").inc()
                p.transport.abort()  # a close() would wait for the client to read the buffered answer
                continue
        if p.deadline < now and not p.transport.is_closing():
            # Answering a request whose head is complete (its cycle holds the current scope): not
            # ours to cut. Otherwise a head still arriving, or nothing asked since the last answer.
            cycle = p.cycle
            if cycle is None or cycle.response_complete or cycle.scope is not p.scope:
                CUT.labels("head_timeout").inc()
                p.transport.close()
    if server_state.connections:
        loop.call_later(SWEEP_S, _sweep, server_state, loop)
    else:
        _SWEEPING.discard(server_state)


class GuardedHttp(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.max_head = limits.max_head_bytes  # read per header: one attribute, not two
        self.deadline = 0.0  # loop time by which the current request head must be complete
        self.head_bytes = 0
        self.too_large = False
        self.pipelined = False  # more than MAX_PIPELINED requests queued: cut
        self.write_paused_at: float | None = None  # loop time writing paused, or the client last read since
        self.write_paused_left = 0  # bytes buffered then
        self.keys: tuple[str, ...] = ()  # what this connection counts in _OPEN (clientip.count_in)

    # ---------------------------------------------------------------- connection caps

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        open_ = _OPEN.setdefault(self.server_state, {})
        peer = self.client[0] if self.client else "unknown"
        if len(self.connections) > self.limits.max_total:
            self._refuse("connections_total", peer)
            return
        if not is_trusted(peer, self.limits.proxies):
            keys = count_in(open_, peer, self.limits.max_per_ip)
            if keys is None:
                self._refuse("connections_per_ip", peer)
                return
            self.keys = keys
        self.deadline = self.loop.time() + self.limits.head_timeout_s
        if self.server_state not in _SWEEPING:
            _SWEEPING.add(self.server_state)
            self.loop.call_later(SWEEP_S, _sweep, self.server_state, self.loop)

    def _refuse(self, reason: str, peer: str) -> None:
        CUT.labels(reason).inc()
        now = self.loop.time()
        if now >= _REFUSAL_LOGGED[0] + 1.0:  # a flood of connections is one line a second, not a log flood
            _REFUSAL_LOGGED[0] = now
            log.warning("connection_refused", reason=reason, client=peer, open=len(self.connections))
        # a fixed answer, nothing parsed: a client behind a NAT sees why (review h3: a reset without a status)
        self.transport.write(refusal(reason))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.keys:
            count_out(_OPEN.get(self.server_state, {}), self.keys)
            self.keys = ()
        super().connection_lost(exc)

    # ---------------------------------------------------------------- the head's deadline and size

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = 0
        self.deadline = self.loop.time() + self.limits.head_timeout_s

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if len(self.pipeline) > MAX_PIPELINED:
            self.pipelined = True
            raise ValueError("too many pipelined requests")  # the parser stops; send_400_response cuts

    def pause_writing(self) -> None:
        if self.write_paused_at is None:
            self.write_paused_at = self.loop.time()
            self.write_paused_left = self.transport.get_write_buffer_size()
        super().pause_writing()

    def resume_writing(self) -> None:
        self.write_paused_at = None
        super().resume_writing()

    def on_response_complete(self) -> None:
        # The idle budget runs from the answer, not from the request's start: a keep-alive connection
        # whose answer took longer than head_timeout_s was otherwise cut at the next sweep.
        self.deadline = self.loop.time() + self.limits.head_timeout_s
        super().on_response_complete()

    # on_url and on_header are uvicorn's (0.54) with the count added, not wrappers around them: a
    # second Python frame per header was most of the guard's cost per request.
    def on_url(self, url: bytes) -> None:
        self.head_bytes += len(url)
        if self.head_bytes > self.max_head:
            self._too_large()
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        n = self.head_bytes = self.head_bytes + len(name) + len(value) + 4
        if n > self.max_head:
            self._too_large()
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def _too_large(self) -> None:
        self.too_large = True
        raise ValueError("request head too large")  # the parser stops; uvicorn answers send_400_response

    def send_400_response(self, msg: str) -> None:
        if self.pipelined:
            CUT.labels("pipelined").inc()
            self.transport.abort()  # answers already written may never be read: do not wait for them
            return
        if not self.too_large:
            super().send_400_response(msg)
            return
        CUT.labels("head_too_large").inc()
        body = f"request line and headers larger than {self.limits.max_head_bytes} bytes".encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self.transport.close()
