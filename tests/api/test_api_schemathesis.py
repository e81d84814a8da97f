"""schemathesis against the app's own OpenAPI document, served by a real uvicorn over HTTP:
positive and negative cases for every operation (≥ 1,000 in all), every response checked with
schemathesis' full set of checks — no 5xx, status codes, content types, response headers and
response bodies as documented, negative data rejected, auth enforced — plus the positive-data
check: data the document allows is answered 2xx/401/403/404, except where a documented rule
between parameters (not expressible in the schema) refuses it with a 400 that names it."""

from __future__ import annotations

import asyncio
import collections
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
import uvicorn
from eth_utils.address import to_checksum_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as _cu
from schemathesis import DataGenerationMethod
from schemathesis.checks import ALL_CHECKS
from schemathesis.specs.openapi._hypothesis import get_schema_for_location
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.types import NotSet

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _address(raw: bytes, case: str) -> str:
    lower = "0x" + raw.hex()
    return {"lower": lower, "upper": "0x" + raw.hex().upper(), "checksum": to_checksum_address(lower)}[case]


# the document's `eip55-address` format: lowercase, uppercase or EIP-55 checksummed
schemathesis.openapi.format(
    "eip55-address",
    st.builds(_address, st.binary(min_size=20, max_size=20), st.sampled_from(["lower", "upper", "checksum"])),
)
PORT = _free_port()
BASE_URL = f"http://127.0.0.1:{PORT}"
SCHEMA = schemathesis.from_dict(
    spec(make_settings("postgresql://unused", "redis://unused")),
    base_url=BASE_URL,
    data_generation_methods=[DataGenerationMethod.positive, DataGenerationMethod.negative],
)
EXAMPLES = 45
CALLS: list[int] = []
ERROR_KEYS = {"statusCode", "message", "errors", "timestamp", "path"}
# Rules between parameters that a schema cannot state; a positive case that breaks one is refused
# with a 400 naming the rule (docs/api.md, "What the document cannot say").
CROSS_FIELD = (
    "at most 1000 buckets",  # candles: from/to span
    "must not be after `to`",
    "conflicts with filter=",  # markets: status=... and filter=status:... disagree
    "given twice",  # filter=KEY:..,KEY:..
    "is not a valid cursor",  # cursors are HMAC-signed: only ones the API issued are valid
    "was issued for different filters",
    "EIP-55 checksum",  # mixed-case address with a wrong checksum
    "must be an RFC 3339 date-time",  # matches the pattern but is no calendar date (month 13)
    "nonce",  # SIWE: the message must carry a live nonce (a 401 anyway)
)


