"""Wallet-traffic simulator: many wallets trading directly against the deployed contracts.

Wallets are anvil's unlocked dev accounts (2..19 by default; 0 is the admin, 1 the keeper).
Each round every wallet sends one transaction chosen by a seeded RNG: create markets with varied
end times, buy/sell both outcomes, buy/sell creator shares, claim winnings and dividends, and
now and then a transaction that reverts (a sell of locked shares, a trade on an ended market).
Transactions go out with a fixed gas limit so reverts land on chain as failed transactions, the
way a wallet that skipped estimation would produce them.

    python -m scripts.simulate --config config/local.toml [--seed 1] [--events 500] [--rate 20]

`simulate()` is the library entry point used by `make run`, tests and benchmarks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
import structlog
from web3 import Web3

from core.args import number, whole_number
from core.config import ChainSettings, ConfigError, load_config, section
from core.contracts import deployment_path, load_abi, load_chain_deployment
from core.logs import configure_logging

log = structlog.get_logger("simulate")

ADMIN, KEEPER = 0, 1
USDC = 10**6
GAS = 600_000
CATEGORIES = ("crypto", "sports", "politics", "culture", "tech", "weather")
SUBJECTS = ("BTC", "ETH", "the home team", "the incumbent", "the new album", "it", "the launch", "GPT-9")
VERBS = ("reach a new high", "win on Sunday", "be re-elected", "top the charts", "rain in Lisbon", "ship on time")


class SimulationError(RuntimeError):
    pass


@dataclasses.dataclass(slots=True)
class Stats:
    sent: int = 0
    succeeded: int = 0
    reverted: int = 0
    rounds: int = 0
    by_action: dict[str, int] = dataclasses.field(default_factory=dict)


class Rpc:
    """Minimal JSON-RPC over one keep-alive HTTP session, with batching."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Content-Type"] = "application/json"
        self._id = 0

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        if not calls:
            return []
        body = []
        for method, params in calls:
            self._id += 1
            body.append({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        resp = self.session.post(self.url, data=json.dumps(body), timeout=60)
        resp.raise_for_status()
        answers = sorted(resp.json(), key=lambda a: a["id"])
        return [a.get("result", a.get("error")) if "error" not in a else {"error": a["error"]} for a in answers]

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        (answer,) = self.batch([(method, params or [])])
        if isinstance(answer, dict) and "error" in answer:
            raise SimulationError(f"{method} failed: {answer['error']}")
        return answer


class Simulator:
    def __init__(self, rpc_url: str, deployment: dict[str, Any], seed: int, wallets: int = 12) -> None:
        self.rpc = Rpc(rpc_url)
        self.rng = random.Random(seed)
        c = deployment["contracts"]
        self.usdc = Web3.to_checksum_address(c["USDC"])
        self.om = Web3.to_checksum_address(c["OpinionMarket"])
        self.cs = Web3.to_checksum_address(c["CreatorShares"])
        self.feed = c.get("MockPriceFeed")
        w3 = Web3()
        self.c_usdc = w3.eth.contract(abi=load_abi("MockUSDC"))
        self.c_om = w3.eth.contract(abi=load_abi("OpinionMarket"))
        self.c_cs = w3.eth.contract(abi=load_abi("CreatorShares"))
        accounts = self.rpc.call("eth_accounts")
        if len(accounts) < 3:
            raise SimulationError("the node exposes fewer than 3 unlocked accounts: the simulator needs anvil")
        self.admin = Web3.to_checksum_address(accounts[ADMIN])
        self.resolver = Web3.to_checksum_address(accounts[KEEPER])
        self.wallets = [Web3.to_checksum_address(a) for a in accounts[2 : 2 + wallets]]
        self.markets: dict[int, int] = {}  # market id -> end time
        self.resolved: set[int] = set()  # finalized by this simulator (stand-in operator)
        self.proposed: dict[int, int] = {}  # proposed by this simulator -> earliest finalize time
        self.creators: list[str] = []  # wallets that bought their own first share
        self.stats = Stats()

    # ------------------------------------------------------------ helpers

    def _tx(self, sender: str, to: str, data: str) -> tuple[str, list[Any]]:
        return ("eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": hex(GAS)}])

    def _enc(self, contract: Any, fn: str, *args: Any) -> str:
        return str(contract.encode_abi(fn, args=list(args)))

    def chain_time(self) -> int:
        return int(self.rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)

    def _eth_call(self, calls: list[tuple[str, str]]) -> list[bytes]:
        answers = self.rpc.batch([("eth_call", [{"to": to, "data": data}, "latest"]) for to, data in calls])
        return [bytes.fromhex(a[2:]) if isinstance(a, str) else b"" for a in answers]

    def _send_and_wait(self, txs: list[tuple[str, tuple[str, list[Any]]]]) -> None:
        if not txs:
            return
        # Explicit nonces, and a sender's k-th transaction goes out in the k-th batch: anvil may serve
        # a batch concurrently, and in automine mode a transaction that arrives before its
        # predecessor waits for a block that nothing else would trigger.
        senders = sorted({t[1][0]["from"] for _, t in txs})
        counts = self.rpc.batch([("eth_getTransactionCount", [a, "pending"]) for a in senders])
        nonces = {a: int(n, 16) for a, n in zip(senders, counts, strict=True)}
        waves: list[list[tuple[str, tuple[str, list[Any]]]]] = []
        per_sender: dict[str, int] = {}
        for action, (method, params) in txs:
            sender = params[0]["from"]
            params[0]["nonce"] = hex(nonces[sender])
            nonces[sender] += 1
            k = per_sender[sender] = per_sender.get(sender, -1) + 1
            if k == len(waves):
                waves.append([])
            waves[k].append((action, (method, params)))
        pending = []
        for wave in waves:
            hashes = self.rpc.batch([t for _, t in wave])
            for (action, _), h in zip(wave, hashes, strict=True):
                if isinstance(h, dict):
                    raise SimulationError(f"node refused a {action} transaction: {h['error']}")
                pending.append((action, h))
        self.stats.sent += len(pending)
        deadline = time.monotonic() + 120
        while pending:
            receipts = self.rpc.batch([("eth_getTransactionReceipt", [h]) for _, h in pending])
            still = []
            for (action, h), r in zip(pending, receipts, strict=True):
                if not r or (isinstance(r, dict) and "error" in r):
                    still.append((action, h))
                    continue
                if int(r["status"], 16) == 1:
                    self.stats.succeeded += 1
                    self.stats.by_action[action] = self.stats.by_action.get(action, 0) + 1
                    if action == "create_market":
                        self._record_market(r)
                else:
                    self.stats.reverted += 1
            pending = still
            if pending:
                if time.monotonic() > deadline:
                    raise SimulationError(f"{len(pending)} transactions not mined after 120 s")
                time.sleep(0.05)

    def _record_market(self, receipt: dict[str, Any]) -> None:
        topic = "0x" + Web3.keccak(
            text="MarketCreated(uint256,address,string,string,uint256,uint256,uint256,uint256)"
        ).hex().removeprefix("0x")
        for lg in receipt["logs"]:
            if lg["topics"][0] == topic:
                market_id = int(lg["topics"][1], 16)
                end_time = int(lg["data"][2 + 64 * 2 : 2 + 64 * 3], 16)
                self.markets[market_id] = end_time

    # ------------------------------------------------------------ setup

    def fund(self) -> None:
        """Mints USDC to every wallet and approves both contracts (idempotent)."""
        txs = []
        for w in self.wallets:
            txs.append(("mint", self._tx(w, self.usdc, self._enc(self.c_usdc, "mint", w, 10_000_000 * USDC))))
            txs.append(("approve", self._tx(w, self.usdc, self._enc(self.c_usdc, "approve", self.om, 2**256 - 1))))
            txs.append(("approve", self._tx(w, self.usdc, self._enc(self.c_usdc, "approve", self.cs, 2**256 - 1))))
        self._send_and_wait(txs)
        self.stats = Stats()
        self._load_existing_markets()

    def _load_existing_markets(self) -> None:
        """On a resumed chain, learn the markets that already exist (their end times) from the contract."""
        (raw,) = self._eth_call([(self.om, self._enc(self.c_om, "marketCount"))])
        count = int.from_bytes(raw, "big") if raw else 0
        if count == 0:
            return
        answers = self._eth_call([(self.om, self._enc(self.c_om, "getMarket", i)) for i in range(1, count + 1)])
        for i, raw_m in enumerate(answers, start=1):
            if raw_m:
                self.markets[i] = int.from_bytes(raw_m[32:64], "big")

    # ------------------------------------------------------------ actions

    def _pick_action(self, wallet: str, now: int) -> tuple[str, tuple[str, list[Any]]] | None:
        rng = self.rng
        open_markets = [m for m, end in self.markets.items() if end > now + 2]
        ended = [m for m, end in self.markets.items() if end <= now]
        roll = rng.random()
        if not open_markets or roll < 0.06:
            end = now + rng.choice((20, 45, 90, 180, 600, 3600))
            q = f"Will {rng.choice(SUBJECTS)} {rng.choice(VERBS)} by block time {end}?"
            liq = rng.choice((10, 50, 100, 500)) * USDC
            if rng.random() < 0.3:  # opened at odds: part of one side goes to the creator's position
                odds = rng.choice((1_000, 2_500, 7_500, 9_000))
                data = self._enc(
                    self.c_om, "createMarketWithOdds", q, rng.choice(CATEGORIES), end, liq, odds, now + 3600
                )
                return "create_market", self._tx(wallet, self.om, data)
            return "create_market", self._tx(
                wallet, self.om, self._enc(self.c_om, "createMarket", q, rng.choice(CATEGORIES), end, liq)
            )
        deadline = now + 3600
        if roll < 0.50:
            m = rng.choice(open_markets)
            amount = rng.randint(1, 200) * USDC + rng.randint(0, USDC - 1)
            return "buy", self._tx(
                wallet, self.om, self._enc(self.c_om, "buy", m, rng.randint(0, 1), amount, 0, deadline)
            )
        if roll < 0.62:
            m = rng.choice(open_markets)
            (raw,) = self._eth_call([(self.om, self._enc(self.c_om, "positionOf", m, wallet))])
            yes, no = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big")
            outcome = 1 if yes >= no else 0
            held = max(yes, no)
            if held == 0:
                return None
            sell = max(1, held * rng.randint(10, 100) // 100)
            return "sell", self._tx(wallet, self.om, self._enc(self.c_om, "sell", m, outcome, sell, 0, deadline))
        if roll < 0.66 and ended:
            # Mostly resolved markets; an unresolved one reverts with MarketNotResolved.
            pool = sorted(self.resolved) if self.resolved and rng.random() < 0.8 else ended
            return "claim_winnings", self._tx(wallet, self.om, self._enc(self.c_om, "claimWinnings", rng.choice(pool)))
        if roll < 0.80:
            if wallet not in self.creators and (not self.creators or rng.random() < 0.3):
                self.creators.append(wallet)
                return "buy_shares", self._tx(
                    wallet, self.cs, self._enc(self.c_cs, "buyShares", wallet, 1, 2**255, deadline)
                )
            creator = rng.choice(self.creators) if self.creators else wallet
            n = rng.randint(1, 3)
            return "buy_shares", self._tx(
                wallet, self.cs, self._enc(self.c_cs, "buyShares", creator, n, 2**255, deadline)
            )
        if roll < 0.88 and self.creators:
            # Often locked (lock period) or last share: these revert on chain, on purpose.
            creator = rng.choice(self.creators)
            return "sell_shares", self._tx(wallet, self.cs, self._enc(self.c_cs, "sellShares", creator, 1, 0, deadline))
        if roll < 0.92 and self.creators:
            return "claim_dividends", self._tx(
                wallet, self.cs, self._enc(self.c_cs, "claimDividends", rng.choice(self.creators))
            )
        if roll < 0.95 and ended:
            # A trade on an ended market: reverts with MarketClosed.
            return "buy", self._tx(
                wallet, self.om, self._enc(self.c_om, "buy", rng.choice(ended), 1, USDC, 0, deadline)
            )
        if self.feed and roll < 0.97:
            feed = Web3.to_checksum_address(self.feed)
            answer = (3_000 + rng.randint(-500, 500)) * 10**8
            c_feed = Web3().eth.contract(abi=load_abi("MockPriceFeed"))
            return "price_update", self._tx(self.admin, feed, self._enc(c_feed, "updateAnswer", answer))
        m = rng.choice(open_markets)
        return "buy", self._tx(
            wallet, self.om, self._enc(self.c_om, "buy", m, rng.randint(0, 1), 5 * USDC, 0, deadline)
        )

    def resolve_ended(self, now: int) -> None:
        """Stand-in operator for runs without a keeper: proposes a seeded outcome for ended markets and
        finalizes each proposal once its challenge window has passed."""
        (raw,) = self._eth_call([(self.om, self._enc(self.c_om, "challengeWindow"))])
        window = int.from_bytes(raw, "big") if raw else 0
        txs = []
        for m, end in sorted(self.markets.items()):
            if m in self.resolved:
                continue
            if m in self.proposed:
                if now >= self.proposed[m]:
                    self.resolved.add(m)
                    txs.append(
                        ("finalize", self._tx(self.resolver, self.om, self._enc(self.c_om, "finalizeOutcome", m)))
                    )
            elif end <= now:
                self.proposed[m] = now + window + 1
                outcome = self.rng.choice((0, 1, 1, 2)) if self.rng.random() < 0.2 else self.rng.randint(0, 1)
                data = self._enc(self.c_om, "proposeOutcome", m, outcome)
                txs.append(("propose", self._tx(self.resolver, self.om, data)))
        self._send_and_wait(txs)

    def round(self) -> None:
        now = self.chain_time()
        txs = []
        for w in self.wallets:
            picked = self._pick_action(w, now)
            if picked is not None:
                txs.append(picked)
        self._send_and_wait(txs)
        self.stats.rounds += 1


def simulate(
    rpc_url: str,
    deployment: dict[str, Any],
    seed: int = 1,
    max_events: int | None = None,
    rate: float | None = None,
    wallets: int = 12,
    resolve: bool = False,
    stop: threading.Event | None = None,
    on_round: Callable[[Stats], None] | None = None,
) -> Stats:
    """Runs rounds until `max_events` successful transactions (or `stop` is set).

    rate: target successful transactions per second (None = as fast as the node allows).
    resolve: also resolve ended markets as the resolver account (when no keeper runs).
    """
    sim = Simulator(rpc_url, deployment, seed, wallets)
    sim.fund()
    started = time.monotonic()
    while (max_events is None or sim.stats.succeeded < max_events) and not (stop and stop.is_set()):
        sim.round()
        if resolve and sim.stats.rounds % 5 == 0:
            sim.resolve_ended(sim.chain_time())
        if on_round:
            on_round(sim.stats)
        if rate:
            ahead = sim.stats.succeeded / rate - (time.monotonic() - started)
            if ahead > 0:
                (stop.wait(ahead) if stop else time.sleep(ahead))
    return sim.stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/local.toml")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--events",
        type=whole_number(1, 10**9, "--events 500"),
        default=None,
        help="stop after N successful transactions",
    )
    parser.add_argument(
        "--rate", type=number(0.01, 10_000, "transactions a second", "--rate 5"), default=None, help="target rate"
    )
    parser.add_argument("--wallets", type=whole_number(1, 1_000, "--wallets 12"), default=12)
    parser.add_argument(
        "--resolve", action="store_true", help="propose and finalize outcomes of ended markets (no keeper running)"
    )
    args = parser.parse_args()
    configure_logging()
    try:  # a bad config or deployment file: one line naming the key, exit 2 (never a traceback)
        config = load_config(args.config)
        chain = section(config, "chain", ChainSettings)
        load_chain_deployment(chain)  # checked: exists, is a deployment record of chain.chain_id
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    deployment = json.loads(deployment_path(chain).read_text())

    def report(stats: Stats) -> None:
        if stats.rounds % 10 == 0:
            log.info("simulation_progress", rounds=stats.rounds, succeeded=stats.succeeded, reverted=stats.reverted)

    # Ctrl-C or SIGTERM (make stop) ends the run after the current round, without a traceback.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stats = simulate(
            chain.rpc_urls[0],
            deployment,
            args.seed,
            args.events,
            args.rate,
            args.wallets,
            args.resolve,
            stop=stop,
            on_round=report,
        )
    except requests.RequestException as exc:
        if stop.is_set():  # Ctrl-C reaches the local chain too: it may be gone before our last round ends
            log.info("simulation_stopped", note="the node went away while stopping", error=str(exc)[:200])
            return 0
        log.error(
            "node_unreachable",
            url=chain.rpc_urls[0],
            error=str(exc)[:200],
            hint="is the chain running? `make run` starts it (or scripts/services.sh start anvil)",
        )
        return 1
    log.info("simulation_finished", **dataclasses.asdict(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
