"""Review hx: the feed's per-client budgets behind a trusted proxy, for an IPv6 client that rotates
through the /64s of its /48.

docs/api.md (Rate limits): "An IPv6 client counts per /64 (the least a host is given), and each /48
also has 16 times those budgets in all: a holder of a /48 cannot multiply them by rotating through
its 65,536 /64s." api/clientip.py says the same of "rate limits, open connections", and review s13 F5
fixed it for the HTTP limits, the HTTP connection caps and the feed's socket caps (SocketCaps). But
api/feed_guard.py exempts the proxies in `forwarded_allow_ips` from SocketCaps ("their clients are
capped at the handshake"), and the handshake cap (Hub.per_ip) and the resume budget (Hub.resumes)
still count only the /64 (api.clientip.address_key): behind the proxy a production deployment runs
behind, one /48 opens `feed_max_connections_per_ip` connections per /64 — up to
`feed_max_connections` in all, the feed of every other client — and gets a resume budget (outbox
reads on the feed's 3-connection pool) per /64.
"""

from __future__ import annotations

import contextlib
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api.clientip import NETWORK_FACTOR
from tests.api.conftest import make_settings
from tests.api.test_api_feed import recv, running

pytestmark = [pytest.mark.pg, pytest.mark.redis]

ROTATED = NETWORK_FACTOR + 8  # /64s of one /48, one client each


def _via_proxy(i: int) -> dict[str, str]:
    """A request the trusted proxy (127.0.0.1) forwards for host ::1 of the i-th /64 of 2001:db8:7::/48."""
    return {"X-Forwarded-For": f"2001:db8:7:{i:x}::1"}


async def test_feed_connections_of_one_ipv6_48_behind_a_proxy_are_capped_in_all(db_dsn: str, redis_url: str) -> None:
    """One connection per /64 from ROTATED /64s of one /48 (cap 1 per client): the /48 may hold at most
    NETWORK_FACTOR x 1 of them; every one of the ROTATED is accepted."""
    settings = make_settings(db_dsn, redis_url, forwarded_allow_ips=["127.0.0.1/32"], feed_max_connections_per_ip=1)
    async with running(settings) as (_, rt, url), contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(connect(url, additional_headers=_via_proxy(0)))
        # the proxy's header is believed and a /64 is one client: another host of the same /64 is refused
        with pytest.raises(InvalidStatus) as same_64:
            await stack.enter_async_context(connect(url, additional_headers={"X-Forwarded-For": "2001:db8:7:0::2"}))
        assert same_64.value.response.status_code == 429
        accepted, refused = 1, 0
        statuses: list[int] = []
        for i in range(1, ROTATED):
            try:
                await stack.enter_async_context(connect(url, additional_headers=_via_proxy(i)))
                accepted += 1
            except InvalidStatus as exc:
                statuses.append(exc.response.status_code)
                refused += 1
        assert set(statuses) <= {429}
        assert rt.state is not None
        held = len(rt.state.hub.clients)
        assert accepted <= NETWORK_FACTOR * settings.api.feed_max_connections_per_ip, (
            f"one /48 behind the proxy holds {accepted} feed connections ({held} open, {refused} refused);"
            f" at most {NETWORK_FACTOR} x {settings.api.feed_max_connections_per_ip} expected"
        )


async def test_feed_resumes_of_one_ipv6_48_behind_a_proxy_share_one_budget(db_dsn: str, redis_url: str) -> None:
    """A resume (subscribe with since) from each of ROTATED /64s of one /48, with a budget of 1 per
    minute per client: the /48 should get at most NETWORK_FACTOR x 1; every one is accepted."""
    settings = make_settings(
        db_dsn,
        redis_url,
        forwarded_allow_ips=["127.0.0.1/32"],
        feed_resumes_per_minute=1,
        feed_resume_burst=1,
    )
    async with running(settings) as (_, _rt, url):
        outcomes = []
        for i in range(ROTATED):
            async with connect(url, additional_headers=_via_proxy(i)) as ws:
                await ws.send(json.dumps({"op": "subscribe", "rooms": ["global:all"], "since": 0}))
                m = await recv(ws)
                while m["type"] == "heartbeat":
                    m = await recv(ws)
                outcomes.append(m["type"] if m["type"] != "error" else m["code"])
        resumed = outcomes.count("subscribed")
        assert resumed <= NETWORK_FACTOR * settings.api.feed_resume_burst, (
            f"one /48 behind the proxy resumed {resumed} times in a minute ({outcomes.count('rate_limited')}"
            f" rate_limited); at most {NETWORK_FACTOR} x {settings.api.feed_resume_burst} expected"
        )
