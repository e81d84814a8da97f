"""A user notification as clients see it — the camelCase shape of `GET /v1/users/{address}/notifications`
items, also the `data` of the feed's `notification` event for notifications the keeper emits.

Keeper notifications have no block position; their identity is (0, market_id, kind), the same as in
the api.user_notifications view, so the `id` a feed client receives is the one it marks read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def notification_id(block_number: int, log_index: int, kind: str) -> str:
    return f"{block_number}-{log_index}-{kind}"


def keeper_notification(
    recipient: bytes, kind: str, market_id: int, title: str, message: str, created_at: dt.datetime
) -> dict[str, Any]:
    """The payload of one keeper notification (no amount, no creator, no block)."""
    return {
        "id": notification_id(0, market_id, kind),
        "kind": kind,
        "recipient": "0x" + recipient.hex(),
        "title": title,
        "message": message,
        "marketId": market_id,
        "creator": None,
        "amount": None,
        "time": created_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "blockNumber": None,
        "read": False,
        "readAt": None,
    }
