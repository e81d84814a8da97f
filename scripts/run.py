"""`make run`: the whole local system on this machine.

Starts PostgreSQL, Redis and anvil (1 s blocks, state kept in .data/ so a second run resumes),
deploys the contracts when the chain does not have them, migrates the database (and resets it
when the chain was replaced), then runs the wallet-traffic simulator, the indexer, the keeper and
the API + feed as child processes with logs under .data/log/, supervised: a child that exits is
restarted after a back-off (1 s, doubling to 60 s while it keeps failing quickly), shown on the
status screen. Prints the URLs and, on a terminal, a one-screen live status. Ctrl-C (or
`make stop`) stops everything cleanly.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import requests

from api.settings import ApiSection
from core.config import ChainSettings, ConfigError, DatabaseSettings, ServicesSettings, load_config, section
from core.contracts import CONTRACT_NAMES, abi_hash, deployment_path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
LOG_DIR = DATA / "log"
PY = sys.executable


@dataclass
class Child:
    """A supervised daemon: restarted whenever it exits (unless the stack is stopping), after a
    back-off that doubles with each quick exit (base_backoff_s … max_backoff_s) and resets once it
    has run stable_s without exiting."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # on top of the supervisor's (e.g. a second chain)
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    last_exit: int | None = None
    started_at: float = 0.0
    next_start: float | None = None
    backoff_s: float = 0.0

    @property
    def log_path(self) -> Path:
        return LOG_DIR / f"{self.name}.log"


class Supervisor:
    """Starts children, restarts the ones that exit with back-off, stops them in reverse order.
    `poll()` is called by the status loop (make run) or a test; it never blocks."""

    def __init__(
        self,
        children: list[Child],
        env: dict[str, str],
        log_dir: Path = LOG_DIR,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        stable_s: float = 60.0,
    ) -> None:
        self.children = children
        self.env = env
        self.log_dir = log_dir
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self.stopping = False

    def start(self, c: Child) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{c.name}.log").open("ab")
        env = {**self.env, **c.env}
        c.proc = subprocess.Popen(c.argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()  # the child holds its own descriptor
        c.started_at = time.monotonic()
        c.next_start = None

    def start_all(self) -> None:
        for c in self.children:
            self.start(c)

    def poll(self, now: float | None = None) -> list[str]:
        """Notices exits, schedules and performs restarts; returns what happened (one line each)."""
        now = time.monotonic() if now is None else now
        events: list[str] = []
        for c in self.children:
            if c.proc is not None and c.proc.poll() is not None:
                c.last_exit = c.proc.returncode
                c.proc = None
                if self.stopping:
                    continue
                ran = now - c.started_at
                c.backoff_s = (
                    self.base_backoff_s
                    if ran >= self.stable_s or c.backoff_s == 0
                    else min(self.max_backoff_s, c.backoff_s * 2)
                )
                c.next_start = now + c.backoff_s
                events.append(
                    f"!! {c.name} exited with code {c.last_exit} after {ran:.0f} s; restarting in {c.backoff_s:.0f} s"
                    f" (see {self.log_dir / (c.name + '.log')})"
                )
            elif c.proc is None and c.next_start is not None and now >= c.next_start and not self.stopping:
                self.start(c)
                c.restarts += 1
                events.append(f".. {c.name} restarted (restart {c.restarts})")
        return events

    def status(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        parts = []
        for c in self.children:
            if c.proc is not None:
                state = f"up {now - c.started_at:.0f} s"
            elif c.next_start is not None:
                state = f"exited {c.last_exit}, restart in {max(0.0, c.next_start - now):.0f} s"
            else:
                state = "stopped"
            parts.append(f"{c.name} ({state}{f', {c.restarts} restarts' if c.restarts else ''})")
        return ", ".join(parts)

    def stop_all(self, timeout_s: float = 20.0) -> None:
        """SIGTERM to each child (traffic first, then readers and writers), each given `timeout_s` to
        finish its work; a second Ctrl-C while they do (KeyboardInterrupt) kills the rest at once."""
        self.stopping = True
        for c in reversed(self.children):
            if c.proc is not None and c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
        try:
            for c in reversed(self.children):
                if c.proc is not None:
                    try:
                        c.proc.wait(timeout_s)
                    except subprocess.TimeoutExpired:
                        c.proc.kill()
                        c.proc.wait(5)
        except KeyboardInterrupt:
            print("stopping now (SIGKILL)…", flush=True)
            for c in self.children:
                if c.proc is not None and c.proc.poll() is None:
                    c.proc.kill()
            for c in self.children:
                if c.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        c.proc.wait(5)


SECOND_CHAIN = 1337  # a local chain id: deploys MockUSDC like 31337


def second_chain(services: ServicesSettings) -> dict[str, str]:
    """Environment overrides that point a daemon at the second local chain (scripts/services.sh
    anvil2: the next port); its deployment lives under .data, its metrics on ports +10."""
    port = services.anvil_port + 1
    return {
        "GL_CHAIN__CHAIN_ID": str(SECOND_CHAIN),
        "GL_CHAIN__NAME": "anvil-2",
        "GL_CHAIN__RPC_URLS": f"http://127.0.0.1:{port}",
        "GL_CHAIN__WS_URL": f"ws://127.0.0.1:{port}",
        "GL_CHAIN__DEPLOYMENT": f".data/deployments/{SECOND_CHAIN}.json",
        "GL_SERVICES__INDEXER_METRICS_PORT": str(services.indexer_metrics_port + 10),
        "GL_SERVICES__KEEPER_METRICS_PORT": str(services.keeper_metrics_port + 10),
    }


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, cwd=ROOT)


def rpc(url: str, method: str, params: list[Any] | None = None) -> Any:
    r = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}, timeout=10)
    r.raise_for_status()
    return r.json().get("result")


