"""MockUSDC and MockPriceFeed: minting only on local chain ids, and Chainlink-style round history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from web3 import Web3

from core.contracts import load_artifact
from tests.chain import Anvil
from tests.contracts.kit import USDC, Env, contracts_for, error_selector

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def base_chain() -> Iterator[Anvil]:
    """A separate anvil that reports chain id 8453 (Base mainnet's id)."""
    node = Anvil(chain_id=8453)
    yield node
    node.stop()


def test_mock_usdc_mint_refused_on_non_local_chain(base_chain: Anvil) -> None:
    """Deployed on chain id 8453, MockUSDC.mint reverts MintOnlyOnLocalChain(8453) and mints nothing."""
    w3 = Web3(Web3.HTTPProvider(base_chain.url))
    assert w3.eth.chain_id == 8453
    sender = w3.eth.accounts[0]
    art = load_artifact("MockUSDC")
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": sender}))
    usdc = w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])
    tx_hash = usdc.functions.mint(sender, USDC).transact({"from": sender, "gas": 200_000})
    assert w3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 0
    trace = base_chain.call("debug_traceTransaction", "0x" + bytes(tx_hash).hex(), {"tracer": "callTracer"})
    selector = error_selector("MockUSDC", "MintOnlyOnLocalChain")
    assert trace["output"] == selector + (8453).to_bytes(32, "big").hex()
    assert usdc.functions.totalSupply().call() == 0


def test_mock_usdc_mints_on_anvil_with_six_decimals(env: Env) -> None:
    """On chain id 31337 anyone may mint; the token has 6 decimals."""
    receipt = env.send(env.usdc.functions.mint(env.outsider, 5 * USDC), env.outsider)
    assert env.balance(env.outsider) == 5 * USDC
    assert env.usdc.functions.decimals().call() == 6
    assert env.event(receipt, env.usdc, "Transfer")["value"] == 5 * USDC


@pytest.fixture
def feed(env: Env, deployment: dict[str, Any]) -> Any:
    address = deployment["contracts"]["MockPriceFeed"]
    return env.w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact("MockPriceFeed")["abi"])


def test_price_feed_starts_with_deploy_answer(env: Env, feed: Any) -> None:
    """The deployed feed has round 1 = 3000e8, 8 decimals, version 4 and a description."""
    round_id, answer, started, updated, answered = feed.functions.latestRoundData().call()
    assert (round_id, answer, answered) == (1, 3_000 * 10**8, 1)
    assert started == updated > 0
    assert feed.functions.decimals().call() == 8
    assert feed.functions.version().call() == 4
    assert feed.functions.description().call() == "ETH / USD (mock)"


def test_price_feed_update_opens_new_round_and_keeps_history(env: Env, feed: Any) -> None:
    """updateAnswer opens round n+1 with the block time and logs AnswerUpdated; old rounds stay readable."""
    receipt = env.send(feed.functions.updateAnswer(-5), env.outsider)
    now = env.now()
    assert env.event(receipt, feed, "AnswerUpdated") == {"current": -5, "roundId": 2, "updatedAt": now}
    assert feed.functions.latestRoundData().call() == [2, -5, now, now, 2]
    assert feed.functions.getRoundData(1).call()[1] == 3_000 * 10**8
    assert feed.functions.latestRound().call() == 2


def test_price_feed_unknown_round_reverts_no_data(env: Env, feed: Any) -> None:
    """getRoundData for a round never written reverts NoDataPresent."""
    from web3.exceptions import ContractCustomError

    with pytest.raises(ContractCustomError) as info:
        feed.functions.getRoundData(99).call()
    assert str(info.value.data) == error_selector("MockPriceFeed", "NoDataPresent")


def test_markets_are_collateralised_in_the_deployed_usdc(env: Env, deployment: dict[str, Any]) -> None:
    """OpinionMarket.usdc() is the MockUSDC recorded in the deployment."""
    om, _cs, usdc = contracts_for(env.w3, deployment)
    assert om.functions.usdc().call() == usdc.address
