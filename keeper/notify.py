"""Time-based notifications (the seed's "notification sending" job): holders of a position in a
market that ends within `ending_soon_s` get one `market_ending_soon` notification, stored in
keeper.notifications (idempotent by (kind, market, recipient)) and published on Redis
`gl:keeper:notifications:{chain_id}` as the seed's `notification` event for the room
`user:{address}`. Event-driven notifications (resolved, winnings, dividends) come from the
indexer (idx.notifications + outbox), not from here."""

from __future__ import annotations

import asyncpg
import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

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


def channel(chain_id: int) -> str:
    return f"gl:keeper:notifications:{chain_id}"


async def emit_ending_soon(
    pool: asyncpg.Pool, redis_url: str | None, chain_id: int, now: int, ending_soon_s: int
) -> dict[str, int]:
    """Stores new ending-soon notifications, then publishes them (at-least-once: a row stored but not
    published because Redis was down is still served from the table)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(ENDING_SOON_SQL, chain_id, now, ending_soon_s)
    published = 0
    if rows and redis_url:
        client = aioredis.Redis.from_url(redis_url)
        try:
            for r in rows:
                address = "0x" + bytes(r["recipient"]).hex()
                message = {
                    "event": "notification",
                    "rooms": [f"user:{address}"],
                    "payload": {
                        "id": f"keeper:{r['id']}",
                        "kind": r["kind"],
                        "market_id": r["market_id"],
                        "title": r["title"],
                        "message": r["message"],
                        "recipient": address,
                        "created_at": r["created_at"].isoformat(),
                    },
                }
                await client.publish(channel(chain_id), orjson.dumps(message))
                published += 1
        except (RedisError, OSError) as exc:
            log.warning("notification_publish_failed", error=type(exc).__name__, stored=len(rows))
        finally:
            await client.aclose()
    if rows:
        log.info("notifications_emitted", kind="market_ending_soon", stored=len(rows), published=published)
    return {"stored": len(rows), "published": published}
