"""api/rankings.py: a live ranking is computed by one request at a time and kept (review h3)."""

from __future__ import annotations

import asyncio

import pytest

from api.rankings import Rankings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_concurrent_requests_compute_once_and_share_it() -> None:
    calls: list[int] = []
    release = asyncio.Event()

    async def compute() -> list[int]:
        calls.append(1)
        await release.wait()
        return [len(calls)]

    async def main() -> list[object]:
        r = Rankings(60, Clock())
        waiters = [asyncio.create_task(r.get("k", compute, 5)) for _ in range(10)]
        await asyncio.sleep(0.01)
        release.set()
        return await asyncio.gather(*waiters)

    got = asyncio.run(main())
    assert calls == [1]
    assert got == [[1]] * 10


def test_kept_for_ttl_then_computed_again_and_keys_apart() -> None:
    clock = Clock()
    n = {"a": 0, "b": 0}

    def counting(key: str):  # type: ignore[no-untyped-def]
        async def compute() -> list[int]:
            n[key] += 1
            return [n[key]]

        return compute

    async def main() -> None:
        r = Rankings(60, clock)
        assert await r.get("a", counting("a"), 1) == [1]
        clock.now = 59.9
        assert await r.get("a", counting("a"), 1) == [1]
        assert await r.get("b", counting("b"), 1) == [1]
        clock.now = 60.1
        assert await r.get("a", counting("a"), 1) == [2]

    asyncio.run(main())
    assert n == {"a": 2, "b": 1}


def test_a_failed_computation_is_not_kept_and_a_waiter_computes_it() -> None:
    attempts: list[str] = []
    started = asyncio.Event()

    async def failing() -> list[int]:
        attempts.append("fail")
        started.set()
        await asyncio.sleep(0.01)
        raise RuntimeError("statement timeout")

    async def working() -> list[int]:
        attempts.append("ok")
        return [7]

    async def main() -> list[int]:
        r = Rankings(60, Clock())
        first = asyncio.create_task(r.get("k", failing, 5))
        await started.wait()
        second = asyncio.create_task(r.get("k", working, 5))
        with pytest.raises(RuntimeError, match="statement timeout"):
            await first
        return list(await second)

    assert asyncio.run(main()) == [7]
    assert attempts == ["fail", "ok"]


def test_a_waiter_waits_at_most_wait_s() -> None:
    async def slow() -> list[int]:
        await asyncio.sleep(10)
        return []

    async def main() -> None:
        r = Rankings(60, Clock())
        leader = asyncio.create_task(r.get("k", slow, 5))
        await asyncio.sleep(0)
        with pytest.raises(TimeoutError):
            await r.get("k", slow, 0.05)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        # the cancelled computation left nothing behind: the next caller computes
        assert await r.get("k", _ready, 1) == [1]

    asyncio.run(main())


async def _ready() -> list[int]:
    return [1]
