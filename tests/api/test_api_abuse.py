"""Client identity and privileges an attacker cannot pick: proxy headers only from named proxies,
a bounded number of sign-ins and requests per IP whatever the number of wallets, admin decided by
the running configuration, `notification` feed events only for their signed-in owner, and a
SIGTERM that ends the process within its documented bound."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient
from websockets.asyncio.client import connect

from api import ratelimit
from api.app import create_app
from api.auth import Principal, issue_token
from api.clientip import client_ip, networks
from tests.api.conftest import ADMIN, make_settings
from tests.api.process import healthy, start_api
from tests.api.rows import outbox, scenario
from tests.api.test_api_cache_limits_auth import sign, siwe_message
from tests.api.test_api_feed import recv_type, running, subscribe

USER = "0x" + "a1" * 20
TRUSTED = networks(["10.0.0.0/8", "192.168.1.1"])


def test_client_ip_believes_forwarded_for_only_from_named_proxies() -> None:
    """No trusted proxies: the peer, whatever X-Forwarded-For says. Behind them: the right-most hop
    that is not a trusted proxy, so a client-written first hop changes nothing."""
    assert client_ip("127.0.0.1", "6.6.6.6", ()) == "127.0.0.1"
    assert client_ip("8.8.8.8", "6.6.6.6", TRUSTED) == "8.8.8.8"  # the peer is no proxy of ours
    assert client_ip("10.0.0.5", "6.6.6.6, 5.5.5.5", TRUSTED) == "5.5.5.5"
    assert client_ip("10.0.0.5", "6.6.6.6, 5.5.5.5, 192.168.1.1", TRUSTED) == "5.5.5.5"
    assert client_ip("10.0.0.5", "10.1.1.1, 10.2.2.2", TRUSTED) == "10.1.1.1"
    assert client_ip("10.0.0.5", " , ", TRUSTED) == "10.0.0.5"
    assert client_ip(None, None, TRUSTED) == "unknown"


@given(st.lists(st.ip_addresses(v=4).map(str), max_size=5), st.ip_addresses(v=4).map(str))
def test_a_client_cannot_choose_its_key_by_prepending_hops(spoofed: list[str], real: str) -> None:
    """Whatever the client prepends, the key behind a trusted proxy is the address that proxy saw."""
    if any(ipaddress.ip_address(real) in net for net in TRUSTED):
        return
    header = ", ".join([*spoofed, real])
    assert client_ip("10.0.0.5", header, TRUSTED) == real


@pytest.mark.pg
@pytest.mark.redis
def test_spoofed_forwarded_for_does_not_reset_the_ip_limit(
    db_dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no trusted proxies a random X-Forwarded-For after a 429 is still 429; behind a named proxy
    the limit follows the address the proxy appended, not the client's first hop."""
    pinned = (time.time() // 900 + 0.5) * 900
    real_window = ratelimit.window
    monkeypatch.setattr(ratelimit, "window", lambda now, window_s: real_window(pinned, window_s))
    plain = make_settings(db_dsn, redis_url, rate_limit_ip=2)
    with TestClient(create_app(plain, serve_feed=False), client=("203.0.113.9", 5000)) as c:
        assert [c.get("/v1/stats").status_code for _ in range(3)] == [200, 200, 429]
        for i in range(5):
            assert c.get("/v1/stats", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code == 429
    proxied = make_settings(db_dsn, redis_url, rate_limit_ip=2, forwarded_allow_ips=["10.0.0.0/8"])
    with TestClient(create_app(proxied, serve_feed=False), client=("10.0.0.5", 5000)) as c:
        hdr = {"X-Forwarded-For": "1.1.1.1, 198.51.100.77"}
        assert [c.get("/v1/stats", headers=hdr).status_code for _ in range(3)] == [200, 200, 429]
        spoof = {"X-Forwarded-For": "9.9.9.9, 198.51.100.77"}  # another first hop, same real client
        assert c.get("/v1/stats", headers=spoof).status_code == 429
        other = {"X-Forwarded-For": "198.51.100.78"}
        assert c.get("/v1/stats", headers=other).status_code == 200


@pytest.mark.pg
@pytest.mark.redis
def test_metrics_answer_only_the_operators_networks(db_dsn: str, redis_url: str) -> None:
    """/metrics (every route, pool and error count; not rate-limited) answers the scrapers' networks
    (api.metrics_allow_ips: loopback and private ranges by default) and Unix-socket or in-process peers;
    a public client, direct or through a named proxy, gets the 404 of an unknown path."""
    settings = make_settings(db_dsn, redis_url, forwarded_allow_ips=["10.0.0.0/8"])
    app = create_app(settings, serve_feed=False)
    for peer, forwarded, status in (
        ("203.0.113.9", None, 404),
        ("2001:db8::1", None, 404),
        ("10.0.0.5", "198.51.100.7", 404),  # the proxy is private, the client it names is not
        ("10.0.0.5", "unknown", 404),  # nor is a client a proxy names by something that is no address
        ("10.0.0.5", None, 200),
        ("192.168.3.4", None, 200),
        ("127.0.0.1", None, 200),
        ("::1", None, 200),
        ("testclient", None, 200),
    ):
        with TestClient(app, client=(peer, 5000)) as c:
            r = c.get("/metrics", headers={"X-Forwarded-For": forwarded} if forwarded else {})
            assert r.status_code == status, (peer, forwarded)
            if status == 404:
                assert r.json()["message"] == c.get("/no-such-path").json()["message"].replace(
                    "no-such-path", "metrics"
                )
                assert "api_requests_total" not in r.text
            else:
                assert "api_requests_total" in r.text
    public = make_settings(db_dsn, redis_url, metrics_allow_ips=["0.0.0.0/0", "::/0"])
    with TestClient(create_app(public, serve_feed=False), client=("203.0.113.9", 5000)) as c:
        assert c.get("/metrics").status_code == 200


@pytest.mark.pg
@pytest.mark.redis
def test_many_wallets_from_one_ip_share_one_budget(
    db_dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sign-ins per IP are bounded (signin_rate_limit) and signed-in requests of every wallet of one
    IP count against one IP bucket of rate_limit_user."""
    pinned = (time.time() // 900 + 0.5) * 900
    real_window = ratelimit.window
    monkeypatch.setattr(ratelimit, "window", lambda now, window_s: real_window(pinned, window_s))
    settings = make_settings(db_dsn, redis_url, rate_limit_user=4, signin_rate_limit=3)
    with TestClient(create_app(settings, serve_feed=False), client=("203.0.113.10", 5000)) as c:
        codes = []
        for _ in range(4):
            account = Account.create()
            r = c.post("/v1/auth/nonce")
            if r.status_code != 201:
                codes.append(r.status_code)
                continue
            nonce = r.json()["data"]["nonce"]
            text = siwe_message(account.address, nonce)
            v = c.post("/v1/auth/verify", json={"message": text, "signature": sign(account, text)})
            codes.append(v.status_code)
        # 3 sign-in requests per window: nonce+verify of the first wallet, the nonce of the second
        assert codes == [200, 429, 429, 429], codes
        tokens = [issue_token(settings, Principal("0x" + f"{i:02x}" * 20, frozenset({"user"})))[0] for i in range(3)]
        seen = [c.get("/v1/stats", headers={"Authorization": f"Bearer {tokens[i % 3]}"}).status_code for i in range(6)]
        assert seen == [200, 200, 200, 200, 429, 429], seen


@pytest.mark.pg
@pytest.mark.redis
def test_an_admin_removed_from_the_config_is_refused_at_once(db_dsn: str, redis_url: str) -> None:
    """A token minted while the address was an admin is refused (403) by a process whose
    configuration no longer lists it; a token without the claim gets admin when the config lists it."""
    before = make_settings(db_dsn, redis_url)
    token, _ = issue_token(before, Principal(ADMIN, frozenset({"user", "admin"})))
    after = make_settings(db_dsn, redis_url, admin_addresses=[])
    with TestClient(create_app(after, serve_feed=False)) as c:
        r = c.get("/v1/admin/indexer", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403, r.text
        assert c.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).json()["data"]["roles"] == ["user"]
    plain, _ = issue_token(before, Principal(ADMIN, frozenset({"user"})))
    with TestClient(create_app(before, serve_feed=False)) as c:
        assert c.get("/v1/admin/indexer", headers={"Authorization": f"Bearer {plain}"}).status_code == 200


@pytest.mark.pg
@pytest.mark.redis
async def test_notification_events_reach_only_their_signed_in_owner(db_dsn: str, redis_url: str) -> None:
    """In `user:` rooms, anyone gets public trades but a `notification` only reaches a connection
    signed in as that user (auth frame or Authorization header), live and on replay."""
    import asyncpg

    settings = make_settings(db_dsn, redis_url)
    token, _ = issue_token(settings, Principal(USER, frozenset({"user"})))
    other, _ = issue_token(settings, Principal("0x" + "b2" * 20, frozenset({"user"})))
    conn = await asyncpg.connect(db_dsn)
    try:
        async with running(settings) as (_, _rt, url):
            async with (
                connect(url) as anon,
                connect(url) as owner,
                connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as by_header,
                connect(url) as stranger,
            ):
                await owner.send(json.dumps({"op": "auth", "token": token}))
                assert (await recv_type(owner, "authenticated"))["address"] == USER
                await stranger.send(json.dumps({"op": "auth", "token": other}))
                await recv_type(stranger, "authenticated")
                await anon.send(json.dumps({"op": "auth", "token": "garbage"}))
                assert (await recv_type(anon, "error"))["code"] == "auth_failed"
                for ws in (anon, owner, by_header, stranger):
                    await subscribe(ws, [f"user:{USER}"])
                note = await outbox(conn, "notification", [f"user:{USER}"], {"kind": "won", "recipient": USER})
                trade = await outbox(conn, "market:trade", [f"user:{USER}", "market:1"], {"market_id": 1})
                for ws in (owner, by_header):
                    assert (await recv_type(ws, "event"))["seq"] == note
                    assert (await recv_type(ws, "event"))["seq"] == trade
                for ws in (anon, stranger):
                    assert (await recv_type(ws, "event"))["seq"] == trade  # the notification was skipped
            async with connect(url) as anon, connect(url) as owner:
                await owner.send(json.dumps({"op": "auth", "token": token}))
                await recv_type(owner, "authenticated")
                await subscribe(anon, [f"user:{USER}"], since=0)
                await subscribe(owner, [f"user:{USER}"], since=0)
                assert [(await recv_type(owner, "event"))["seq"] for _ in range(2)] == [note, trade]
                assert (await recv_type(anon, "event"))["seq"] == trade
                assert (await recv_type(anon, "replayed"))["events"] == 1
    finally:
        await conn.close()


async def test_a_feed_connection_is_signed_out_when_its_token_expires(db_dsn: str, redis_url: str) -> None:
    """Review s15: a connection signed in with a token kept receiving that user's private notifications
    for as long as it stayed open, hours after the token (15 minutes) expired. Now the heartbeat after
    the token's exp signs it out (auth_expired) and a fresh token of the same address signs it in again;
    another address still may not."""
    import asyncpg

    settings = make_settings(db_dsn, redis_url, feed_heartbeat_s=0.3)
    now = time.time()
    short, exp = issue_token(settings, Principal(USER, frozenset({"user"})), now=now - settings.api.jwt_ttl_s + 2)
    fresh, _ = issue_token(settings, Principal(USER, frozenset({"user"})))
    other, _ = issue_token(settings, Principal("0x" + "b2" * 20, frozenset({"user"})))
    conn = await asyncpg.connect(db_dsn)
    try:
        async with running(settings) as (_, _rt, url), connect(url) as ws:
            await ws.send(json.dumps({"op": "auth", "token": short}))
            signed = await recv_type(ws, "authenticated")
            assert signed["expiresAt"] == dt.datetime.fromtimestamp(exp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            await subscribe(ws, [f"user:{USER}"])
            expired = await recv_type(ws, "error", wait_s=10)
            assert expired["code"] == "auth_expired"
            assert time.time() >= exp
            await outbox(conn, "notification", [f"user:{USER}"], {"kind": "won", "recipient": USER})
            trade = await outbox(conn, "market:trade", [f"user:{USER}", "market:1"], {"market_id": 1})
            assert (await recv_type(ws, "event"))["seq"] == trade  # the notification was not sent
            await ws.send(json.dumps({"op": "auth", "token": other}))
            assert (await recv_type(ws, "error"))["code"] == "auth_failed"  # one address a connection
            await ws.send(json.dumps({"op": "auth", "token": fresh}))
            await recv_type(ws, "authenticated")
            note = await outbox(conn, "notification", [f"user:{USER}"], {"kind": "won", "recipient": USER})
            assert (await recv_type(ws, "event"))["seq"] == note
    finally:
        await conn.close()


@pytest.mark.pg
@pytest.mark.redis
async def test_feed_connections_per_ip_are_capped_and_frames_rate_limited(db_dsn: str, redis_url: str) -> None:
    """The (n+1)-th connection from one address is refused at the handshake (429); a client that
    floods frames gets `rate_limited` errors, and far beyond the burst is closed (1008)."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    settings = make_settings(db_dsn, redis_url, feed_max_connections_per_ip=2, feed_frame_burst=5, feed_frames_per_s=1)
    async with running(settings) as (_, _rt, url):
        async with connect(url) as a, connect(url):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url):
                    pass
            assert refused.value.response.status_code == 429
            for _ in range(7):
                await a.send(json.dumps({"op": "ping"}))
            codes = []
            for _ in range(7):
                m = json.loads(await asyncio.wait_for(a.recv(), 10))
                codes.append(m.get("code", m["type"]))
            assert sorted(codes) == ["pong"] * 5 + ["rate_limited"] * 2, codes
            for _ in range(40):
                await a.send(json.dumps({"op": "ping"}))

            async def drain() -> None:
                async with asyncio.timeout(10):
                    while True:
                        await a.recv()

            with pytest.raises(ConnectionClosed) as closed:
                await drain()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008


@pytest.mark.pg
@pytest.mark.redis
async def test_sigterm_with_requests_in_flight_exits_within_the_bound(
    db_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    """`python -m api` with requests blocked in PostgreSQL: SIGTERM ends it within
    shutdown_timeout_s + 3 s (feed and pump) + the pools' close (bounded) — under 15 s here."""
    import asyncpg

    await scenario(db_dsn)
    api = start_api(db_dsn, redis_url, tmp_path, "shutdown_timeout_s = 2.0\ncache_enabled = false")
    proc, base = api.proc, api.base
    locker = await asyncpg.connect(db_dsn)
    try:
        async with aiohttp.ClientSession() as http:
            await healthy(http, base)
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE idx.markets IN ACCESS EXCLUSIVE MODE")
            blocked = [asyncio.create_task(http.get(base + "/v1/markets")) for _ in range(5)]
            await asyncio.sleep(0.5)  # the requests are waiting on the lock now
            assert not any(t.done() for t in blocked)
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 15)  # TimeoutExpired past the bound
            assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled after shutting down
            await tx.rollback()
            for t in blocked:
                t.cancel()
            await asyncio.gather(*blocked, return_exceptions=True)
    finally:
        if proc.poll() is None:
            proc.kill()
        await locker.close()
