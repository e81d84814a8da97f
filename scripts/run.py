"""`make run`: the whole local system on this machine.

Starts PostgreSQL, Redis and anvil (1 s blocks, state kept in .data/ so a second run resumes),
deploys the contracts when the chain does not have them, migrates the database (and resets it
when the chain was replaced), then runs the wallet-traffic simulator, the indexer, the keeper and
the API + feed as child processes with logs under .data/log/. Prints the URLs and, on a terminal,
a one-screen live status. Ctrl-C (or `make stop`) stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import requests

from api.settings import ApiSection
from core.config import ChainSettings, DatabaseSettings, ServicesSettings, load_config, section

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
LOG_DIR = DATA / "log"
PY = sys.executable


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return LOG_DIR / f"{self.name}.log"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, cwd=ROOT)


def rpc(url: str, method: str, params: list[Any] | None = None) -> Any:
    r = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}, timeout=10)
    r.raise_for_status()
    return r.json().get("result")


def deployment_live(rpc_url: str, path: Path) -> bool:
    """True when the deployment file exists and its OpinionMarket has code on the running chain."""
    if not path.exists():
        return False
    addr = json.loads(path.read_text())["contracts"]["OpinionMarket"]
    return rpc(rpc_url, "eth_getCode", [addr, "latest"]) not in (None, "0x")


def reset_database(services: ServicesSettings, db_name: str) -> None:
    base = ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(services.pg_port), "-U", "guesslyfe", "-d", "postgres"]
    sh(*base, "-c", f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
    sh(*base, "-c", f"CREATE DATABASE {db_name}")


async def status_lines(pool: asyncpg.Pool, chain_id: int) -> list[str]:
    async with pool.acquire() as conn:
        st = await conn.fetchrow("SELECT * FROM indexer_status WHERE chain_id = $1", chain_id)
        counts = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM idx.markets WHERE chain_id = $1) AS markets,
                      (SELECT count(*) FROM idx.markets WHERE chain_id = $1 AND resolved) AS resolved,
                      (SELECT count(*) FROM idx.ev_trade WHERE chain_id = $1) AS trades,
                      (SELECT count(*) FROM idx.ev_shares_traded WHERE chain_id = $1) AS share_trades,
                      (SELECT count(*) FROM idx.reorgs WHERE chain_id = $1) AS reorgs,
                      (SELECT coalesce(max(seq), 0) FROM idx.outbox) AS outbox""",
            chain_id,
        )
        keeper = None
        if await conn.fetchval("SELECT to_regclass('keeper.txs') IS NOT NULL"):
            keeper = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE status IN ('pending', 'mined')) AS pending,"
                " count(*) FILTER (WHERE status = 'confirmed') AS confirmed FROM keeper.txs"
            )
    lines = []
    if st is None:
        lines.append("indexer: starting…")
    else:
        lines.append(
            f"chain head {st['head_block']}  indexed {st['indexed_block']}  lag {st['lag_blocks']} blocks"
            f"  safe {st['safe_block']}  finalized {st['finalized_block']}"
        )
    lines.append(
        f"markets {counts['markets']} ({counts['resolved']} resolved)  trades {counts['trades']}"
        f"  share trades {counts['share_trades']}  reorgs {counts['reorgs']}  feed seq {counts['outbox']}"
    )
    if keeper is not None:
        lines.append(f"keeper txs: {keeper['pending']} pending, {keeper['confirmed']} confirmed")
    return lines


