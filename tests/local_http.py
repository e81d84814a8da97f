"""A throwaway aiohttp server on a free local port, for tests that need an HTTP peer (a node, the API)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from tests.chain import free_port


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serves `app` until the block ends; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def posting(handle: Any) -> AsyncIterator[int]:
    """An aiohttp server answering POST / with `handle` (bodies up to 64 MiB) on a free local port, in
    this loop, until the block ends; yields the port (the JSON-RPC proxies of the tests and benches)."""
    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()
