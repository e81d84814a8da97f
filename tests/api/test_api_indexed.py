"""Endpoints and feed on a database filled by the real indexer from a scripted scenario on anvil;
positions and PnL are checked against values computed here from the contract's AMM rules."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from web3 import Web3
from websockets.asyncio.client import connect

from api.app import create_app
from core.contracts import load_abi
from indexer.service import run
from tests.api.conftest import make_settings
from tests.api.test_api_feed import recv_type, running, subscribe
from tests.indexer.helpers import Node, index_to_head
from tests.indexer.helpers import make_settings as indexer_settings

pytestmark = [pytest.mark.anvil, pytest.mark.pg, pytest.mark.redis, pytest.mark.slow]
U = 10**6
FEE_BPS = 200  # DeployParams().fee_bps
LP_BPS = 2_500  # DeployParams().lp_fee_share_bps: this part of the fee stays in the pool as complete sets


def buy(y: int, n: int, outcome: int, collateral: int) -> tuple[int, int, int]:
    """OpinionMarket.buy: (new yes, new no, shares out)."""
    fee = collateral * FEE_BPS // 10_000
    net, lp = collateral - fee, fee * LP_BPS // 10_000
    k = y * n
    if outcome == 1:
        nn = n + net
        ny = -(-k // nn)
        return ny + lp, nn + lp, y + net - ny
    ny = y + net
    nn = -(-k // ny)
    return ny + lp, nn + lp, n + net - nn


def sell(y: int, n: int, outcome: int, shares: int) -> tuple[int, int, int]:
    """OpinionMarket.sell: (new yes, new no, collateral out after the fee, rounded up)."""
    other = n if outcome == 1 else y
    b = y + n + shares
    d = b * b - 4 * shares * other
    root = math.isqrt(d)
    root += root * root < d
    gross = (b - root) // 2
    fee = (gross * FEE_BPS + 9_999) // 10_000
    lp = fee * LP_BPS // 10_000
    if outcome == 1:
        return y + shares - gross + lp, n - gross + lp, gross - fee
    return y - gross + lp, n + shares - gross + lp, gross - fee


def units(x: int) -> str:
    sign = "-" if x < 0 else ""
    q, r = divmod(abs(x), U)
    return f"{sign}{q}.{r:06d}"


class Script:
    def __init__(self, node: Node) -> None:
        self.w3 = node.w3
        c = node.deployment["contracts"]
        self.om = self.w3.eth.contract(address=c["OpinionMarket"], abi=load_abi("OpinionMarket"))
        self.usdc = self.w3.eth.contract(address=c["USDC"], abi=load_abi("MockUSDC"))
        acc = self.w3.eth.accounts
        self.keeper, self.creator, self.a, self.b = acc[1], acc[2], acc[3], acc[4]
        for who in (self.creator, self.a, self.b):
            self.tx(self.usdc.functions.mint(who, 1_000 * U), who)
            self.tx(self.usdc.functions.approve(self.om.address, 2**256 - 1), who)

    def tx(self, fn: Any, sender: str) -> Any:
        h = fn.transact({"from": sender})
        r = self.w3.eth.wait_for_transaction_receipt(h)
        assert r.status == 1
        return r

    def create(self, question: str) -> int:
        end = self.w3.eth.get_block("latest")["timestamp"] + 3600
        self.tx(self.om.functions.createMarket(question, "test", end, 100 * U), self.creator)
        return int(self.om.functions.marketCount().call())

    def buy(self, who: str, market: int, outcome: int, collateral: int) -> Any:
        return self.tx(self.om.functions.buy(market, outcome, collateral, 0, 2**40), who)

    def sell(self, who: str, market: int, outcome: int, shares: int) -> Any:
        return self.tx(self.om.functions.sell(market, outcome, shares, 0, 2**40), who)


def caught_up(c: TestClient, dsn: str) -> None:
    """Waits until the app's outbox pump has seen (and invalidated for) every outbox row."""
    from tests.indexer.helpers import fetch

    want = fetch(dsn, "SELECT coalesce(max(seq), 0) AS s FROM idx.outbox")[0]["s"]
    cp = fetch(dsn, "SELECT block_number FROM idx.checkpoints")[0]["block_number"]
    pump = c.app.state.runtime.state.pump  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while (pump.last_seq < want or pump.checkpoint != cp) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pump.last_seq >= want, "the outbox pump did not reach the last outbox row in 30 s"
    assert pump.checkpoint == cp, "the outbox pump did not see the checkpoint in 30 s"


@pytest.fixture
def node() -> Iterator[Node]:
    n = Node()
    yield n
    n.stop()


