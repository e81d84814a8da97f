"""Security review h3 (the read API and the web surface): each test asserts the safe behaviour and
failed on the code before its fix (session 16). Most severe first."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from eth_account import Account
from starlette.testclient import TestClient

from api.app import create_app
from api.auth import Principal, issue_token
from api.pages import STATIC
from api.settings import Settings
from tests.api.conftest import ADMIN, make_settings
from tests.api.rows import scenario
from tests.api.test_api_cache_limits_auth import sign, siwe_message

pytestmark = [pytest.mark.pg, pytest.mark.redis]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------- F1 (medium): refresh never rotates


def test_a_refreshed_token_cannot_be_refreshed_again(client: TestClient, settings: Settings) -> None:
    """POST /v1/auth/refresh must rotate: once T was traded for T2, T can no longer be refreshed.
    Today T stays refreshable (and valid) until its exp, and every answer is refreshable again, so one
    leaked token -- an admin's included -- is a session that never ends (10 refreshes / 15 min / IP are
    plenty for a 15-minute token)."""
    token, _ = issue_token(settings, Principal(ADMIN, frozenset({"user", "admin"})))
    first = client.post("/v1/auth/refresh", json={}, headers=_bearer(token))
    assert first.status_code == 200, first.text
    chained = first.json()["data"]["token"]
    assert client.get("/v1/admin/indexer", headers=_bearer(chained)).status_code == 200
    again = client.post("/v1/auth/refresh", json={}, headers=_bearer(token))
    assert again.status_code == 401, "the token that was already refreshed was accepted a second time"


def test_refresh_does_not_extend_a_session_past_session_max_s(client: TestClient, settings: Settings) -> None:
    """A chain of refreshes keeps the sign-in's time (auth_time), no token outlives session_max_s after
    it, and a token of a session older than that is not renewed: before, refresh issued iat=now and
    nothing bounded the chain."""
    token, _ = issue_token(settings, Principal("0x" + "a1" * 20, frozenset({"user"})))
    last = token
    for _ in range(3):
        r = client.post("/v1/auth/refresh", json={}, headers=_bearer(last))
        assert r.status_code == 200
        last = r.json()["data"]["token"]
    claims = jwt.decode(last, options={"verify_signature": False})
    first = jwt.decode(token, options={"verify_signature": False})
    assert claims["auth_time"] == first["iat"]
    assert claims["exp"] <= first["iat"] + settings.api.session_max_s
    now = int(time.time())
    late = now - settings.api.session_max_s + 30  # signed in almost session_max_s ago: 30 s left
    old, exp = issue_token(settings, Principal("0x" + "a2" * 20, frozenset({"user"}), auth_time=late))
    assert exp <= late + settings.api.session_max_s
    r = client.post("/v1/auth/refresh", json={}, headers=_bearer(old))
    assert r.status_code == 200, r.text  # renewed, but only up to the session's end
    renewed = jwt.decode(r.json()["data"]["token"], options={"verify_signature": False})
    assert (renewed["auth_time"], renewed["exp"]) == (late, late + settings.api.session_max_s)
    ended, _ = issue_token(
        settings, Principal("0x" + "a3" * 20, frozenset({"user"}), auth_time=now - settings.api.session_max_s)
    )
    r = client.post("/v1/auth/refresh", json={}, headers=_bearer(ended))
    assert r.status_code == 401, r.text  # its exp is its session's end: expired, so sign in again


# ---------------------------------------------------------------- F2 (low): /static NUL byte -> 500, unthrottled


def test_a_nul_byte_in_a_static_path_is_a_404_not_a_logged_500(client: TestClient) -> None:
    """/static/* is exempt from rate limits; a NUL in the path makes StaticFiles raise ValueError
    ('embedded null byte'): 500 and an error-level log line with a full traceback per request,
    which anyone can repeat without limit (log flooding, a false 5xx alert rate)."""
    for path in ("/static/a%00b", "/static/app.js%00.txt", "/static/%2e%2e%00"):
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code)


# ---------------------------------------------------------------- F3 (low): multi-range amplification on /static


def test_static_files_bound_multi_range_requests(client: TestClient) -> None:
    """A Range header of ~2,000 one-byte ranges (10 KB, within max_head_bytes) makes a 12 KB app.js come
    back as a ~230 KB multipart/byteranges answer (and an O(n^2) merge in Starlette), with no rate
    limit on /static/*. The safe answer ignores such a header (200, the file once) or refuses it (416)."""
    size = (STATIC / "app.js").stat().st_size
    ranges = ",".join(f"{i}-{i}" for i in range(0, 4000, 2))
    r = client.get("/static/app.js", headers={"Range": f"bytes={ranges}"})
    assert len(r.content) <= 2 * size, (r.status_code, len(r.content), size)


# ---------------------------------------------------------------- F4 (low): Host reflected into the page's feed URL


def test_config_json_feed_url_from_host_is_not_cacheable(client: TestClient) -> None:
    """/static/config.json builds feedUrl from the request's Host header (api/pages.py feed_url) and sends
    no Cache-Control/Vary: a cache in front that does not key on Host stores ws://evil.example:PORT for
    every visitor, and the page's CSP (connect-src ws://*:PORT) lets the page connect there."""
    r = client.get("/static/config.json", headers={"Host": "evil.example"})
    assert r.status_code == 200
    poisoned = "evil.example" in r.json()["feedUrl"]
    vary = r.headers.get("vary", "").lower()
    cc = r.headers.get("cache-control", "").lower()
    assert not poisoned or "host" in vary or "no-store" in cc or "private" in cc, r.headers


# ---------------------------------------------------------------- F5 (low): token answers are cacheable


def test_token_answers_are_not_stored_by_caches(client: TestClient, db_dsn: str) -> None:
    """The sign-in and refresh answers carry a bearer token and /v1/auth/me the principal; they are
    sent without Cache-Control: no-store (OWASP ASVS 8.2.1 / RFC 6749 5.1 for token responses)."""
    asyncio.run(scenario(db_dsn))
    acct = Account.create()
    nonce = client.post("/v1/auth/nonce", json={}).json()["data"]["nonce"]
    text = siwe_message(acct.address, nonce)
    r = client.post("/v1/auth/verify", json={"message": text, "signature": sign(acct, text)})
    assert r.status_code == 200, r.text
    token = r.json()["data"]["token"]
    refreshed = client.post("/v1/auth/refresh", json={}, headers=_bearer(token))
    me = client.get("/v1/auth/me", headers=_bearer(token))
    for answer in (r, refreshed, me):
        assert "no-store" in answer.headers.get("cache-control", ""), answer.request.url


# ---------------------------------------------------------------- F6 (low): /metrics through an unlisted proxy


def test_metrics_refused_to_a_client_behind_an_unlisted_proxy(db_dsn: str, redis_url: str) -> None:
    """Behind a reverse proxy on a private address that is not in forwarded_allow_ips (the default is
    []), every Internet client is seen as the proxy's private address, which the default
    metrics_allow_ips trusts: /metrics is public (and all clients share one rate-limit bucket). A
    request that carries X-Forwarded-For from a peer that is not a named proxy came through a proxy
    the API does not know: it must not be granted the scrapers' networks."""
    settings = make_settings(db_dsn, redis_url)  # forwarded_allow_ips = [] (the default)
    with TestClient(create_app(settings, serve_feed=False), client=("10.0.0.2", 5000)) as c:
        r = c.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 404, "an Internet client read /metrics through an unlisted private proxy"


# ---------------------------------------------------------------- F7 (low): SIWE URI and statement unchecked


def test_siwe_refuses_a_uri_other_than_siwe_uri(client: TestClient, db_dsn: str) -> None:
    """check_siwe (api/auth.py) checks domain, chain id, version and times but never `URI:`; the docs'
    nonce answer hands out siwe_uri as the value to sign. A message for https://evil.example signs in."""
    asyncio.run(scenario(db_dsn))
    acct = Account.create()
    nonce = client.post("/v1/auth/nonce", json={}).json()["data"]["nonce"]
    text = siwe_message(acct.address, nonce).replace("URI: https://app.example", "URI: https://evil.example")
    r = client.post("/v1/auth/verify", json={"message": text, "signature": sign(acct, text)})
    assert r.status_code == 401, r.text


def test_siwe_refuses_control_characters_in_the_statement(client: TestClient, db_dsn: str) -> None:
    """EIP-4361's statement is printable text without '\\n'; the parser takes any line, so a statement
    with CR / U+2028 (which wallets may render as line breaks, faking a 'URI:' or 'Chain ID:' line
    to the signer) is accepted."""
    asyncio.run(scenario(db_dsn))
    acct = Account.create()
    nonce = client.post("/v1/auth/nonce", json={}).json()["data"]["nonce"]
    text = siwe_message(acct.address, nonce).replace(
        "Sign in to GuessLyfe.", "Sign in to GuessLyfe.\rURI: https://app.example\u2028Chain ID: 1"
    )
    r = client.post("/v1/auth/verify", json={"message": text, "signature": sign(acct, text)})
    assert r.status_code == 401, r.text
