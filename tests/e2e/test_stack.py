"""End to end, every part a real process: wallets trade directly with the contracts (web3.py), and
what they did shows up through the indexer in the API and on the feed; an operator resolves a
market through the keeper; holders are notified, claim, and see it; the daily dividend
distribution runs; a reorg in the middle leaves API answers equal to the canonical chain."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.logs import DISCARD
from websockets.sync.client import connect

from core.contracts import load_abi
from core.deploy import anvil_account
from tests.e2e.stack import Stack, feed_messages, running_stack, wait_until

pytestmark = [pytest.mark.anvil, pytest.mark.pg, pytest.mark.redis, pytest.mark.slow]

USDC = 10**6


class Wallet:
    """A user's wallet signing its own transactions, as docs/wallets.md shows."""

    def __init__(self, stack: Stack, account: LocalAccount) -> None:
        self.s, self.acct, self.address = stack, account, account.address
        c = stack.deployment["contracts"]
        self.usdc = stack.w3.eth.contract(address=c["USDC"], abi=load_abi("MockUSDC"))
        self.om = stack.w3.eth.contract(address=c["OpinionMarket"], abi=load_abi("OpinionMarket"))
        self.cs = stack.w3.eth.contract(address=c["CreatorShares"], abi=load_abi("CreatorShares"))

    def sign(self, fn: Any, nonce: int | None = None) -> bytes:
        w3 = self.s.w3
        tx = fn.build_transaction(
            {
                "from": self.address,
                "nonce": w3.eth.get_transaction_count(self.address, "pending") if nonce is None else nonce,
                "maxFeePerGas": 20 * 10**9,
                "maxPriorityFeePerGas": 10**9,
                "gas": 500_000,
            }
        )
        raw: bytes = self.acct.sign_transaction(tx).raw_transaction
        return raw

    def send(self, fn: Any) -> Any:
        w3 = self.s.w3
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(self.sign(fn)), timeout=30)
        assert receipt["status"] == 1, receipt
        return receipt

    def fund(self) -> None:
        self.send(self.usdc.functions.mint(self.address, 10_000 * USDC))
        self.send(self.usdc.functions.approve(self.om.address, 2**256 - 1))
        self.send(self.usdc.functions.approve(self.cs.address, 2**256 - 1))


