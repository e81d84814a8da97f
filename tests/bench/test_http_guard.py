"""bench/http_guard.py measures what it says: both protocols answer every request of the run on one
keep-alive connection (a harness that lost responses would time nothing). No timing is asserted."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api import connections
from bench.http_guard import per_request_us


async def test_both_protocols_answer_every_request_of_the_run() -> None:
    guarded = connections.protocol(connections.Limits(10.0, 16384, 64, 4096))
    for factory in (HttpToolsProtocol, guarded):
        async with asyncio.timeout(30):  # returns only once all 200 were answered
            assert await per_request_us(factory, 200) > 0
