"""schemathesis against the app's own OpenAPI document: positive and negative cases for every
operation (≥ 1,000 in all); no 5xx, every error in the seed's body, every success with as_of."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.internal.conjecture import utils as _cu
from schemathesis import DataGenerationMethod
from starlette.testclient import TestClient

from api.app import create_app
from api.auth import Principal, issue_token
from api.openapi import spec
from tests.api.conftest import ADMIN, make_settings
from tests.api.rows import scenario
from tests.conftest import SERVICES, _psql

# One xdist worker runs the whole module (make test uses --dist loadgroup): the case count below
# is collected in-process.
pytestmark = [pytest.mark.pg, pytest.mark.redis, pytest.mark.slow, pytest.mark.xdist_group("schemathesis")]


def _many_more(self: Any) -> bool:
    """hypothesis-jsonschema 0.23 (pulled by schemathesis 3.x) calls `many.more()`, which
    hypothesis 6.170 replaced by iteration; this restores the old step for object schemas."""
    if self._depth is None:
        self._depth = self.data.depth
    self._finish_element()
    if not self._decide():
        self._closed = True
        return False
    self.count += 1
    self._in_element = True
    self._rejected = False
    return True


if not hasattr(_cu.many, "more"):
    _cu.many.more = _many_more

SCHEMA = schemathesis.from_dict(
    spec(make_settings("postgresql://unused", "redis://unused")),
    data_generation_methods=[DataGenerationMethod.positive, DataGenerationMethod.negative],
)
EXAMPLES = 45
CALLS: list[int] = []
ERROR_KEYS = {"statusCode", "message", "errors", "timestamp", "path"}


@pytest.fixture(scope="module")
def fuzz(template_db: str, services: None) -> Iterator[tuple[TestClient, str]]:
    """One database with the scenario rows and one running app for every generated case."""
    name = f"gl_fz_{uuid.uuid4().hex[:10]}"
    _psql(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    dsn = f"postgresql://guesslyfe@127.0.0.1:{SERVICES.pg_port}/{name}"
    asyncio.run(scenario(dsn))
    s = make_settings(dsn, f"redis://127.0.0.1:{SERVICES.redis_port}/15")
    token, _ = issue_token(s, Principal(ADMIN, frozenset({"user", "admin"})))
    with TestClient(create_app(s, serve_feed=False), raise_server_exceptions=False) as c:
        yield c, token
    _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
def test_generated_cases(case: schemathesis.Case, fuzz: tuple[TestClient, str]) -> None:
    """No 5xx; errors in the seed's body; 2xx under /v1 carry data and as_of."""
    client, token = fuzz
    kw = case.as_transport_kwargs(base_url="http://testserver")
    generated = {k.lower(): v for k, v in (kw.get("headers") or {}).items() if (k + v).isascii()}
    headers = {"authorization": f"Bearer {token}", **generated}  # generated auth headers test 401s
    r = client.request(
        kw["method"],
        kw["url"],
        params=kw.get("params"),
        headers=headers,
        content=kw.get("content") if kw.get("json") is None else None,
        json=kw.get("json"),
    )
    CALLS.append(r.status_code)
    assert r.status_code < 500, (case.method, case.formatted_path, kw.get("params"), r.text[:500])
    body = r.json()
    if r.status_code >= 400:
        assert set(body) == ERROR_KEYS, body
        assert body["statusCode"] == r.status_code
        assert isinstance(body["errors"], list)
    elif case.path.startswith("/v1"):
        assert "data" in body
        assert "as_of" in body


def test_enough_generated_cases_ran() -> None:
    """The CI budget: at least 1,000 generated requests (runs after the parametrized cases)."""
    if not CALLS:
        pytest.skip("run together with test_generated_cases")
    assert len(CALLS) >= 1000, len(CALLS)