def test_positions_and_pnl_from_indexed_scenario(node: Node, db_dsn: str, redis_url: str, tmp_path: Path) -> None:
    """A buys YES twice, B buys NO, A sells half; resolved YES; A claims. Values computed by hand."""
    s = Script(node)
    m = s.create("Scripted market?")
    y, n = 100 * U, 100 * U
    y, n, a1 = buy(y, n, 1, 10 * U)
    s.buy(s.a, m, 1, 10 * U)
    y, n, a2 = buy(y, n, 1, 20 * U)
    s.buy(s.a, m, 1, 20 * U)
    y, n, b1 = buy(y, n, 0, 15 * U)
    s.buy(s.b, m, 0, 15 * U)
    sold = (a1 + a2) // 2
    y, n, proceeds = sell(y, n, 1, sold)
    s.sell(s.a, m, 1, sold)
    # average cost: 30 USDC for a1 + a2 shares; selling `sold` removes cost * sold // shares
    cost = 30 * U
    removed = cost * sold // (a1 + a2)
    a_cost, a_shares, a_realized = cost - removed, a1 + a2 - sold, proceeds - removed
    value_open = a_shares * n // (y + n)
    b_value = b1 * y // (y + n)

    settings_ix = indexer_settings(node.url, node.deployment, db_dsn, tmp_path)
    assert index_to_head(settings_ix) == 0
    app_settings = make_settings(db_dsn, redis_url)
    with TestClient(create_app(app_settings, serve_feed=False), raise_server_exceptions=False) as c:
        pos = c.get(f"/v1/users/{s.a}/positions").json()["data"]
        assert len(pos) == 1
        p = pos[0]
        assert p["status"] == "open"
        assert p["yesShares"] == units(a_shares)
        assert p["costBasis"] == units(a_cost)
        assert p["realizedPnl"] == units(a_realized)
        assert p["currentValue"] == units(value_open)
        assert p["unrealizedPnl"] == units(value_open - a_cost)
        assert p["totalPnl"] == units(a_realized + value_open - a_cost)
        pb = c.get(f"/v1/users/{s.b}/positions").json()["data"][0]
        assert (pb["noShares"], pb["costBasis"], pb["unrealizedPnl"]) == (
            units(b1),
            "15.000000",
            units(b_value - 15 * U),
        )
        md = c.get(f"/v1/markets/{m}").json()
        assert md["data"]["yesReserve"] == units(y)
        assert md["data"]["noReserve"] == units(n)
        assert md["data"]["volume"] == units(10 * U + 20 * U + 15 * U + proceeds)
        assert md["data"]["trades"] == 4
        assert md["asOf"]["blockNumber"] == node.anvil.head()
        trades = c.get(f"/v1/markets/{m}/trades").json()["data"]
        assert [t["side"] for t in trades] == ["sell", "buy", "buy", "buy"]
        assert trades[0]["collateral"] == units(proceeds)

    # after the end time (on chain): YES proposed (status proposed, window end shown, nothing claimable yet);
    # finalized once the challenge window has passed; then A claims its remaining YES shares (1 USDC each)
    node.anvil.call("evm_increaseTime", 3700)
    node.anvil.mine()
    with TestClient(create_app(app_settings, serve_feed=False), raise_server_exceptions=False) as c:
        md = c.get(f"/v1/markets/{m}").json()["data"]
        assert (md["proposedOutcome"], md["challengeEndsAt"]) == (None, None)  # status: by the wall clock
        receipt = s.tx(s.om.functions.proposeOutcome(m, 1), s.keeper)
        (proposal,) = s.om.events.OutcomeProposed().process_receipt(receipt)
        ends = int(proposal["args"]["challengeEnds"])
        assert index_to_head(settings_ix) == 0
        caught_up(c, db_dsn)
        md = c.get(f"/v1/markets/{m}").json()["data"]
        ends_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ends))
        assert (md["status"], md["proposedOutcome"], md["outcome"]) == ("proposed", "yes", None)
        assert md["challengeEndsAt"] == ends_iso
        assert [x["id"] for x in c.get("/v1/markets", params={"status": "proposed"}).json()["data"]] == [m]
        assert c.get(f"/v1/users/{s.a}/positions").json()["data"][0]["status"] == "open"
        node.anvil.call("evm_setNextBlockTimestamp", ends)
        node.anvil.mine()  # transact() estimates gas at the latest block: it must be past the window
        s.tx(s.om.functions.finalizeOutcome(m), s.b)
        assert index_to_head(settings_ix) == 0
        caught_up(c, db_dsn)
        md = c.get(f"/v1/markets/{m}").json()["data"]
        assert (md["status"], md["outcome"], md["proposedOutcome"]) == ("resolved", "yes", "yes")
        assert md["challengeEndsAt"] == ends_iso
        p = c.get(f"/v1/users/{s.a}/positions").json()["data"][0]
        assert (p["status"], p["claimable"]) == ("redeemable", units(a_shares))
        assert p["unrealizedPnl"] == units(a_shares - a_cost)
        pb = c.get(f"/v1/users/{s.b}/positions").json()["data"][0]
        assert (pb["claimable"], pb["totalPnl"]) == ("0.000000", "-15.000000")
        s.tx(s.om.functions.claimWinnings(m), s.a)
        assert index_to_head(settings_ix) == 0
        caught_up(c, db_dsn)
        p = c.get(f"/v1/users/{s.a}/positions").json()["data"][0]
        assert p["status"] == "closed"
        assert p["claimed"] == units(a_shares)
        assert p["realizedPnl"] == units(a_realized + a_shares - a_cost)
        summary = c.get(f"/v1/users/{s.a}").json()["data"]
        assert summary["totalPnl"] == units(a_realized + a_shares - a_cost)
        lb = c.get("/v1/leaderboards/traders").json()["data"]
        assert lb[0]["trader"] == s.a.lower()


