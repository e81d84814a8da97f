"""Durable numbers and the limit (issue 16): one chain, one bench-owned PostgreSQL cluster, one run.

    .venv/bin/python -m bench.indexer_limit [--events 200000] [--per-block 200] [--skip-latency]

1. anvil + the real deployment + `--events` replayed events (bench/indexer_chain.py).
2. A PostgreSQL cluster of this run only (bench/pgcluster.py), first with PostgreSQL's default
   durability (fsync, synchronous_commit, full_page_writes on), then with the local stack's settings
   (all three off), switched by ALTER SYSTEM. For each, on fresh databases:
   - the full backfill: `python -m indexer --exit-at-head` (raw + derived rows, blocks, undo, outbox,
     checkpoint; the deferred indexes built at the end), and
   - the raw-only pipeline: `python -m bench.raw_only` (fetch + decode + COPY of the raw event rows,
     nothing derived), the indexer's own fetch side;
   events/s of each, the ratio full / raw-only in seconds, and peak RSS.
3. Durable settings again, the full backfill through bench/throttle.py: 25 calls/s (a batch of n
   calls costs n), 50 ms round trips, eth_getLogs capped at 2,000 blocks. The ceiling that budget
   allows is computed from the chain: a correct index of it needs at least one eth_getLogs per 2,000
   blocks and one header (eth_getBlockByNumber) per block that has events (the block's time and
   parent hash are stored with its rows; these logs carry neither), so
       ceiling events/s = 25 x events / (ceil(blocks / 2000) + blocks with events).
4. Head latency (1 s blocks, bench/indexer_latency.py's measurement) on durable settings.

Prints markdown rows; figures go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from web3 import Web3

from bench.indexer_backfill import rss_text, run_indexer, write_config
from bench.indexer_chain import Node, build_chain, install_replayer
from bench.indexer_latency import measure
from bench.pgcluster import DURABLE, LOCAL_STACK, Cluster
from bench.throttle import Throttle
from core.deploy import DeployParams, anvil_account, deploy
from tests.chain import ROOT, Anvil


def backfill_seconds(into: list[float]) -> object:
    """A log callback keeping the `backfill_done` seconds (the backfill loop, without start-up and the
    index builds after it)."""

    def take(line: dict[str, object]) -> None:
        if line.get("event") == "backfill_done":
            into.append(float(str(line["seconds"])))
        elif line.get("level") in ("error", "critical"):
            print(f"  indexer: {str(line.get('exception') or line)[-1500:]}", file=sys.stderr, flush=True)

    return take


def full(pg: Cluster, node_url: str, deployment: dict[str, object], tmp: Path, db: str) -> tuple[float, float, str]:
    """(process seconds, backfill-loop seconds, RSS text) of `python -m indexer --exit-at-head`."""
    dsn = pg.create_database(db)
    cfg = write_config(tmp, node_url, deployment, dsn, log_level="info", progress="log")
    loops: list[float] = []
    run = run_indexer(cfg, "--exit-at-head", on_log=backfill_seconds(loops))  # type: ignore[arg-type]
    if run.code != 0:
        raise SystemExit(f"indexer exited {run.code}")
    return run.seconds, sum(loops), rss_text(run)


def raw_only(pg: Cluster, node_url: str, deployment: dict[str, object], tmp: Path, db: str) -> tuple[float, int]:
    """(seconds, events) of the raw-only pipeline into a migrated, empty database."""
    dsn = pg.create_database(db)
    cfg = write_config(tmp, node_url, deployment, dsn)
    if run_indexer(cfg, "migrate").code != 0:
        raise SystemExit("migrate failed")
    out = subprocess.run(
        [sys.executable, "-m", "bench.raw_only", "--config", str(cfg)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return float(got["seconds"]), int(got["events"])


def blocks_with_events(url: str, first: int, last: int) -> int:
    """Blocks from `first` to `last` holding at least one transaction (the deployment's blocks included)."""
    node = Node(url)
    return sum(1 for b in range(first, last + 1) if int(node.call("eth_getBlockTransactionCountByNumber", hex(b)), 16))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--per-block", type=int, default=200)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--rtt", type=float, default=0.05)
    parser.add_argument("--range-cap", type=int, default=2000)
    parser.add_argument("--latency-blocks", type=int, default=100)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throttled", action="store_true")
    args = parser.parse_args()
    print(f"python -m bench.indexer_limit --events {args.events} --per-block {args.per_block}", flush=True)

    node = Anvil(extra_args=("--gas-limit", "2000000000"))
    with Cluster() as pg, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        try:
            w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
            deployment = deploy(w3, anvil_account(0), anvil_account(1).address, DeployParams())
            chain = build_chain(node.url, deployment, args.events, per_block=args.per_block)
            total = chain.events + 4  # + the deployment's own events (roles, configuration)
            print(f"chain: {chain.events:,} events in {chain.blocks:,} blocks, built in {chain.seconds:.0f} s")
            print("| settings | pipeline | seconds (process / backfill loop) | events/s (loop) | full / raw | RSS |")
            print("|---|---|---|---|---|---|")
            for name, settings in (("durable", DURABLE), ("local stack", LOCAL_STACK)):
                shown = pg.settings(settings)
                label = f"{name} ({', '.join(f'{k}={v}' for k, v in shown.items())})"
                raw_s, raw_n = raw_only(pg, node.url, deployment, tmp, "gl_raw")
                print(f"| {label} | raw-only | {raw_s:.1f} | {raw_n / raw_s:,.0f} | | |", flush=True)
                proc_s, loop_s, rss = full(pg, node.url, deployment, tmp, "gl_full")
                print(
                    f"| {label} | full backfill | {proc_s:.1f} / {loop_s:.1f} | {total / loop_s:,.0f} | "
                    f"{loop_s / raw_s:.2f}x | {rss} |",
                    flush=True,
                )
            if not args.skip_throttled:
                pg.settings(DURABLE)
                with_events = blocks_with_events(node.url, 0, chain.last_block)
                ranges = math.ceil((chain.last_block + 1) / args.range_cap)
                minimum = ranges + with_events
                ceiling = args.rate * total / minimum
                with Throttle(node.url, args.rate, args.rtt, args.range_cap) as proxy:
                    started = time.monotonic()
                    proc_s, loop_s, rss = full(pg, proxy.url, deployment, tmp, "gl_throttled")
                    wall = time.monotonic() - started
                print(
                    f"throttled provider ({args.rate:g} calls/s, {args.rtt * 1000:.0f} ms round trips, "
                    f"{args.range_cap:,}-block cap), durable: backfill loop {loop_s:.1f} s, "
                    f"{total / loop_s:,.0f} events/s = {total / loop_s / ceiling:.0%} of the ceiling "
                    f"{ceiling:,.0f} events/s ({args.rate:g} x {total:,} events / ({ranges} eth_getLogs"
                    f" + {with_events:,} headers)); process {proc_s:.1f} s; "
                    f"calls answered {proxy.calls:,} (minimum {minimum:,}), refused for the budget {proxy.refused:,}, "
                    f"ranges refused for the cap {proxy.capped}, HTTP requests {proxy.requests:,}; "
                    f"budget used {proxy.calls / (wall * args.rate):.0%} of {wall:.1f} s; {rss}",
                    flush=True,
                )
        finally:
            node.stop()
        if not args.skip_latency:
            pg.settings(DURABLE)
            latency(pg, tmp, args.latency_blocks)


