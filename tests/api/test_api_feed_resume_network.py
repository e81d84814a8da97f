"""Review s21 hu (user surfaces): docs/feed.md "Resumes ... are limited per client address ... An IPv6
client counts per /64, and its /48 gets 16 times the connection cap and the resume budget in all".

api/feed.py Hub._may_resume takes a token from the /64's bucket and from the /48's bucket whatever the
other says (`allowed = bucket.take(now) >= 0 and allowed`), and Bucket.take debits a refused take too. So
the resumes one /64 is refused (over its own budget) are spent from its /48's: one host of a /48 that
retries while rate_limited uses up the budget of every other /64 of that /48, which has resumed once in
all, and they are refused without having resumed at all."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect

from api.clientip import NETWORK_FACTOR
from tests.api.conftest import make_settings
from tests.api.test_api_feed import recv, running

pytestmark = [pytest.mark.pg, pytest.mark.redis]


async def _resume(url: str, xff: str) -> str:
    async with connect(url, additional_headers={"X-Forwarded-For": xff}) as ws:
        await ws.send(json.dumps({"op": "subscribe", "rooms": ["global:all"], "since": 0}))
        m = await recv(ws)
        while m["type"] == "heartbeat":
            m = await recv(ws)
        return str(m["type"] if m["type"] != "error" else m["code"])


async def test_refused_resumes_of_one_64_do_not_use_up_the_budget_of_its_48(db_dsn: str, redis_url: str) -> None:
    """Budget 1 resume per minute per client (burst 1), so 16 for the /48. Host A (2001:db8:9:0::1) resumes
    once, then is refused NETWORK_FACTOR + 4 times (over its own budget). Host B of another /64 of the same
    /48 then resumes for the first time: the /48 has resumed once of its 16, B never. Expected: subscribed.
    Seen: rate_limited (A's refusals were taken from the /48's bucket)."""
    settings = make_settings(
        db_dsn,
        redis_url,
        forwarded_allow_ips=["127.0.0.1/32"],
        feed_resumes_per_minute=1,
        feed_resume_burst=1,
    )
    async with running(settings) as (_, _rt, url):
        first = await _resume(url, "2001:db8:9:0::1")
        assert first == "subscribed", f"setup: A's first resume got {first}"
        retries = [await _resume(url, "2001:db8:9:0::1") for _ in range(NETWORK_FACTOR + 4)]
        assert set(retries) == {"rate_limited"}, f"setup: A is over its own budget of 1: {retries}"
        other = await _resume(url, "2001:db8:9:1::1")
    assert other == "subscribed", (
        f"host B of another /64 resumed for the first time and got {other}: its /48 resumed once of its"
        f" {NETWORK_FACTOR}, but A's {len(retries)} refused tries were taken from the /48's budget"
    )
