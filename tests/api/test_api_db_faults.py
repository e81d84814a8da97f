"""The API when PostgreSQL misbehaves, against a real server and database: a database that stops
answering (black-holed behind a TCP proxy) and a backend terminated mid-query (a restart, a
failover) each get a 503 with Retry-After — never a request hanging for TCP's minutes, never a
500 — and requests succeed again once the database is back."""

from __future__ import annotations

import asyncio
import json
import urllib.parse

import aiohttp
import asyncpg
import pytest

from tests.api.conftest import make_settings
from tests.api.test_api_connections import serving
from tests.chain import free_port
from tests.pgfaults import read_only_database
from tests.tcp import BlackHole

pytestmark = [pytest.mark.pg, pytest.mark.redis]


def via(dsn: str, port: int) -> str:
    u = urllib.parse.urlsplit(dsn)
    return u._replace(netloc=f"{u.username}@127.0.0.1:{port}").geturl()


async def status(base: str, path: str) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s, s.get(base + path) as r:
        return r.status, dict(r.headers), await r.text()


async def test_a_database_that_stops_answering_gets_503_not_a_hang(db_dsn: str, redis_url: str) -> None:
    upstream = urllib.parse.urlsplit(db_dsn).port
    assert upstream is not None
    async with BlackHole(upstream).running() as hole:
        settings = make_settings(
            via(db_dsn, hole.port), redis_url, port=free_port(), statement_timeout_ms=1000, pool_acquire_timeout_s=2.0
        )
        async with serving(settings) as (_, port):
            base = f"http://127.0.0.1:{port}"
            assert (await status(base, "/v1/markets?limit=11"))[0] == 200
            hole.frozen = True
            code, headers, body = await status(base, "/v1/markets?limit=12")  # not cached: needs the database
            assert code == 503, body
            assert headers.get("Retry-After") == "1"
            hole.frozen = False
            for _ in range(100):  # back: the pool replaces what the freeze broke
                if (await status(base, "/v1/markets?limit=13"))[0] == 200:
                    break
                await asyncio.sleep(0.2)
            else:
                pytest.fail("the API did not recover once the database answered again")


async def test_a_backend_terminated_mid_query_gets_503(db_dsn: str, redis_url: str) -> None:
    async with serving(make_settings(db_dsn, redis_url, port=free_port())) as (_, port):
        base = f"http://127.0.0.1:{port}"
        assert (await status(base, "/v1/markets?limit=11"))[0] == 200
        admin = await asyncpg.connect(db_dsn)
        try:
            lock = admin.transaction()
            await lock.start()
            await admin.execute("LOCK TABLE idx.markets IN ACCESS EXCLUSIVE MODE")  # the API's query waits
            request = asyncio.create_task(status(base, "/v1/markets?limit=12"))
            for _ in range(100):
                waiting = await admin.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'gl-api' AND wait_event_type = 'Lock'"
                )
                if waiting:
                    break
                await asyncio.sleep(0.05)
            assert waiting, "the API's query never waited on the lock"
            await admin.execute("SELECT pg_terminate_backend($1)", waiting[0]["pid"])  # AdminShutdownError
            code, headers, body = await request
            await lock.rollback()
        finally:
            await admin.close()
        assert code == 503, body
        assert headers.get("Retry-After") == "1"
        assert (await status(base, "/v1/markets?limit=14"))[0] == 200


async def test_concurrent_ready_probes_share_one_check_and_one_connection(db_dsn: str, redis_url: str) -> None:
    """/ready skips the rate limits; a crowd of probes while the check is slow (its table locked
    here) holds one read connection, not the pool, and every probe gets the same answer."""
    async with serving(make_settings(db_dsn, redis_url, port=free_port(), pool_max=4)) as (_, port):
        base = f"http://127.0.0.1:{port}"
        admin = await asyncpg.connect(db_dsn)
        try:
            lock = admin.transaction()
            await lock.start()
            await admin.execute("LOCK TABLE idx.chain_heads IN ACCESS EXCLUSIVE MODE")
            probes = [asyncio.create_task(status(base, "/ready")) for _ in range(20)]
            await asyncio.sleep(1.0)  # every probe has arrived and waits
            waiting = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gl-api' AND wait_event_type = 'Lock'"
            )
            await lock.rollback()
            answers = await asyncio.gather(*probes)
        finally:
            await admin.close()
        assert waiting == 1  # one check in flight, on /ready's own connection (the pool's 4 free for requests)
        assert len({(a[0], a[2]) for a in answers}) == 1  # one check's answer (503 here: nothing indexed yet)
        assert answers[0][0] == (await status(base, "/ready"))[0]
        assert (await status(base, "/v1/markets?limit=11"))[0] == 200