def latency(pg: Cluster, tmp: Path, blocks: int, per_block: int = 10) -> None:
    """bench/indexer_latency.py's measurement against the bench cluster (its current settings)."""
    anvil = Anvil(block_time=1)
    proc = None
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 60}))
        deployment = deploy(w3, anvil_account(0), anvil_account(1).address, DeployParams())
        install_replayer(Node(anvil.url), deployment)
        dsn = pg.create_database("gl_latency")
        cfg = write_config(tmp, anvil.url, deployment, dsn, use_websocket=True)
        cfg.write_text(cfg.read_text().replace("[chain]\n", f'[chain]\nws_url = "{anvil.ws_url}"\n'))
        proc = subprocess.Popen(
            [sys.executable, "-m", "indexer", "--config", str(cfg)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        time.sleep(4)
        lat = asyncio.run(measure(anvil, dsn, blocks, per_block, deployment))
        lat_ms = sorted(x * 1000 for x in lat)
        q = statistics.quantiles(lat_ms, n=100, method="inclusive")
        print(
            f"| head latency, durable, 1 s blocks, {per_block} events/block | {len(lat_ms)} blocks | "
            f"p50 {q[49]:.1f} ms | p90 {q[89]:.1f} ms | p99 {q[98]:.1f} ms | max {lat_ms[-1]:.1f} ms |",
            flush=True,
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)
        anvil.stop()


if __name__ == "__main__":
    main()
