"""docs/wallets.md runs as written: every ```sh block in one bash shell with the pinned cast
(npm @foundry-rs/cast) and then the ```python block, from a copy of the repository's layout, on a
fresh anvil with the contracts deployed and market 1 opened by a creator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from core.contracts import load_abi
from core.deploy import DeployParams, anvil_account, deploy, write_deployment
from tests.chain import ROOT, Anvil

pytestmark = [pytest.mark.anvil, pytest.mark.slow]
DOC = ROOT / "docs" / "wallets.md"
USDC = 10**6


def blocks(lang: str) -> list[str]:
    text = DOC.read_text()
    return [
        m.group(2)
        for m in re.finditer(r"(<!-- illustration only -->\n)?```" + lang + r"\n(.*?)```", text, re.S)
        if not m.group(1)
    ]


def open_market(w3: Web3, record: dict[str, Any]) -> None:
    """Market 1 with 1,000 USDC of liquidity, and its creator's first share (a curve to trade)."""
    c = record["contracts"]
    creator = anvil_account(3)
    usdc = w3.eth.contract(address=c["USDC"], abi=load_abi("MockUSDC"))
    om = w3.eth.contract(address=c["OpinionMarket"], abi=load_abi("OpinionMarket"))
    cs = w3.eth.contract(address=c["CreatorShares"], abi=load_abi("CreatorShares"))
    end = int(w3.eth.get_block("latest")["timestamp"]) + 86_400
    for fn in (
        usdc.functions.mint(creator.address, 10_000 * USDC),
        usdc.functions.approve(om.address, 2**256 - 1),
        usdc.functions.approve(cs.address, 2**256 - 1),
        om.functions.createMarket("Will the guide run?", "docs", end, 1_000 * USDC),
        cs.functions.buyShares(creator.address, 1, 10**12, end),
    ):
        tx = fn.build_transaction({"from": creator.address, "nonce": w3.eth.get_transaction_count(creator.address)})
        raw = creator.sign_transaction(tx).raw_transaction
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw), timeout=30)
        assert receipt["status"] == 1, fn


def test_the_wallet_guide_runs_as_written(tmp_path: Path) -> None:
    """cast: fund a new key, buy YES with a chain-clock deadline, buy creator shares, decode a revert;
    then the web3.py block with the same key. Each step must succeed and print what it promises."""
    sh, py = blocks("sh"), blocks("python")
    assert len(sh) >= 3
    assert len(py) == 1
    anvil = Anvil()
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
        record = deploy(w3, anvil_account(0), anvil_account(1).address, DeployParams(lock_period=60))
        write_deployment(record, tmp_path / "deployments")
        (tmp_path / "abi").symlink_to(ROOT / "abi")
        open_market(w3, record)
        script = "set -euo pipefail\n" + "\n".join(sh) + "\npython - <<'PYTHON'\n" + py[0] + "PYTHON\n"
        env = {
            **os.environ,
            "RPC": anvil.url,
            "PATH": f"{ROOT / 'node_modules' / '.bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        out = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
        lines = out.stdout.split("\n")
        assert re.match(r"^[1-9][0-9]*", lines[0]), out.stdout  # YES shares after the buy
        assert any(line.startswith("DeadlineExpired(") for line in lines), out.stdout  # the decoded revert
        assert re.fullmatch(r"[1-9][0-9]* [1-9][0-9]* [1-9][0-9]*", lines[-2]), out.stdout  # web3.py's trade
    finally:
        anvil.stop()
