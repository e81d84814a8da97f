"""The backfill's batch writes on a thread of their own: its own event loop and its own connection.

A backfill batch is written in one transaction of ~20 round trips (COPYs, staged upserts, outbox,
checkpoint) while the writer's loop folds and encodes the next batch, pure Python that does not
yield. On one event loop each of those round trips waited for the fold to finish: the write advanced
one statement per batch folded, and most of it ran after the fold instead of beside it. Here the
write's loop only waits for the GIL, which the fold's thread hands over within the switch interval
(lowered to 1 ms while a BatchWriter is open; the default 5 ms cost up to 5 ms per round trip).
Measured on the 200k-event chain (docs/benchmarks.md): the backfill loop 6.0 s -> 5.2 s.

The connection is fenced like the writer's own: write.write_batch checks and moves the checkpoint
under FOR UPDATE, so a batch never commits over a checkpoint another writer moved, whichever
connection holds the writer lock.

    async with BatchWriter(settings) as w:
        seq = await w.run(lambda conn: write_something(conn))
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import asyncpg

from indexer.pipeline import close_quietly, connect
from indexer.settings import Settings

T = TypeVar("T")

SWITCH_SECONDS = 0.001  # sys.setswitchinterval while open (Python's default: 0.005)
CLOSE_SECONDS = 10.0


class BatchWriter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="batch-writer", daemon=True)
        self.conn: asyncpg.Connection | None = None
        self._switch = sys.getswitchinterval()

    async def __aenter__(self) -> BatchWriter:
        self.thread.start()
        try:
            self.conn = await self._on_loop(connect(self.settings, "batches"))
        except BaseException:
            self._stop()
            raise
        sys.setswitchinterval(SWITCH_SECONDS)
        return self

    async def __aexit__(self, *exc: object) -> None:
        sys.setswitchinterval(self._switch)
        try:
            if self.conn is not None:
                with contextlib.suppress(TimeoutError):  # bounded here too: the writer loop may be stuck
                    await asyncio.wait_for(self._on_loop(close_quietly(self.conn, CLOSE_SECONDS)), CLOSE_SECONDS + 1)
        finally:
            self._stop()

    async def run(self, write: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`write(conn)` on the writer thread's loop and connection. Cancelling the caller cancels it
        there and waits (up to CLOSE_SECONDS) until it has ended: its transaction rolled back and the
        connection free for the next write."""
        assert self.conn is not None, "BatchWriter used outside `async with`"
        conn = self.conn

        async def call() -> T:
            return await write(conn)

        return await self._on_loop(call())

    async def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs `coro` as a task of the writer loop; its outcome comes back to this loop."""
        caller = asyncio.get_running_loop()
        outcome: asyncio.Future[T] = caller.create_future()
        ended = asyncio.Event()  # the task on the writer loop has finished, whichever way
        tasks: list[asyncio.Task[T]] = []

        def settle(task: asyncio.Task[T]) -> None:  # on the caller's loop
            ended.set()
            error = None if task.cancelled() else task.exception()  # retrieved even if nobody waits
            if outcome.done():
                return
            if task.cancelled():
                outcome.cancel()
            elif error is not None:
                outcome.set_exception(error)
            else:
                outcome.set_result(task.result())

        def start() -> None:  # on the writer loop
            task = self.loop.create_task(coro)
            tasks.append(task)
            task.add_done_callback(lambda t: caller.call_soon_threadsafe(settle, t))

        def cancel() -> None:  # on the writer loop, after start (call_soon_threadsafe is FIFO)
            for task in tasks:
                task.cancel()

        self.loop.call_soon_threadsafe(start)
        try:
            return await outcome
        except asyncio.CancelledError:
            self.loop.call_soon_threadsafe(cancel)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), CLOSE_SECONDS)
            raise

    def _stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(CLOSE_SECONDS)
        if not self.thread.is_alive():
            self.loop.close()
