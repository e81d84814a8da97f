"""Crash safety and operations against real processes: seeded simulations with SIGKILLs, reorgs and
RPC faults from a fault proxy; SIGTERM; a hot standby taking over; a killed database connection;
/health, /ready and /metrics.

Some seeds run in CI; GL_FUZZ=1 (make fuzz) runs many more."""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.chain import free_port
from tests.indexer.faultproxy import FaultProxy
from tests.indexer.helpers import (
    Node,
    assert_same_index,
    buy_request,
    dump,
    fetch,
    index_definitions,
    index_to_head,
    make_settings,
    open_market,
    reorg,
    sim,
    start_indexer,
    wait_caught_up,
    write_toml,
)

pytestmark = [pytest.mark.anvil, pytest.mark.pg]

FUZZ = os.environ.get("GL_FUZZ") == "1"
SEEDS = list(range(1, 21)) if FUZZ else [1, 2]


def fresh_index(node: Node, fresh_db: Any, tmp_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    dsn = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, dsn, tmp_path)) == 0
    return dump(dsn)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_seeded_simulation_with_kills_reorgs_and_rpc_faults(
    seed: int, node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """Random interleavings of trades, reorgs, SIGKILLs and RPC faults end equal to a fresh index."""
    rng = random.Random(seed)
    defs = index_definitions(db_dsn)
    sim(node.url, node.deployment, seed=seed, max_events=25)
    mid = open_market(node)
    proxy = FaultProxy(node.url, seed, hang_seconds=1.5)
    cfg = write_toml(
        tmp_path,
        [proxy.url],
        node.deployment,
        db_dsn,
        request_timeout=0.7,
        poll_interval=0.1,
        initial_span=rng.choice([1, 3, 50]),
        concurrency=rng.randint(1, 4),
        tip_blocks=rng.choice([0, 2, 8]),
        max_failures=10_000,
        stall_seconds=600.0,
        log_level="warning",
    )
    log = tmp_path / "indexer.log"
    proc = start_indexer(cfg, log)
    kills = 0
    try:
        for step in range(10 if FUZZ else 7):
            roll = rng.random()
            if roll < 0.35:
                sim(node.url, node.deployment, seed=seed * 100 + step, max_events=rng.randint(3, 12), resolve=True)
            elif roll < 0.6:
                depth = rng.randint(1, 8)
                reorg(node, depth, [(buy_request(node, mid, step, 1_000_000 + step), rng.randrange(depth))])
            elif roll < 0.85:
                time.sleep(rng.uniform(0.0, 1.0))
                proc.kill()
                proc.wait()
                kills += 1
                proc = start_indexer(cfg, log)
            else:
                node.anvil.mine(rng.randint(1, 30))
            time.sleep(rng.uniform(0.0, 0.6))
        time.sleep(2.0)  # a last stretch under faults with the indexer up
        proxy.faults.enabled = False
        print(f"seed {seed}: faults {proxy.counts}, kills {kills}")
        wait_caught_up(db_dsn, node.url, timeout=120)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proxy.stop()
    assert_same_index(dump(db_dsn), fresh_index(node, fresh_db, tmp_path))
    assert index_definitions(db_dsn) == defs  # each index built or its definition kept, whenever killed
    # Nothing applied twice: every event appears once in the outbox per delivery of its block.
    dupes = fetch(
        db_dsn,
        "SELECT block_hash, log_index, event, count(*) AS n FROM idx.outbox WHERE block_hash IS NOT NULL"
        " AND event <> 'notification' GROUP BY 1, 2, 3 HAVING count(*) > 1",
    )
    assert dupes == []


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_standby_takes_over_when_the_writer_dies_and_sigterm_exits_cleanly(
    node: Node, db_dsn: str, tmp_path: Path
) -> None:
    """A second instance waits on the advisory lock; SIGKILL of the first hands it the chain."""
    sim(node.url, node.deployment, seed=5, max_events=20)
    port_a, port_b = free_port(), free_port()
    cfg_a = write_toml(tmp_path, [node.url], node.deployment, db_dsn, metrics_port=port_a, poll_interval=0.1)
    cfg_b = write_toml(
        tmp_path, [node.url], node.deployment, db_dsn, metrics_port=port_b, poll_interval=0.1, standby_poll=0.2
    )
    a = start_indexer(cfg_a, tmp_path / "a.log")
    b = None
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port_a}/health")[0] == 200)
        wait_caught_up(db_dsn, node.url)
        b = start_indexer(cfg_b, tmp_path / "b.log")
        wait_for(lambda: http_get(f"http://127.0.0.1:{port_b}/health")[1].find(b'"standby"') >= 0)
        # the writer is ready (polled: one probe on a loaded machine can time out), the standby is not
        wait_for(lambda: http_get(f"http://127.0.0.1:{port_a}/ready")[0] == 200)
        status, _ = http_get(f"http://127.0.0.1:{port_b}/ready")
        assert status == 503
        metrics = http_get(f"http://127.0.0.1:{port_a}/metrics")[1].decode()
        assert "indexer_indexed_block" in metrics
        assert "indexer_lag_blocks" in metrics
        a.kill()
        a.wait()
        sim(node.url, node.deployment, seed=6, max_events=10)
        wait_caught_up(db_dsn, node.url)
        wait_for(lambda: json.loads(http_get(f"http://127.0.0.1:{port_b}/health")[1] or b"{}").get("role") == "writer")
        b.send_signal(signal.SIGTERM)
        assert b.wait(15) == 0  # exits cleanly within the documented bound (TimeoutExpired otherwise)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.slow
