"""Fixtures of the keeper tests (helpers in kit.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from core.contracts import load_deployment
from tests.chain import Anvil
from tests.keeper.kit import ChainOps
from tests.keeper.rpcproxy import RpcProxy


@pytest.fixture
def deployment_path(tmp_path: Path, deployment: dict[str, Any]) -> Path:
    """The session deployment as a deployments/<chain_id>.json file."""
    p = tmp_path / "31337.json"
    p.write_text(json.dumps(deployment))
    return p


DAY = 86_400
# The chain's clock starts at 06:00 UTC of the day after the wall clock's. A daemon's distribution (its catch-up
# on taking the lock, the 00:00 firing) is for the wall clock's UTC day and first waits, up to two minutes, for a
# block of that day (jobs._wait_for_chain_day); after the revert the latest block is the session's deployment,
# so a test that ran on a later UTC day than the session began (or met 00:00) waited that long for a block
# nobody mined (test_run_once_while_the_daemon_leads_is_run_by_the_daemon: the CLI's 120 s timeout). A day
# ahead, every period the wall clock can name during a test has begun on chain, and no chain day boundary
# falls inside a test unless the test places one.
START_OF_TEST = 6 * 3_600


@pytest.fixture
def ops(w3: Web3, chain: Anvil, deployment_path: Path) -> ChainOps:
    """Chain helpers on the isolated (snapshot/revert) session anvil, its clock at START_OF_TEST."""
    latest = int(w3.eth.get_block("latest")["timestamp"])
    chain.call("evm_setNextBlockTimestamp", hex(max((int(time.time()) // DAY + 1) * DAY + START_OF_TEST, latest + 1)))
    chain.mine(1)
    return ChainOps(w3, chain, load_deployment(deployment_path))


@pytest.fixture
def proxy(chain: Anvil) -> Iterator[RpcProxy]:
    """A fault proxy in front of the session anvil (tests/keeper/rpcproxy.py)."""
    p = RpcProxy(chain.url)
    try:
        yield p
    finally:
        p.stop()
