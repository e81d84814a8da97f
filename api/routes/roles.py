"""/v1/admin/roles: who may do what on the contracts now, and every change (issue 15).

Read from the views of sql/031_admin_events.sql over the indexer's audit events (idx.ev_other):
role grants and revocations, two-step default-admin transfers and their delays, pauses.
"""

from __future__ import annotations

from typing import Any

import orjson

from api.context import Ctx, Endpoint
from api.encode import iso
from api.params import Param
from api.schemas import INT, STR, TIME, arr, model, null, obj
from core.contracts import ROLE_NAMES

ROLE_MEMBER = model(
    "RoleMember",
    obj(
        {
            "contract": null(STR),
            "role": null(STR),
            "roleId": null(STR),
            "account": null(STR),
            "grantedBlock": INT,
            "grantedAt": null(TIME),
            "grantedBy": null(STR),
        }
    ),
)
ADMIN_EVENT = model(
    "AdminEvent",
    obj(
        {
            "blockNumber": INT,
            "logIndex": INT,
            "txHash": null(STR),
            "time": null(TIME),
            "contract": null(STR),
            "event": STR,
            "role": null(STR),
            "account": null(STR),
            "sender": null(STR),
            "args": {"type": "object", "description": "the event's arguments as the indexer decoded them"},
        }
    ),
)
ROLES = obj({"members": arr(ROLE_MEMBER), "events": arr(ADMIN_EVENT)})

MEMBERS_SQL = """
SELECT contract, role, account, granted_block, granted_at, granted_by
  FROM public.role_members WHERE chain_id = $1
 ORDER BY contract, role, account
"""

EVENTS_SQL = """
SELECT block_number, log_index, tx_hash, block_time, contract, event, role, account, sender, args
  FROM public.admin_events WHERE chain_id = $1
 ORDER BY block_number DESC, log_index DESC LIMIT $2
"""


async def roles(ctx: Ctx) -> dict[str, Any]:
    """Current role members of both contracts and the latest role, admin and pause events."""
    members = await ctx.conn.fetch(MEMBERS_SQL, ctx.chain_id)
    events = await ctx.conn.fetch(EVENTS_SQL, ctx.chain_id, int(ctx.params["limit"]))
    return {
        "data": {
            "members": [
                {
                    "contract": r["contract"],
                    "role": ROLE_NAMES.get(r["role"], r["role"]),
                    "roleId": r["role"],
                    "account": r["account"],
                    "grantedBlock": r["granted_block"],
                    "grantedAt": iso(r["granted_at"]),
                    "grantedBy": r["granted_by"],
                }
                for r in members
            ],
            "events": [
                {
                    "blockNumber": r["block_number"],
                    "logIndex": r["log_index"],
                    "txHash": r["tx_hash"],
                    "time": iso(r["block_time"]),
                    "contract": r["contract"],
                    "event": r["event"],
                    "role": None if r["role"] is None else ROLE_NAMES.get(r["role"], r["role"]),
                    "account": r["account"],
                    "sender": r["sender"],
                    "args": orjson.loads(r["args"]) if isinstance(r["args"], str) else r["args"],
                }
                for r in events
            ],
        }
    }


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/admin/roles",
        roles,
        "Contract roles: current members and the latest role, admin-transfer and pause events",
        "admin",
        (Param("limit", "int", default=50, minimum=1, maximum=500, description="events returned, newest first"),),
        auth="admin",
        response=ROLES,
    ),
]
