"""Review s20 ha, the defect guarded against:
a cached answer is served exactly as Redis hands it back. Whatever sits in a variant's
hash field — bytes that are not JSON (a corrupted value, another build's or deployment's entry
under the same prefix) — is answered as `200 application/json`, copied into L1 and the Edge's fast
path, and served until the key's TTL (cache_ttl_s, 300 s) or the next event of that market. An
unreadable cached body must count as a miss (answered from PostgreSQL, and replaced)."""

from __future__ import annotations

import asyncio

import pytest
import redis
from starlette.testclient import TestClient

from api.settings import Settings
from tests.api.rows import scenario

pytestmark = [pytest.mark.pg, pytest.mark.redis]


def test_an_unreadable_cached_body_is_a_miss_not_an_answer(
    client: TestClient, settings: Settings, db_dsn: str, redis_url: str
) -> None:
    asyncio.run(scenario(db_dsn))
    r = redis.Redis.from_url(redis_url)
    try:
        ns = f"{settings.api.cache_prefix}:{settings.chain_id}:"
        r.hset(ns + "market:1", "detail", b"\x00\xffnot json at all")
        r.expire(ns + "market:1", 300)
    finally:
        r.close()
    answers = [client.get("/v1/markets/1") for _ in range(2)]
    got = [(a.status_code, a.headers.get("x-cache"), a.content[:20]) for a in answers]
    for a in answers:
        assert a.status_code == 200, got
        try:
            body = a.json()
        except ValueError:
            raise AssertionError(f"served the unreadable cached bytes as JSON: {got}") from None
        assert body["data"]["id"] == 1, got
