"""Fixtures of the API tests: settings for a fresh database + Redis db, a TestClient with the
lifespan running, and rows written straight into idx.* (the schema is the contract)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.settings import Settings, load_settings
from tests.api.rows import scenario
from tests.conftest import _psql

JWT_SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
ADMIN = "0x" + "ad" * 20


def make_settings(db_dsn: str, redis_url: str, **api: Any) -> Settings:
    section: dict[str, Any] = {
        "rate_limit_ip": 100_000,
        "rate_limit_user": 100_000,
        "signin_rate_limit": 100_000,
        "outbox_poll_s": 0.2,
        "feed_port": 0,
        "admin_addresses": [ADMIN],
        "siwe_domain": "app.example",
        "siwe_uri": "https://app.example",
        "pool_min": 1,
        "pool_max": 4,
        # a loaded CI machine can take seconds to open a connection; the 503 path has its own test
        "pool_acquire_timeout_s": 15.0,
        # per-test namespace: Redis pub/sub channels ignore the db number, parallel tests must not meet
        "cache_prefix": f"t{uuid.uuid4().hex[:8]}",
    }
    section.update(api)
    config = {
        "database": {"dsn": db_dsn},
        "redis": {"url": redis_url},
        "chain": {"chain_id": 31337, "rpc_urls": ["http://127.0.0.1:1"]},
        "api": section,
    }
    return load_settings(config, environ={"GL_API_JWT_SECRET": JWT_SECRET})


@pytest.fixture
def settings(db_dsn: str, redis_url: str) -> Settings:
    return make_settings(db_dsn, redis_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, serve_feed=False), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def replica_dsn(db_dsn: str) -> Iterator[str]:
    """A copy of the test database (with tests.api.rows.scenario) taken now: a replica that lags the
    primary, db_dsn, until the test writes to it as well."""
    asyncio.run(scenario(db_dsn))
    primary = db_dsn.rsplit("/", 1)[1]
    name = f"{primary}_r{uuid.uuid4().hex[:4]}"
    _psql(f"CREATE DATABASE {name} TEMPLATE {primary}")
    yield db_dsn.rsplit("/", 1)[0] + "/" + name
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
