"""Two chains, one database, one API and feed: two anvils with different chain ids, an indexer for
each, `python -m api` serving both. A trade on each chain reaches the API and the feed of its
chain only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from web3 import Web3
from web3.logs import DISCARD
from websockets.sync.client import connect

from core.deploy import DeployParams, anvil_account, deploy, write_deployment
from tests.chain import ROOT, Anvil, free_port
from tests.e2e.stack import Stack, feed_messages, wait_until, write_config
from tests.e2e.test_stack import USDC, Wallet, deadline

pytestmark = [pytest.mark.pg, pytest.mark.redis, pytest.mark.anvil, pytest.mark.slow]
CHAINS = (31337, 1337)  # both local chain ids (MockUSDC deploys only there)


def test_two_chains_through_one_api_and_feed_without_crossing(tmp_path: Path, db_dsn: str, redis_url: str) -> None:
    """Each chain's market and trade are served under its chainId only, over HTTP and the feed."""
    anvils = {c: Anvil(block_time=1, chain_id=c) for c in CHAINS}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        stacks: dict[int, Stack] = {}
        api_port, feed_port = free_port(), free_port()
        extra = f"chain_ids = [{', '.join(map(str, CHAINS))}]"
        for c, anvil in anvils.items():
            w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
            record = deploy(w3, anvil_account(0), anvil_account(1).address, DeployParams(lock_period=60))
            folder = tmp_path / str(c)
            folder.mkdir()
            ports = {"indexer": free_port(), "keeper": free_port(), "api": api_port, "feed": feed_port}
            config = folder / "stack.toml"
            write_config(config, anvil, db_dsn, redis_url, write_deployment(record, folder), ports, c, extra)
            logs = folder / "logs"
            logs.mkdir()
            stacks[c] = Stack(anvil, w3, record, config, f"http://127.0.0.1:{api_port}", "", logs)
            services = [("indexer", ["-m", "indexer"])]
            if c == CHAINS[0]:
                services.append(("api", ["-m", "api"]))  # the default chain's config also lists the other
            for name, argv in services:
                proc = subprocess.Popen(
                    [sys.executable, *argv, "--config", str(config)],
                    cwd=ROOT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    stdout=(logs / f"{name}.log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
                procs.append(proc)
                stacks[c].procs[name] = proc
        api = f"http://127.0.0.1:{api_port}"
        first = stacks[CHAINS[0]]
        wait_until(lambda: requests.get(api + "/health", timeout=2).status_code == 200, "API /health", 60, first)

        feeds = {c: connect(f"ws://127.0.0.1:{feed_port}/?chainId={c}", open_timeout=10) for c in CHAINS}
        try:
            for ws in feeds.values():
                ws.send('{"op":"subscribe","rooms":["global:all"]}')
                feed_messages(ws, lambda m: m.get("type") == "subscribed", 10)
            trades = {}
            for c, s in stacks.items():
                w = Wallet(s, anvil_account(5))
                w.fund()
                end = int(s.w3.eth.get_block("latest")["timestamp"]) + 3600
                receipt = w.send(w.om.functions.createMarket(f"Only on chain {c}?", "tech", end, 100 * USDC))
                market = w.om.events.MarketCreated().process_receipt(receipt, errors=DISCARD)[0].args.marketId
                receipt = w.send(w.om.functions.buy(market, 1, 10 * USDC, 0, deadline(s.w3)))
                trades[c] = "0x" + bytes(receipt["transactionHash"]).hex()
            for c, ws in feeds.items():
                seen = feed_messages(
                    ws, lambda m, c=c: m.get("event") == "market:trade" and m["data"]["txHash"] == trades[c], 60
                )
                others = [m for m in seen if m.get("type") == "event"]
                assert all(m["id"]["chainId"] == c for m in others), json.dumps(others)[:1000]
            for c in CHAINS:
                other = CHAINS[1] if c == CHAINS[0] else CHAINS[0]

                def served(c: int = c) -> list[dict[str, object]]:
                    r = requests.get(api + "/v1/markets", params={"chainId": c}, timeout=10).json()
                    return [m for m in r["data"] if m["question"] == f"Only on chain {c}?" and m["trades"] == 1]

                wait_until(served, f"chain {c}'s market in the API", 60, stacks[c])
                body = requests.get(api + "/v1/markets", params={"chainId": c}, timeout=10).json()
                assert body["asOf"]["chainId"] == c
                assert all(m["question"] != f"Only on chain {other}?" for m in body["data"])
        finally:
            for ws in feeds.values():
                ws.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for anvil in anvils.values():
            anvil.stop()
