"""Writing the feed's outbox (idx.outbox) from a second writer — every feed event takes this path.

The indexer writes most rows (indexer/write.py); the keeper writes the notifications no contract
event announces. Both take the same transaction-scoped advisory lock before inserting, so `seq` is
assigned in commit order across writers and a reader following `seq > last` never skips a row that
commits late; both NOTIFY gl_outbox in the same transaction so the API's pump wakes at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

# Shared by every outbox writer (the indexer's batches, the keeper's notifications): seq order =
# commit order.
OUTBOX_LOCK = 0x676C_6F75_7462


async def write_outbox(
    conn: Any, chain_id: int, messages: Sequence[tuple[str, Sequence[str], dict[str, Any]]]
) -> int | None:
    """Inserts (event, rooms, payload) rows without a block position; call inside the transaction that
    writes what they announce. Returns the highest seq written (None when there was nothing)."""
    if not messages:
        return None
    await conn.execute("SELECT pg_advisory_xact_lock($1)", OUTBOX_LOCK)
    seq = await conn.fetchval(
        "WITH ins AS (INSERT INTO idx.outbox (chain_id, event, rooms, payload)"
        " SELECT $1, e, string_to_array(r, ','), p::json FROM unnest($2::text[], $3::text[], $4::text[]) AS u(e, r, p)"
        " RETURNING seq)"
        " SELECT s FROM (SELECT max(seq) AS s FROM ins) q, LATERAL pg_notify('gl_outbox', $5::text || ':' || q.s)",
        chain_id,
        [m[0] for m in messages],
        [",".join(m[1]) for m in messages],
        [orjson.dumps(m[2]).decode() for m in messages],
        str(chain_id),
    )
    return int(seq)
