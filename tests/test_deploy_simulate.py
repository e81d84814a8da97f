"""Deployment and the wallet-traffic simulator against a real anvil."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from core.contracts import abi_hash, load_abi, load_artifact
from core.deploy import DeployError, DeployParams, anvil_account, deploy, plan, verify, write_deployment
from scripts.simulate import simulate
from tests.chain import Anvil

pytestmark = pytest.mark.anvil


def test_deploy_grants_roles_and_records_everything(w3: Web3, deployment: dict[str, Any], tmp_path: Path) -> None:
    """The deployment file names every contract, the deploy block and ABI hashes; roles are granted."""
    path = write_deployment(deployment, tmp_path)
    record = json.loads(path.read_text())
    assert path.name == "31337.json"
    assert set(record["contracts"]) == {"USDC", "MockPriceFeed", "OpinionMarket", "CreatorShares"}
    assert record["abi_hashes"]["OpinionMarket"] == abi_hash("OpinionMarket")
    assert record["deploy_block"] >= 1
    om = w3.eth.contract(address=record["contracts"]["OpinionMarket"], abi=load_abi("OpinionMarket"))
    cs = w3.eth.contract(address=record["contracts"]["CreatorShares"], abi=load_abi("CreatorShares"))
    keeper = anvil_account(1).address
    assert om.functions.hasRole(Web3.keccak(text="RESOLVER_ROLE"), keeper).call()
    assert om.functions.creatorShares().call() == cs.address  # the only destination of creator fees
    functions = {f["name"] for f in load_abi("CreatorShares") if f["type"] == "function"}
    assert "distributeDividends" in functions
    assert "KEEPER_ROLE" not in functions  # anyone folds (review s19 h5)
    assert not om.functions.hasRole(Web3.keccak(text="RESOLVER_ROLE"), anvil_account(2).address).call()


def test_plan_refuses_mock_usdc_off_local_chains() -> None:
    """On a non-local chain id the deployer must name the real USDC: no mock money elsewhere."""
    node = Anvil(chain_id=8453)
    try:
        w3 = Web3(Web3.HTTPProvider(node.url))
        with pytest.raises(Exception, match="not local"):
            plan(w3, anvil_account(0).address, anvil_account(1).address, DeployParams())
    finally:
        node.stop()


def _mock_usdc(w3: Web3) -> str:
    """A MockUSDC (6 decimals) deployed from anvil's first account: a collateral the plan accepts."""
    art = load_artifact("MockUSDC")
    tx = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"]).constructor().transact({"from": w3.eth.accounts[0]})
    return str(w3.eth.wait_for_transaction_receipt(tx)["contractAddress"])


def test_plan_refuses_a_short_challenge_window_off_local_chains() -> None:
    """A one-minute challenge window (the local stack's) on a public chain would leave the arbiter no
    time to dispute: the deployer refuses it, naming the key; an hour is accepted."""
    node = Anvil(chain_id=8453)
    try:
        w3 = Web3(Web3.HTTPProvider(node.url))
        usdc = _mock_usdc(w3)
        with pytest.raises(DeployError, match=r"deploy\.challenge_window_s is 60 s, at least 3600 s"):
            plan(w3, anvil_account(0).address, anvil_account(1).address, DeployParams(usdc=usdc))
        steps = plan(
            w3, anvil_account(0).address, anvil_account(1).address, DeployParams(usdc=usdc, challenge_window=3_600)
        )
        assert "deploy OpinionMarket" in [s["purpose"] for s in steps]
    finally:
        node.stop()


def test_plan_refuses_a_collateral_that_is_not_a_6_decimal_token(w3: Web3, deployment: dict[str, Any]) -> None:
    """Review s13 S13-2: the contracts' accumulators are sized for USDC's 6 decimals (an 18-decimal
    token overflows a creator's dividend accumulator at realistic volume); nothing checked it."""
    deployer, keeper = anvil_account(0).address, anvil_account(1).address
    feed = deployment["contracts"]["MockPriceFeed"]  # answers decimals() = 8
    with pytest.raises(DeployError, match=r"decimals\(\) = 8, the contracts need USDC's 6"):
        plan(w3, deployer, keeper, DeployParams(usdc=feed))
    with pytest.raises(DeployError, match="no contract at this address"):
        plan(w3, deployer, keeper, DeployParams(usdc="0x" + "11" * 20))
    om = deployment["contracts"]["OpinionMarket"]  # code, but no decimals()
    with pytest.raises(DeployError, match=r"decimals\(\) failed"):
        plan(w3, deployer, keeper, DeployParams(usdc=om))
    assert plan(w3, deployer, keeper, DeployParams(usdc=deployment["contracts"]["USDC"]))


def test_a_deployment_not_wired_as_planned_is_refused(w3: Web3, deployment: dict[str, Any]) -> None:
    """Review s13 S13-1: deploy() read the deployer's nonce twice and its only wiring check compared
    two values built the same way, so a transaction of the deployer's in between wrote a record naming
    an address without code. Now what was made is read back before the record is written."""
    record = {**deployment, "contracts": dict(deployment["contracts"])}
    verify(w3, record)  # the real deployment passes
    record["contracts"]["CreatorShares"] = "0x" + "22" * 20
    with pytest.raises(DeployError, match="CreatorShares: no code at"):
        verify(w3, record)
    c = deployment["contracts"]
    swapped = {**deployment, "contracts": {**c, "CreatorShares": c["USDC"], "USDC": c["CreatorShares"]}}
    with pytest.raises(DeployError) as refused:
        verify(w3, swapped)
    assert "OpinionMarket.creatorShares() is not CreatorShares" in str(refused.value)
    other_keeper = {**deployment, "keeper": anvil_account(5).address}
    with pytest.raises(DeployError, match="the keeper lacks RESOLVER_ROLE"):
        verify(w3, other_keeper)


def test_plan_refuses_a_keeper_that_is_the_deployer(w3: Web3) -> None:
    """The deployer is granted ARBITER_ROLE and the keeper RESOLVER_ROLE; OpinionMarket lets no account hold
    both, so the plan refuses one address for both before anything is sent."""
    deployer = anvil_account(0).address
    with pytest.raises(DeployError, match="RESOLVER_ROLE and ARBITER_ROLE"):
        plan(w3, deployer, deployer.lower(), DeployParams())


def test_simulator_trades_directly_and_emits_events(chain: Anvil, w3: Web3, deployment: dict[str, Any]) -> None:
    """A seeded run produces successful trades of several kinds, some on-chain reverts, and logs."""
    start = w3.eth.block_number
    stats = simulate(chain.url, deployment, seed=7, max_events=150, wallets=8, resolve=True)
    assert stats.succeeded >= 150
    assert {"create_market", "buy", "buy_shares"} <= set(stats.by_action)
    logs = w3.eth.get_logs(
        {
            "fromBlock": start,
            "toBlock": "latest",
            "address": [deployment["contracts"]["OpinionMarket"], deployment["contracts"]["CreatorShares"]],
        }
    )
    assert len(logs) >= stats.succeeded - stats.by_action.get("price_update", 0) - 8 * 3


def test_deploy_twice_gives_independent_contracts(chain: Anvil, w3: Web3, deployment: dict[str, Any]) -> None:
    """A second deployment on the same chain gets fresh addresses (nonces move on)."""
    again = deploy(w3, anvil_account(0), anvil_account(1).address)
    assert again["contracts"]["OpinionMarket"] != deployment["contracts"]["OpinionMarket"]