async def test_trade_reaches_feed_subscriber_in_the_block_it_was_mined(
    node: Node, db_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    """Live: indexer + feed running; a trade's message carries the block it was mined in, and its data
    speaks the HTTP trade's names and formats (every key both have, the same value)."""
    s = Script(node)
    m = s.create("Live market?")
    settings_ix = indexer_settings(node.url, node.deployment, db_dsn, tmp_path, poll_interval=0.1)
    stop = asyncio.Event()
    indexer = asyncio.create_task(run(settings_ix, stop))
    try:
        async with (
            running(make_settings(db_dsn, redis_url, cache_enabled=False)) as (app, _rt, url),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http,
        ):
            async with connect(url) as ws:
                await subscribe(ws, [f"market:{m}"])
                t0 = time.monotonic()
                receipt = await asyncio.to_thread(s.buy, s.a, m, 1, 5 * U)
                msg = await recv_type(ws, "event", wait_s=30)
                while msg["event"] == "market:created":  # the indexer may announce the market first
                    msg = await recv_type(ws, "event", wait_s=30)
                assert msg["event"] == "market:trade"
                assert msg["id"]["blockNumber"] == receipt.blockNumber
                assert msg["id"]["blockHash"] == "0x" + bytes(receipt.blockHash).hex()
                assert msg["data"]["txHash"] == "0x" + bytes(receipt.transactionHash).hex()
                assert msg["data"]["trader"] == s.a.lower()
                assert msg["finality"] in ("unsafe", "safe", "finalized")
                print(json.dumps({"feed_latency_s": time.monotonic() - t0}))
            (trade,) = (await http.get(f"/v1/markets/{m}/trades")).json()["data"]
            shared = set(trade) & set(msg["data"])
            assert shared >= {"txHash", "time", "marketId", "trader", "side", "outcome", "collateral", "shares"}
            assert shared >= {"fee", "price", "yesPriceAfter"}
            assert {k: msg["data"][k] for k in shared} == {k: trade[k] for k in shared}
    finally:
        stop.set()
        await asyncio.wait_for(indexer, 15)


async def test_feed_delivers_proposed_and_disputed_and_the_api_shows_each_step(
    node: Node, db_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    """Live: a proposal reaches a market room subscriber as market:proposed (outcome, window end), a dispute as
    market:disputed, the arbiter's decision as market:resolved; the market endpoint shows each status, and after
    the dispute challengeEndsAt is the arbitration deadline getMarket says."""
    s = Script(node)
    m = s.create("Disputed market?")
    arbiter = node.w3.eth.accounts[0]  # the deployment grants ARBITER_ROLE to the deployer
    node.anvil.call("evm_increaseTime", 3700)
    node.anvil.mine()
    settings_ix = indexer_settings(node.url, node.deployment, db_dsn, tmp_path, poll_interval=0.1)
    stop = asyncio.Event()
    indexer = asyncio.create_task(run(settings_ix, stop))

    async def next_market_event(ws: Any) -> dict[str, Any]:
        msg = await recv_type(ws, "event", wait_s=30)
        while msg["event"] == "market:created":  # the indexer may announce the market first
            msg = await recv_type(ws, "event", wait_s=30)
        return msg

    try:
        async with (
            running(make_settings(db_dsn, redis_url)) as (app, _rt, url),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http,
        ):

            async def market() -> dict[str, Any]:
                data: dict[str, Any] = (await http.get(f"/v1/markets/{m}")).json()["data"]
                return data

            async with connect(url) as ws:
                await subscribe(ws, [f"market:{m}"])
                receipt = await asyncio.to_thread(s.tx, s.om.functions.proposeOutcome(m, 0), s.keeper)
                ends = int(s.om.events.OutcomeProposed().process_receipt(receipt)[0]["args"]["challengeEnds"])
                msg = await next_market_event(ws)
                assert msg["event"] == "market:proposed"
                assert msg["id"]["blockNumber"] == receipt.blockNumber
                assert (msg["data"]["marketId"], msg["data"]["proposedOutcome"]) == (m, "no")
                assert msg["data"]["proposer"] == s.keeper.lower()
                md = await market()
                assert (md["status"], md["proposedOutcome"], md["outcome"]) == ("proposed", "no", None)
                assert md["challengeEndsAt"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ends))
                assert msg["data"]["challengeEndsAt"] == md["challengeEndsAt"]  # the feed's names are HTTP's
                receipt = await asyncio.to_thread(s.tx, s.om.functions.disputeOutcome(m), arbiter)
                msg = await next_market_event(ws)
                assert msg["event"] == "market:disputed"
                assert (msg["data"]["proposedOutcome"], msg["data"]["arbiter"]) == ("no", arbiter.lower())
                md = await market()
                assert (md["status"], md["proposedOutcome"], md["outcome"]) == ("disputed", "no", None)
                # challengeEndsAt is now the arbitration deadline, as on chain: the dispute's time + the window
                deadline = s.om.functions.getMarket(m).call()[8]
                disputed_at = node.w3.eth.get_block(receipt.blockNumber)["timestamp"]
                assert deadline == disputed_at + s.om.functions.challengeWindow().call()
                assert md["challengeEndsAt"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deadline))
                await asyncio.to_thread(s.tx, s.om.functions.arbitrate(m, 1), arbiter)
                msg = await next_market_event(ws)
                assert msg["event"] == "market:resolved"
                assert (msg["data"]["outcome"], msg["data"]["resolver"]) == ("yes", arbiter.lower())
    finally:
        stop.set()
        await asyncio.wait_for(indexer, 15)
    with TestClient(create_app(make_settings(db_dsn, redis_url), serve_feed=False), raise_server_exceptions=False) as c:
        md = c.get(f"/v1/markets/{m}").json()["data"]
        assert (md["status"], md["outcome"], md["proposedOutcome"]) == ("resolved", "yes", "no")


