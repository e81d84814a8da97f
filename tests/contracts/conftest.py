"""Fixtures for the contract tests: the session deployment (tests/conftest.py) inside a `chain`
snapshot, with funded traders. Helpers live in kit.py."""

from __future__ import annotations

from typing import Any

import pytest
from web3 import Web3

from core.deploy import anvil_account
from tests.chain import Anvil
from tests.contracts.kit import FUND, MAX_UINT, Env, contracts_for


@pytest.fixture
def env(chain: Anvil, w3: Web3, deployment: dict[str, Any]) -> Env:
    """The session deployment inside the `chain` snapshot, with traders (anvil accounts 2-5) funded
    with 1M USDC each and max-approved to both contracts."""
    om, cs, usdc = contracts_for(w3, deployment)
    traders = tuple(anvil_account(i).address for i in range(2, 6))
    e = Env(
        w3, chain, om, cs, usdc, anvil_account(0).address, anvil_account(1).address, traders, anvil_account(9).address
    )
    for t in traders:
        e.send(usdc.functions.mint(t, FUND), t)
        e.send(usdc.functions.approve(om.address, MAX_UINT), t)
        e.send(usdc.functions.approve(cs.address, MAX_UINT), t)
    return e
