"""Deploys USDC (mock on local chains), the price feed mock, OpinionMarket and CreatorShares, and
grants roles. All transactions are signed locally and sent with consecutive nonces before any
receipt is awaited (addresses are known from the nonces), so a deployment takes one block.

Errors: DeployError — a transaction reverted or the node refused it; nothing is written then.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import Nonce
from web3.utils.address import get_create_address

from core.contracts import CONTRACT_NAMES, abi_hash, load_abi, load_artifact

LOCAL_CHAIN_IDS = (31337, 1337)
# Off local chains: the least challenge window the deployer accepts. The contract takes any window
# from 1 s; a window of a minute leaves the arbiter no practical chance to dispute a wrong proposal,
# which makes the resolver's hot key the sole resolver.
MIN_PUBLIC_CHALLENGE_S = 3_600
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


class DeployError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class DeployParams:
    fee_bps: int = 200  # 2 % trading fee on opinion markets
    creator_fee_share_bps: int = 5_000  # half of it to the market creator's dividend pool
    lp_fee_share_bps: int = 2_500  # a quarter of it stays in the pool for the liquidity provider
    curve_unit: int = 62_500  # share i costs i^2 / 16 USDC
    protocol_fee_bps: int = 200
    creator_fee_bps: int = 300
    dividend_fee_bps: int = 500
    lock_period: int = 3_600
    # Seconds between scheduling a transfer of the (single) default admin and accepting it.
    admin_delay: int = 2 * 86_400
    # Seconds a proposed outcome can be disputed by an arbiter before anyone may finalize it (local stack: a minute).
    challenge_window: int = 60
    # Seconds after a market's end from which anyone may resolve an unsettled market INVALID.
    resolution_window: int = 30 * 86_400
    usdc: str | None = None  # an existing USDC; None deploys MockUSDC (local chains only)
    price_feed: str | None = None  # an existing AggregatorV3; None deploys MockPriceFeed on local chains


@dataclasses.dataclass(frozen=True, slots=True)
class DeploySettings:
    """The [deploy] config section: what `python -m scripts.deploy` fixes in the contracts for good."""

    # Seconds an arbiter may dispute a proposed outcome (OpinionMarket.challengeWindow; immutable once deployed).
    challenge_window_s: int = 86_400
    # Seconds after a market's end from which anyone may resolve it INVALID (OpinionMarket.resolutionWindow).
    resolution_window_s: int = 30 * 86_400

    def __post_init__(self) -> None:
        for key in ("challenge_window_s", "resolution_window_s"):
            value = getattr(self, key)
            if not 0 < value <= 2**32 - 1:
                raise ValueError(f"deploy.{key} must be between 1 and 4294967295 seconds, got {value}")


def anvil_account(index: int) -> LocalAccount:
    """The well-known anvil dev accounts (local chains only, never real funds)."""
    Account.enable_unaudited_hdwallet_features()
    acct: LocalAccount = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return acct


def plan(w3: Web3, deployer: str, keeper: str, params: DeployParams, nonce: int | None = None) -> list[dict[str, Any]]:
    """The ordered list of transactions (the collateral token is checked on the node first); each names its purpose.
    `nonce`: the deployer's first nonce (read from the node when None); the plan's addresses follow
    from it, so the transactions must be sent with exactly these nonces (deploy() does)."""
    if Web3.to_checksum_address(keeper) == Web3.to_checksum_address(deployer):
        # OpinionMarket reverts RoleConflict: the deployer is granted ARBITER_ROLE, the keeper RESOLVER_ROLE
        raise DeployError(
            "the keeper must not be the deployer: no account may hold both RESOLVER_ROLE and ARBITER_ROLE"
        )
    chain_id = w3.eth.chain_id
    local = chain_id in LOCAL_CHAIN_IDS
    if params.usdc is None and not local:
        raise DeployError(f"chain {chain_id} is not local: pass the real USDC address (--usdc)")
    if params.challenge_window < MIN_PUBLIC_CHALLENGE_S and not local:
        raise DeployError(
            f"chain {chain_id} is not local: deploy.challenge_window_s is {params.challenge_window} s, at least"
            f" {MIN_PUBLIC_CHALLENGE_S} s is required (86400 recommended) so an arbiter can dispute a wrong"
            " proposal before it is final"
        )
    if params.usdc is not None:
        _check_collateral(w3, params.usdc)
    sender = Web3.to_checksum_address(deployer)
    if nonce is None:
        nonce = int(w3.eth.get_transaction_count(sender, "pending"))
    steps: list[dict[str, Any]] = []

    def create(name: str, *args: Any) -> str:
        art = load_artifact(name)
        contract = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        address = get_create_address(sender, Nonce(nonce + len(steps)))
        data = contract.constructor(*args).data_in_transaction
        steps.append({"purpose": f"deploy {name}", "name": name, "to": None, "data": data, "address": address})
        return str(address)

    def call(purpose: str, name: str, address: str, fn: str, *args: Any) -> None:
        contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_abi(name))
        data = contract.encode_abi(fn, args=list(args))
        steps.append({"purpose": purpose, "name": name, "to": address, "data": data, "address": address})

    usdc = params.usdc or create("MockUSDC")
    feed = params.price_feed or (create("MockPriceFeed", 8, "ETH / USD (mock)", 3_000 * 10**8) if local else None)
    # OpinionMarket pays creators' market fees only to CreatorShares, deployed right after it: its
    # address is known from the next nonce.
    shares_address = get_create_address(sender, Nonce(nonce + len(steps) + 1))
    om = create(
        "OpinionMarket",
        usdc,
        params.fee_bps,
        params.creator_fee_share_bps,
        params.lp_fee_share_bps,
        shares_address,
        deployer,
        params.admin_delay,
        params.challenge_window,
        params.resolution_window,
    )
    cs = create(
        "CreatorShares",
        usdc,
        om,
        params.curve_unit,
        params.protocol_fee_bps,
        params.creator_fee_bps,
        params.dividend_fee_bps,
        params.lock_period,
        deployer,
        params.admin_delay,
    )
    if str(cs) != str(shares_address):
        raise DeployError(f"CreatorShares would deploy at {cs}, OpinionMarket expects {shares_address}")
    # Role ids are keccak256 of their names, as the contracts define them.
    resolver = Web3.keccak(text="RESOLVER_ROLE")
    call("grant RESOLVER_ROLE to keeper", "OpinionMarket", om, "grantRole", resolver, keeper)
    # The arbiter (disputes a proposal, settles a disputed market) is the operator: the deployer. On a public
    # chain grant it to a separate multisig afterwards and revoke it from the deployer (docs/contracts.md, Roles).
    call("grant ARBITER_ROLE to deployer", "OpinionMarket", om, "grantRole", Web3.keccak(text="ARBITER_ROLE"), deployer)
    for s in steps:
        s["addresses"] = {"USDC": usdc, "MockPriceFeed": feed, "OpinionMarket": om, "CreatorShares": cs}
    return steps


def _check_collateral(w3: Web3, usdc: str) -> None:
    """The collateral must be a contract answering decimals() = 6: the contracts' fee, curve and
    dividend arithmetic (uint80/uint112 accumulators) is sized for USDC's 6 decimals; an 18-decimal
    token overflows a creator's dividend accumulator within realistic volume."""
    address = Web3.to_checksum_address(usdc)
    if not w3.eth.get_code(address):
        raise DeployError(f"--usdc {address}: no contract at this address on chain {w3.eth.chain_id}")
    try:
        decimals = int(w3.eth.contract(address=address, abi=load_abi("MockUSDC")).functions.decimals().call())
    except Exception as exc:  # any failure (a revert, no such function): not a token we can use
        raise DeployError(f"--usdc {address}: decimals() failed ({type(exc).__name__}); USDC is required") from None
    if decimals != 6:
        raise DeployError(f"--usdc {address}: decimals() = {decimals}, the contracts need USDC's 6")


