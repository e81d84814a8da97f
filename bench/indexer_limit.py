"""Durable numbers and the limit (issue 16): one chain, one bench-owned PostgreSQL cluster, one run.

    .venv/bin/python -m bench.indexer_limit [--events 200000] [--per-block 200] [--skip-latency]
                                            [--against DIR]   # DIR's full backfill alternates with this one's

1. anvil + the real deployment + `--events` replayed events (bench/indexer_chain.py).
2. A PostgreSQL cluster of this run only (bench/pgcluster.py), first with PostgreSQL's default
   durability (fsync, synchronous_commit, full_page_writes on), then with the local stack's settings
   (all three off), switched by ALTER SYSTEM. For each, on fresh databases:
   - the full backfill: `python -m indexer --exit-at-head` (raw + derived rows, blocks, undo, outbox,
     checkpoint; the deferred indexes built at the end), and
   - the raw-only pipeline: `python -m bench.raw_only` (fetch + decode + COPY of the raw event rows,
     nothing derived), the indexer's own fetch side;
   events/s of each, the ratio full / raw-only in seconds, and peak RSS. Beside each loop, the
   core-seconds the whole machine was busy during it (/proc/stat: anvil, PostgreSQL, the indexer
   and its fetch process together): spread over every core, that is the shortest the loop could be
   on this machine (the "CPU floor"), however well its stages overlap.
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
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from web3 import Web3

from bench.indexer_backfill import machine_busy_seconds, rss_text, run_indexer, write_config
from bench.indexer_chain import Node, build_chain, install_replayer
from bench.indexer_latency import measure
from bench.pgcluster import DURABLE, LOCAL_STACK, Cluster
from bench.throttle import Throttle
from core.deploy import DeployParams, anvil_account, deploy
from tests.chain import ROOT, Anvil

CORES = os.cpu_count() or 1


@dataclasses.dataclass
class Measured:
    seconds: float  # the pipeline's own loop (backfill_done; raw_only's timing)
    process: float  # the whole process, start-up and (full) the index builds included
    events: int
    cpu: dict[str, float]  # CPU seconds: the writer, its fetch process, the bench cluster
    rss: str = ""
    fetch_wait: float = 0.0  # seconds the writer waited for the next fetched range
    machine: float = 0.0  # core-seconds the whole machine was busy during the loop (all processes)

    def machine_text(self) -> str:
        if math.isnan(self.machine):
            return "—"
        return f"{self.machine:.1f} ({self.machine / self.seconds / CORES:.0%})"

    def cpu_text(self) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in self.cpu.items())


def backfill_done(into: list[dict[str, object]]) -> Callable[[dict[str, object]], None]:
    """A log callback keeping the `backfill_done` lines (the backfill loop, without start-up and the
    index builds after it), each with `machine_cpu`: the core-seconds the whole machine was busy
    from its `backfill_started` line to it (read as the lines arrive); errors are printed."""
    busy_at_start: list[float] = []  # none from an indexer that does not log backfill_started

    def take(line: dict[str, object]) -> None:
        if line.get("event") == "backfill_started":
            busy_at_start[:] = [machine_busy_seconds()]
        elif line.get("event") == "backfill_done":
            busy = machine_busy_seconds() - busy_at_start.pop() if busy_at_start else math.nan
            into.append({**line, "machine_cpu": busy})
        elif line.get("level") in ("error", "critical"):
            print(f"  indexer: {str(line.get('exception') or line)[-1500:]}", file=sys.stderr, flush=True)

    return take


def full(pg: Cluster, node_url: str, deployment: dict[str, object], tmp: Path, db: str, root: Path = ROOT) -> Measured:
    """`python -m indexer --exit-at-head` into a fresh database, with the checkout at `root`."""
    dsn = pg.create_database(db)
    cfg = write_config(tmp, node_url, deployment, dsn, log_level="info", progress="log")
    done: list[dict[str, object]] = []
    pg0 = pg.cpu_seconds()
    run = run_indexer(cfg, "--exit-at-head", on_log=backfill_done(done), root=root)
    if run.code != 0 or not done:
        raise SystemExit(f"indexer exited {run.code}")
    cpu = {k: v for k, v in run.cpu.items() if k in ("writer", "fetch") and v is not None}
    cpu["postgres"] = pg.cpu_seconds() - pg0
    return Measured(
        sum(float(str(d["seconds"])) for d in done),
        run.seconds,
        sum(int(str(d["events"])) for d in done),
        cpu,
        rss_text(run),
        sum(float(str(d["fetch_wait_seconds"])) for d in done),
        sum(float(str(d["machine_cpu"])) for d in done),
    )


def raw_only(pg: Cluster, node_url: str, deployment: dict[str, object], tmp: Path, db: str) -> Measured:
    """The raw-only pipeline (bench/raw_only.py) into a migrated, empty database."""
    dsn = pg.create_database(db)
    cfg = write_config(tmp, node_url, deployment, dsn)
    if run_indexer(cfg, "migrate").code != 0:
        raise SystemExit("migrate failed")
    pg0 = pg.cpu_seconds()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.raw_only", "--config", str(cfg)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=3600)
    if proc.returncode:
        raise SystemExit(f"raw_only exited {proc.returncode}")
    got = json.loads(out.strip().splitlines()[-1])
    cpu = {"writer+fetch": got["cpu"], "postgres": pg.cpu_seconds() - pg0}
    return Measured(
        float(got["seconds"]), time.perf_counter() - started, int(got["events"]), cpu, machine=float(got["machine_cpu"])
    )


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
    parser.add_argument("--repeat", type=int, default=2, help="raw-only and full runs per setting, alternating")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throttled", action="store_true")
    parser.add_argument(
        "--against",
        type=Path,
        help="another checkout (git worktree add DIR REV): its full backfill alternates with this one's",
    )
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
            print(
                "| settings | pipeline | loop s (process s) | events/s (loop) | CPU s | machine core-s in the loop"
                " (busy) | fetch wait s | peak RSS |"
            )
            print("|---|---|---|---|---|---|---|---|")
            warm = raw_only(pg, node.url, deployment, tmp, "gl_warm")  # caches (anvil, page cache) warmed
            print(f"| (warm-up, discarded) | raw-only | {warm.seconds:.1f} | | | | | |", flush=True)
            for name, settings in (("durable", DURABLE), ("local stack", LOCAL_STACK)):
                shown = pg.settings(settings)
                label = f"{name} ({', '.join(f'{k}={v}' for k, v in shown.items())})"
                kinds: list[tuple[str, Callable[..., Measured], Path]] = [("raw-only", raw_only, ROOT)]
                if args.against:
                    kinds.append((f"full backfill, {args.against.name}", full, args.against.resolve()))
                kinds.append(("full backfill", full, ROOT))
                runs: dict[str, list[Measured]] = {kind: [] for kind, _, _ in kinds}
                for _ in range(args.repeat):  # alternating, so a busy moment of the shared machine hits both
                    for kind, fn, root in kinds:
                        m = fn(pg, node.url, deployment, tmp, "gl_run", **({"root": root} if fn is full else {}))
                        runs[kind].append(m)
                        wait = f"{m.fetch_wait:.1f}" if fn is full else "—"  # not measured for raw-only
                        print(
                            f"| {label} | {kind} | {m.seconds:.1f} ({m.process:.1f}) | {total / m.seconds:,.0f} | "
                            f"{m.cpu_text()} | {m.machine_text()} | {wait} | {m.rss} |",
                            flush=True,
                        )
                raw_s = statistics.median(m.seconds for m in runs["raw-only"])
                for kind, _, _ in kinds[1:]:
                    full_s = statistics.median(m.seconds for m in runs[kind])
                    # The floor: the loop cannot be shorter than its machine-wide CPU spread over every core.
                    floor = statistics.median(m.machine for m in runs[kind]) / CORES
                    floor_text = (
                        "" if math.isnan(floor) else f"CPU floor {floor:.1f} s = {floor / raw_s:.2f}x ({CORES} cores)"
                    )
                    print(
                        f"| {label} | {kind} / raw-only (median loop seconds) | {full_s / raw_s:.2f}x | | | "
                        f"{floor_text} | | |",
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
                    m = full(pg, proxy.url, deployment, tmp, "gl_throttled")
                    wall = time.monotonic() - started
                print(
                    f"throttled provider ({args.rate:g} calls/s, {args.rtt * 1000:.0f} ms round trips, "
                    f"{args.range_cap:,}-block cap), durable: backfill loop {m.seconds:.1f} s, "
                    f"{total / m.seconds:,.0f} events/s = {total / m.seconds / ceiling:.0%} of the ceiling "
                    f"{ceiling:,.0f} events/s ({args.rate:g} x {total:,} events / ({ranges} eth_getLogs"
                    f" + {with_events:,} headers)); process {m.process:.1f} s; "
                    f"calls answered {proxy.calls:,} (minimum {minimum:,}), refused for the budget {proxy.refused:,}, "
                    f"ranges refused for the cap {proxy.capped}, HTTP requests {proxy.requests:,}; "
                    f"budget used {proxy.calls / (wall * args.rate):.0%} of {wall:.1f} s; {m.rss}",
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
