"""Keeper: 1,000 markets due at once — pipelined (the keeper's real path) vs serial send-and-wait.

A fresh anvil with 1 s blocks, the contracts deployed, N markets created and queued for
resolution, then past their end time. Both modes run the same code (keeper.jobs.resolve: read the
queue, getMarket by eth_call, simulate with eth_estimateGas, record in PostgreSQL, broadcast,
track to 1 confirmation):

- pipelined: one resolve run for all N markets (nonces allocated locally, many txs in flight);
- serial: one market at a time, each run waiting for its confirmation before the next is queued
  (what a naive send-and-wait keeper does). The serial run covers `--serial` markets (default 30)
  in the same run; its per-market time × N is the serial estimate for N (at 1 s blocks the serial
  cost is ~1 block per market, so running all N serially would take N seconds for no information).

    .venv/bin/python -m bench.keeper_resolve                 # 1000 pipelined, 30 serial
    .venv/bin/python -m bench.keeper_resolve --markets 200 --serial 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
from web3 import Web3

from core.config import ChainSettings, DatabaseSettings, RedisSettings, ServicesSettings, load_config, section
from core.contracts import load_deployment
from core.deploy import DeployParams, anvil_account, deploy
from indexer.migrate import apply_migrations
from keeper import jobs
from keeper.abi import encode_call
from keeper.keys import Signer
from keeper.leader import Leader
from keeper.metrics import Metrics
from keeper.rpc import Rpc
from keeper.settings import KeeperSettings, Settings
from keeper.tx import TxManager
from tests.chain import ROOT, Anvil

USDC = 10**6
DB = "gl_bench_keeper"


def send_all(w3: Web3, acct: Any, calls: list[tuple[str, bytes]], gas: int) -> None:
    """Signs and sends with consecutive nonces, then waits for every receipt."""
    nonce = w3.eth.get_transaction_count(acct.address, "pending")
    base = int(w3.eth.get_block("latest")["baseFeePerGas"])
    hashes = []
    for i, (to, data) in enumerate(calls):
        tx = {
            "type": 2,
            "chainId": w3.eth.chain_id,
            "nonce": nonce + i,
            "to": Web3.to_checksum_address(to),
            "data": data,
            "value": 0,
            "gas": gas,
            "maxFeePerGas": 4 * base + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        hashes.append(w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction))
    for h in hashes:
        assert w3.eth.wait_for_transaction_receipt(h, timeout=300)["status"] == 1


async def wait_blocks(anvil: Anvil, n: int) -> None:
    target = anvil.head() + n
    for _ in range(600):
        if anvil.head() >= target:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("anvil stopped producing blocks")


async def run(markets: int, serial: int, profile: bool = False) -> dict[str, Any]:
    cfg = load_config(ROOT / "config" / "local.toml")
    services = section(cfg, "services", ServicesSettings)
    admin_dsn = f"postgresql://guesslyfe@127.0.0.1:{services.pg_port}/postgres"
    dsn = f"postgresql://guesslyfe@127.0.0.1:{services.pg_port}/{DB}"
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await conn.execute(f"CREATE DATABASE {DB}")
    await conn.close()
    conn = await asyncpg.connect(dsn)
    await apply_migrations(conn)
    await conn.close()

    anvil = Anvil(block_time=1)
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 60}))
        admin, keeper = anvil_account(0), anvil_account(1)
        record = deploy(w3, admin, keeper.address, DeployParams())
        dep_path = Path("/tmp") / f"gl_bench_keeper_{anvil.port}.json"
        dep_path.write_text(json.dumps(record))
        dep = load_deployment(dep_path)
        total = markets + serial
        end = int(w3.eth.get_block("latest")["timestamp"]) + 600
        send_all(
            w3,
            admin,
            [
                (dep.usdc, encode_call("MockUSDC", "mint", admin.address, total * 10 * USDC)),
                (dep.usdc, encode_call("MockUSDC", "approve", dep.opinion_market, 2**255)),
            ],
            200_000,
        )
        t0 = time.monotonic()
        send_all(
            w3,
            admin,
            [
                (dep.opinion_market, encode_call("OpinionMarket", "createMarket", f"Q{i}?", "bench", end, 10 * USDC))
                for i in range(total)
            ],
            400_000,
        )
        print(f"created {total} markets in {time.monotonic() - t0:.1f}s")
        ids = list(range(1, total + 1))
        pipelined_ids, serial_ids = ids[:markets], ids[markets:]
        conn = await asyncpg.connect(dsn)
        await conn.executemany(
            "INSERT INTO idx.markets (chain_id, market_id, creator, question, category, end_time, initial_liquidity,"
            " yes_reserve, no_reserve, created_block, created_time, created_tx)"
            " VALUES (31337, $1, $2, 'Q?', 'bench', to_timestamp($3), 0, 1, 1, 1, now(), '\\x00')",
            [(m, bytes.fromhex(admin.address[2:]), end) for m in ids],
        )
        await conn.executemany(
            "INSERT INTO keeper.resolution_queue (chain_id, market_id, outcome, reason, requested_by)"
            " VALUES (31337, $1, 1, 'bench', 'bench')",
            [(m,) for m in pipelined_ids],
        )
        anvil.call("evm_increaseTime", hex(1200))
        await wait_blocks(anvil, 2)

        settings = Settings(
            keeper=KeeperSettings(
                signer="raw", local_dev_raw_key=True, dev_anvil_account=1, confirmations=1, replace_after_blocks=5
            ),
            chain=ChainSettings(chain_id=31337, rpc_urls=(anvil.url,), deployment=str(dep_path)),
            database=DatabaseSettings(dsn=dsn),
            redis=RedisSettings(),
            services=services,
        )
        leader = Leader(dsn, 31337)
        metrics = Metrics()
        async with Rpc((anvil.url,)) as rpc, asyncpg.create_pool(dsn, min_size=1, max_size=4) as pool:
            assert await leader.try_acquire() is not None
            tx = TxManager(rpc, pool, Signer(keeper), settings, lambda: leader.fence, metrics)
            ctx = jobs.Context(
                settings=settings,
                pool=pool,
                rpc=rpc,
                deployment=dep,
                metrics=metrics,
                tx=tx,
                signer_address=keeper.address,
                epoch=lambda: leader.fence.epoch if leader.fence else None,
            )
            # ---- pipelined
            start_block = anvil.head()
            t0 = time.monotonic()
            if profile:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                prof.enable()
            counts = await jobs.resolve(ctx)
            t_sent = time.monotonic() - t0
            if profile:
                prof.disable()
                pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
            await tx.wait_idle(timeout_s=600, poll_s=0.2)
            t_pipe = time.monotonic() - t0
            last_block = await conn.fetchval("SELECT max(mined_block) FROM keeper.txs")
            resolved = await conn.fetchval("SELECT count(*) FROM keeper.txs WHERE status = 'confirmed'")
            assert counts["sent"] == markets, counts
            assert resolved == markets
            blocks_pipe = int(last_block) - start_block
            # ---- serial send-and-wait, same code path, one market at a time
            t1 = time.monotonic()
            serial_start_block = anvil.head()
            for m in serial_ids:
                await conn.execute(
                    "INSERT INTO keeper.resolution_queue (chain_id, market_id, outcome, reason, requested_by)"
                    " VALUES (31337, $1, 1, 'bench', 'bench')",
                    m,
                )
                assert (await jobs.resolve(ctx))["sent"] == 1
                await tx.wait_idle(timeout_s=60, poll_s=0.2)
            t_serial = time.monotonic() - t1
            serial_blocks = anvil.head() - serial_start_block
            await leader.release()
        await conn.close()
        per_serial = t_serial / max(1, serial)
        est_serial = per_serial * markets
        return {
            "markets": markets,
            "pipelined_s": round(t_pipe, 2),
            "pipelined_send_s": round(t_sent, 2),
            "pipelined_blocks": blocks_pipe,
            "serial_markets": serial,
            "serial_s": round(t_serial, 2),
            "serial_blocks": serial_blocks,
            "serial_per_market_s": round(per_serial, 3),
            "serial_estimate_s": round(est_serial, 1),
            "speedup": round(est_serial / t_pipe, 1),
        }
    finally:
        anvil.stop()
        conn = await asyncpg.connect(admin_dsn)
        await conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        await conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--markets", type=int, default=1000)
    p.add_argument("--serial", type=int, default=30)
    p.add_argument("--profile", action="store_true", help="cProfile the pipelined resolve run")
    args = p.parse_args()
    r = asyncio.run(run(args.markets, args.serial, args.profile))
    print(json.dumps(r, indent=2))
    print(
        f"| {r['markets']} | {r['pipelined_s']} s | {r['pipelined_blocks']} | {r['serial_per_market_s']} s × "
        f"{r['markets']} = {r['serial_estimate_s']} s (measured on {r['serial_markets']}: {r['serial_s']} s, "
        f"{r['serial_blocks']} blocks) | {r['speedup']}× |"
    )


if __name__ == "__main__":
    main()
