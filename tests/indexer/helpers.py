"""Fixtures and helpers for the indexer tests: a fresh anvil + deployment per test where the chain
gets rewritten (reorgs), settings pointing at a per-test database, whole-table comparisons."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from web3 import Web3

from core.contracts import load_abi
from core.deploy import DeployParams, anvil_account, deploy
from indexer.service import run
from indexer.settings import Settings, build_settings
from tests.chain import Anvil
from tests.conftest import SERVICES, _psql

# Tables compared between an index and a fresh index of the canonical chain.
COMPARED = (
    "ev_market_created",
    "ev_trade",
    "ev_market_resolved",
    "ev_winnings_claimed",
    "ev_liquidity_withdrawn",
    "ev_creator_fees_collected",
    "ev_shares_traded",
    "ev_dividends_distributed",
    "ev_dividends_claimed",
    "ev_creator_fees_claimed",
    "ev_outcome_proposed",
    "ev_outcome_disputed",
    "ev_other",
    "markets",
    "positions",
    "creators",
    "share_holdings",
    "notifications",
    "ev_pending_matured",
)
# Per-row bookkeeping columns that legitimately depend on when a row was last rewritten.
ORDER = {
    "markets": "market_id",
    "positions": "market_id, holder",
    "creators": "creator",
    "share_holdings": "creator, holder",
    "notifications": "block_number, log_index, recipient",
}


class Node:
    """A fresh anvil with the contracts deployed."""

    def __init__(self, block_time: float | None = None) -> None:
        self.anvil = Anvil(block_time=block_time)
        self.w3 = Web3(Web3.HTTPProvider(self.anvil.url, request_kwargs={"timeout": 30}))
        self.deployment = deploy(self.w3, anvil_account(0), anvil_account(1).address, DeployParams())

    @property
    def url(self) -> str:
        return self.anvil.url

    def stop(self) -> None:
        self.anvil.stop()


@pytest.fixture
def node() -> Iterator[Node]:
    n = Node()
    yield n
    n.stop()


def new_db(template: str) -> str:
    name = f"gl_t_{uuid.uuid4().hex[:12]}"
    _psql(f"CREATE DATABASE {name} TEMPLATE {template}")
    return f"postgresql://guesslyfe@127.0.0.1:{SERVICES.pg_port}/{name}"


@pytest.fixture
def fresh_db(template_db: str) -> Iterator[Any]:
    """A factory of extra fresh databases (for the 'fresh index' side of comparisons)."""
    made: list[str] = []

    def make() -> str:
        dsn = new_db(template_db)
        made.append(dsn)
        return dsn

    yield make
    for dsn in made:
        _psql(f"DROP DATABASE IF EXISTS {dsn.rsplit('/', 1)[1]} WITH (FORCE)")


def make_settings(
    rpc_urls: list[str] | str, deployment: dict[str, Any], dsn: str, tmp_path: Path, ws_url: str = "", **options: Any
) -> Settings:
    dep_path = tmp_path / f"deployment-{uuid.uuid4().hex[:6]}.json"
    dep_path.write_text(json.dumps(deployment))
    urls = [rpc_urls] if isinstance(rpc_urls, str) else rpc_urls
    opts: dict[str, Any] = {
        "metrics_port": -1,
        "progress": "log",
        "request_timeout": 5.0,
        "use_websocket": bool(ws_url),
    }
    opts.update(options)
    raw = {
        "database": {"dsn": dsn},
        "chain": {
            "chain_id": deployment["chain_id"],
            "rpc_urls": urls,
            "ws_url": ws_url,
            "deployment": str(dep_path),
            "finality_depth": 64,
        },
        "indexer": opts,
        "services": {},
    }
    return build_settings(raw)


def index_to_head(settings: Settings) -> int:
    """Runs the indexer until it has caught up with the node's head; returns the exit code."""
    return asyncio.run(run(settings, asyncio.Event(), until_head=True))


def run_through(proxy: Any, settings: Settings) -> object:
    """index_to_head behind a fault proxy, stopped after: the exit code, or for an exception (what
    `python -m indexer` turns into indexer_crashed, exit 1) its type and text."""
    try:
        return index_to_head(settings)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        proxy.stop()


async def _dump(dsn: str, chain_id: int) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(dsn)
    try:
        out: dict[str, list[tuple[Any, ...]]] = {}
        for table in COMPARED:
            order = ORDER.get(table, "block_number, log_index")
            rows = await conn.fetch(f"SELECT * FROM idx.{table} WHERE chain_id = $1 ORDER BY {order}", chain_id)
            out[table] = [tuple(r) for r in rows]
        rows = await conn.fetch(
            "SELECT block_number, block_hash, parent_hash, block_time, event_count FROM idx.blocks"
            " WHERE chain_id = $1 AND event_count > 0 ORDER BY block_number",
            chain_id,
        )
        out["blocks_with_events"] = [tuple(r) for r in rows]
        return out
    finally:
        await conn.close()


def dump(dsn: str, chain_id: int = 31337) -> dict[str, list[tuple[Any, ...]]]:
    return asyncio.run(_dump(dsn, chain_id))


def assert_same_index(got: dict[str, list[tuple[Any, ...]]], want: dict[str, list[tuple[Any, ...]]]) -> None:
    for table in want:
        assert got[table] == want[table], f"{table} differs from a fresh index of the canonical chain"


