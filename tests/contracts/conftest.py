"""Fixtures for the contract tests: the session deployment (tests/conftest.py) inside a `chain`
snapshot, with funded traders. Helpers live in kit.py."""

from __future__ import annotations

from typing import Any

import pytest
from web3 import Web3

from core.deploy import anvil_account
from tests.chain import Anvil
from tests.contracts.kit import FUND, MAX_UINT, Env, contracts_for

# Every test starts at the same time of day: the contracts' dividend days begin at 00:00 UTC, so a test that
# began at the wall clock's time would meet a day boundary on some runs and not others (CI, 2026-12-07: a
# test that assumed one day failed when 00:00 fell between its trades). Tests that need a boundary place it.
START_OF_TEST = 6 * 3_600  # 06:00 UTC of the day after the wall clock's


@pytest.fixture
def env(chain: Anvil, w3: Web3, deployment: dict[str, Any]) -> Env:
    """The session deployment inside the `chain` snapshot at START_OF_TEST, with traders (anvil accounts
    2-5) funded with 1M USDC each and max-approved to both contracts."""
    om, cs, usdc = contracts_for(w3, deployment)
    traders = tuple(anvil_account(i).address for i in range(2, 6))
    e = Env(
        w3, chain, om, cs, usdc, anvil_account(0).address, anvil_account(1).address, traders, anvil_account(9).address
    )
    e.next_block_at(e.next_day(START_OF_TEST))
    chain.mine()
    for t in traders:
        e.send(usdc.functions.mint(t, FUND), t)
        e.send(usdc.functions.approve(om.address, MAX_UINT), t)
        e.send(usdc.functions.approve(cs.address, MAX_UINT), t)
    return e
