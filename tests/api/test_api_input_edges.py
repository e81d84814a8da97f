"""Input that passes `str.isdigit()` but not `int()` ("²", "٣", 5,000 digits), and headers a client
may send twice: each gets a clear 400 naming the input, never a 500 or a dropped connection."""

from __future__ import annotations

import pytest
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from core.numbers import whole_number
from core.resolution import RequestError, parse_market_id, parse_threshold
from tests.api.test_api_cache_limits_auth import sign, siwe_message
from tests.api.test_api_feed import running, subscribe

ODD = ["²", "٣", "9" * 5000, "1_000", " ", "", "0x10", "+1", "1e3", "-", "--1"]


@given(st.text(max_size=100))
def test_whole_number_never_raises_and_reads_ascii_digits_only(text: str) -> None:
    n = whole_number(text, negative=True)
    if n is not None:
        assert text.strip().isascii()
        assert n == int(text.strip())


def test_whole_number_refuses_what_int_would_misread_or_raise_on() -> None:
    assert [whole_number(t) for t in ODD] == [None] * len(ODD)
    assert whole_number("  42 ") == 42
    assert whole_number("-3") is None
    assert whole_number("-3", negative=True) == -3
    assert whole_number(str(2**256 - 1)) == 2**256 - 1  # a uint256 fits, one more digit does not
    assert whole_number("1" * 79) is None


@pytest.mark.parametrize("text", ODD[:4])
def test_the_keepers_inputs_refuse_odd_digits_by_name(text: str) -> None:
    with pytest.raises(RequestError, match="market_id"):
        parse_market_id(text)
    with pytest.raises(RequestError, match="threshold"):
        parse_threshold(text)


@pytest.mark.pg
@pytest.mark.redis
def test_odd_chain_ids_are_a_400_naming_the_parameter(client: TestClient) -> None:
    for text in ["²", "٣", "9" * 5000]:
        r = client.get("/v1/stats", params={"chainId": text})
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["field"] == "chainId"
    acct = Account.create()
    nonce = client.post("/v1/auth/nonce", json={}).json()["data"]["nonce"]
    text = siwe_message(acct.address, nonce).replace("Chain ID: 31337", "Chain ID: ²")
    r = client.post("/v1/auth/verify", json={"message": text, "signature": sign(acct, text)})
    assert r.status_code == 401, r.text
    assert "Chain ID must be a whole number" in r.text


def test_a_trailing_newline_is_not_part_of_a_number(client: TestClient) -> None:
    """The parameter patterns /openapi.json publishes end at `$`, which in JSON Schema (ECMA-262) matches
    only at the end; Python's re.match with `$` also takes a trailing newline, so `limit=10%0A` and a
    unix time `from=1700000000%0A` were accepted though the document refuses them. fullmatch now."""
    for path, params in (("/v1/markets", {"limit": "10\n"}), ("/v1/stats", {"from": "1700000000\n"})):
        r = client.get(path, params=params)
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["field"] == next(iter(params))
    assert client.get("/v1/markets", params={"limit": "10"}).status_code == 200


@pytest.mark.pg
@pytest.mark.redis
async def test_feed_handshakes_with_repeated_headers(settings: object) -> None:
    async with running(settings) as (_, _rt, url):  # type: ignore[arg-type]
        for bad in (f"{url}/?chainId=²", f"{url}/?chainId={'9' * 5000}"):
            with pytest.raises(InvalidStatus) as refused:
                await connect(bad)
            assert refused.value.response.status_code == 400
        # Two X-Forwarded-For headers are one list: served (a 500 before)
        async with connect(
            url, additional_headers=[("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2")]
        ) as ws:
            assert (await subscribe(ws, ["global:all"]))["rooms"] == ["global:all"]
        with pytest.raises(InvalidStatus) as twice:  # which token would count? refused, saying so
            await connect(url, additional_headers=[("Authorization", "Bearer a"), ("Authorization", "Bearer b")])
        assert twice.value.response.status_code == 400
        assert b"one Authorization header" in twice.value.response.body


@pytest.mark.pg
@pytest.mark.redis
async def test_total_claimable_covers_every_holding_beyond_the_listed_1000(client: TestClient, db_dsn: str) -> None:
    """1,001 creators with dividends for one holder: the list stops at 1,000 (largest first), the
    total does not (it summed the first 1,000 by shares, silently short)."""
    import asyncpg

    holder = bytes.fromhex("b2" * 20)
    conn = await asyncpg.connect(db_dsn)
    creators = [i.to_bytes(20, "big") for i in range(1, 1002)]
    await conn.executemany(
        """INSERT INTO idx.creators (chain_id, creator, supply, acc_per_share, pool, market_fees_accrued,
               distributed_total, distribution_count, holder_count, volume, trade_count, first_block, updated_block)
           VALUES (31337, $1, 2, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1)""",
        [(c,) for c in creators],
    )
    # credited dividends of k micro-USDC on creator k; the smallest (1) is the one left off the list
    await conn.executemany(
        """INSERT INTO idx.share_holdings (chain_id, creator, holder, shares, locked_until, credited, acc_paid,
               claimed_total, updated_block) VALUES (31337, $1, $2, $3, 0, $4, 0, 0, 1)""",
        [(c, holder, 1 + (k % 3), k) for k, c in enumerate(creators, start=1)],
    )
    await conn.close()
    d = client.get(f"/v1/users/0x{'b2' * 20}/dividends").json()["data"]
    assert d["totalClaimable"] == "0.501501"  # 1 + 2 + … + 1001 micro-USDC = 501,501
    assert len(d["claimable"]) == 1000
    assert d["claimable"][0] == {"creator": "0x" + creators[-1].hex(), "amount": "0.001001"}
    assert d["claimable"][-1]["amount"] == "0.000002"
