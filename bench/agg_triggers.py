"""What the statistics triggers (sql/025) cost the indexer's writes: COPY of market trades in
indexer-sized batches (one transaction each) with the triggers on and off, alternating in the same
run on the same database.

    .venv/bin/python -m bench.agg_triggers [--rows 200000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
import uuid

import asyncpg

from bench.api_http import PG, _psql
from tests.api.rows import CHAIN, U, h
from tests.api.test_api_stats_agg import TRADE_COLUMNS

TRIGGERS = ("agg_trades_ins", "agg_trades_users_ins")


async def one_pass(conn: asyncpg.Connection, first: int, rows: int, batch: int) -> float:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    took = 0.0
    for lo in range(first, first + rows, batch):
        records = [
            (
                *(CHAIN, b, 0, h(b), h(b), start + dt.timedelta(seconds=2 * b), 1, (b % 5000).to_bytes(20, "big")),
                *(True, 1, 10 * U, 10 * U, U // 5, 0, U, U, 0, 0),
            )
            for b in range(lo, lo + batch)
        ]
        t0 = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table("ev_trade", schema_name="idx", records=records, columns=TRADE_COLUMNS)
        took += time.perf_counter() - t0
    return took


async def run(rows: int, batch: int, rounds: int, triggers: tuple[str, ...]) -> dict[str, list[float]]:
    from indexer.migrate import apply_migrations

    name = f"gl_bench_trig_{uuid.uuid4().hex[:6]}"
    _psql(f"CREATE DATABASE {name}")
    out: dict[str, list[float]] = {"on": [], "off": []}
    try:
        conn = await asyncpg.connect(f"{PG}/{name}")
        await apply_migrations(conn)
        block = 1
        for _ in range(rounds):
            for mode in ("off", "on"):
                verb = "ENABLE" if mode == "on" else "DISABLE"
                for trig in triggers:
                    await conn.execute(f"ALTER TABLE idx.ev_trade {verb} TRIGGER {trig}")
                out[mode].append(rows / await one_pass(conn, block, rows, batch))
                block += rows
        await conn.close()
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=5_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", choices=TRIGGERS, help="toggle this trigger alone (the others stay on)")
    a = p.parse_args()
    r = asyncio.run(run(a.rows, a.batch, a.rounds, (a.only,) if a.only else TRIGGERS))
    on, off = statistics.median(r["on"]), statistics.median(r["off"])
    print("| triggers | rows/s (median of rounds) | each round |\n|---|---:|---|")
    for mode, v in (("off", off), ("on", on)):
        print(f"| {mode} | {v:,.0f} | {', '.join(f'{x:,.0f}' for x in r[mode])} |")
    print(f"\ncost of the triggers: {100 * (off - on) / off:.1f} % of COPY throughput into idx.ev_trade")
    print(f"(command: python -m bench.agg_triggers --rows {a.rows} --batch {a.batch} --rounds {a.rounds})")


if __name__ == "__main__":
    main()
