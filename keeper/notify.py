"""Time-based notifications (the seed's "notification sending" job): holders of a position in a
market that ends within `ending_soon_s` get one `market_ending_soon` notification.

Each is stored in keeper.notifications (idempotent by (kind, market, recipient)) AND written to the
feed's outbox (idx.outbox: event `notification`, room `user:{lowercase address}`, the camelCase
payload of core.notifications) in ONE PostgreSQL transaction — the path every other feed event
takes, so it survives a restart of the API and a client resumes it with `since`. Event-driven
notifications (resolved, winnings, dividends) come from the indexer the same way."""

from __future__ import annotations

import asyncpg
import structlog

from core.notifications import keeper_notification
from core.outbox import write_outbox
from keeper.store import connection

log = structlog.get_logger("keeper.notify")

ENDING_SOON_SQL = """
INSERT INTO keeper.notifications (chain_id, recipient, kind, market_id, title, message)
SELECT m.chain_id, p.holder, 'market_ending_soon', m.market_id, 'Market ending soon',
       'Market #' || m.market_id || ' ("' || left(m.question, 120) || '") closes at '
       || to_char(m.end_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC'
  FROM idx.markets m
  JOIN idx.positions p ON p.chain_id = m.chain_id AND p.market_id = m.market_id
 WHERE m.chain_id = $1 AND NOT m.resolved
   AND m.end_time > to_timestamp($2) AND m.end_time <= to_timestamp($2 + $3)
   AND p.yes_shares + p.no_shares > 0
ON CONFLICT (chain_id, kind, market_id, recipient) DO NOTHING
RETURNING id, recipient, kind, market_id, title, message, created_at
"""


async def emit_ending_soon(pool: asyncpg.Pool, chain_id: int, now: int, ending_soon_s: int) -> dict[str, int]:
    """Stores new ending-soon notifications and their feed messages together (exactly once each)."""
    async with connection(pool) as conn, conn.transaction():
        rows = await conn.fetch(ENDING_SOON_SQL, chain_id, now, ending_soon_s)
        seq = await write_outbox(
            conn,
            chain_id,
            [
                (
                    "notification",
                    ("user:0x" + bytes(r["recipient"]).hex(),),
                    keeper_notification(
                        bytes(r["recipient"]), r["kind"], r["market_id"], r["title"], r["message"], r["created_at"]
                    ),
                )
                for r in rows
            ],
        )
    if rows:
        log.info("notifications_emitted", kind="market_ending_soon", stored=len(rows), outbox_seq=seq)
    return {"stored": len(rows)}
