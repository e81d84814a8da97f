"""Review hf2 (attack on 214fe12): the feed's /48 resume budget is drained by one /64's REFUSED resumes.

api/feed.py Hub._may_resume takes a token from the client's /64 bucket and from its /48 bucket whatever the
other one says (`allowed = bucket.take(now) >= 0 and allowed`), and Bucket.take goes negative without bound.
So one /64 that keeps asking after its own budget is spent (every ask refused, it resumed once) still
spends the budget of its whole /48: every other /64 of that /48 (another customer of a hosting provider that
hands out /64s of one /48) is refused its first resume. docs/feed.md: "its /48 gets 16 times ... the resume
budget in all" — a budget of resumes granted, not of asks a neighbour was refused.
"""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect

from api.clientip import NETWORK_FACTOR
from tests.api.conftest import make_settings
from tests.api.test_api_feed import recv, running

pytestmark = [pytest.mark.pg, pytest.mark.redis]


def _via_proxy(i: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"2001:db8:7:{i:x}::1"}


async def _resume(ws) -> str:  # type: ignore[no-untyped-def]
    await ws.send(json.dumps({"op": "subscribe", "rooms": ["global:all"], "since": 0}))
    m = await recv(ws)
    while m["type"] == "heartbeat":
        m = await recv(ws)
    return m["type"] if m["type"] != "error" else m["code"]


async def test_a_64s_refused_resumes_do_not_spend_its_neighbours_48_budget(db_dsn: str, redis_url: str) -> None:
    settings = make_settings(
        db_dsn, redis_url, forwarded_allow_ips=["127.0.0.1/32"], feed_resumes_per_minute=1, feed_resume_burst=1
    )
    asks = NETWORK_FACTOR + 2  # one connection each (since is a connection's first subscribe only)
    async with running(settings) as (_, _rt, url):
        outcomes = []
        for _ in range(asks):
            async with connect(url, additional_headers=_via_proxy(0)) as noisy:
                outcomes.append(await _resume(noisy))
        assert outcomes.count("subscribed") == 1, outcomes  # its own budget: 1
        async with connect(url, additional_headers=_via_proxy(1)) as neighbour:
            first = await _resume(neighbour)
    assert first == "subscribed", (
        f"a neighbouring /64's FIRST resume was {first}: the /48 has granted 1 resume of its"
        f" {NETWORK_FACTOR} x {settings.api.feed_resume_burst}, but the {asks - 1} asks refused to the other /64"
        " were taken from the /48's bucket too"
    )
