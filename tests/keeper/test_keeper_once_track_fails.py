"""Review s20 hk: `run --once` whose node stops answering while it follows its transactions."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper import daemon
from tests.keeper.kit import ChainOps, fetch, make_settings
from tests.keeper.rpcproxy import RpcProxy
from tests.keeper.test_keeper_tx import due_markets

pytestmark = [pytest.mark.pg, pytest.mark.anvil]


async def test_run_once_whose_node_fails_while_following_its_txs_returns_1_not_an_exception(
    ops: ChainOps,
    db_dsn: str,
    deployment_path: Path,
    proxy: RpcProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The jobs ran and the proposal is recorded and sent; then every tracker pass of wait_idle fails
    (eth_blockNumber rate-limited). Daemon.main must end as documented for open transactions (exit 1,
    `transactions_still_open`, the tx stays in the ledger) instead of letting the RpcError escape — cli.main
    catches only Unreachable/KeyLoadError/ConfigError, so the operator gets a Python traceback."""
    await due_markets(ops, db_dsn, 1)
    monkeypatch.setattr(daemon, "ONCE_WAIT_S", 2.0)
    proxy.faults["eth_blockNumber"] = "error"  # the tracker's head read; a broadcast tolerates it (head unknown)
    d = daemon.Daemon(make_settings(proxy.url, db_dsn, deployment_path))
    try:
        code = await d.main(True, ["resolve"], print)
    except Exception as exc:  # the defect
        pytest.fail(f"Daemon.main(once) raised {type(exc).__name__}: {exc}")
    assert code == 1
    (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs")
    assert t["status"] == "pending"