@pytest.fixture(scope="module")
def server(template_db: str, services: None) -> Iterator[str]:
    """One database with the scenario rows and one uvicorn serving the app for every case."""
    name = f"gl_fz_{uuid.uuid4().hex[:10]}"
    _psql(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    dsn = f"postgresql://guesslyfe@127.0.0.1:{SERVICES.pg_port}/{name}"
    asyncio.run(scenario(dsn))
    # the run outlasts /ready's head-age bound on these static rows; /ready must answer 200 here
    s = make_settings(dsn, f"redis://127.0.0.1:{SERVICES.redis_port}/15", ready_max_head_age_s=86_400)
    token, _ = issue_token(s, Principal(ADMIN, frozenset({"user", "admin"})))
    config = uvicorn.Config(
        create_app(s, serve_feed=False), host="127.0.0.1", port=PORT, log_level="warning", lifespan="on"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, name="uvicorn-schemathesis", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.05)
    try:
        yield token
    finally:
        srv.should_exit = True
        thread.join(timeout=15)
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


SESSION = requests.Session()
MALFORMED: list[int] = []
CROSS_FIELD_REFUSED: list[str] = []
NEGATION_VANISHED: list[int] = []
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[\x21-\x7e\x80-\xff]([\x20-\x7e\x80-\xff\t]*[\x21-\x7e\x80-\xff])?|")


def _on_wire(query: dict[str, Any]) -> dict[str, Any]:
    """The query as requests sends it (urlencode with doseq): None and [] vanish, lists flatten once."""
    out: dict[str, Any] = {}
    for k, v in query.items():
        flat: list[Any] = []
        for x in v if isinstance(v, list) else [v]:
            if isinstance(x, list):
                flat.extend(y for y in x if y is not None)
            elif x is not None:
                flat.append(x)
        if flat:
            out[k] = flat[0] if len(flat) == 1 else flat
    return out


def _really_negative(case: schemathesis.Case, headers: dict[str, str]) -> bool:
    """Whether what was sent breaks the document: a parameter or body outside its schema, an
    unknown query parameter, or no token for an operation that needs one."""
    op = case.operation
    meta = case.meta
    if meta is not None and meta.body is not None and meta.body.is_negative and not isinstance(case.body, NotSet):
        return True
    if (
        op.definition.raw.get("security")
        and not headers
        and not any(k.lower() == "authorization" for k in case.headers or {})
    ):
        return True
    validator = op.schema.validator_cls  # type: ignore[attr-defined]
    for location, value, params in (
        ("query", case.query, op.query),
        ("path", case.path_parameters, op.path_parameters),
    ):
        value = value or {}
        names = {p.name for p in params}
        if set(value) - names:
            return True
        if not validator(get_schema_for_location(op, location, params)).is_valid(value):
            return True
    return False


def _valid_header(name: str, value: Any) -> bool:
    """RFC 9110 field name and value (the generated security header may be neither)."""
    if not isinstance(value, str):
        return True
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return bool(_TOKEN.fullmatch(name)) and bool(_VALUE.fullmatch(value))


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
def test_generated_cases(case: schemathesis.Case, server: str) -> None:
    """Every schemathesis check passes; every error is in the seed's body."""
    token = server
    # the admin token, unless the case brings its own Authorization or is negative in its headers
    # (schemathesis' negative headers drop the bearer token: the answer must then be a 401)
    negative_headers = case.meta is not None and case.meta.headers is not None and case.meta.headers.is_negative
    own = any(k.lower() == "authorization" for k in case.headers or {})
    headers = {} if own or negative_headers else {"Authorization": f"Bearer {token}"}
    if isinstance(case.query, dict):
        # what the HTTP client really sends ([] and None vanish, [x] is sent as x): a "negative"
        # case whose negation vanished in transit is judged by what the server received
        case.query = _on_wire(case.query)
    r = case.call(session=SESSION, headers=headers, timeout=30)
    CALLS.append(r.status_code)
    if r.text == "Invalid HTTP request received.":
        # a generated header that is not HTTP: uvicorn's parser answers before the app runs (its
        # own text body; the seed's body for it is the server's job, api/app.py)
        assert r.status_code == 400
        assert not all(_valid_header(k, v) for k, v in (case.headers or {}).items()), case.headers
        MALFORMED.append(1)
        return
    negative = case.data_generation_method is not None and case.data_generation_method.is_negative
    excluded = () if not negative or _really_negative(case, headers) else (negative_data_rejection,)
    if excluded:
        NEGATION_VANISHED.append(1)
    case.validate_response(
        r, checks=ALL_CHECKS, excluded_checks=excluded, headers=headers, transport_kwargs={"session": SESSION}
    )
    body = r.json()
    if r.status_code >= 400:
        assert set(body) == ERROR_KEYS, body
        assert body["statusCode"] == r.status_code
    if case.data_generation_method is not None and case.data_generation_method.is_positive:
        rules = (
            [rule for e in body["errors"] for rule in CROSS_FIELD if rule in e["message"]]
            if r.status_code == 400
            else []
        )
        if rules:
            CROSS_FIELD_REFUSED.append(rules[0])
            return
        case.validate_response(r, checks=(positive_data_acceptance,), headers=headers)


def test_enough_generated_cases_ran() -> None:
    """The CI budget: at least 1,000 generated requests answered by the app and checked (runs after
    the parametrized cases)."""
    if not CALLS:
        pytest.skip("run together with test_generated_cases")
    validated = len(CALLS) - len(MALFORMED)  # every check ran on these
    assert validated >= 1000, (len(CALLS), len(MALFORMED))
    print(
        f"schemathesis: {len(CALLS)} requests, {len(MALFORMED)} refused by uvicorn as malformed HTTP, "
        f"{len(NEGATION_VANISHED)} negative cases whose negation never reached the server, "
        f"{len(CROSS_FIELD_REFUSED)} positive cases refused by a rule between parameters: "
        f"{collections.Counter(CROSS_FIELD_REFUSED).most_common()}"
    )
