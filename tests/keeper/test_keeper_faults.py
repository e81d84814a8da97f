"""Which failures stop the daemon: only systemic faults (database or every RPC URL unreachable, the
signer unusable), and only after max_consecutive_failures runs in a row; any other job failure is
logged, counted and retried on the next tick."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from keeper import store
from keeper.daemon import Daemon, systemic_fault
from keeper.keys import KeyLoadError, TxSignError
from keeper.rpc import RpcError
from tests.keeper.kit import make_settings


def daemon(tmp_path: Path) -> Daemon:
    # dry run: jobs run without the leader lock and write no job_runs rows (no database needed)
    return Daemon(
        make_settings(
            "http://127.0.0.1:1", "postgresql://x@127.0.0.1:1/x", tmp_path / "d.json", max_consecutive_failures=3
        ),
        dry_run=True,
    )


def test_fault_classes() -> None:
    """Unreachable node/database and an unusable signer are systemic; a revert or a bug is not."""
    assert systemic_fault(RpcError("eth_call", -1, "node unreachable", transient=True)) == "rpc_unreachable"
    assert systemic_fault(RpcError("eth_call", 3, "execution reverted")) is None
    # the database's own connection errors only (store.connection names them); a bare OSError or TimeoutError
    # (the API the warm job asks, a file) is not one (review h6)
    assert systemic_fault(store.DatabaseUnreachable("refused")) == "database_unreachable"
    assert systemic_fault(store.PoolTimeout("no connection within 30 s")) == "database_unreachable"
    assert systemic_fault(ConnectionRefusedError()) is None
    assert systemic_fault(TimeoutError()) is None
    assert systemic_fault(asyncpg.CannotConnectNowError("starting up")) == "database_unreachable"
    assert systemic_fault(TxSignError("x")) == "signer_unusable"
    assert systemic_fault(KeyLoadError("x")) == "signer_unusable"
    assert systemic_fault(ValueError("bad row")) is None
    assert systemic_fault(asyncpg.UniqueViolationError("dup")) is None


async def test_ordinary_failures_never_halt(tmp_path: Path) -> None:
    """A job failing with a non-systemic error ten times in a row is counted and retried, never halts."""
    d = daemon(tmp_path)

    async def broken() -> dict[str, int]:
        raise ValueError("one bad input")

    for _ in range(10):
        assert await d.run_job("resolve", broken) == "failed"
    assert d.halted is None
    assert not d.stop.is_set()
    assert d.metrics.jobs_total.labels(job="resolve", outcome="failed")._value.get() == 10


async def test_systemic_faults_halt_after_the_budget_and_a_success_resets_it(tmp_path: Path) -> None:
    """max_consecutive_failures unreachable-node runs in a row halt (exit 1, the supervisor restarts);
    a success in between starts the count again."""
    d = daemon(tmp_path)
    state = {"ok": False}

    async def node_down() -> dict[str, int]:
        if state["ok"]:
            return {}
        raise RpcError("eth_blockNumber", -1, "node unreachable: ClientConnectorError", transient=True)

    assert await d.run_job("resolve", node_down) == "failed"
    assert await d.run_job("resolve", node_down) == "failed"
    state["ok"] = True
    assert await d.run_job("resolve", node_down) == "ok"
    state["ok"] = False
    for _ in range(2):
        await d.run_job("resolve", node_down)
    assert d.halted is None
    await d.run_job("resolve", node_down)
    assert d.halted is not None
    assert "rpc_unreachable" in d.halted
    assert d.stop.is_set()
    assert d.metrics.systemic_faults.labels(fault="rpc_unreachable")._value.get() == 5


def test_a_distribution_run_belongs_to_the_day_its_schedule_fired(tmp_path: Path) -> None:
    """Review s13 keeper item 10: the period was the run's own UTC day, so a run due at 23:59 that
    started after midnight (misfire grace, a catch-up after downtime) used up the next day's period
    and that day's scheduled run did nothing."""
    import datetime as dt

    d = Daemon(
        make_settings(
            "http://127.0.0.1:1", "postgresql://x@127.0.0.1:1/x", tmp_path / "d.json", distribute_cron="59 23 * * *"
        ),
        dry_run=True,
    )
    at = lambda s: dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC)  # noqa: E731
    assert d.distribution_period(at("2026-12-07T23:59:30")) == "2026-12-07"
    assert d.distribution_period(at("2026-12-08T00:01:00")) == "2026-12-07"  # late: still the 7th's (was the 8th)
    assert d.distribution_period(at("2026-12-08T23:59:00")) == "2026-12-08"


def test_node_trouble_is_told_from_the_chains_answer() -> None:
    """Review h6: a rate limit or a node timeout inside a JSON-RPC answer is node trouble (asked again, then a
    transient item failure); a revert, with or without data, and a refused transaction are the chain's answer."""
    trouble = [
        RpcError("eth_call", -32005, "rate limit exceeded, try again later"),
        RpcError("eth_estimateGas", 429, "Too Many Requests"),
        RpcError("eth_call", -32000, "request timed out"),
        RpcError("eth_call", -32000, "header not found"),
        RpcError("eth_call", -1, "node unreachable", transient=True),
    ]
    answers = [
        RpcError("eth_estimateGas", 3, "execution reverted", "0x08c379a0" + "00" * 32),
        RpcError("eth_estimateGas", -32000, "execution reverted"),
        RpcError("eth_estimateGas", -32000, "insufficient funds for gas * price + value"),
        RpcError("eth_sendRawTransaction", -32000, "nonce too low"),
    ]
    assert [e.node_trouble for e in trouble] == [True] * len(trouble)
    assert [e.node_trouble for e in answers] == [False] * len(answers)
