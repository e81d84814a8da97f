"""Live rankings: one computation per ranking at a time, kept for a while, every page a slice of it.

A chain the keeper has never ranked is ranked live (api/routes/leaderboards.py). Ranking every
trader means aggregating every position (or a window's raw trades): seconds on a big chain. Before
this, each uncached page (page × limit × order × window) ran that whole ranking to return its slice,
so a client walking pages, or many clients at once, held the read pool with the same work (review
h3). Now the top `api.leaderboard_size` of one (chain, board, order, window) is computed by one
request at a time in this process, and the result is kept `aggregate_cache_ttl_s`.

- Requests for a ranking being computed wait for it (at most `wait_s`) and share its outcome: a
  computation that fails (a statement timeout on a big chain) fails its waiters too, at once,
  instead of each of them running it again in turn while holding a pool connection (review h5). A
  computation that was cancelled (its client went away) is started again by the next waiter.
- A kept ranking carries the generation it was computed at (the chain cache's whole-namespace
  generation: a reorg or a gap moves it); asked with a newer one it is computed again, so a reorg
  never leaves removed trades ranked (review h5).
- A waiter gives its pool connection back while it waits (`lease`, api/context.py) and takes one
  again only to compute the ranking itself: a crowd of requests for one uncached ranking held a
  connection each, idle, until they were the whole pool.
- Keys are validated enum values, so the table is bounded.

    rankings = Rankings(ttl_s=60)
    kept = await rankings.get(("traders", chain, "pnl", "all"), compute, wait_s=5, generation=g)
    kept.value, kept.remaining_s()
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol


class Lease(Protocol):
    """The request's pool connection (api/context.py Lease)."""

    async def release(self) -> None: ...

    async def retake(self) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Kept:
    value: Any
    generation: int
    expires: float  # on the Rankings' clock
    clock: Callable[[], float]

    def remaining_s(self) -> float:
        return max(0.0, self.expires - self.clock())


class Rankings:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._kept: dict[Hashable, Kept] = {}
        self._flights: dict[Hashable, asyncio.Future[Kept]] = {}

    async def get(
        self,
        key: Hashable,
        compute: Callable[[], Awaitable[Any]],
        wait_s: float,
        generation: int = 0,
        lease: Lease | None = None,
    ) -> Kept:
        """The ranking kept for `key` (computed at `generation` or later, not expired), else the
        outcome of the computation under way (waited for at most `wait_s`: TimeoutError beyond),
        else `compute()`'s, kept. A failed computation is not kept. `lease` (api/context.py) is the
        request's connection: handed back before waiting for another request's computation, taken
        again only to compute here."""
        while True:
            kept = self._kept.get(key)
            if kept is not None and kept.generation >= generation and kept.expires > self._clock():
                return kept
            flight = self._flights.get(key)
            if flight is None:
                if lease is not None:
                    await lease.retake()
                return await self._lead(key, compute, generation)
            if lease is not None:
                await lease.release()
            done, _ = await asyncio.wait({flight}, timeout=wait_s)
            if not done:
                raise TimeoutError(f"ranking {key!r} not computed within {wait_s} s")
            if flight.cancelled():
                continue  # its client went away: compute it here
            error = flight.exception()
            if error is not None:
                raise error
            if flight.result().generation < generation:
                continue  # started before the reorg this request was told about

    def forget(self, key: Hashable, kept: Kept) -> None:
        """Drops `kept` if it is still the ranking kept for `key` (one its caller found it must not keep)."""
        if self._kept.get(key) is kept:
            del self._kept[key]

    async def _lead(self, key: Hashable, compute: Callable[[], Awaitable[Any]], generation: int) -> Kept:
        flight: asyncio.Future[Kept] = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            value = await compute()
        except asyncio.CancelledError:
            flight.cancel()
            raise
        except Exception as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        finally:
            del self._flights[key]
        kept = self._kept[key] = Kept(value, generation, self._clock() + self.ttl_s, self._clock)
        flight.set_result(kept)
        return kept
