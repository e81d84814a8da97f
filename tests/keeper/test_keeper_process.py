"""The keeper as real processes: SIGKILL at the two dangerous points, two instances on one
database, the key never in the output."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from keeper.abi import encode_call
from tests.chain import Anvil, free_port
from tests.keeper.kit import (
    KEEPER,
    ChainOps,
    fetch,
    insert_markets,
    keeper_process,
    queue,
    run_keeper,
    set_market_status,
    write_config,
)

pytestmark = [pytest.mark.pg, pytest.mark.anvil, pytest.mark.slow]
KEY_HEX = KEEPER.key.hex().removeprefix("0x")


def assert_no_key(*texts: str) -> None:
    for t in texts:
        assert KEY_HEX not in t.lower()


def http_get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        body: bytes = r.read()
    return body


def http_json(port: int, path: str) -> dict[str, object]:
    out: dict[str, object] = json.loads(http_get(port, path))
    return out


async def due_queued(ops: ChainOps, dsn: str, n: int) -> list[int]:
    end = ops.now() + 30
    ids = ops.create_markets(n, end)
    await insert_markets(dsn, ids, end)
    for m in ids:
        await queue(dsn, m, 0)
    ops.advance(60)
    return ids


async def test_sigkill_mid_pipeline_then_restart_resolves_each_market_once(
    ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path
) -> None:
    """SIGKILL after the first of three record batches: the restart finishes the recorded batch from the
    ledger and plans the rest; every market is resolved once, nonces are contiguous."""
    ids = await due_queued(ops, db_dsn, 5)
    cfg = write_config(tmp_path / "keeper.toml", ops.anvil.url, db_dsn, deployment_path, record_batch=2)
    first = run_keeper(cfg, "run", "--once", "--jobs", "resolve", env={"KEEPER_CRASH_AT": "after_record"})
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert len(await fetch(db_dsn, "SELECT 1 FROM keeper.txs")) == 2
    second = run_keeper(cfg, "run", "--once", "--jobs", "resolve")
    assert second.returncode == 0, second.stderr[-2000:]
    txs = await fetch(db_dsn, "SELECT job_key, nonce, status FROM keeper.txs ORDER BY nonce")
    assert sorted(t["job_key"] for t in txs) == sorted(f"resolve:{m}" for m in ids)
    assert all(t["status"] == "confirmed" for t in txs)
    nonces = [t["nonce"] for t in txs]
    assert nonces == list(range(nonces[0], nonces[0] + len(ids)))
    for m in ids:
        assert len(ops.proposed_events(m)) == 1


@pytest.mark.parametrize("crash_at", ["after_record", "after_broadcast"])
async def test_sigkill_then_restart_resolves_exactly_once(
    ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path, crash_at: str
) -> None:
    """SIGKILL between record and broadcast, or between broadcast and receipt: the restarted keeper
    finishes from the ledger; one transaction, one OutcomeProposed, a consistent ledger."""
    (m,) = await due_queued(ops, db_dsn, 1)
    cfg = write_config(tmp_path / "keeper.toml", ops.anvil.url, db_dsn, deployment_path)
    first = run_keeper(cfg, "run", "--once", "--jobs", "resolve", env={"KEEPER_CRASH_AT": crash_at})
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs")
    assert t["status"] == "pending"
    broadcast = crash_at == "after_broadcast"
    if broadcast:  # anvil answers eth_sendRawTransaction before its automine has mined the block
        (a,) = await fetch(db_dsn, "SELECT tx_hash FROM keeper.tx_attempts")
        ops.w3.eth.wait_for_transaction_receipt(bytes(a["tx_hash"]), timeout=30)
    assert (ops.status(m)[0] == 1) is broadcast
    second = run_keeper(cfg, "run", "--once", "--jobs", "resolve")
    assert second.returncode == 0, second.stderr[-2000:]
    assert ops.status(m)[0] == 1
    assert len(ops.proposed_events(m)) == 1
    txs = await fetch(db_dsn, "SELECT job_key, status, nonce FROM keeper.txs")
    assert [(r["job_key"], r["status"]) for r in txs] == [(f"resolve:{m}", "confirmed")]
    attempts = await fetch(db_dsn, "SELECT count(*) AS n FROM keeper.tx_attempts")
    assert attempts[0]["n"] == 1  # finished by rebroadcasting the recorded raw tx, not by a new one
    (q,) = await fetch(db_dsn, "SELECT status FROM keeper.resolution_queue")
    assert q["status"] == "resolved"
    epochs = await fetch(db_dsn, "SELECT epoch FROM keeper.leaders")
    assert epochs[0]["epoch"] == 2
    assert_no_key(first.stdout, first.stderr, second.stdout, second.stderr)


async def test_two_instances_one_signer(ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path) -> None:
    """Two daemons on one database: one leads and signs, the other stands by; no job key or nonce twice."""
    ids = await due_queued(ops, db_dsn, 4)
    port_a, port_b = free_port(), free_port()
    cfg_a = write_config(
        tmp_path / "a.toml", ops.anvil.url, db_dsn, deployment_path, resolve_interval_s=1, http_port=port_a
    )
    cfg_b = write_config(
        tmp_path / "b.toml", ops.anvil.url, db_dsn, deployment_path, resolve_interval_s=1, http_port=port_b
    )
    with keeper_process(cfg_a, "run") as a, keeper_process(cfg_b, "run") as b:
        deadline = time.monotonic() + 60
        while True:
            rows = await fetch(db_dsn, "SELECT count(*) AS n FROM keeper.txs WHERE status = 'confirmed'")
            if rows[0]["n"] >= len(ids):
                break
            assert time.monotonic() < deadline, "not resolved in time"
            assert a.poll() is None
            assert b.poll() is None
            await asyncio.sleep(0.3)
        roles = [await asyncio.to_thread(http_json, port, "/health") for port in (port_a, port_b)]
        assert sorted(r["role"] for r in roles) == ["leader", "standby"]
        assert b"keeper_is_leader" in await asyncio.to_thread(http_get, port_a, "/metrics")
        await asyncio.sleep(1.5)  # a few more scheduler ticks on both
        a.terminate()
        b.terminate()
        out_a, err_a = a.communicate(timeout=20)
        out_b, err_b = b.communicate(timeout=20)
    txs = await fetch(db_dsn, "SELECT job_key, nonce, epoch, status FROM keeper.txs ORDER BY nonce")
    assert len(txs) == len(ids)
    assert len({t["job_key"] for t in txs}) == len(ids)
    assert len({t["epoch"] for t in txs}) == 1
    for m in ids:
        assert len(ops.proposed_events(m)) == 1
    assert "leader_acquired" in (err_a + err_b)
    assert (err_a + err_b).count("leader_acquired") == 1
    assert_no_key(out_a, err_a, out_b, err_b)


async def test_standby_takes_over_a_killed_leader_and_finishes_its_transaction(
    ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path
) -> None:
    """The leader is SIGKILLed right after recording a resolution; the hot standby takes the lock with a
    new epoch, rebroadcasts the recorded transaction and confirms it: one tx, one OutcomeProposed."""
    end = ops.now() + 30
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    port_a, port_b = free_port(), free_port()
    cfg_a = write_config(
        tmp_path / "a.toml", ops.anvil.url, db_dsn, deployment_path, resolve_interval_s=1, http_port=port_a
    )
    cfg_b = write_config(
        tmp_path / "b.toml", ops.anvil.url, db_dsn, deployment_path, resolve_interval_s=1, http_port=port_b
    )
    with keeper_process(cfg_a, "run", env={"KEEPER_CRASH_AT": "after_record"}) as a:
        await wait_role(port_a, "leader")
        with keeper_process(cfg_b, "run"):
            await wait_role(port_b, "standby")
            await queue(db_dsn, m, 1)
            ops.advance(60)
            deadline = time.monotonic() + 60
            while a.poll() is None:
                assert time.monotonic() < deadline, "leader did not reach the crash point"
                await asyncio.sleep(0.2)
            assert a.returncode == -signal.SIGKILL
            while True:
                rows = await fetch(db_dsn, "SELECT status, epoch FROM keeper.txs")
                if rows and rows[0]["status"] == "confirmed":
                    break
                assert time.monotonic() < deadline, f"standby did not finish: {rows}"
                await asyncio.sleep(0.3)
            assert (await asyncio.to_thread(http_json, port_b, "/health"))["role"] == "leader"
    (t,) = await fetch(db_dsn, "SELECT status, epoch FROM keeper.txs")
    assert t["epoch"] == 1  # recorded by the killed leader, finished by the new one
    (leader,) = await fetch(db_dsn, "SELECT epoch FROM keeper.leaders")
    assert leader["epoch"] == 2
    assert len(ops.proposed_events(m)) == 1
    (n,) = await fetch(db_dsn, "SELECT count(*) AS n FROM keeper.tx_attempts")
    assert n["n"] == 1


async def wait_role(port: int, role: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if (await asyncio.to_thread(http_json, port, "/health"))["role"] == role:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no {role} on port {port}"
        await asyncio.sleep(0.2)


async def test_dry_run_cli_prints_the_plan_and_touches_nothing(
    ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path
) -> None:
    """`run --once --dry-run` prints one JSON plan line per transaction; no lock, no ledger row, no tx."""
    (m,) = await due_queued(ops, db_dsn, 1)
    cfg = write_config(tmp_path / "keeper.toml", ops.anvil.url, db_dsn, deployment_path)
    nonce = ops.keeper_nonce()
    out = run_keeper(cfg, "run", "--once", "--dry-run", "--jobs", "resolve,distribute")
    assert out.returncode == 0, out.stderr[-2000:]
    plans = [json.loads(line)["plan"] for line in out.stdout.splitlines() if line.startswith('{"plan"')]
    assert [(p["job"], p["market_id"], p["outcome"]) for p in plans] == [("resolve", m, "no")]
    assert ops.keeper_nonce() == nonce
    assert await fetch(db_dsn, "SELECT 1 FROM keeper.txs") == []
    assert await fetch(db_dsn, "SELECT 1 FROM keeper.leaders") == []
    assert_no_key(out.stdout, out.stderr)


@pytest.mark.parametrize("step", ["finalize", "expire"])
async def test_sigkill_between_record_and_send_then_restart_finishes_each_step_once(
    ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path, step: str
) -> None:
    """finalize (a proposal past its challenge window) and expire (a market past end + resolution window):
    SIGKILL after the ledger row is recorded, before anything is broadcast; the restarted keeper sends the
    recorded transaction: one ledger row, one attempt, one MarketResolved."""
    end = ops.now() + 30
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    ops.advance(60)
    if step == "finalize":
        ops.send(KEEPER, ops.dep.opinion_market, encode_call("OpinionMarket", "proposeOutcome", m, 1))
        await set_market_status(db_dsn, m, "proposed", 1, int(ops.market(m)[8]))
        ops.past_challenge_window(m)
    else:
        ops.advance(30 * 86_400)
    cfg = write_config(tmp_path / "keeper.toml", ops.anvil.url, db_dsn, deployment_path)
    first = run_keeper(cfg, "run", "--once", "--jobs", step, env={"KEEPER_CRASH_AT": "after_record"})
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    (t,) = await fetch(db_dsn, "SELECT job_key, status FROM keeper.txs")
    assert (t["job_key"], t["status"]) == (f"{step}:{m}", "pending")
    assert ops.status(m)[0] != 3  # recorded, never sent
    second = run_keeper(cfg, "run", "--once", "--jobs", step)
    assert second.returncode == 0, second.stderr[-2000:]
    txs = await fetch(db_dsn, "SELECT job, job_key, status FROM keeper.txs")
    assert [(r["job"], r["job_key"], r["status"]) for r in txs] == [(step, f"{step}:{m}", "confirmed")]
    (n,) = await fetch(db_dsn, "SELECT count(*) AS n FROM keeper.tx_attempts")
    assert n["n"] == 1  # finished by broadcasting the recorded raw tx, not a new one
    assert len(ops.resolved_events(m)) == 1
    assert ops.status(m)[0] == 3
    assert ops.status(m)[2] == (1 if step == "finalize" else 2)
    assert_no_key(first.stdout, first.stderr, second.stdout, second.stderr)


def test_a_node_of_another_chain_in_rpc_urls_refuses_the_start(
    ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path
) -> None:
    """One of [chain].rpc_urls serves chain 1 while chain_id is 31337: the keeper refuses to start
    (exit 2) naming chain.rpc_urls[1], never its URL, and records nothing."""
    other = Anvil(chain_id=1)
    try:
        cfg = write_config(tmp_path / "k.toml", ops.anvil.url, db_dsn, deployment_path)
        text = cfg.read_text().replace(json.dumps([ops.anvil.url]), json.dumps([ops.anvil.url, other.url]))
        cfg.write_text(text)
        r = run_keeper(cfg, "run", "--once")
    finally:
        other.stop()
    assert r.returncode == 2, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "chain.rpc_urls[1] reports chain id 1" in out
    assert other.url not in out
    assert asyncio.run(fetch(db_dsn, "SELECT 1 FROM keeper.txs")) == []


def test_run_once_with_the_database_down_exits_3_without_a_traceback(
    ops: ChainOps, deployment_path: Path, tmp_path: Path
) -> None:
    """`run --once` with PostgreSQL unreachable exits 3 (the documented code: nothing was recorded) with
    one line naming the database and the key to check; it was a ConnectionRefusedError traceback, exit 1."""
    port = free_port()  # nothing listens there
    cfg = write_config(
        tmp_path / "k.toml", ops.anvil.url, f"postgresql://keeper@127.0.0.1:{port}/none", deployment_path
    )
    out = run_keeper(cfg, "run", "--once", timeout=120)
    assert out.returncode == 3, out.stderr[-2000:]
    assert "error: cannot reach the database (ConnectionRefusedError); check [database].dsn" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_run_once_with_every_node_down_exits_3(db_dsn: str, deployment_path: Path, tmp_path: Path) -> None:
    """`run --once` with no node of chain.rpc_urls answering exits 3 naming the key; nothing is recorded."""
    cfg = write_config(tmp_path / "k.toml", f"http://127.0.0.1:{free_port()}", db_dsn, deployment_path)
    out = run_keeper(cfg, "run", "--once", timeout=180)
    assert out.returncode == 3, out.stderr[-2000:]
    assert "error: no node of chain.rpc_urls (1) answered eth_chainId; check [chain].rpc_urls" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert asyncio.run(fetch(db_dsn, "SELECT 1 FROM keeper.txs")) == []