def _holds(check: Any) -> bool:
    try:
        return bool(check())
    except Exception:  # a call that reverts (no such function at that address) does not hold either
        return False


def verify(w3: Web3, record: dict[str, Any]) -> None:
    """Reads back what the deployment must have made (code at every address, the two contracts wired
    to each other and to one collateral, the roles granted) and raises DeployError naming each part
    that is not so: the record is written only after this passes."""
    c, keeper, deployer = record["contracts"], record["keeper"], record["deployer"]
    problems = [f"{name}: no code at {addr}" for name, addr in c.items() if addr and not w3.eth.get_code(addr)]
    if not problems:
        om = w3.eth.contract(address=c["OpinionMarket"], abi=load_abi("OpinionMarket"))
        cs = w3.eth.contract(address=c["CreatorShares"], abi=load_abi("CreatorShares"))
        f, g = om.functions, cs.functions
        resolver, arbiter = (Web3.keccak(text=r) for r in ("RESOLVER_ROLE", "ARBITER_ROLE"))
        checks = (
            (
                lambda: f.creatorShares().call() == c["CreatorShares"],
                "OpinionMarket.creatorShares() is not CreatorShares",
            ),
            (
                lambda: g.marketFeeSource().call() == c["OpinionMarket"],
                "CreatorShares.marketFeeSource() is not OpinionMarket",
            ),
            (lambda: f.usdc().call() == c["USDC"] == g.usdc().call(), "the two contracts do not use the recorded USDC"),
            (lambda: f.hasRole(resolver, keeper).call(), "the keeper lacks RESOLVER_ROLE"),
            (lambda: f.hasRole(arbiter, deployer).call(), "the deployer lacks ARBITER_ROLE"),
        )
        problems = [why for check, why in checks if not _holds(check)]
    if problems:
        raise DeployError(
            "the deployment is not wired as planned (" + "; ".join(problems) + "): no record written. Another"
            " transaction from the deployer may have taken a nonce meanwhile; deploy again from an idle account"
        )


