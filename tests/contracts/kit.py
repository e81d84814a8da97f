"""Helpers for the contract tests: the deployment as web3 contracts, time control, and revert
assertions that decode the custom-error selector (fixtures are in conftest.py).

Transactions come from anvil's unlocked accounts (eth_sendTransaction); nothing is signed here.
Error selectors are computed from the ABIs (keccak of the error signature), never pasted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from eth_abi import decode
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from core.contracts import load_abi
from tests.chain import Anvil

USDC = 10**6
MAX_UINT = 2**256 - 1
FUND = 1_000_000 * USDC
DAY = 86_400


def error_selector(contract: str, name: str) -> str:
    """0x-prefixed 4-byte selector of custom error `name`, from the contract's ABI."""
    (entry,) = [e for e in load_abi(contract) if e["type"] == "error" and e["name"] == name]
    signature = f"{name}({','.join(i['type'] for i in entry['inputs'])})"
    return "0x" + keccak(text=signature)[:4].hex()


def error_args(contract: str, name: str, data: str) -> tuple[Any, ...]:
    (entry,) = [e for e in load_abi(contract) if e["type"] == "error" and e["name"] == name]
    types = [i["type"] for i in entry["inputs"]]
    values = decode(types, bytes.fromhex(data[10:]))
    return tuple(Web3.to_checksum_address(v) if t == "address" else v for t, v in zip(types, values, strict=True))


@dataclasses.dataclass(frozen=True, slots=True)
class Env:
    """The deployed contracts and the actors of one test."""

    w3: Web3
    node: Anvil
    om: Contract
    cs: Contract
    usdc: Contract
    admin: str
    keeper: str
    traders: tuple[str, ...]  # funded and approved for both contracts
    outsider: str  # holds no USDC and approved nothing

    # ------------------------------------------------------------ transactions

    def send(self, fn: Any, sender: str) -> Any:
        """Sends `fn` from `sender` (fixed gas, no estimate); asserts it succeeded; returns the receipt."""
        tx_hash = fn.transact({"from": sender, "gas": 6_000_000})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1, f"{getattr(fn, 'fn_name', fn)} reverted"
        return receipt

    def send_returning(self, fn: Any, sender: str) -> tuple[Any, Any]:
        """Sends `fn` like `send`; returns (the mined call's return value, read from its trace, receipt)."""
        receipt = self.send(fn, sender)
        output = self.trace(receipt["transactionHash"])["output"]
        types = [o["type"] for o in fn.abi["outputs"]]
        values = decode(types, bytes.fromhex(output[2:]))
        return (values[0] if len(values) == 1 else values), receipt

    def trace(self, tx_hash: bytes) -> dict[str, Any]:
        trace: dict[str, Any] = self.node.call(
            "debug_traceTransaction", "0x" + bytes(tx_hash).hex(), {"tracer": "callTracer"}
        )
        return trace

    def reverts(self, fn: Any, sender: str, contract: str, error: str) -> tuple[Any, ...]:
        """Asserts that `fn` sent from `sender` is mined and reverts with custom error `error`;
        returns the error's decoded arguments.

        The transaction is mined for real (fixed gas, no estimate, so the block's timestamp is the
        one that counts) and the revert data is read back from the node's call trace."""
        tx = fn.build_transaction({"from": sender, "gas": 6_000_000})
        tx_hash = self.w3.eth.send_transaction(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 0, f"{getattr(fn, 'fn_name', fn)} succeeded, expected {error}"
        data = self.trace(tx_hash).get("output", "0x")
        assert data[:10] == error_selector(contract, error), f"expected {error}, got revert data {data}"
        return error_args(contract, error, data)

    def events(self, receipt: Any, contract: Contract, name: str) -> list[dict[str, Any]]:
        return [dict(e["args"]) for e in contract.events[name]().process_receipt(receipt, errors=DISCARD)]

    def event(self, receipt: Any, contract: Contract, name: str) -> dict[str, Any]:
        (only,) = self.events(receipt, contract, name)
        return only

    # ------------------------------------------------------------ chain state

    def balance(self, who: str) -> int:
        return int(self.usdc.functions.balanceOf(who).call())

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def next_block_at(self, timestamp: int) -> None:
        """The next mined block (and gas estimates for it) gets exactly `timestamp`."""
        self.node.call("evm_setNextBlockTimestamp", timestamp)

    def warp(self, seconds: int) -> None:
        self.node.call("evm_increaseTime", seconds)
        self.node.mine()

    def next_day(self, at: int = 0) -> int:
        """The timestamp `at` seconds after the next 00:00 UTC (dividend days start at 00:00)."""
        return (self.now() // DAY + 1) * DAY + at

    def deadline(self) -> int:
        return self.now() + 30 * DAY

    # ------------------------------------------------------------ common setups

    def create_market(self, creator: str, liquidity: int = 100 * USDC, duration: int = DAY) -> tuple[int, int]:
        """Opens a market; returns (market_id, end_time)."""
        end = self.now() + duration
        fn = self.om.functions.createMarket("Will it rain tomorrow?", "weather", end, liquidity)
        market_id, _ = self.send_returning(fn, creator)
        return int(market_id), end

    def buy(self, trader: str, market_id: int, outcome: int, amount: int) -> int:
        fn = self.om.functions.buy(market_id, outcome, amount, 0, self.deadline())
        shares, _ = self.send_returning(fn, trader)
        return int(shares)

    def resolve(self, market_id: int, outcome: int, end: int) -> None:
        """Proposes `outcome` as the keeper (from `end`), then finalizes it when the challenge window ends."""
        if self.now() < end:
            self.next_block_at(end)
        receipt = self.send(self.om.functions.proposeOutcome(market_id, outcome), self.keeper)
        (proposal,) = self.events(receipt, self.om, "OutcomeProposed")
        self.next_block_at(int(proposal["challengeEnds"]))
        self.send(self.om.functions.finalizeOutcome(market_id), self.outsider)

    def buy_shares(self, trader: str, creator: str, amount: int) -> int:
        fn = self.cs.functions.buyShares(creator, amount, MAX_UINT, self.deadline())
        cost, _ = self.send_returning(fn, trader)
        return int(cost)


def contracts_for(w3: Web3, record: dict[str, Any]) -> tuple[Contract, Contract, Contract]:
    c = record["contracts"]
    om = w3.eth.contract(address=Web3.to_checksum_address(c["OpinionMarket"]), abi=load_abi("OpinionMarket"))
    cs = w3.eth.contract(address=Web3.to_checksum_address(c["CreatorShares"]), abi=load_abi("CreatorShares"))
    usdc = w3.eth.contract(address=Web3.to_checksum_address(c["USDC"]), abi=load_abi("MockUSDC"))
    return om, cs, usdc
