"""Review hx: a trusted proxy that writes the client's source port into X-Forwarded-For.

docs/api.md (Client address): behind the proxies in `forwarded_allow_ips`, "the client is the
right-most X-Forwarded-For address that is not one of them". Several proxies write that address with
the client's TCP source port (Azure Application Gateway: `203.0.113.7:54321`; the bracketed
`[2001:db8::1]:54321` for IPv6). api.clientip.client_ip keeps the hop as it is (`hop[:64]`) and
client_keys, failing to parse it as an address, makes the whole string the rate-limit key: every new
connection of the client (a new source port, which the client picks) starts a fresh budget, and an
IPv6 client is neither grouped by /64 nor by /48.
"""

from __future__ import annotations

import time

import pytest
from starlette.testclient import TestClient

from api import ratelimit
from api.app import create_app
from tests.api.conftest import make_settings

pytestmark = [pytest.mark.pg, pytest.mark.redis]


@pytest.mark.parametrize(
    "hops",
    [
        [f"198.51.100.77:{40000 + i}" for i in range(4)],  # one IPv4 client, four connections through the proxy
        [f"[2001:db8:7::{i + 1:x}]:{40000 + i}" for i in range(4)],  # one IPv6 /64, four connections
    ],
    ids=["ipv4-port", "ipv6-bracketed-port"],
)
def test_the_source_port_a_proxy_writes_does_not_give_a_fresh_rate_limit(
    db_dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch, hops: list[str]
) -> None:
    """rate_limit_ip = 2 for one client whose proxy appends `address:port`: the third request is 429
    whatever port its connection came from. Every one answers 200."""
    pinned = (time.time() // 900 + 0.5) * 900  # one rate-limit window for the whole test
    real_window = ratelimit.window
    monkeypatch.setattr(ratelimit, "window", lambda now, window_s: real_window(pinned, window_s))
    settings = make_settings(db_dsn, redis_url, rate_limit_ip=2, forwarded_allow_ips=["10.0.0.0/8"])
    with TestClient(create_app(settings, serve_feed=False), client=("10.0.0.5", 5000)) as c:
        statuses = [c.get("/v1/stats", headers={"X-Forwarded-For": hop}).status_code for hop in hops]
    assert statuses == [200, 200, 429, 429], f"one client, one port per request through the proxy: {statuses}"


def test_a_hop_loses_only_a_port() -> None:
    from api.clientip import without_port

    assert without_port("203.0.113.7:54321") == "203.0.113.7"
    assert without_port("[2001:db8::1]:54321") == "2001:db8::1"
    assert without_port("[2001:db8::1]") == "2001:db8::1"
    for bare in ("2001:db8::1", "::1", "203.0.113.7", "2001:db8::1:80"):
        assert without_port(bare) == bare
