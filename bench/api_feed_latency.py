"""Feed latency: block announced by the node → the trade's message received by a feed client.

anvil mines a block every second; a wallet sends one buy per block. The bench process listens to
the node's `newHeads` (websocket) and to the feed (subscribed to the market's room) and, for each
trade message, takes (receipt time of the message) − (time the node announced its block). The
indexer (live mode, newHeads over websocket) runs in a thread of this process; the API + feed run
as `python -m api` in their own process.

    .venv/bin/python -m bench.api_feed_latency [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import asyncpg
from websockets.asyncio.client import connect

from bench.api_http import JWT, PG, _psql, wait_http
from core.contracts import load_abi
from core.deploy import DeployParams, anvil_account, deploy
from tests.chain import Anvil, free_port

PY = sys.executable
U = 10**6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    asyncio.run(run(args.seconds))


async def run(seconds: int) -> None:
    from web3 import Web3

    from indexer.migrate import apply_migrations
    from indexer.service import run as run_indexer
    from tests.indexer.helpers import make_settings

    node = Anvil(block_time=1)
    w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
    deployment = deploy(w3, anvil_account(0), anvil_account(1).address, DeployParams())
    c = deployment["contracts"]
    om = w3.eth.contract(address=c["OpinionMarket"], abi=load_abi("OpinionMarket"))
    usdc = w3.eth.contract(address=c["USDC"], abi=load_abi("MockUSDC"))
    creator, trader = w3.eth.accounts[2], w3.eth.accounts[3]
    for who in (creator, trader):
        w3.eth.wait_for_transaction_receipt(usdc.functions.mint(who, 10**6 * U).transact({"from": who}))
        w3.eth.wait_for_transaction_receipt(usdc.functions.approve(om.address, 2**256 - 1).transact({"from": who}))
    end = w3.eth.get_block("latest")["timestamp"] + 86400
    w3.eth.wait_for_transaction_receipt(
        om.functions.createMarket("Latency?", "bench", end, 1000 * U).transact({"from": creator})
    )
    market = om.functions.marketCount().call()

    name = f"gl_bench_lat_{uuid.uuid4().hex[:6]}"
    _psql(f"CREATE DATABASE {name}")
    dsn = f"{PG}/{name}"
    conn = await asyncpg.connect(dsn)
    await apply_migrations(conn)
    await conn.close()
    tmp = Path(tempfile.mkdtemp())
    settings = make_settings(node.url, deployment, dsn, tmp, ws_url=node.ws_url, poll_interval=0.2)
    loop_box: list[asyncio.AbstractEventLoop] = []

    def indexer_thread() -> None:
        async def go() -> None:
            loop_box.append(asyncio.get_running_loop())
            await run_indexer(settings, stop_ix)

        stop_ix = asyncio.Event()
        stopper.append(stop_ix)
        asyncio.run(go())

    stopper: list[asyncio.Event] = []
    th = threading.Thread(target=indexer_thread, daemon=True)
    th.start()
    port, feed = free_port(), free_port()
    cfg = tmp / "api.toml"
    cfg.write_text(f"""
[database]
dsn = "{dsn}"
[redis]
url = "redis://127.0.0.1:56379/14"
[chain]
chain_id = 31337
rpc_urls = ["{node.url}"]
[api]
port = {port}
feed_port = {feed}
rate_limit_enabled = false
""")
    server = subprocess.Popen(  # noqa: ASYNC220
        [PY, "-m", "api", "--config", str(cfg), "--log-level", "warning"],
        env={**os.environ, "GL_API_JWT_SECRET": JWT},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    heads: dict[int, float] = {}
    lat: list[float] = []
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/health")

        async def watch_heads() -> None:
            async with connect(node.ws_url) as ws:
                await ws.send(
                    json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})
                )
                async for frame in ws:
                    t = time.time()
                    m = json.loads(frame)
                    if m.get("method") == "eth_subscription":
                        heads[int(m["params"]["result"]["number"], 16)] = t

        async def trade() -> None:
            nonce = w3.eth.get_transaction_count(trader)
            while True:
                await asyncio.sleep(1)
                tx = om.functions.buy(market, 1, 1 * U, 0, 2**40).build_transaction(
                    {"from": trader, "nonce": nonce, "gas": 300_000}
                )
                await asyncio.to_thread(w3.eth.send_transaction, tx)
                nonce += 1

        heads_task = asyncio.create_task(watch_heads())
        async with connect(f"ws://127.0.0.1:{feed}") as ws:
            await ws.send(json.dumps({"op": "subscribe", "rooms": [f"market:{market}"]}))
            trade_task = asyncio.create_task(trade())
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    async with asyncio.timeout(5):
                        frame = await ws.recv()
                except TimeoutError:
                    continue
                t = time.time()
                m = json.loads(frame)
                if m.get("event") == "market:trade":
                    b = m["id"]["blockNumber"]
                    if b in heads:
                        lat.append(t - heads[b])
            trade_task.cancel()
        heads_task.cancel()
    finally:
        if stopper and loop_box:
            loop_box[0].call_soon_threadsafe(stopper[0].set)
        th.join(15)
        server.terminate()
        server.wait(10)
        node.stop()
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    lat.sort()
    q = [lat[min(len(lat) - 1, max(0, -(-len(lat) * k // 100) - 1))] for k in range(1, 100)]  # nearest rank
    print(
        f"| 1 s blocks, {len(lat)} trades | p50 {q[49] * 1000:.0f} ms | p99 {q[98] * 1000:.0f} ms "
        f"| max {lat[-1] * 1000:.0f} ms |"
    )


if __name__ == "__main__":
    main()