def deploy(
    w3: Web3, deployer: LocalAccount, keeper: str, params: DeployParams = DeployParams(), timeout: float = 60
) -> dict[str, Any]:
    """Sends the plan with pipelined nonces, waits for every receipt, checks what it made (verify),
    returns the deployment record."""
    chain_id = w3.eth.chain_id
    nonce = int(w3.eth.get_transaction_count(deployer.address, "pending"))  # read once: the plan's addresses
    steps = plan(w3, deployer.address, keeper, params, nonce)
    block = w3.eth.get_block("latest")
    base_fee = int(block.get("baseFeePerGas", 0) or 0)
    tip = 10**9 if chain_id in LOCAL_CHAIN_IDS else int(w3.eth.max_priority_fee)
    hashes = []
    for i, step in enumerate(steps):
        tx: dict[str, Any] = {
            "chainId": chain_id,
            "nonce": nonce + i,
            "data": step["data"],
            "value": 0,
            "maxFeePerGas": 2 * base_fee + tip,
            "maxPriorityFeePerGas": tip,
        }
        if step["to"] is not None:
            tx["to"] = Web3.to_checksum_address(step["to"])
        # Fixed limits: later steps call contracts that are not mined yet, so they cannot be estimated.
        tx["gas"] = 150_000 if step["to"] else 6_000_000
        signed = deployer.sign_transaction(tx)
        hashes.append(w3.eth.send_raw_transaction(signed.raw_transaction))
    first_block = None
    deadline = time.monotonic() + timeout
    for step, h in zip(steps, hashes, strict=True):
        receipt = w3.eth.wait_for_transaction_receipt(h, timeout=max(1.0, deadline - time.monotonic()))
        if receipt["status"] != 1:
            raise DeployError(f"{step['purpose']} reverted in tx {h.hex()}")
        made = receipt.get("contractAddress")
        if step["to"] is None and made != step["address"]:
            raise DeployError(f"{step['purpose']} created {made}, the plan expected {step['address']}")
        first_block = receipt["blockNumber"] if first_block is None else min(first_block, receipt["blockNumber"])
    addresses = steps[0]["addresses"]
    record = {
        "chain_id": chain_id,
        "deploy_block": first_block,
        "deployer": deployer.address,
        "keeper": Web3.to_checksum_address(keeper),
        "contracts": {k: v for k, v in addresses.items()},
        "params": dataclasses.asdict(params),
        "abi_hashes": {n: abi_hash(n) for n in CONTRACT_NAMES},
    }
    verify(w3, record)
    return record


def write_deployment(record: dict[str, Any], directory: str | Path = "deployments") -> Path:
    path = Path(directory) / f"{record['chain_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)
    return path
