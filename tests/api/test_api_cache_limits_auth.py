"""Cache-aside invalidated from the outbox, Redis down, rate limits, Sign-In with Ethereum."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import asyncpg
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from starlette.testclient import TestClient

from api import ratelimit
from api.app import create_app
from api.auth import Principal, issue_token
from tests.api.conftest import ADMIN, make_settings
from tests.api.rows import CHAIN, U, h, outbox, scenario, trade
from tests.api.test_api_markets import assert_error

pytestmark = [pytest.mark.pg, pytest.mark.redis]


def test_cache_hit_then_invalidated_by_a_new_trade(client: TestClient, db_dsn: str) -> None:
    """Detail and list are served from Redis until the outbox announces a trade in that market."""
    asyncio.run(scenario(db_dsn))
    r1 = client.get("/v1/markets/1")
    r2 = client.get("/v1/markets/1")
    assert (r1.headers["x-cache"], r2.headers["x-cache"]) == ("miss", "hit")
    assert r1.json() == r2.json()
    assert client.get("/v1/markets").headers["x-cache"] == "miss"
    assert client.get("/v1/markets").headers["x-cache"] == "hit"
    assert client.get("/v1/markets/2").headers["x-cache"] == "miss"

    async def new_trade() -> None:
        conn = await asyncpg.connect(db_dsn)
        async with conn.transaction():
            await trade(conn, 1, 101, 0, collateral=7 * U, y=70 * U, n=140 * U)
            await conn.execute(
                "UPDATE idx.markets SET volume = volume + $1, trade_count = trade_count + 1,"
                " yes_reserve = $2, no_reserve = $3 WHERE market_id = 1",
                7 * U,
                70 * U,
                140 * U,
            )
            await conn.execute("UPDATE idx.checkpoints SET block_number = 101, block_hash = $1", h(101))
            await outbox(conn, "market:trade", ["global:all", "market:1", "user:0x" + "a1" * 20], {"market_id": 1}, 101)
        await conn.close()

    asyncio.run(new_trade())
    deadline = time.monotonic() + 15
    while True:  # the pump hears NOTIFY (or polls) and deletes the keys; no timing is asserted
        body = client.get("/v1/markets/1").json()
        if body["data"]["volume"] == "57.000000" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert body["data"]["volume"] == "57.000000"
    assert body["data"]["yesPrice"] == "0.666666"
    assert body["asOf"]["blockNumber"] == 101
    listed = {m["id"]: m for m in client.get("/v1/markets").json()["data"]}
    assert listed[1]["volume"] == "57.000000"
    assert client.get("/v1/markets/2").headers["x-cache"] == "hit"  # another market's key survives
    metrics = client.get("/metrics").text
    assert 'api_cache_requests_total{result="hit_local"}' in metrics
    assert "api_cache_invalidations_total" in metrics


def test_redis_down_answers_from_postgres_and_says_so(db_dsn: str) -> None:
    """With Redis unreachable: 200s from PostgreSQL, no rate limit, /ready degraded, api_redis_up 0."""
    asyncio.run(scenario(db_dsn))
    settings = make_settings(db_dsn, "redis://127.0.0.1:1/0", rate_limit_ip=1)
    with TestClient(create_app(settings, serve_feed=False), raise_server_exceptions=False) as c:
        for i in range(3):
            r = c.get("/v1/markets/1")
            assert r.status_code == 200
            assert r.headers["x-cache"] == ("miss" if i == 0 else "hit")  # then the in-process level
            assert "ratelimit-limit" not in r.headers
        ready = c.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["redis"].startswith("down")
        assert "api_redis_up 0.0" in c.get("/metrics").text


def test_ready_fails_when_indexer_lags(client: TestClient, db_dsn: str) -> None:
    """/ready is 503 in the seed's body when the head is far beyond the checkpoint."""
    asyncio.run(scenario(db_dsn))
    assert client.get("/ready").status_code == 200

    async def lag() -> None:
        conn = await asyncpg.connect(db_dsn)
        await conn.execute("UPDATE idx.chain_heads SET head_block = 500")
        await conn.close()

    asyncio.run(lag())
    body = assert_error(client.get("/ready"), 503, "indexer")
    assert "lags 400 blocks" in body["errors"][0]["message"]
    assert client.get("/health").status_code == 200


