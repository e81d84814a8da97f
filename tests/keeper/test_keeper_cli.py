"""The operator CLI (queue, resolve, cancel, status, txs) against a real database and chain, and the
low-balance guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import resolution as R
from keeper import jobs
from keeper.cli import cmd_cancel, cmd_queue, cmd_resolve, cmd_status, cmd_txs
from tests.keeper.kit import KEEPER, ChainOps, fetch, harness, insert_markets, make_settings, run_keeper, write_config

pytestmark = [pytest.mark.pg, pytest.mark.anvil]
GWEI = 10**9


async def test_queue_resolve_cancel_and_status(
    ops: ChainOps, db_dsn: str, deployment_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """resolve records who/why; one active entry per market; a cancelled entry is never sent; an entry
    already sent cannot be cancelled; status and txs report the ledger."""
    end = ops.now() + 30
    m1, m2 = ops.create_markets(2, end)
    await insert_markets(db_dsn, [m1, m2], end)
    ops.advance(60)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, grace_period_s=100_000)
    assert await cmd_resolve(settings, m1, "yes", "announced on stage", "carol") == 0
    assert await cmd_resolve(settings, m1, "no", "second thoughts", "carol") == 2
    assert await cmd_resolve(settings, m2, "invalid", "question was ambiguous", "dave") == 0
    (first,) = await fetch(db_dsn, "SELECT id FROM keeper.resolution_queue WHERE market_id = $1", m1)
    assert await cmd_cancel(settings, first["id"], "wrong market", "erin") == 0
    assert await cmd_cancel(settings, first["id"], "again", "erin") == 2
    capsys.readouterr()
    assert await cmd_queue(settings, all_rows=True) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["market_id"], r["outcome"], r["status"], r["requested_by"]) for r in rows] == [
        (m1, "yes", "cancelled", "carol"),
        (m2, "invalid", "queued", "dave"),
    ]
    assert rows[0]["cancelled_by"] == "erin"
    async with harness(settings) as h:
        assert (await jobs.resolve(h.ctx))["sent"] == 1
        await h.tx.wait_idle(30, 0.1)
    assert ops.status(m1)[0] == 0
    assert ops.status(m2)[:2] == (1, 2)  # INVALID proposed
    (second,) = await fetch(db_dsn, "SELECT id, status FROM keeper.resolution_queue WHERE market_id = $1", m2)
    assert second["status"] == "resolved"
    assert await cmd_cancel(settings, second["id"], "too late", "erin") == 2
    capsys.readouterr()
    assert await cmd_status(settings) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["txs"] == {"confirmed": 1}
    assert status["leader"]["epoch"] == 1
    assert await cmd_txs(settings, 10, None) == 0
    (tx,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (tx["job_key"], tx["status"], tx["attempts"]) == (f"resolve:{m2}", "confirmed", 1)


async def test_low_balance_reports_and_never_bumps_beyond_funds(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """With too little ETH for a bump the stuck tx is left as is (no spiral); the low-balance metric is set."""
    end = ops.now() + 30
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    ops.advance(60)
    assert await cmd_resolve(make_settings(ops.anvil.url, db_dsn, deployment_path), m, "no", "r", "x") == 0
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, replace_after_blocks=1)
    base = ops.anvil.call("eth_getBlockByNumber", "latest", False)["baseFeePerGas"]
    original = ops.anvil.call("eth_getBalance", KEEPER.address, "latest")
    ops.anvil.call("evm_setAutomine", False)
    try:
        async with harness(settings) as h:
            assert (await jobs.resolve(h.ctx))["sent"] == 1
            (a0,) = await fetch(db_dsn, "SELECT max_fee_per_gas FROM keeper.tx_attempts")
            (t,) = await fetch(db_dsn, "SELECT gas_limit FROM keeper.txs")
            # enough for the recorded tx, not for a 12.5 % bump of it
            ops.anvil.call("anvil_setBalance", KEEPER.address, hex(int(a0["max_fee_per_gas"]) * t["gas_limit"] + 1))
            ops.anvil.call("anvil_setNextBlockBaseFeePerGas", hex(int(a0["max_fee_per_gas"]) + GWEI))
            waited = 0
            for _ in range(3):
                ops.anvil.mine(1)
                s = await h.tx.track()
                waited += s.waiting.get("insufficient_funds_for_bump", 0)
            assert h.metrics.low_balance._value.get() == 1
    finally:
        ops.anvil.call("evm_setAutomine", True)
        ops.anvil.call("anvil_setNextBlockBaseFeePerGas", base)
        ops.anvil.call("anvil_setBalance", KEEPER.address, original)
    assert waited >= 1
    attempts = await fetch(db_dsn, "SELECT attempt FROM keeper.tx_attempts")
    assert len(attempts) == 1


async def test_a_non_utf8_reason_is_refused_naming_the_input(tmp_path: Path, db_dsn: str) -> None:
    """Review h6 (low): `--reason $'caf\\xe9'` arrives as a lone surrogate (argv's surrogateescape); parse_text
    did not check encodability and asyncpg failed with a traceback (exit 1). Now exit 2 naming --reason, and
    the entry stays queued."""
    (q,) = await fetch(
        db_dsn,
        "INSERT INTO keeper.resolution_queue (chain_id, market_id, outcome, reason, requested_by)"
        " VALUES (31337, 1, 1, 'x', 'ops') RETURNING id",
    )
    cfg = write_config(tmp_path / "k.toml", "http://127.0.0.1:1", db_dsn, tmp_path / "d.json")
    r = run_keeper(cfg, "cancel", str(q["id"]), "--reason", "caf\udce9 mistake", timeout=60)
    out = r.stdout + r.stderr
    assert "Traceback" not in out
    assert r.returncode == 2
    assert "--reason: must be valid UTF-8" in out
    (row,) = await fetch(db_dsn, "SELECT status FROM keeper.resolution_queue WHERE id = $1", q["id"])
    assert row["status"] == "queued"


@pytest.mark.parametrize("field", ["--reason", "--by"])
def test_parse_text_refuses_text_that_is_not_utf8(field: str) -> None:
    """Every operator text (reason, who) goes through parse_text: a lone surrogate is refused naming the field."""
    with pytest.raises(R.RequestError, match=rf"^{field}: must be valid UTF-8") as err:
        R.parse_text("caf\udce9", field)
    assert "\udce9" not in str(err.value)
    assert R.parse_text(" café ", field) == "café"
