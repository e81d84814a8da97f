"""What the HTTP port's guard (api/connections.py) costs per request: uvicorn's httptools protocol
with and without it, the same keep-alive connection answering a typical GET through a minimal ASGI
app, in one process, alternating rounds; CPU µs per request (`time.thread_time`, so other load on
the machine does not count).

    .venv/bin/python -m bench.http_guard            # prints the line for docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from api import connections

REQUEST = (
    b"GET /v1/markets/7?chainId=31337 HTTP/1.1\r\nHost: api.example\r\nUser-Agent: bench/1.0\r\n"
    b"Accept: application/json\r\nAccept-Encoding: gzip, br\r\nAccept-Language: en\r\nConnection: keep-alive\r\n"
    b"X-Forwarded-For: 203.0.113.9\r\nAuthorization: Bearer abcdef0123456789\r\n\r\n"
)


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.responses = 0
        self.closed = False
        self.answered = asyncio.Event()

    def write(self, data: Any) -> None:
        if bytes(data).startswith(b"HTTP/1.1 "):
            self.responses += 1
            self.answered.set()

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("203.0.113.9", 40000), "sockname": ("127.0.0.1", 58080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def per_request_us(factory: Any, n: int) -> float:
    config = Config(app, http=factory, log_level="warning", access_log=False, lifespan="off")
    config.load()
    proto = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    t = Transport()
    proto.connection_made(t)
    started = time.thread_time()
    for i in range(n):
        proto.data_received(REQUEST)
        while t.responses <= i:
            await t.answered.wait()
            t.answered.clear()
    spent = time.thread_time() - started
    proto.connection_lost(None)
    return spent / n * 1e6


async def main(n: int, rounds: int) -> None:
    guarded = connections.protocol(connections.Limits(10.0, 16384, 64, 4096))
    plain: list[float] = []
    guard: list[float] = []
    for _ in range(rounds):
        plain.append(await per_request_us(HttpToolsProtocol, n))
        guard.append(await per_request_us(guarded, n))
    p, g = statistics.median(plain), statistics.median(guard)
    print(
        f"http guard, {n:,} keep-alive GETs x {rounds} alternating rounds, CPU per request (median): "
        f"uvicorn httptools {p:.1f} µs, with the guard {g:.1f} µs (+{g - p:.1f} µs, +{(g / p - 1) * 100:.0f} %)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