def deadline(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"]) + 600


def lower(address: str) -> str:
    return address.lower()


def usdc(base_units: int) -> str:
    """The API's decimal-string form of a USDC/share amount: 12345678 → "12.345678"."""
    return f"{base_units // USDC}.{base_units % USDC:06d}"


def sign_in(s: Stack, wallet: Wallet) -> dict[str, str]:
    """Sign-In with Ethereum (EIP-4361) → a bearer header for the wallet's own endpoints."""
    nonce = requests.post(s.api + "/v1/auth/nonce", json={}, timeout=10).json()["data"]["nonce"]
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    text = "\n".join(
        [
            "localhost:3000 wants you to sign in with your Ethereum account:",
            wallet.address,
            "",
            "Sign in to GuessLyfe.",
            "",
            "URI: http://localhost:3000",
            "Version: 1",
            "Chain ID: 31337",
            f"Nonce: {nonce}",
            f"Issued At: {now}",
        ]
    )
    signature = wallet.acct.sign_message(encode_defunct(text=text)).signature.hex()
    r = requests.post(
        s.api + "/v1/auth/verify", json={"message": text, "signature": "0x" + signature.removeprefix("0x")}, timeout=10
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['data']['token']}"}


def test_whole_system_end_to_end(tmp_path: Path, db_dsn: str, redis_url: str) -> None:
    """Trade → API + feed; operator resolution → keeper → notifications → claim; dividends; reorg."""
    with running_stack(tmp_path, db_dsn, redis_url) as s:
        w3 = s.w3
        creator, trader, other = (Wallet(s, anvil_account(i)) for i in (5, 6, 7))
        for w in (creator, trader, other):
            w.fund()

        # ---- a creator opens a market and their share curve; a trader buys shares
        # an hour: block times follow the wall clock, and a slow machine must not close the market
        # before the trades below (it is ended on purpose with evm_increaseTime)
        end_time = int(w3.eth.get_block("latest")["timestamp"]) + 3600
        receipt = creator.send(creator.om.functions.createMarket("Will e2e pass?", "tech", end_time, 100 * USDC))
        market_id = creator.om.events.MarketCreated().process_receipt(receipt, errors=DISCARD)[0].args.marketId
        creator.send(creator.cs.functions.buyShares(creator.address, 1, 0, deadline(w3)))
        trader.send(trader.cs.functions.buyShares(creator.address, 2, 10**12, deadline(w3)))

        with connect(s.feed, open_timeout=10) as ws:
            ws.send(f'{{"op":"subscribe","rooms":["market:{market_id}","user:{lower(trader.address)}"]}}')
            feed_messages(ws, lambda m: m.get("type") == "subscribed", 10)

            # ---- a wallet trades directly; the trade reaches the API and the feed
            receipt = trader.send(trader.om.functions.buy(market_id, 1, 20 * USDC, 0, deadline(w3)))
            tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
            trade = trader.om.events.Trade().process_receipt(receipt, errors=DISCARD)[0].args
            seen = feed_messages(ws, lambda m: m.get("event") == "market:trade" and m["data"]["txHash"] == tx_hash, 30)
            msg = seen[-1]
            assert msg["id"]["blockNumber"] == receipt["blockNumber"]
            assert msg["data"]["shares"] == f"{trade.shares // 10**6}.{trade.shares % 10**6:06d}"  # as over HTTP
            trades = wait_until(
                lambda: [t for t in s.get(f"/v1/markets/{market_id}/trades")["data"] if t["txHash"] == tx_hash],
                "the trade in the API",
                30,
                s,
            )
            assert trades[0]["trader"] == lower(trader.address)

            # ---- a reorg replaces the block holding another wallet's trade with a different trade
            before = other.send(other.om.functions.buy(market_id, 0, 5 * USDC, 0, deadline(w3)))
            removed_nonce = w3.eth.get_transaction(before["transactionHash"])["nonce"]
            wait_until(
                lambda: s.get(f"/v1/users/{lower(other.address)}/positions")["data"], "the doomed trade indexed", 30, s
            )
            # interval mining paused: a block mined between reading the height and the reorg would
            # leave the doomed trade's block in place
            s.anvil.call("evm_setIntervalMining", 0)
            try:
                depth = w3.eth.block_number - before["blockNumber"] + 1
                replacement = other.sign(other.om.functions.buy(market_id, 1, 7 * USDC, 0, deadline(w3)), removed_nonce)
                s.anvil.call("anvil_reorg", depth, [["0x" + replacement.hex(), 0]])
            finally:
                s.anvil.call("evm_setIntervalMining", 1)
            feed_messages(ws, lambda m: m.get("event") == "chain:reorg", 30)

        def other_position_matches_chain() -> bool:
            yes, no = other.om.functions.positionOf(market_id, other.address).call()
            rows = s.get(f"/v1/users/{lower(other.address)}/positions")["data"]
            row = next((r for r in rows if int(r["marketId"]) == market_id), None)
            if row is None:  # between the rollback and the re-index of the new block: poll again
                return False
            return bool(yes > 0) and (row["yesShares"], row["noShares"]) == (usdc(yes), usdc(no))

        wait_until(other_position_matches_chain, "API position equal to the chain after the reorg", 30, s)

        # ---- the market ends; an operator queues the outcome; the keeper proposes it (feed: market:proposed,
        # API: status proposed with the window's end); after the deployment's 60 s challenge window the
        # keeper finalizes it, once
        s.anvil.call("evm_increaseTime", 3700)
        s.anvil.call("evm_mine")
        with connect(s.feed, open_timeout=10) as ws:
            ws.send(f'{{"op":"subscribe","rooms":["market:{market_id}"]}}')
            feed_messages(ws, lambda m: m.get("type") == "subscribed", 10)
            s.cli("-m", "keeper", "resolve", str(market_id), "yes", "--reason", "e2e: the test passed")
            seen = feed_messages(ws, lambda m: m.get("event") == "market:proposed", 60)
        assert (seen[-1]["data"]["marketId"], seen[-1]["data"]["proposedOutcome"]) == (market_id, "yes")
        market = wait_until(
            lambda: (m := s.get(f"/v1/markets/{market_id}")["data"])["status"] == "proposed" and m,
            "the keeper's proposal in the API",
            30,
            s,
        )
        assert (market["proposedOutcome"], market["outcome"]) == ("yes", None)
        ends = int(creator.om.functions.getMarket(market_id).call()[8])
        assert market["challengeEndsAt"] == dt.datetime.fromtimestamp(ends, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert seen[-1]["data"]["challengeEndsAt"] == market["challengeEndsAt"]
        s.anvil.call("evm_increaseTime", 61)
        s.anvil.call("evm_mine")
        market = wait_until(
            lambda: (m := s.get(f"/v1/markets/{market_id}")["data"])["status"] == "resolved" and m,
            "the keeper's finalization in the API",
            60,
            s,
        )
        assert market["outcome"] == "yes"
        assert creator.om.functions.getMarket(market_id).call()[4:6] == [3, 1]

        # ---- holders are notified, claim, and see the payout in their positions
        auth = sign_in(s, trader)

        def notified() -> bool:
            r = requests.get(f"{s.api}/v1/users/{lower(trader.address)}/notifications", headers=auth, timeout=10)
            assert r.status_code == 200, r.text
            return any(int(n["marketId"] or 0) == market_id for n in r.json()["data"])

        wait_until(
            notified,
            "a resolution notification for the trader",
            30,
            s,
        )
        receipt = trader.send(trader.om.functions.claimWinnings(market_id))
        payout = trader.om.events.WinningsClaimed().process_receipt(receipt, errors=DISCARD)[0].args.payout
        assert payout > 0

        def claimed_in_positions() -> bool:
            rows = s.get(f"/v1/users/{lower(trader.address)}/positions", status="closed")["data"]
            return any(int(r["marketId"]) == market_id and r["claimed"] == usdc(payout) for r in rows)

        wait_until(claimed_in_positions, "the claim in the trader's positions", 30, s)

        # ---- the daily distribution (schedule shortened) or a share trade folds the pool; holders' claimable
        # dividends appear. The trader's shares warm up first (they earn from 00:00 of the second day after
        # their buy); a fee after that (its next buy's dividend fee) vests to the earning shares by the end
        # of its day
        s.anvil.call("evm_increaseTime", 2 * 86_400)
        s.anvil.call("evm_mine")
        trader.send(trader.cs.functions.buyShares(creator.address, 1, 10**12, deadline(w3)))
        s.anvil.call("evm_increaseTime", 86_400)
        s.anvil.call("evm_mine")
        # The keeper distributes a creator once per wall-clock UTC day (its period key), and the chain's
        # days here are warped: a run of the every-minute schedule earlier in this test may have used
        # today's key before this fee arrived (a full-suite run on 2026-12-07 waited 90 s for nothing).
        # A share trade folds the pool too, so the fee is credited either way; the API must match.
        creator.send(creator.cs.functions.buyShares(creator.address, 1, 10**12, deadline(w3)))

        def dividends_match_chain() -> bool:
            on_chain = trader.cs.functions.claimableDividends(creator.address, trader.address).call()
            if on_chain == 0:
                return False
            body = s.get(f"/v1/users/{lower(trader.address)}/dividends")["data"]
            claimable = {d["creator"]: d["amount"] for d in body["claimable"]}
            return claimable.get(lower(creator.address)) == usdc(on_chain)

        wait_until(dividends_match_chain, "claimable dividends after the keeper's distribution", 90, s)

        # ---- after all of it, the API equals the canonical chain
        yes_r, no_r = (creator.om.functions.getMarket(market_id).call()[i] for i in (2, 3))
        m = s.get(f"/v1/markets/{market_id}")["data"]
        assert (m["yesReserve"], m["noReserve"]) == (usdc(yes_r), usdc(no_r))
        c = s.get(f"/v1/creators/{lower(creator.address)}")["data"]
        assert int(c["supply"]) == creator.cs.functions.supplyOf(creator.address).call()

        # ---- a disputed proposal: the keeper alerts and never finalizes it; the arbiter settles it
        arbiter = Wallet(s, anvil_account(0))  # the deployment grants ARBITER_ROLE to the deployer
        end_time = int(w3.eth.get_block("latest")["timestamp"]) + 3600
        ids = []
        for q in ("Disputed?", "Nobody settles?"):
            receipt = creator.send(creator.om.functions.createMarket(q, "tech", end_time, 10 * USDC))
            ids.append(creator.om.events.MarketCreated().process_receipt(receipt, errors=DISCARD)[0].args.marketId)
        disputed, expired = ids
        s.anvil.call("evm_increaseTime", 3700)
        s.anvil.call("evm_mine")
        s.cli("-m", "keeper", "resolve", str(disputed), "no", "--reason", "e2e: to be disputed")
        wait_until(lambda: s.get(f"/v1/markets/{disputed}")["data"]["status"] == "proposed", "the proposal", 30, s)
        arbiter.send(arbiter.om.functions.disputeOutcome(disputed))
        wait_until(lambda: s.get(f"/v1/markets/{disputed}")["data"]["status"] == "disputed", "the dispute", 30, s)
        s.anvil.call("evm_increaseTime", 120)  # past the challenge window: a proposal would be finalized now
        s.anvil.call("evm_mine")

        def alerted() -> bool:
            listed = s.cli("-m", "keeper", "status").split('"disputed_markets"', 1)[1].split("]", 1)[0]
            return f'"market_id": {disputed},' in listed

        wait_until(alerted, "the keeper's dispute alert (keeper status)", 30, s)
        assert any("market_disputed" in p.read_text(errors="replace") for p in s.logs.glob("*.log"))
        assert creator.om.functions.getMarket(disputed).call()[4] == 2  # never finalized
        arbiter.send(arbiter.om.functions.arbitrate(disputed, 1))
        market = wait_until(
            lambda: (m := s.get(f"/v1/markets/{disputed}")["data"])["status"] == "resolved" and m,
            "the arbiter's outcome in the API",
            30,
            s,
        )
        assert (market["outcome"], market["proposedOutcome"]) == ("yes", "no")

        # ---- a market nobody settles: past end + the 30-day resolution window the keeper resolves it INVALID
        s.anvil.call("evm_increaseTime", 30 * 86_400)
        s.anvil.call("evm_mine")
        market = wait_until(
            lambda: (m := s.get(f"/v1/markets/{expired}")["data"])["status"] == "resolved" and m,
            "the keeper's expiry (resolveExpired) in the API",
            60,
            s,
        )
        assert market["outcome"] == "invalid"
        s.alive()  # no daemon died along the way