def deployment_live(rpc_url: str, path: Path) -> bool:
    """True when the deployment file exists, was made from the ABIs checked in now (contracts that
    changed since are redeployed on a fresh database), and its OpinionMarket has code on the chain."""
    if not path.exists():
        return False
    record = json.loads(path.read_text())
    if any(record.get("abi_hashes", {}).get(n) != abi_hash(n) for n in CONTRACT_NAMES):
        print(f"{path.name} was deployed from other ABIs: redeploying", flush=True)
        return False
    addr = record["contracts"]["OpinionMarket"]
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
                      (SELECT count(*) FROM idx.markets WHERE chain_id = $1 AND status = 'proposed') AS proposed,
                      (SELECT count(*) FROM idx.markets WHERE chain_id = $1 AND status = 'disputed') AS disputed,
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
        f"markets {counts['markets']} ({counts['proposed']} proposed, {counts['disputed']} disputed,"
        f" {counts['resolved']} resolved)  trades {counts['trades']}"
        f"  share trades {counts['share_trades']}  reorgs {counts['reorgs']}  feed seq {counts['outbox']}"
    )
    if keeper is not None:
        lines.append(f"keeper txs: {keeper['pending']} pending, {keeper['confirmed']} confirmed")
    return lines


async def supervise(sup: Supervisor, dsn: str, chains: list[int], urls: list[str], stop: asyncio.Event) -> None:
    tty = sys.stdout.isatty()
    pool = None
    recent: list[str] = []
    while not stop.is_set():
        for line in sup.poll():
            recent = [*recent[-4:], line]
            if not tty:
                print(line, flush=True)
        if tty:
            try:
                if pool is None:
                    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
                lines = []
                for chain_id in chains:
                    if len(chains) > 1:
                        lines.append(f"— chain {chain_id}")
                    lines += await status_lines(pool, chain_id)
            except (OSError, asyncpg.PostgresError) as exc:
                lines = [f"status unavailable: {exc}"]
            sys.stdout.write(
                "\x1b[H\x1b[2J"
                + "\n".join([*urls, "", *lines, "", f"processes: {sup.status()}", *recent, "Ctrl-C stops everything."])
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
    p.add_argument("--chains", type=int, choices=(1, 2), default=1, help="2 adds a second local chain (id 1337)")
    args = p.parse_args()

    try:  # a bad config: one line naming the key, exit 2, before anything starts (never a traceback)
        config = load_config(args.config)
        services = section(config, "services", ServicesSettings)
        chain = section(config, "chain", ChainSettings)
        db = section(config, "database", DatabaseSettings)
        api = section(config, "api", ApiSection)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (DATA / "run").mkdir(parents=True, exist_ok=True)
    (DATA / "run" / "stack.pid").write_text(str(os.getpid()))

    sh(str(ROOT / "scripts" / "services.sh"), "start", "pg", "redis", "anvil")
    deployment = deployment_path(chain)
    if not deployment_live(chain.rpc_urls[0], deployment):
        print("deploying contracts (new chain) and resetting the database…", flush=True)
        sh(PY, "-m", "scripts.deploy", "--config", args.config)
        reset_database(services, db.dsn.rsplit("/", 1)[1])
    sh(PY, "-m", "indexer", "migrate", "--config", args.config)

    cfg = ["--config", args.config]
    second = second_chain(services) if args.chains == 2 else None
    api_env = {}
    if second is not None:
        sh(str(ROOT / "scripts" / "services.sh"), "start", "anvil2")
        if not deployment_live(second["GL_CHAIN__RPC_URLS"], ROOT / second["GL_CHAIN__DEPLOYMENT"]):
            print("deploying contracts on the second chain (1337)…", flush=True)
            deploy = [PY, "-m", "scripts.deploy", *cfg, "--out", str(DATA / "deployments")]
            subprocess.run(deploy, check=True, cwd=ROOT, env={**os.environ, **second})
            # the database is shared with the first chain: only this chain's index of the old contracts goes
            # (the indexer refuses to continue an index of other contracts)
            reset = [PY, "-m", "indexer", "reset", *cfg]
            subprocess.run(reset, check=True, cwd=ROOT, env={**os.environ, **second}, stdout=subprocess.DEVNULL)
        api_env = {"GL_API__CHAIN_IDS": f"{chain.chain_id},{SECOND_CHAIN}"}
    children = [
        Child("indexer", [PY, "-m", "indexer", *cfg]),
        Child("keeper", [PY, "-m", "keeper", "run", *cfg]),
        Child("api", [PY, "-m", "api", *cfg], api_env),
        Child("operator", [PY, "-m", "scripts.operator", *cfg, "--seed", str(args.seed)]),
        Child("simulator", [PY, "-m", "scripts.simulate", *cfg, "--seed", str(args.seed), "--rate", str(args.rate)]),
    ]
    if second is not None:  # one indexer and one keeper per chain; one API and feed for both
        children += [
            Child("indexer-1337", [PY, "-m", "indexer", *cfg], second),
            Child("keeper-1337", [PY, "-m", "keeper", "run", *cfg], second),
            Child("simulator-1337", [PY, "-m", "scripts.simulate", *cfg, "--seed", str(args.seed + 1)], second),
        ]
    sup = Supervisor(children, {**os.environ, "PYTHONUNBUFFERED": "1"})
    sup.start_all()

    dep_name = deployment.relative_to(ROOT)
    urls = [
        f"API          http://127.0.0.1:{api.port}/v1/markets",
        f"API docs     http://127.0.0.1:{api.port}/docs   (OpenAPI: /openapi.json)",
        f"feed         ws://127.0.0.1:{api.feed_port}   (docs/feed.md)",
        f"metrics      http://127.0.0.1:{api.port}/metrics  http://127.0.0.1:{services.indexer_metrics_port}/metrics"
        f"  http://127.0.0.1:{services.keeper_metrics_port}/metrics",
        f"chain        {chain.rpc_urls[0]} (anvil, chain id {chain.chain_id}, contracts in {dep_name})",
        *(
            [f"chain 2      {second['GL_CHAIN__RPC_URLS']} (anvil, chain id {SECOND_CHAIN}): ?chainId={SECOND_CHAIN}"]
            if second
            else []
        ),
        f"PostgreSQL   {db.dsn}   Redis redis://127.0.0.1:{services.redis_port}",
        f"logs         {LOG_DIR.relative_to(ROOT)}/",
    ]
    print("\n".join(urls), flush=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await supervise(sup, db.dsn, [chain.chain_id, *([SECOND_CHAIN] if second else [])], urls, stop)

    try:
        asyncio.run(run())
    finally:
        print("\nstopping…  (Ctrl-C again: stop now)", flush=True)
        sup.stop_all()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the services stop in bounded time: never half-way
        sh(str(ROOT / "scripts" / "services.sh"), "stop")
        (DATA / "run" / "stack.pid").unlink(missing_ok=True)
        print("stopped; `make run` resumes from here.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
