"""Backfill and rebuild benchmark: N consistent events on a fresh anvil, indexed from genesis.

    .venv/bin/python -m bench.indexer_backfill [--events 1000000] [--per-block 200]

1. anvil (gas limit 1e9) + the real deployment; bench/indexer_chain.py replays N events through
   LogReplayer (anvil_setCode at the contract addresses), `per-block` events per block.
2. A fresh database; `python -m indexer --exit-at-head` as a child process: events/s end to end
   (raw + derived + blocks + outbox + checkpoint committed) and the child's peak RSS.
3. Rebuild: `python -m indexer reset`, then the same run again (the chain is unchanged): time.

Prints one markdown table row per run; figures go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from web3 import Web3

from bench.indexer_chain import build_chain
from core.deploy import DeployParams, anvil_account, deploy
from tests.chain import ROOT, Anvil

PG_PORT = 55432


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "guesslyfe", "-d", "postgres", "-c", sql],
        check=True,
        capture_output=True,
    )


def write_config(tmp: Path, url: str, deployment: dict[str, object], dsn: str, **indexer: object) -> Path:
    dep = tmp / "deployment.json"
    dep.write_text(json.dumps(deployment))
    opts = {"metrics_port": -1, "progress": "log", "use_websocket": False, "log_level": "warning", **indexer}
    lines = [
        "[database]",
        f'dsn = "{dsn}"',
        "[chain]",
        f"chain_id = {deployment['chain_id']}",
        f'rpc_urls = ["{url}"]',
        f'deployment = "{dep}"',
        "[indexer]",
        *(f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}" for k, v in opts.items()),
    ]
    cfg = tmp / "indexer.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def run_indexer(cfg: Path, *args: str) -> tuple[float, int]:
    """Runs the indexer CLI as a child; returns (seconds, exit code)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "indexer", *args, "--config", str(cfg)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    return time.perf_counter() - started, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--per-block", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--target-events", type=int, default=10_000)
    parser.add_argument("--no-rebuild", action="store_true")
    args = parser.parse_args()

    node = Anvil(extra_args=("--gas-limit", "2000000000"))
    db = f"gl_bench_{uuid.uuid4().hex[:8]}"
    try:
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
        deployment = deploy(w3, anvil_account(0), anvil_account(1).address, DeployParams())
        chain = build_chain(node.url, deployment, args.events, per_block=args.per_block)
        print(
            f"chain: {chain.events} events in {chain.blocks} blocks ({chain.first_block}..{chain.last_block}), "
            f"built in {chain.seconds:.1f} s",
            flush=True,
        )
        psql(f"CREATE DATABASE {db}")
        dsn = f"postgresql://guesslyfe@127.0.0.1:{PG_PORT}/{db}"
        with tempfile.TemporaryDirectory() as tmp:
            cfg = write_config(
                Path(tmp),
                node.url,
                deployment,
                dsn,
                concurrency=args.concurrency,
                target_events=args.target_events,
                initial_span=100,
            )
            seconds, code = run_indexer(cfg, "--exit-at-head")
            rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            assert code == 0, f"indexer exited {code}"
            total = chain.events + 4  # + the deployment's own events (roles, configuration)
            print(
                f"| backfill | {chain.events:,} events, {chain.blocks:,} blocks | {seconds:.1f} s | "
                f"{total / seconds:,.0f} events/s | peak RSS {rss_mb:.0f} MB |",
                flush=True,
            )
            if not args.no_rebuild:
                _, code = run_indexer(cfg, "reset")
                assert code == 0
                seconds, code = run_indexer(cfg, "--exit-at-head")
                assert code == 0
                rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
                print(
                    f"| rebuild (reset + re-index) | same chain | {seconds:.1f} s | {total / seconds:,.0f} events/s | "
                    f"peak RSS {rss_mb:.0f} MB |",
                    flush=True,
                )
    finally:
        node.stop()
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