def test_endpoints_over_simulated_traffic_match_the_contracts(
    node: Node, db_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    """Simulated wallets trade, resolve and claim; after indexing, every market, user and creator
    endpoint answers, and positions/supplies equal the contracts' own views."""
    from scripts.simulate import simulate
    from tests.indexer.helpers import fetch

    simulate(node.url, node.deployment, seed=11, max_events=120, resolve=True)
    assert index_to_head(indexer_settings(node.url, node.deployment, db_dsn, tmp_path)) == 0
    c = node.deployment["contracts"]
    om = node.w3.eth.contract(address=c["OpinionMarket"], abi=load_abi("OpinionMarket"))
    cs = node.w3.eth.contract(address=c["CreatorShares"], abi=load_abi("CreatorShares"))
    with TestClient(
        create_app(make_settings(db_dsn, redis_url), serve_feed=False), raise_server_exceptions=False
    ) as cl:
        markets = cl.get("/v1/markets", params={"limit": 100}).json()
        assert markets["meta"]["total"] == om.functions.marketCount().call() > 0
        for m in markets["data"]:
            for suffix in ("", "/trades", "/history", "/candles?interval=1m", "/holders", "/holders?outcome=no"):
                r = cl.get(f"/v1/markets/{m['id']}{suffix}")
                assert r.status_code == 200, (m["id"], suffix, r.text[:300])
        holders = {bytes(r["holder"]) for r in fetch(db_dsn, "SELECT holder FROM idx.positions")}
        checked = 0
        for h in holders:
            addr = Web3.to_checksum_address(h)
            assert cl.get(f"/v1/users/{addr}").status_code == 200
            for p in cl.get(f"/v1/users/{addr}/positions", params={"limit": 100}).json()["data"]:
                yes, no = om.functions.positionOf(p["marketId"], addr).call()
                assert (p["yesShares"], p["noShares"]) == (units(yes), units(no)), (addr, p)
                checked += 1
            for suffix in ("/trades", "/activity", "/holdings", "/dividends"):
                assert cl.get(f"/v1/users/{addr}{suffix}").status_code == 200
        assert checked > 0
        creators = cl.get("/v1/creators", params={"limit": 100}).json()["data"]
        for cr in creators:
            supply = cs.functions.supplyOf(Web3.to_checksum_address(cr["address"])).call()
            assert cr["supply"] == str(supply)
            for suffix in ("", "/holders", "/trades", "/candles", "/dividends"):
                assert cl.get(f"/v1/creators/{cr['address']}{suffix}").status_code == 200
        trades = fetch(db_dsn, "SELECT count(*) AS n FROM idx.ev_trade")[0]["n"]
        assert cl.get("/v1/stats").json()["data"]["trades"] == trades
        for path in ("/v1/leaderboards/traders", "/v1/leaderboards/creators", "/v1/markets/trending"):
            assert cl.get(path).status_code == 200
