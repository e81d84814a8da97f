"""The limit a backfill is measured against: fetch + decode + COPY of the raw event rows, nothing derived.

    .venv/bin/python -m bench.raw_only --config FILE      # into a migrated, empty database

The indexer's own fetch side (indexer/fetch.py: the fetch process, eth_getLogs with the completeness
checks, headers, the raw decoder and its COPY payloads), the same span policy and `concurrency`
ranges in flight; each range's raw payloads COPYed into the idx.ev_* tables in one transaction,
strictly in order, while the next ranges are fetched. No derived rows, notifications, blocks, undo,
outbox or checkpoint, and the readers' secondary indexes dropped first (as the indexer does for an
initial sync) and not rebuilt. Prints one JSON line: {"events", "seconds", "cpu", "machine_cpu", "first_block",
"last_block"} (machine_cpu: core-seconds the whole machine was busy during the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import time
from collections import deque

import asyncpg
import orjson

from bench.indexer_backfill import machine_busy_seconds
from indexer import maintenance
from indexer.bulk import copy_payload
from indexer.chain import SpanPolicy, plan_range
from indexer.fetch import ChildConfig, FetchProcess, Prepared
from indexer.rows import EVENT_TABLES_BY_NAME, OTHER_COLUMNS
from indexer.rpc import Rpc
from indexer.settings import load_settings


async def run(config: str) -> dict[str, float]:
    s = load_settings(config)
    o = s.options
    dep = s.deployment
    addresses = (dep.opinion_market, dep.creator_shares)
    policy = SpanPolicy(o.initial_span, o.max_span, o.target_events)
    cfg = ChildConfig(
        tuple(s.chain.rpc_urls), o.request_timeout, s.chain.chain_id, addresses, policy, o.max_response_mb << 20
    )
    fetcher = FetchProcess(cfg, lambda *_: None, lambda **_: None)
    fetcher.warm()
    conn = await asyncpg.connect(s.database.dsn, server_settings={"jit": "off"})
    async with Rpc(s.chain.rpc_urls, o.request_timeout) as rpc:
        head = (await rpc.header("latest", require=True)).number  # type: ignore[union-attr]
    await maintenance.defer_indexes(conn, s.chain.chain_id)
    first = max(0, dep.deploy_block - 1)
    # the child's start-up (interpreter, imports) is outside the timing, as the indexer's backfill
    # loop starts with a warm child: a first fetch of the block before the deployment (no events)
    await fetcher.fetch(range(first, first + 1), 1, head)
    started = time.perf_counter()
    busy = machine_busy_seconds()
    span, nxt, events = o.initial_span, first + 1, 0
    pending: deque[asyncio.Task[Prepared]] = deque()
    width = 1  # one range until an answer has sized the span, as the indexer does
    try:
        while True:
            while len(pending) < width:
                r = plan_range(nxt - 1, head, span)
                if r is None:
                    break
                nxt = r.stop
                pending.append(asyncio.create_task(fetcher.fetch(r, span, head)))
            if not pending:
                break
            got = await pending.popleft()
            width, span = o.concurrency, got.span
            async with conn.transaction():
                for table, data in got.raw.items():
                    cols = OTHER_COLUMNS if table == "ev_other" else EVENT_TABLES_BY_NAME[table].columns
                    await copy_payload(conn, table, cols, data)
            events += len(got.events)
    finally:
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(BaseException):
                await t
        await fetcher.close()
        await conn.close()
    seconds = time.perf_counter() - started
    machine = machine_busy_seconds() - busy
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)  # this process and its fetch process (reaped)
    return {
        "events": events,
        "seconds": seconds,
        "cpu": cpu,
        "machine_cpu": machine,
        "first_block": first + 1,
        "last_block": head,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    sys.stdout.write(orjson.dumps(asyncio.run(run(args.config))).decode() + "\n")


if __name__ == "__main__":
    main()
