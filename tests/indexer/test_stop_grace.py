"""A stop (SIGTERM, the watchdog) ends the process even when the run is stuck in a call that never
returns (a database host gone without a reset): it is cancelled after the grace, and a call that
does not even end on cancellation gets the process exited. Before, stop was only seen between steps
and such a process lived on with /health green."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from indexer import cli
from indexer.service import EXIT_OK, EXIT_STALLED, Status


async def test_a_run_that_ends_keeps_its_exit_code() -> None:
    async def quick() -> int:
        return EXIT_OK

    assert await cli._until_done_or_stuck(asyncio.create_task(quick()), asyncio.Event(), Status()) == EXIT_OK


async def test_a_run_stuck_after_a_stop_is_cancelled_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "STOP_GRACE_S", 0.2)
    cancelled = asyncio.Event()

    async def stuck() -> int:
        try:
            await asyncio.Event().wait()  # a database call that never returns
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return EXIT_OK

    stop = asyncio.Event()
    main = asyncio.create_task(stuck())
    asyncio.get_running_loop().call_later(0.1, stop.set)
    async with asyncio.timeout(10):
        assert await cli._until_done_or_stuck(main, stop, Status()) == EXIT_STALLED
    assert cancelled.is_set()


async def test_a_run_that_ignores_cancellation_gets_the_process_exited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "STOP_GRACE_S", 0.1)
    exited: list[int] = []

    class Exited(BaseException):
        pass

    def fake_exit(code: int) -> Any:
        exited.append(code)
        raise Exited

    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    release = asyncio.Event()

    async def deaf() -> int:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # a call that swallows the cancel
        return EXIT_OK

    stop = asyncio.Event()
    stop.set()
    main = asyncio.create_task(deaf())
    with pytest.raises(Exited):
        async with asyncio.timeout(30):
            await cli._until_done_or_stuck(main, stop, Status())
    assert exited == [EXIT_STALLED]
    release.set()
    await main
