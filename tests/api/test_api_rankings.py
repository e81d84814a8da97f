"""api/rankings.py: a live ranking is computed by one request at a time, kept, and shared — its
failure too (review h3, review h5)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from api.rankings import Rankings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def counting(log: list[str], name: str, value: Any = None) -> Callable[[], Awaitable[Any]]:
    async def compute() -> Any:
        log.append(name)
        return value if value is not None else len(log)

    return compute


def test_concurrent_requests_compute_once_and_share_it() -> None:
    calls: list[int] = []
    release = asyncio.Event()

    async def compute() -> list[int]:
        calls.append(1)
        await release.wait()
        return [len(calls)]

    async def main() -> list[Any]:
        r = Rankings(60, Clock())
        waiters = [asyncio.create_task(r.get("k", compute, 5)) for _ in range(10)]
        await asyncio.sleep(0.01)
        release.set()
        return [k.value for k in await asyncio.gather(*waiters)]

    assert asyncio.run(main()) == [[1]] * 10
    assert calls == [1]


def test_kept_for_ttl_then_computed_again_and_keys_apart() -> None:
    clock = Clock()
    log: list[str] = []

    async def main() -> None:
        r = Rankings(60, clock)
        assert (await r.get("a", counting(log, "a"), 1)).value == 1
        clock.now = 59.9
        kept = await r.get("a", counting(log, "a"), 1)
        assert (kept.value, round(kept.remaining_s(), 1)) == (1, 0.1)
        assert (await r.get("b", counting(log, "b"), 1)).value == 2
        clock.now = 60.1
        assert (await r.get("a", counting(log, "a"), 1)).value == 3

    asyncio.run(main())
    assert log == ["a", "b", "a"]


def test_a_newer_generation_computes_again() -> None:
    """A reorg (the chain cache's whole-namespace generation moved) never serves a ranking computed
    before it; a request that still holds the older generation may use the newer ranking."""
    log: list[str] = []

    async def main() -> None:
        r = Rankings(60, Clock())
        assert (await r.get("k", counting(log, "x"), 1, generation=3)).value == 1
        assert (await r.get("k", counting(log, "x"), 1, generation=3)).value == 1
        assert (await r.get("k", counting(log, "x"), 1, generation=4)).value == 2
        assert (await r.get("k", counting(log, "x"), 1, generation=3)).value == 2

    asyncio.run(main())
    assert log == ["x", "x"]


def test_a_failure_answers_every_waiter_at_once_and_is_not_kept() -> None:
    """Review h5: waiters ran a failing ranking again one after another, each holding a connection."""
    attempts: list[str] = []

    async def failing() -> Any:
        attempts.append("fail")
        await asyncio.sleep(0.01)
        raise RuntimeError("statement timeout")

    async def main() -> list[Any]:
        r = Rankings(60, Clock())
        tasks = [asyncio.create_task(r.get("k", failing, 5)) for _ in range(5)]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        after = await r.get("k", counting(attempts, "ok", [7]), 5)
        return [*(str(o) for o in outcomes), after.value]

    assert asyncio.run(main()) == ["statement timeout"] * 5 + [[7]]
    assert attempts == ["fail", "ok"]


def test_a_cancelled_leader_hands_over_to_a_waiter() -> None:
    """The leader's client went away: the waiter computes instead of failing."""
    attempts: list[str] = []

    async def slow() -> Any:
        attempts.append("slow")
        await asyncio.sleep(10)

    async def main() -> Any:
        r = Rankings(60, Clock())
        leader = asyncio.create_task(r.get("k", slow, 5))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(r.get("k", counting(attempts, "waiter", "mine"), 5))
        await asyncio.sleep(0)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        return (await waiter).value

    assert asyncio.run(main()) == "mine"
    assert attempts == ["slow", "waiter"]


def test_a_waiter_waits_at_most_wait_s() -> None:
    async def slow() -> Any:
        await asyncio.sleep(10)

    async def main() -> None:
        r = Rankings(60, Clock())
        leader = asyncio.create_task(r.get("k", slow, 5))
        await asyncio.sleep(0)
        with pytest.raises(TimeoutError, match=r"not computed within 0\.05 s"):
            await r.get("k", slow, 0.05)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader

    asyncio.run(main())