async def supervise(children: list[Child], dsn: str, chain_id: int, urls: list[str], stop: asyncio.Event) -> None:
    tty = sys.stdout.isatty()
    pool = None
    while not stop.is_set():
        for c in children:
            if c.proc is not None and c.proc.poll() is not None:
                print(f"!! {c.name} exited with code {c.proc.returncode}; see {c.log_path}", flush=True)
                c.proc = None
        if tty:
            try:
                if pool is None:
                    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
                lines = await status_lines(pool, chain_id)
            except (OSError, asyncpg.PostgresError) as exc:
                lines = [f"status unavailable: {exc}"]
            running = ", ".join(f"{c.name}{'' if c.proc else ' (stopped)'}" for c in children)
            sys.stdout.write(
                "\x1b[H\x1b[2J"
                + "\n".join([*urls, "", *lines, "", f"processes: {running}", "Ctrl-C stops everything."])
                + "\n"
            )
            sys.stdout.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    if pool is not None:
        await pool.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default="config/local.toml")
    p.add_argument("--rate", type=float, default=4.0, help="simulated transactions per second")
    p.add_argument("--seed", type=int, default=int(time.time()))
    args = p.parse_args()

    config = load_config(args.config)
    services = section(config, "services", ServicesSettings)
    chain = section(config, "chain", ChainSettings)
    db = section(config, "database", DatabaseSettings)
    api = section(config, "api", ApiSection)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (DATA / "run").mkdir(parents=True, exist_ok=True)
    (DATA / "run" / "stack.pid").write_text(str(os.getpid()))

    sh(str(ROOT / "scripts" / "services.sh"), "start", "pg", "redis", "anvil")
    deployment = ROOT / (chain.deployment or f"deployments/{chain.chain_id}.json")
    if not deployment_live(chain.rpc_urls[0], deployment):
        print("deploying contracts (new chain) and resetting the database…", flush=True)
        sh(PY, "-m", "scripts.deploy", "--config", args.config)
        reset_database(services, db.dsn.rsplit("/", 1)[1])
    sh(PY, "-m", "indexer", "migrate", "--config", args.config)

    cfg = ["--config", args.config]
    children = [
        Child("indexer", [PY, "-m", "indexer", *cfg]),
        Child("keeper", [PY, "-m", "keeper", "run", *cfg]),
        Child("api", [PY, "-m", "api", *cfg]),
        Child("operator", [PY, "-m", "scripts.operator", *cfg, "--seed", str(args.seed)]),
        Child("simulator", [PY, "-m", "scripts.simulate", *cfg, "--seed", str(args.seed), "--rate", str(args.rate)]),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for c in children:
        c.proc = subprocess.Popen(c.argv, cwd=ROOT, env=env, stdout=c.log_path.open("ab"), stderr=subprocess.STDOUT)

    dep_name = deployment.relative_to(ROOT)
    urls = [
        f"API          http://127.0.0.1:{api.port}/v1/markets",
        f"API docs     http://127.0.0.1:{api.port}/docs   (OpenAPI: /openapi.json)",
        f"feed         ws://127.0.0.1:{api.feed_port}   (docs/feed.md)",
        f"metrics      http://127.0.0.1:{api.port}/metrics  http://127.0.0.1:{services.indexer_metrics_port}/metrics"
        f"  http://127.0.0.1:{services.keeper_metrics_port}/metrics",
        f"chain        {chain.rpc_urls[0]} (anvil, chain id {chain.chain_id}, contracts in {dep_name})",
        f"PostgreSQL   {db.dsn}   Redis redis://127.0.0.1:{services.redis_port}",
        f"logs         {LOG_DIR.relative_to(ROOT)}/",
    ]
    print("\n".join(urls), flush=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await supervise(children, db.dsn, chain.chain_id, urls, stop)

    try:
        asyncio.run(run())
    finally:
        print("\nstopping…", flush=True)
        for c in reversed(children):  # traffic first, then readers and writers
            if c.proc is not None and c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
        for c in reversed(children):
            if c.proc is not None:
                try:
                    c.proc.wait(20)
                except subprocess.TimeoutExpired:
                    c.proc.kill()
        sh(str(ROOT / "scripts" / "services.sh"), "stop")
        (DATA / "run" / "stack.pid").unlink(missing_ok=True)
        print("stopped; `make run` resumes from here.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
