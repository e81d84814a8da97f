"""Head latency: block announced (newHeads) → its rows committed and visible, with 1 s blocks.

    .venv/bin/python -m bench.indexer_latency [--blocks 120] [--events-per-block 10]

anvil --block-time 1 with the real deployment; every block carries events (a LogReplayer
transaction from bench/indexer_chain.py per block). `python -m indexer` runs as a child with its
websocket. This process subscribes to newHeads itself (arrival time per block hash) and LISTENs on
gl_outbox: the NOTIFY is delivered only after the batch commits, so "notified" = visible to every
reader. Latency = notified − announced, per block; p50/p90/p99 printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import orjson
import websockets
from web3 import Web3

from bench.indexer_backfill import PG_PORT, psql, write_config
from bench.indexer_chain import Model, Node, install_replayer, send_records
from core.deploy import DeployParams, anvil_account, deploy
from tests.chain import ROOT, Anvil


async def measure(anvil: Anvil, dsn: str, blocks: int, per_block: int, deployment: dict[str, object]) -> list[float]:
    announced: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()
    conn = await asyncpg.connect(dsn)
    seen_seq = 0

    def on_notify(_c: object, _pid: int, _channel: str, payload: str) -> None:
        nonlocal seen_seq
        seen_seq = max(seen_seq, int(payload.split(":")[1]))
        asyncio.get_running_loop().create_task(resolve(time.perf_counter()))

    async def resolve(at: float) -> None:
        rows = await reader.fetch(
            "SELECT DISTINCT '0x' || encode(block_hash, 'hex') AS h FROM idx.outbox"
            " WHERE seq > $1 AND block_hash IS NOT NULL",
            last_seq[0],
        )
        last_seq[0] = max(last_seq[0], seen_seq)
        for r in rows:
            t = announced.pop(r["h"], None)
            if t is not None:
                latencies.append(at - t)
        if len(latencies) >= blocks:
            done.set()

    last_seq = [0]
    reader = await asyncpg.connect(dsn)
    last_seq[0] = int(await reader.fetchval("SELECT coalesce(max(seq), 0) FROM idx.outbox"))
    await conn.add_listener("gl_outbox", on_notify)

    rng_model = __import__("random").Random(7)
    model = Model(rng_model, [rng_model.randbytes(20) for _ in range(50)], [rng_model.randbytes(20) for _ in range(5)])
    node = Node(anvil.url)
    sender = node.call("eth_accounts")[0]
    for _ in range(5):
        model.market_created()

    async def traffic() -> None:
        while not done.is_set():
            recs: list[list[bytes]] = [[], []]
            for _ in range(per_block):
                idx, rec = model.trade() if model.rng.random() < 0.7 else model.shares_traded()
                recs[idx].append(rec)
            await asyncio.to_thread(send_records, node, deployment, recs, sender, False)
            await asyncio.sleep(1.0)

    async with websockets.connect(anvil.ws_url) as ws:
        await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
        await ws.recv()
        task = asyncio.create_task(traffic())
        try:
            async with asyncio.timeout(blocks * 3 + 60):
                while not done.is_set():
                    with contextlib.suppress(TimeoutError):
                        raw = await asyncio.wait_for(ws.recv(), 1.0)
                        h = orjson.loads(raw)["params"]["result"]["hash"]
                        announced[h] = time.perf_counter()
        finally:
            task.cancel()
    await conn.close()
    await reader.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=120)
    parser.add_argument("--events-per-block", type=int, default=10)
    args = parser.parse_args()
    anvil = Anvil(block_time=1)
    db = f"gl_bench_{uuid.uuid4().hex[:8]}"
    proc = None
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 60}))
        deployment = deploy(w3, anvil_account(0), anvil_account(1).address, DeployParams())
        install_replayer(Node(anvil.url), deployment)
        psql(f"CREATE DATABASE {db}")
        dsn = f"postgresql://guesslyfe@127.0.0.1:{PG_PORT}/{db}"
        with tempfile.TemporaryDirectory() as tmp:
            cfg = write_config(Path(tmp), anvil.url, deployment, dsn, use_websocket=True)
            text = cfg.read_text().replace("[chain]\n", f'[chain]\nws_url = "{anvil.ws_url}"\n')
            cfg.write_text(text)
            proc = subprocess.Popen(
                [sys.executable, "-m", "indexer", "--config", str(cfg)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            time.sleep(4)
            lat = asyncio.run(measure(anvil, dsn, args.blocks, args.events_per_block, deployment))
        lat_ms = sorted(x * 1000 for x in lat)
        q = statistics.quantiles(lat_ms, n=100, method="inclusive")  # within the observed range
        print(
            f"| head latency, 1 s blocks, {args.events_per_block} events/block | {len(lat_ms)} blocks | "
            f"p50 {q[49]:.1f} ms | p90 {q[89]:.1f} ms | p99 {q[98]:.1f} ms | max {lat_ms[-1]:.1f} ms |"
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)
        anvil.stop()
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
