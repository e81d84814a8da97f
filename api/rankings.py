"""Live rankings: one computation per ranking at a time, kept for a while, every page a slice of it.

A chain the keeper has never ranked is ranked live (api/routes/leaderboards.py). Ranking every
trader means aggregating every position (or a window's raw trades): seconds on a big chain. Before
this, each uncached page (page × limit × order × window) ran that whole ranking to return its slice,
so a client walking pages, or many clients at once, held the read pool with the same work (review
h3). Now the top `api.leaderboard_size` of one (chain, board, order, window) is computed by one
request at a time in this process; requests for the same ranking meanwhile wait for it (at most
`wait_s`) instead of running it again, and the result is kept `aggregate_cache_ttl_s` — the same
age bound the cached pages have. Keys are validated enum values, so the table is bounded.

    rankings = Rankings(ttl_s=60)
    rows = await rankings.get(("traders", chain, "pnl", "all"), lambda: conn.fetch(SQL, ...), wait_s=5)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any


class Rankings:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._kept: dict[Hashable, tuple[float, Sequence[Any]]] = {}
        self._flights: dict[Hashable, asyncio.Event] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[Sequence[Any]]], wait_s: float) -> Sequence[Any]:
        """The kept ranking for `key`, else the one being computed (waited for at most `wait_s`:
        TimeoutError beyond), else `compute()`'s, kept. A computation that fails is not kept: the
        next waiter computes it again."""
        while True:
            kept = self._kept.get(key)
            if kept is not None and kept[0] > self._clock():
                return kept[1]
            flight = self._flights.get(key)
            if flight is not None:
                await asyncio.wait_for(flight.wait(), wait_s)
                continue
            flight = self._flights[key] = asyncio.Event()
            try:
                rows = await compute()
                self._kept[key] = (self._clock() + self.ttl_s, rows)
                return rows
            finally:
                del self._flights[key]
                flight.set()
