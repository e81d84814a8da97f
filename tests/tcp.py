"""A TCP proxy for fault tests: what a paused VM, a partition or a dropped route look like."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class BlackHole:
    """A TCP proxy that can stop forwarding (bytes are swallowed, connections stay open): what a
    paused VM, a partition or a dropped route look like to a client."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.frozen = False
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        # what clients tried while frozen: reads of their requests swallowed, connections never answered
        self.swallowed = 0
        self.unanswered = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upward: bool) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if not self.frozen:
                    writer.write(data)
                    await writer.drain()
                elif upward:
                    self.swallowed += 1
        writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.frozen:
            self.unanswered += 1
            return  # accepted, never answered
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer, True), self._pipe(up_reader, writer, False))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[BlackHole]:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            for w in self.writers:
                w.close()
            server.close()
