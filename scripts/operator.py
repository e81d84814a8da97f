"""A stand-in human operator for the local demo (`make run`): gives every market an outcome source
through the keeper's own commands, so the keeper — not this script — resolves them on chain.

- even market ids are bound to the mock ETH/USD price feed (YES if the first answer published at
  or after end time is above $3,000), as `python -m keeper rule` does;
- odd ids, once ended, get a seeded outcome queued, as `python -m keeper resolve` does.

    python -m scripts.operator --config config/local.toml [--seed 1] [--interval 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys

import asyncpg
import requests
import structlog

from core.args import seconds
from core.config import ConfigError
from core.contracts import load_chain_deployment
from core.logs import configure_logging
from keeper.cli import cmd_resolve, cmd_rule
from keeper.settings import Settings, load_settings

log = structlog.get_logger("operator")
THRESHOLD = 3_000 * 10**8  # $3,000 in the feed's 8 decimals

PENDING_SQL = """
SELECT m.market_id, extract(epoch FROM m.end_time)::bigint AS end_time,
       EXISTS (SELECT 1 FROM keeper.price_feed_rules r WHERE r.chain_id = m.chain_id AND r.market_id = m.market_id)
         AS has_rule,
       EXISTS (SELECT 1 FROM keeper.resolution_queue q WHERE q.chain_id = m.chain_id AND q.market_id = m.market_id
               AND q.status IN ('queued', 'sent', 'resolved')) AS queued
  FROM idx.markets m
 WHERE m.chain_id = $1 AND NOT m.resolved
 ORDER BY m.market_id
"""


def chain_time(rpc_url: str) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": ["latest", False]}
    return int(requests.post(rpc_url, json=body, timeout=10).json()["result"]["timestamp"], 16)


async def tick(settings: Settings, feed: str | None, rng: random.Random) -> int:
    conn = await asyncpg.connect(settings.database.dsn)
    try:
        if await conn.fetchval("SELECT to_regclass('keeper.resolution_queue') IS NULL"):
            return 0
        rows = await conn.fetch(PENDING_SQL, settings.chain.chain_id)
    finally:
        await conn.close()
    now = chain_time(settings.chain.rpc_urls[0])
    acted = 0
    for r in rows:
        market_id = int(r["market_id"])
        if r["has_rule"] or r["queued"]:
            continue
        if feed and market_id % 2 == 0:
            ns = argparse.Namespace(
                market_id=market_id,
                feed=feed,
                op="gt",
                threshold=THRESHOLD,
                if_true="yes",
                if_false="no",
                reason="demo operator: above $3,000 at end time",
                by="demo-operator",
            )
            await cmd_rule(settings, ns)
            acted += 1
        elif int(r["end_time"]) <= now:
            outcome = rng.choice(("yes", "yes", "no", "no", "invalid"))
            await cmd_resolve(settings, market_id, outcome, "demo operator: seeded outcome", "demo-operator")
            acted += 1
    return acted


async def main_async(settings: Settings, feed: str | None, seed: int, interval: float) -> None:
    rng = random.Random(seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        try:
            acted = await tick(settings, feed, rng)
            if acted:
                log.info("operator_acted", markets=acted)
        except (OSError, asyncpg.PostgresError, requests.RequestException) as exc:
            log.warning("operator_tick_failed", error=str(exc))
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="config/local.toml")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--interval", type=seconds(0.1, 3_600, "--interval 5"), default=5.0)
    a = p.parse_args()
    configure_logging()
    try:  # a bad config or deployment file: one line naming the key, exit 2 (never a traceback)
        settings = load_settings(a.config)
        feed = load_chain_deployment(settings.chain).price_feed
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(main_async(settings, feed, a.seed, a.interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