def test_rate_limits_per_ip_per_user_admin_unlimited(
    db_dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100/15 min per IP (here 3), per user (here 5), admins unlimited; 429 in the seed's body."""
    # the clock pinned mid-window: requests that straddled a 15-minute boundary would start a new count
    pinned = (time.time() // 900 + 0.5) * 900
    real_window = ratelimit.window
    monkeypatch.setattr(ratelimit, "window", lambda now, window_s: real_window(pinned, window_s))
    asyncio.run(scenario(db_dsn))
    settings = make_settings(db_dsn, redis_url, rate_limit_ip=3, rate_limit_user=5)
    user, _ = issue_token(settings, Principal("0x" + "a1" * 20, frozenset({"user"})))
    admin, _ = issue_token(settings, Principal(ADMIN, frozenset({"user", "admin"})))
    with TestClient(create_app(settings, serve_feed=False), raise_server_exceptions=False) as c:
        for i in range(3):
            r = c.get("/v1/markets")
            assert r.status_code == 200
            assert r.headers["ratelimit-limit"] == "3"
            assert r.headers["ratelimit-remaining"] == str(2 - i)
            assert r.headers["ratelimit-policy"] == "3;w=900"
        r = c.get("/v1/markets")
        body = assert_error(r, 429)
        assert body["message"] == "Too many requests"
        assert int(r.headers["retry-after"]) > 0
        assert "x-content-type-options" in r.headers
        assert c.get("/health").status_code == 200  # never limited
        auth = {"Authorization": f"Bearer {user}"}
        codes = [c.get("/v1/markets", headers=auth).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        bad = {"Authorization": "Bearer not-a-token"}
        assert c.get("/v1/markets", headers=bad).status_code == 429  # counted as its IP
        adm = {"Authorization": f"Bearer {admin}"}
        for _ in range(10):
            r = c.get("/v1/markets", headers=adm)
            assert r.status_code == 200
            assert "ratelimit-limit" not in r.headers
        assert "api_rate_limited_total 3.0" in c.get("/metrics").text


def siwe_message(
    address: str, nonce: str, domain: str = "app.example", chain_id: int = CHAIN, expires: str | None = None
) -> str:
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    lines = [
        f"{domain} wants you to sign in with your Ethereum account:",
        address,
        "",
        "Sign in to GuessLyfe.",
        "",
        "URI: https://app.example",
        "Version: 1",
        f"Chain ID: {chain_id}",
        f"Nonce: {nonce}",
        f"Issued At: {now}",
    ]
    if expires:
        lines.append(f"Expiration Time: {expires}")
    return "\n".join(lines)


def sign(account: object, text: str) -> str:
    signed = Account.sign_message(encode_defunct(text=text), private_key=account.key)  # type: ignore[attr-defined]
    return "0x" + signed.signature.hex().removeprefix("0x")


def test_siwe_sign_in_roles_and_user_scoped_notifications(client: TestClient, db_dsn: str) -> None:
    """Nonce → signed EIP-4361 message → JWT; the nonce is single use; notifications are the owner's only."""
    asyncio.run(scenario(db_dsn))
    acct = Account.create()
    addr = acct.address  # checksummed, as EIP-4361 requires

    def sign_in(**kw: str) -> tuple[int, dict[str, object], str]:
        nonce = client.post("/v1/auth/nonce", json={}).json()["data"]["nonce"]
        text = siwe_message(addr, nonce, **kw)
        r = client.post("/v1/auth/verify", json={"message": text, "signature": sign(acct, text)})
        return r.status_code, r.json(), text

    assert client.post("/v1/auth/nonce").status_code == 201  # no body at all is fine too
    status, body, text = sign_in()
    assert status == 200, body
    data = body["data"]
    assert data["address"] == addr.lower()
    assert data["roles"] == ["user"]
    token = data["token"]
    me = client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).json()["data"]
    assert me == {"address": addr.lower(), "roles": ["user"]}
    replay = client.post("/v1/auth/verify", json={"message": text, "signature": sign(acct, text)})
    assert "nonce" in assert_error(replay, 401, "message")["errors"][0]["message"]
    assert sign_in(domain="evil.example")[0] == 401
    assert sign_in(expires="2020-01-01T00:00:00Z")[0] == 401
    nonce = client.post("/v1/auth/nonce", json={}).json()["data"]["nonce"]
    other = Account.create()
    forged = siwe_message(addr, nonce)
    assert_error(
        client.post("/v1/auth/verify", json={"message": forged, "signature": sign(other, forged)}), 401, "signature"
    )
    assert_error(client.post("/v1/auth/verify", json={"message": "hello", "signature": "0x00"}), 401, "message")
    assert_error(client.post("/v1/auth/verify", json={"message": 1}), 400, "message")
    assert_error(client.post("/v1/auth/verify", content=b"{}", headers={"content-type": "text/plain"}), 415)

    async def notify() -> None:
        conn = await asyncpg.connect(db_dsn)
        for b in (60, 61):
            await conn.execute(
                """INSERT INTO idx.notifications (chain_id, block_number, log_index, recipient, kind, title, message,
                       market_id, amount, block_time) VALUES ($1, $2, 0, $3, 'market_resolved', 'Resolved', 'm', 2,
                       $4, now())""",
                CHAIN,
                b,
                bytes.fromhex(addr[2:].lower()),
                5 * U,
            )
        await conn.close()

    asyncio.run(notify())
    auth = {"Authorization": f"Bearer {token}"}
    path = f"/v1/users/{addr}/notifications"
    assert_error(client.get(path), 401, "Authorization")
    assert_error(client.get("/v1/users/0x" + "a1" * 20 + "/notifications", headers=auth), 403, "address")
    n = client.get(path, headers=auth).json()
    assert [x["id"] for x in n["data"]] == ["61-0-market_resolved", "60-0-market_resolved"]
    assert n["data"][0]["amount"] == "5.000000"
    assert not n["data"][0]["read"]
    r = client.post(f"{path}/read", json={"ids": ["61-0-market_resolved"]}, headers=auth)
    assert r.json()["data"] == {"marked": 1}
    unread = client.get(path, params={"unreadOnly": "true"}, headers=auth).json()["data"]
    assert [x["id"] for x in unread] == ["60-0-market_resolved"]
    assert client.post(f"{path}/read", json={"all": True}, headers=auth).json()["data"] == {"marked": 1}
    assert_error(client.post(f"{path}/read", json={"ids": ["x"]}, headers=auth), 400, "ids[0]")
    assert_error(
        client.post(f"{path}/read", content=b"x" * 70000, headers=auth | {"content-type": "application/json"}),
        413,
        "body",
    )


def test_cors_allow_list_and_docs_page(db_dsn: str, redis_url: str) -> None:
    """CORS answers only configured origins; /docs is a self-contained page; /openapi.json is 3.0."""
    settings = make_settings(db_dsn, redis_url, cors_origins=["https://app.example"])
    with TestClient(create_app(settings, serve_feed=False), raise_server_exceptions=False) as c:
        pre = {"Access-Control-Request-Method": "GET"}
        ok = c.options("/v1/markets", headers={"Origin": "https://app.example", **pre})
        assert ok.headers.get("access-control-allow-origin") == "https://app.example"
        bad = c.options("/v1/markets", headers={"Origin": "https://evil.example", **pre})
        assert "access-control-allow-origin" not in bad.headers
        refused = assert_error(bad, 400, "Origin")  # the seed's body, not Starlette's plain text
        assert refused["path"] == "/v1/markets"
        assert refused["message"] == "Disallowed CORS origin"
        docs = c.get("/docs")
        assert docs.status_code == 200
        assert "<script" not in docs.text
        assert "/v1/markets/{id}/candles" in docs.text
        doc = c.get("/openapi.json").json()
        assert doc["openapi"] == "3.0.3"
        assert "/v1/users/{address}/positions" in doc["paths"]


def test_ready_fails_when_a_newer_build_migrates_the_database_under_it(client: TestClient, db_dsn: str) -> None:
    """The schema is checked on every /ready, not only at start: an API left running after a newer build
    migrated is taken out of rotation (review h1: it relayed the newer indexer's trades as `data: null`)."""
    asyncio.run(scenario(db_dsn))
    assert client.get("/ready").status_code == 200

    async def migrate(sql: str) -> None:
        conn = await asyncpg.connect(db_dsn)
        await conn.execute(sql)
        await conn.close()

    asyncio.run(migrate("INSERT INTO public.schema_migrations (version, name) VALUES (999, '999_newer.sql')"))
    body = assert_error(client.get("/ready"), 503, "schema")
    assert "migration 999, newer than this build" in body["errors"][0]["message"]
    asyncio.run(migrate("DELETE FROM public.schema_migrations WHERE version = 999"))
    assert client.get("/ready").status_code == 200