async def test_ready_does_not_call_a_busy_pool_a_database_that_is_down(db_dsn: str, redis_url: str) -> None:
    """Review s15 F2: /ready borrowed from the requests' pool; with every read connection held by a slow but
    healthy request it answered 503 "database: unreachable" and set api_db_up 0, so a load balancer would
    pull every instance under load at once. Now it checks on a connection of its own."""
    async with serving(make_settings(db_dsn, redis_url, port=free_port(), pool_min=1, pool_max=2)) as (rt, port):
        assert rt.state is not None
        base = f"http://127.0.0.1:{port}"
        pool = rt.state.read_pool
        held = [await pool.acquire(), await pool.acquire()]
        try:
            code, _, body = await status(base, "/ready")
            _, _, metrics = await status(base, "/metrics")
        finally:
            for c in held:
                await pool.release(c)
        assert "unreachable" not in body
        assert "api_db_up 1.0" in metrics
        assert code == (await status(base, "/ready"))[0]  # the answer of an idle pool (503 here: nothing indexed)


async def post(base: str, path: str) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        async with s.post(base + path, data=b"{}", headers={"Content-Type": "application/json"}) as r:
            return r.status, dict(r.headers), await r.text()


async def test_a_primary_turned_read_only_is_503_on_writes_and_degraded_on_ready(db_dsn: str, redis_url: str) -> None:
    """Review h2: after a failover left the primary read-only (a demoted primary, a hot standby), sign-in
    (POST /v1/auth/nonce writes a nonce) answered 500 "internal error" with a traceback, and /ready said
    "ready". Now writes answer 503 + Retry-After, /ready says "degraded" naming the write side (reads
    still work, so the instance stays in rotation), and both recover once the primary takes writes."""
    from tests.api import rows

    await rows.scenario(db_dsn)
    async with serving(make_settings(db_dsn, redis_url, port=free_port(), ready_max_head_age_s=604800)) as (_, port):
        base = f"http://127.0.0.1:{port}"
        assert (await post(base, "/v1/auth/nonce"))[0] == 201
        code, _, body = await status(base, "/ready")
        assert (code, json.loads(body)["status"]) == (200, "ready"), body
        async with read_only_database(db_dsn):
            answers = [await post(base, "/v1/auth/nonce") for _ in range(3)]
            ready = await status(base, "/ready")
        assert [a[0] for a in answers] == [503, 503, 503], answers
        assert all(a[1].get("Retry-After") == "1" for a in answers)
        code, _, body = ready
        got = json.loads(body)
        assert (code, got["status"]) == (200, "degraded"), body
        assert got["checks"]["writes"].startswith("read-only"), body
        assert (await status(base, "/v1/markets?limit=11"))[0] == 200  # reads still answer
        for _ in range(50):  # writable again: fresh sessions see it
            if (await post(base, "/v1/auth/nonce"))[0] == 201:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("sign-in did not recover once the primary took writes again")
        code, _, body = await status(base, "/ready")
        assert (code, json.loads(body)["status"], json.loads(body)["checks"]["writes"]) == (200, "ready", "ok"), body


async def test_ready_after_every_session_was_ended_is_not_a_database_down(db_dsn: str, redis_url: str) -> None:
    """A restart or failover ends every session: /ready's own pooled connections are then dead, which is
    not a database that is down. It asks again on a fresh connection before it says so."""
    from tests.api import rows

    db = urllib.parse.urlsplit(db_dsn).path.lstrip("/")
    await rows.scenario(db_dsn)
    async with serving(make_settings(db_dsn, redis_url, port=free_port(), ready_max_head_age_s=604800)) as (_, port):
        base = f"http://127.0.0.1:{port}"
        assert (await status(base, "/ready"))[0] == 200
        admin = await asyncpg.connect(db_dsn)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                db,
            )
        finally:
            await admin.close()
        code, _, body = await status(base, "/ready")
        assert code == 200, body
        assert json.loads(body)["checks"]["writes"] == "ok", body
