"""Backfill and rebuild benchmark: N consistent events on a fresh anvil, indexed from genesis.

    .venv/bin/python -m bench.indexer_backfill [--events 1000000] [--per-block 200] [--runs N]
                                               [--windows 500000] [--against DIR]

1. anvil (gas limit 1e9) + the real deployment; bench/indexer_chain.py replays N events through
   LogReplayer (anvil_setCode at the contract addresses), `per-block` events per block.
2. A fresh database; `python -m indexer --exit-at-head` as a child process: events/s end to end
   (raw + derived + blocks + outbox + checkpoint committed), the child's peak RSS, and the CPU
   seconds of the writer, its fetch process, PostgreSQL (the cluster `make services` runs) and anvil.
3. Rebuild: `python -m indexer reset`, then the same run again (the chain is unchanged): time.
4. With --windows W: events/s per W events committed (from the indexer's `batch_committed` log
   lines), which shows whether the rate stays flat as the chain and the tables grow.
5. With --against DIR (another checkout: `git worktree add DIR REV`): every run backfills the same
   chain with DIR's indexer, then with this one, and the summary compares their seconds per anvil
   CPU second. anvil serves the same answers to both, so its CPU time says how busy the shared
   machine was; alternating and normalizing is how a 5 % change is seen through ±25 % of noise.

Prints one markdown table row per run; figures go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path

from web3 import Web3

from bench.indexer_chain import build_chain
from core.deploy import DeployParams, anvil_account, deploy
from indexer.settings import IndexerOptions
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


def tree_rss(pid: int) -> dict[int, int]:
    """Resident set size in bytes of a process and its descendants (Linux /proc), by pid."""
    out: dict[int, int] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as fh:
                out[p] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError, IndexError):
            continue
    return out


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """CPU seconds (user + system) of a live process; with `reaped`, plus its children that exited."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    return ticks / TICKS


def machine_busy_seconds() -> float:
    """Core-seconds the whole machine has been busy since boot (/proc/stat: every state but idle and
    iowait), all processes together: anvil, PostgreSQL, the indexer and whatever else runs."""
    with open("/proc/stat") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICKS


def postgres_cpu() -> float | None:
    """CPU seconds of the local PostgreSQL cluster so far (postmaster, exited backends, live ones);
    None when it is not the cluster under .data/pg that `scripts/services.sh` starts."""
    try:
        postmaster = int((ROOT / ".data/pg/data/postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return cpu_seconds(postmaster, reaped=True) + sum(cpu_seconds(p) for p in tree_rss(postmaster) if p != postmaster)


@dataclasses.dataclass
class Run:
    seconds: float
    code: int
    peak_sum: int = 0  # bytes: the writer and its fetch process together, sampled every 0.2 s
    peak_each: dict[int, int] = dataclasses.field(default_factory=dict)
    # CPU seconds: the writer, its fetch process (last sample, up to 0.2 s short), PostgreSQL, anvil
    cpu: dict[str, float | None] = dataclasses.field(default_factory=dict)
    started_at: float = 0.0  # wall clock (time.time()) when the process was started


def window_rates(commits: Sequence[tuple[float, int]], window: int) -> list[tuple[int, int, float, float]]:
    """(first event, last event, seconds, events/s) per `window` events, from (time, events) of each
    committed batch. Counting starts at the first commit (process start-up is in no window); a window
    ends with the batch that completes it; the last one may be shorter."""
    out: list[tuple[int, int, float, float]] = []
    if not commits:
        return out
    start_t, done, mark = commits[0][0], 0, window
    start_n = 0
    for i, (t, n) in enumerate(commits[1:], 1):
        done += n
        if done >= mark or (i == len(commits) - 1 and done > start_n):
            out.append((start_n + 1, done, t - start_t, (done - start_n) / (t - start_t) if t > start_t else 0.0))
            start_t, start_n = t, done
            mark = (done // window + 1) * window
    return out


def commit_log(into: list[tuple[float, int]]) -> Callable[[dict[str, object]], None]:
    """A log-line callback for run_indexer that collects (time, events) of every committed batch."""

    def take(line: dict[str, object]) -> None:
        if line.get("event") == "batch_committed":
            when = datetime.fromisoformat(str(line["timestamp"])).timestamp()  # "...Z": UTC
            into.append((when, int(str(line["events"]))))

    return take


def _read_logs(stream: Iterable[str], on_log: Callable[[dict[str, object]], None]) -> None:
    for line in stream:
        if line.startswith("{"):
            try:
                on_log(json.loads(line))
                continue
            except (ValueError, KeyError):
                pass
        sys.stderr.write(line)


def run_indexer(
    cfg: Path,
    *args: str,
    node_pid: int | None = None,
    on_log: Callable[[dict[str, object]], None] | None = None,
    root: Path = ROOT,
) -> Run:
    """Runs the indexer CLI (of the checkout at `root`) as a child, sampling the RSS and CPU time of
    its process tree. With `on_log`, its JSON log lines (stderr) go there; other lines pass through."""
    pg0 = postgres_cpu()
    node0 = cpu_seconds(node_pid) if node_pid else None
    started = time.perf_counter()
    run_started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer", *args, "--config", str(cfg)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stderr=subprocess.PIPE if on_log else None,
        text=True,
    )
    reader = None
    if on_log is not None:
        reader = threading.Thread(target=_read_logs, args=(proc.stderr, on_log), daemon=True)
        reader.start()
    run = Run(0.0, 0, started_at=run_started)
    children: dict[int, float] = {}
    while True:
        rss = tree_rss(proc.pid)
        run.peak_sum = max(run.peak_sum, sum(rss.values()))
        for p, r in rss.items():
            run.peak_each[p] = max(run.peak_each.get(p, 0), r)
            if p != proc.pid:
                children[p] = cpu_seconds(p)
        # wait4, not Popen.poll: it also returns the child's CPU time (with the fetch process it reaped)
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if reader is not None:
        reader.join(5)
    run.seconds, run.code = time.perf_counter() - started, proc.returncode
    fetch = sum(children.values())
    run.cpu = {
        "writer": usage.ru_utime + usage.ru_stime - fetch,
        "fetch": fetch,
        "postgres": None if pg0 is None else (postgres_cpu() or 0.0) - pg0,
        "anvil": None if node0 is None or node_pid is None else cpu_seconds(node_pid) - node0,
    }
    return run


def rss_text(run: Run) -> str:
    each = " + ".join(f"{v / 2**20:.0f}" for v in sorted(run.peak_each.values(), reverse=True))
    return f"peak RSS {run.peak_sum / 2**20:.0f} MB ({each} MB)"


def cpu_text(run: Run) -> str:
    """CPU seconds per process: the same work costs up to ~25 % more of them when the (shared)
    machine is busy, which is how a slow run is told from a slower indexer."""
    parts = [f"{k} {v:.1f}" for k, v in run.cpu.items() if v is not None]
    return "CPU s: " + ", ".join(parts) if parts else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--per-block", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=IndexerOptions().concurrency)
    parser.add_argument("--target-events", type=int, default=IndexerOptions().target_events)
    parser.add_argument("--no-rebuild", action="store_true")
    parser.add_argument("--runs", type=int, default=1, help="backfills of the same chain, each into a fresh database")
    parser.add_argument("--windows", type=int, default=0, help="also print events/s per this many events committed")
    parser.add_argument(
        "--against",
        type=Path,
        help="another checkout (git worktree add DIR REV): each run backfills with it, then with this one",
    )
    args = parser.parse_args()
    sides = [("base", args.against.resolve()), ("this", ROOT)] if args.against else [("", ROOT)]
    per_anvil: dict[str, list[float]] = {name: [] for name, _ in sides}

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
        total = chain.events + 4  # + the deployment's own events (roles, configuration)
        for n, (side, root) in ((n, side) for n in range(args.runs) for side in sides):
            psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
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
                    **({"log_level": "info"} if args.windows else {}),
                )
                commits: list[tuple[float, int]] = []
                on_log = commit_log(commits) if args.windows else None
                run = run_indexer(cfg, "--exit-at-head", node_pid=node.proc.pid, on_log=on_log, root=root)
                assert run.code == 0, f"indexer exited {run.code}"
                label = "backfill" if args.runs == 1 else f"backfill {n + 1}/{args.runs}"
                label = f"{label} {side}".strip()
                if run.cpu.get("anvil"):
                    per_anvil[side].append(run.seconds / run.cpu["anvil"])
                print(
                    f"| {label} | {chain.events:,} events, {chain.blocks:,} blocks | {run.seconds:.1f} s | "
                    f"{total / run.seconds:,.0f} events/s | {rss_text(run)} | {cpu_text(run)} |",
                    flush=True,
                )
                if commits:
                    print(
                        f"|   start-up to the first commit | {commits[0][0] - run.started_at:.1f} s | "
                        f"last commit to exit (index builds) | {run.started_at + run.seconds - commits[-1][0]:.1f} s |",
                        flush=True,
                    )
                for first, last, seconds, rate in window_rates(commits, args.windows):
                    print(f"|   events {first:,}..{last:,} | {seconds:.1f} s | {rate:,.0f} events/s |", flush=True)
                if not args.no_rebuild and n == args.runs - 1 and side == sides[-1][0]:
                    assert run_indexer(cfg, "reset").code == 0
                    run = run_indexer(cfg, "--exit-at-head", node_pid=node.proc.pid)
                    assert run.code == 0
                    print(
                        f"| rebuild (reset + re-index) | same chain | {run.seconds:.1f} s | "
                        f"{total / run.seconds:,.0f} events/s | {rss_text(run)} | {cpu_text(run)} |",
                        flush=True,
                    )
        if args.against and all(per_anvil.values()):
            base, this = (statistics.mean(per_anvil[name]) for name, _ in sides)
            print(
                f"seconds per anvil CPU second (how busy the machine was): base {base:.2f}, this {this:.2f} "
                f"({(this / base - 1) * 100:+.1f} %)",
                flush=True,
            )
    finally:
        node.stop()
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
