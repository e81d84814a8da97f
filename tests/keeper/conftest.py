"""Fixtures of the keeper tests (helpers in kit.py)."""

from __future__ import annotations

import json
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


@pytest.fixture
def ops(w3: Web3, chain: Anvil, deployment_path: Path) -> ChainOps:
    """Chain helpers on the isolated (snapshot/revert) session anvil."""
    return ChainOps(w3, chain, load_deployment(deployment_path))


@pytest.fixture
def proxy(chain: Anvil) -> Iterator[RpcProxy]:
    """A fault proxy in front of the session anvil (tests/keeper/rpcproxy.py)."""
    p = RpcProxy(chain.url)
    try:
        yield p
    finally:
        p.stop()