def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def sim(url: str, deployment: dict[str, Any], seed: int, max_events: int, resolve: bool = False) -> Any:
    """scripts.simulate's wallets and actions, with transactions sent one at a time.

    The simulator sends each round as one JSON-RPC batch; under load anvil sometimes leaves a
    sender's later nonces queued forever while the first never mines (seen ~1 run in 3 on this
    machine). Sending sequentially avoids it; the actions and their mix are the simulator's."""
    from scripts.simulate import Simulator

    class Sequential(Simulator):
        def _send_and_wait(self, txs: list[tuple[str, tuple[str, list[Any]]]]) -> None:
            for action, (method, params) in txs:
                h = self.rpc.call(method, params)
                receipt = None
                for _ in range(2000):
                    receipt = self.rpc.call("eth_getTransactionReceipt", [h])
                    if receipt:
                        break
                    time.sleep(0.002)
                assert receipt, f"{action} {h} not mined"
                self.stats.sent += 1
                if int(receipt["status"], 16) == 1:
                    self.stats.succeeded += 1
                    self.stats.by_action[action] = self.stats.by_action.get(action, 0) + 1
                    if action == "create_market":
                        self._record_market(receipt)
                else:
                    self.stats.reverted += 1

    s = Sequential(url, deployment, seed)
    s.fund()
    while s.stats.succeeded < max_events:
        s.round()
        if resolve and s.stats.rounds % 5 == 0:
            s.resolve_ended(s.chain_time())
    return s.stats


FAR = 2**40


REORG_WALLETS = range(14, 20)  # not used by the simulator (its wallets are accounts 2..13)


def open_market(node: Node) -> int:
    """Funds the reorg wallets and creates a market that stays open for the whole test; returns its id."""
    om = node.w3.eth.contract(address=node.deployment["contracts"]["OpinionMarket"], abi=load_abi("OpinionMarket"))
    usdc = node.w3.eth.contract(address=node.deployment["contracts"]["USDC"], abi=load_abi("MockUSDC"))
    for i in REORG_WALLETS:
        w = node.w3.eth.accounts[i]
        usdc.functions.mint(w, 10**15).transact({"from": w})
        tx = usdc.functions.approve(om.address, 2**256 - 1).transact({"from": w})
    node.w3.eth.wait_for_transaction_receipt(tx)
    wallet = node.w3.eth.accounts[14]
    end = node.w3.eth.get_block("latest")["timestamp"] + 30 * 86400
    tx = om.functions.createMarket("reorg target?", "test", end, 5 * 10**6).transact({"from": wallet, "gas": 600_000})
    node.w3.eth.wait_for_transaction_receipt(tx)
    return int(om.functions.marketCount().call())


def buy_request(node: Node, market_id: int, wallet: int, amount: int) -> dict[str, Any]:
    om = node.w3.eth.contract(address=node.deployment["contracts"]["OpinionMarket"], abi=load_abi("OpinionMarket"))
    data = om.encode_abi("buy", args=[market_id, amount % 2, amount, 0, FAR])
    return {
        "from": node.w3.eth.accounts[REORG_WALLETS[wallet % len(REORG_WALLETS)]],
        "to": om.address,
        "data": data,
        "gas": hex(600_000),
    }


def reorg(node: Node, depth: int, txs: list[tuple[dict[str, Any], int]] | None = None) -> None:
    node.anvil.call("anvil_reorg", depth, [[t, off] for t, off in txs or []])


def write_toml(tmp: Path, urls: list[str], deployment: dict[str, Any], dsn: str, **indexer: Any) -> Path:
    """A config file for running `python -m indexer` as a child process."""
    dep = tmp / f"deployment-{uuid.uuid4().hex[:6]}.json"
    dep.write_text(json.dumps(deployment))
    opts = {"metrics_port": -1, "progress": "log", "use_websocket": False, **indexer}

    def toml(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else json.dumps(v)

    lines = [
        "[database]",
        f"dsn = {toml(dsn)}",
        "[chain]",
        f"chain_id = {deployment['chain_id']}",
        f"rpc_urls = {toml(urls)}",
        f"deployment = {toml(str(dep))}",
        "finality_depth = 64",
        "[indexer]",
        *(f"{k} = {toml(v)}" for k, v in opts.items()),
    ]
    cfg = tmp / f"indexer-{uuid.uuid4().hex[:6]}.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def start_indexer(cfg: Path, log: Path) -> Any:
    import os
    import subprocess

    from tests.chain import ROOT

    out = open(log, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "indexer", "--config", str(cfg)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=out,
        stderr=out,
    )


def wait_caught_up(dsn: str, url: str, timeout: float = 90) -> None:
    """Until the checkpoint equals the node's latest block (number and hash)."""
    from tests.chain import rpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = fetch(dsn, "SELECT block_number, block_hash FROM idx.checkpoints")
        latest = rpc(url, "eth_getBlockByNumber", ["latest", False])
        if (
            rows
            and rows[0]["block_number"] == int(latest["number"], 16)
            and "0x" + bytes(rows[0]["block_hash"]).hex() == latest["hash"]
        ):
            return
        time.sleep(0.1)
    raise AssertionError("the indexer did not catch up with the node")


INDEX_DEFS = (
    "SELECT i.relname AS name, pg_get_indexdef(x.indexrelid) AS definition, x.indexrelid::bigint AS oid"
    " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE i.relnamespace = 'idx'::regnamespace"
)


def indexes(dsn: str) -> dict[str, tuple[str, int]]:
    """Schema idx's indexes: name -> (definition, oid)."""
    return {r["name"]: (r["definition"], r["oid"]) for r in fetch(dsn, INDEX_DEFS)}


def index_definitions(dsn: str) -> dict[str, str]:
    """Every index of schema idx, built or deferred (idx.deferred_indexes): name -> definition."""
    defs = {name: d for name, (d, _) in indexes(dsn).items()}
    for r in fetch(dsn, "SELECT name, definition FROM idx.deferred_indexes"):
        assert r["name"] not in defs, f"{r['name']} is both built and deferred"
        defs[r["name"]] = r["definition"]
    return defs