def test_sessions_lost_mid_backfill_end_equal_to_a_fresh_index(
    node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    """pg_terminate_backend, again and again while a backfill runs, on its batch writer's and its
    reader's sessions, and on the writer's own with a hot standby waiting (the writer lock changes
    hands while a batch may be in flight on the old writer's batch session): each loss fails one
    iteration, which is retried on new connections; nothing is written twice or lost, and the index
    ends equal to a fresh one."""
    sim(node.url, node.deployment, seed=12, max_events=40)
    node.anvil.mine(300)
    # one block per range: a long run of small batches, each a commit the kills can land in
    cfg = write_toml(
        tmp_path,
        [node.url],
        node.deployment,
        db_dsn,
        initial_span=1,
        max_span=1,
        tip_blocks=0,
        poll_interval=0.1,
        standby_poll=0.1,
    )
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_indexer(cfg, log) for log in logs]
    rng = random.Random(12)
    killed: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (
            killed.get("batches", 0) < 3 or not killed.get("reader") or not killed.get("writer")
        ):
            sessions = [
                r["application_name"]
                for r in fetch(
                    db_dsn,
                    "SELECT application_name FROM pg_stat_activity"
                    " WHERE application_name LIKE 'gl-indexer-31337%' AND datname = current_database()",
                )
            ]
            beside = [n for n in sessions if n.endswith(("-batches", "-reader"))]
            if not beside:  # between backfill attempts: wait for the next one
                time.sleep(0.02)
                continue
            name = rng.choice(beside) if rng.random() < 0.75 else "gl-indexer-31337"
            rows = fetch(
                db_dsn,
                "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity"
                " WHERE application_name = $1 AND datname = current_database()",
                name,
            )
            if rows and rows[0]["ok"]:
                role = name.removeprefix("gl-indexer-31337").lstrip("-") or "writer"
                killed[role] = killed.get(role, 0) + 1
            time.sleep(rng.uniform(0.02, 0.15))
        # the backfill was caught mid-way: each kind of session was lost at least once
        assert killed.get("batches"), killed
        assert killed.get("reader"), killed
        assert killed.get("writer"), killed
        wait_caught_up(db_dsn, node.url)
        for proc, log in zip(procs, logs, strict=True):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, log.read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = "".join(log.read_text() for log in logs)
    assert "iteration_failed" in text  # the losses were seen, as failures that were retried
    assert text.count("writer_lock_acquired") >= 2  # and the lock changed hands at least once
    assert_same_index(dump(db_dsn), fresh_index(node, fresh_db, tmp_path))


def test_lost_database_connection_reconnects_and_continues(node: Node, db_dsn: str, tmp_path: Path) -> None:
    """pg_terminate_backend on the writer's session (as a server restart would): it reconnects and resumes."""
    cfg = write_toml(tmp_path, [node.url], node.deployment, db_dsn, poll_interval=0.1)
    proc = start_indexer(cfg, tmp_path / "i.log")
    try:
        wait_caught_up(db_dsn, node.url)
        killed = fetch(
            db_dsn,
            "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity"
            " WHERE application_name = 'gl-indexer-31337' AND datname = current_database()",
        )
        assert killed
        assert killed[0]["ok"]
        sim(node.url, node.deployment, seed=9, max_events=15)
        wait_caught_up(db_dsn, node.url)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
