"""A chain with many real, consistent OpinionMarket/CreatorShares events, fast (benchmarks, tests).

Real transactions run at a few hundred events/s on anvil, far too slow for a million events. So
the deployed contract addresses get the LogReplayer bytecode (bench/LogReplayer.sol, compiled by
`node bench/compile_replayer.js`) with anvil_setCode, and each transaction replays ~100 encoded
logs: the logs come from the real addresses with the real topics and ABI layout, and a small
Python model keeps their post-state consistent (positions never negative, supplies and holdings
add up, accumulators only grow), so the indexer's fold sees what the contracts would emit.

    from bench.indexer_chain import build_chain
    stats = build_chain(rpc_url, deployment, events=1_000_000, per_block=200, seed=1)
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from eth_abi import encode as abi_encode  # type: ignore[attr-defined]

from core.contracts import event_topic, load_abi

HERE = Path(__file__).resolve().parent
USDC = 10**6
ACC = 10**18


def _t(contract: str, name: str) -> bytes:
    return event_topic(next(e for e in load_abi(contract) if e["type"] == "event" and e["name"] == name))


T_CREATED = _t("OpinionMarket", "MarketCreated")
T_TRADE = _t("OpinionMarket", "Trade")
T_RESOLVED = _t("OpinionMarket", "MarketResolved")
T_WINNINGS = _t("OpinionMarket", "WinningsClaimed")
T_SHARES = _t("CreatorShares", "SharesTraded")
T_DISTRIBUTED = _t("CreatorShares", "DividendsDistributed")
T_CLAIMED = _t("CreatorShares", "DividendsClaimed")


def word(v: int | bool) -> bytes:
    return int(v).to_bytes(32, "big")


def addr_word(a: bytes) -> bytes:
    return b"\x00" * 12 + a


def record(topics: list[bytes], data: bytes) -> bytes:
    return word((len(topics) << 32) | len(data)) + b"".join(topics) + data


@dataclasses.dataclass(slots=True)
class Model:
    """Just enough state for consistent post-state fields."""

    rng: random.Random
    traders: list[bytes]
    creators: list[bytes]
    now: int = 1_900_000_000
    markets: dict[int, list[Any]] = dataclasses.field(default_factory=dict)  # id → [yes, no, creator, resolved]
    positions: dict[tuple[int, bytes], list[int]] = dataclasses.field(default_factory=dict)
    supply: dict[bytes, int] = dataclasses.field(default_factory=dict)
    holdings: dict[tuple[bytes, bytes], int] = dataclasses.field(default_factory=dict)
    acc: dict[bytes, int] = dataclasses.field(default_factory=dict)
    pool: dict[bytes, int] = dataclasses.field(default_factory=dict)

    def market_created(self, question: str = "", category: str = "bench") -> tuple[int, bytes]:
        mid = len(self.markets) + 1
        creator = self.rng.choice(self.creators)
        liq = self.rng.randint(10, 1000) * USDC
        self.markets[mid] = [liq, liq, creator, False]
        q = question or f"Will benchmark market {mid} resolve YES?"
        data = abi_encode(
            ["string", "string", "uint256", "uint256", "uint256", "uint256"],
            [q, category, self.now + 86400 * 30, liq, liq, liq],
        )
        return 0, record([T_CREATED, word(mid), addr_word(creator)], data)

    def trade(self) -> tuple[int, bytes]:
        rng = self.rng
        mid = rng.randint(1, len(self.markets))
        m = self.markets[mid]
        trader = rng.choice(self.traders)
        pos = self.positions.setdefault((mid, trader), [0, 0])
        outcome = rng.randint(0, 1)
        held = pos[1] if outcome == 1 else pos[0]
        is_buy = held == 0 or rng.random() < 0.7
        if is_buy:
            collateral = rng.randint(1, 500) * USDC
            fee = collateral * 2 // 100
            shares = (collateral - fee) * rng.randint(120, 190) // 100
            if outcome == 1:
                pos[1] += shares
                m[1] += collateral - fee
                m[0] = max(1, m[0] + collateral - fee - shares)
            else:
                pos[0] += shares
                m[0] += collateral - fee
                m[1] = max(1, m[1] + collateral - fee - shares)
        else:
            shares = rng.randint(1, held)
            gross = shares * rng.randint(30, 90) // 100
            fee = (gross * 2 + 99) // 100
            collateral = gross - fee
            if outcome == 1:
                pos[1] -= shares
            else:
                pos[0] -= shares
            m[0] = max(1, m[0] + (shares if outcome == 1 else 0) - gross)
            m[1] = max(1, m[1] + (shares if outcome == 0 else 0) - gross)
        data = b"".join(
            (
                word(is_buy),
                word(outcome),
                word(collateral),
                word(shares),
                word(fee),
                word(fee // 2),
                word(m[0]),
                word(m[1]),
                word(pos[1]),
                word(pos[0]),
            )
        )
        return 0, record([T_TRADE, word(mid), addr_word(trader)], data)

    def shares_traded(self) -> tuple[int, bytes]:
        rng = self.rng
        creator = rng.choice(self.creators)
        supply = self.supply.get(creator, 0)
        trader = creator if supply == 0 else rng.choice(self.traders)
        held = self.holdings.get((creator, trader), 0)
        is_buy = supply == 0 or held == 0 or rng.random() < 0.65 or (held >= supply - 1 and rng.random() < 0.5)
        if not is_buy and held >= supply:
            is_buy = True
        amount = rng.randint(1, 3) if is_buy else rng.randint(1, max(1, min(held, supply - 1)))
        price = amount * (supply + 1) ** 2 * 62_500
        pf, cf, df = price * 2 // 100, price * 3 // 100, price * 5 // 100
        supply = supply + amount if is_buy else supply - amount
        held = held + amount if is_buy else held - amount
        self.supply[creator] = supply
        self.holdings[(creator, trader)] = held
        self.pool[creator] = self.pool.get(creator, 0) + df
        acc = self.acc.get(creator, 0)
        data = b"".join(
            (
                word(is_buy),
                word(amount),
                word(price),
                word(pf),
                word(cf),
                word(df),
                word(supply),
                word(held),
                word(0),
                word(self.now + 3600),
                word(self.pool[creator]),
                word(acc),
                word(0),  # distributed: the synthetic chain folds only at distributions
                # the warm-up's lots: none pending here (every share earns, as once its lots matured), so the
                # post-state stays consistent without a clock of midnights
                word(0),  # traderPendingOld
                word(0),  # traderPendingNew
                word(0),  # traderEarnsFrom
                word(0),  # pendingSupply
            )
        )
        return 1, record([T_SHARES, addr_word(creator), addr_word(trader)], data)

    def distribute(self) -> tuple[int, bytes] | None:
        candidates = [c for c in self.creators if self.supply.get(c, 0) > 0 and self.pool.get(c, 0) > 0]
        if not candidates:
            return None
        creator = self.rng.choice(candidates)
        supply, pool = self.supply[creator], self.pool[creator]
        delta = pool * ACC // supply
        amount = delta * supply // ACC
        self.acc[creator] = self.acc.get(creator, 0) + delta
        self.pool[creator] = pool - amount
        # amount, marketFees, supply, accPerShare, pool, earningSupply (= supply: nothing pending), pendingSupply
        fields = (amount, 0, supply, self.acc[creator], self.pool[creator], supply, 0)
        data = b"".join(word(v) for v in fields)
        return 1, record([T_DISTRIBUTED, addr_word(creator)], data)

    def resolve(self, mid: int) -> tuple[int, bytes]:
        self.markets[mid][3] = True
        return 0, record([T_RESOLVED, word(mid), addr_word(self.creators[0])], word(self.rng.randint(0, 2)))


def plan_events(
    n: int, seed: int = 1, markets: int = 200, traders: int = 2_000, creators: int = 50
) -> Iterator[tuple[int, bytes]]:
    """n encoded logs as (contract index 0 = OpinionMarket / 1 = CreatorShares, record)."""
    rng = random.Random(seed)
    model = Model(rng, [rng.randbytes(20) for _ in range(traders)], [rng.randbytes(20) for _ in range(creators)])
    for _ in range(markets):
        yield model.market_created()
    made = markets
    while made < n:
        r = rng.random()
        if r < 0.70:
            yield model.trade()
        elif r < 0.9999:
            yield model.shares_traded()
        else:
            ev = model.distribute()
            if ev is None:
                continue
            yield ev
        made += 1


class Node:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.id = 0

    def call(self, method: str, *params: Any) -> Any:
        self.id += 1
        r = self.session.post(
            self.url, json={"jsonrpc": "2.0", "id": self.id, "method": method, "params": list(params)}, timeout=120
        )
        answer = r.json()
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]


def install_replayer(node: Node, deployment: dict[str, Any]) -> None:
    code = json.loads((HERE / "LogReplayer.json").read_text())["deployedBytecode"]
    for name in ("OpinionMarket", "CreatorShares"):
        node.call("anvil_setCode", deployment["contracts"][name], code)


def send_records(
    node: Node, deployment: dict[str, Any], per_contract: list[list[bytes]], sender: str, mine: bool = True
) -> None:
    """One transaction per non-empty record list (index 0 → OpinionMarket, 1 → CreatorShares)."""
    for idx, name in enumerate(("OpinionMarket", "CreatorShares")):
        recs = per_contract[idx]
        if recs:
            data = b"".join(recs)
            gas = 100_000 + 16 * len(data) + 12 * 375 * len(recs) + 8 * len(data)
            node.call(
                "eth_sendTransaction",
                {"from": sender, "to": deployment["contracts"][name], "data": "0x" + data.hex(), "gas": hex(gas)},
            )
    if mine:
        node.call("evm_mine")


@dataclasses.dataclass(frozen=True, slots=True)
class ChainStats:
    events: int
    blocks: int
    first_block: int
    last_block: int
    seconds: float


def build_chain(
    url: str, deployment: dict[str, Any], events_total: int, per_block: int = 200, seed: int = 1, empty_every: int = 0
) -> ChainStats:
    """Replays `events_total` consistent events, `per_block` per block (automine off meanwhile)."""
    node = Node(url)
    install_replayer(node, deployment)
    sender = node.call("eth_accounts")[0]
    node.call("evm_setAutomine", False)
    started = time.perf_counter()
    first = int(node.call("eth_blockNumber"), 16) + 1
    blocks = 0
    batch: list[list[bytes]] = [[], []]
    count = 0
    try:
        for idx, rec in plan_events(events_total, seed):
            batch[idx].append(rec)
            count += 1
            if count % per_block == 0:
                send_records(node, deployment, batch, sender)
                batch = [[], []]
                blocks += 1
                if empty_every and blocks % empty_every == 0:
                    node.call("anvil_mine", hex(10))
        if batch[0] or batch[1]:
            send_records(node, deployment, batch, sender)
            blocks += 1
    finally:
        node.call("evm_setAutomine", True)
    last = int(node.call("eth_blockNumber"), 16)
    return ChainStats(count, blocks, first, last, time.perf_counter() - started)
