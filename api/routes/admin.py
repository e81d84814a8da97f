"""/v1/admin/*: admin-only views of the indexer and keeper, and the `system:maintenance` broadcast."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from api.context import Ctx, Endpoint
from api.encode import hexs, iso
from api.errors import ApiError, FieldError, ValidationFailed
from api.params import Param, page_params, parse_time
from api.routes.common import OUTCOMES, offset, page_meta
from api.schemas import ADDRESS, BOOL, HASH, INT, OUTCOME, STR, TIME, UINT, arr, enum, model, null, obj
from core import resolution as R

INDEXER_SQL = """
SELECT h.head_block, h.safe_block, h.finalized_block, h.updated_at AS head_updated_at,
       c.block_number AS indexed_block, c.block_hash, c.updated_at AS indexed_at,
       (SELECT max(seq) FROM idx.outbox WHERE chain_id = $1) AS outbox_seq,
       (SELECT count(*) FROM idx.reorgs WHERE chain_id = $1) AS reorgs
  FROM (SELECT 1) one
  LEFT JOIN idx.chain_heads h ON h.chain_id = $1
  LEFT JOIN idx.checkpoints c ON c.chain_id = $1
"""


async def indexer_status(ctx: Ctx) -> dict[str, Any]:
    """Indexer progress, lag, finality, recent reorgs."""
    r = await ctx.conn.fetchrow(INDEXER_SQL, ctx.chain_id)
    assert r is not None
    reorgs = await ctx.conn.fetch(
        """SELECT common_ancestor, old_head, depth, removed_events, detected_at FROM idx.reorgs
            WHERE chain_id = $1 ORDER BY id DESC LIMIT 10""",
        ctx.chain_id,
    )
    lag = None if r["head_block"] is None or r["indexed_block"] is None else r["head_block"] - r["indexed_block"]
    return {
        "data": {
            "headBlock": r["head_block"],
            "safeBlock": r["safe_block"],
            "finalizedBlock": r["finalized_block"],
            "indexedBlock": r["indexed_block"],
            "indexedHash": hexs(r["block_hash"]),
            "lagBlocks": lag,
            "headUpdatedAt": iso(r["head_updated_at"]),
            "indexedAt": iso(r["indexed_at"]),
            "outboxSeq": r["outbox_seq"],
            "apiOutboxSeq": ctx.state.pump.last_seq,
            "reorgs": r["reorgs"],
            "recentReorgs": [
                {
                    "commonAncestor": x["common_ancestor"],
                    "oldHead": x["old_head"],
                    "depth": x["depth"],
                    "removedEvents": x["removed_events"],
                    "detectedAt": iso(x["detected_at"]),
                }
                for x in reorgs
            ],
            "feedConnections": len(ctx.state.hub.clients),
        }
    }


QUEUE_STATUSES = ("queued", "sent", "resolved", "skipped", "failed", "cancelled")


async def keeper_queue(ctx: Ctx) -> dict[str, Any]:
    """The operator resolution queue (keeper.resolution_queue)."""
    limit, off = offset(ctx)
    st = ctx.params["status"]
    rows = await ctx.conn.fetch(
        """SELECT id, market_id, outcome, reason, requested_by, requested_at, status, status_reason, tx_id,
                  cancelled_by, cancelled_at, updated_at
             FROM keeper.resolution_queue WHERE chain_id = $1 AND ($2::text IS NULL OR status = $2)
            ORDER BY id DESC LIMIT $3 OFFSET $4""",
        ctx.chain_id,
        st,
        limit,
        off,
    )
    total = await ctx.conn.fetchval(
        "SELECT count(*) FROM keeper.resolution_queue WHERE chain_id = $1 AND ($2::text IS NULL OR status = $2)",
        ctx.chain_id,
        st,
    )
    data = [
        {
            "id": r["id"],
            "marketId": r["market_id"],
            "outcome": OUTCOMES[r["outcome"]],
            "reason": r["reason"],
            "requestedBy": r["requested_by"],
            "requestedAt": iso(r["requested_at"]),
            "status": r["status"],
            "statusReason": r["status_reason"],
            "txId": r["tx_id"],
            "cancelledBy": r["cancelled_by"],
            "cancelledAt": iso(r["cancelled_at"]),
            "updatedAt": iso(r["updated_at"]),
        }
        for r in rows
    ]
    return {"data": data, "meta": page_meta(int(ctx.params["page"]), limit, int(total))}


TX_STATUSES = ("pending", "mined", "confirmed", "reverted", "dropped")
KEEPER_JOBS = ("resolve", "finalize", "expire", "distribute", "fill")  # keeper.txs.job (sql/034)


async def keeper_txs(ctx: Ctx) -> dict[str, Any]:
    """The keeper's transactions (keeper.txs), newest first."""
    limit, off = offset(ctx)
    st, job = ctx.params["status"], ctx.params["job"]
    where = "chain_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR job = $3)"
    rows = await ctx.conn.fetch(
        f"""SELECT id, job, job_key, sender, to_address, nonce, status, market_id, creator, mined_tx_hash, mined_block,
                   gas_used, fee_paid, finalized, reorg_count, error, created_at, updated_at, confirmed_at
              FROM keeper.txs WHERE {where} ORDER BY id DESC LIMIT $4 OFFSET $5""",
        ctx.chain_id,
        st,
        job,
        limit,
        off,
    )
    total = await ctx.conn.fetchval(f"SELECT count(*) FROM keeper.txs WHERE {where}", ctx.chain_id, st, job)
    data = [
        {
            "id": r["id"],
            "job": r["job"],
            "jobKey": r["job_key"],
            "sender": hexs(r["sender"]),
            "to": hexs(r["to_address"]),
            "nonce": r["nonce"],
            "status": r["status"],
            "marketId": r["market_id"],
            "creator": hexs(r["creator"]),
            "txHash": hexs(r["mined_tx_hash"]),
            "minedBlock": r["mined_block"],
            "gasUsed": r["gas_used"],
            "feePaidWei": None if r["fee_paid"] is None else str(int(r["fee_paid"])),
            "finalized": r["finalized"],
            "reorgs": r["reorg_count"],
            "error": r["error"],
            "createdAt": iso(r["created_at"]),
            "updatedAt": iso(r["updated_at"]),
            "confirmedAt": iso(r["confirmed_at"]),
        }
        for r in rows
    ]
    return {"data": data, "meta": page_meta(int(ctx.params["page"]), limit, int(total))}


# ------------------------------------------------------------------ operator actions
# The same requests as `python -m keeper resolve|cancel|rule`, validated by the same code
# (core/resolution.py) and recorded with who (the token's address) and why. The API never talks to
# the chain: market facts come from the index (idx.markets); the keeper re-checks the contract
# before it sends anything.

QUEUE_BODY = {
    "type": "object",
    "required": ["marketId", "outcome", "reason"],
    "additionalProperties": False,
    "properties": {
        "marketId": {"type": "integer", "minimum": 0},
        "outcome": {"type": "string", "enum": ["yes", "no", "invalid"]},
        "reason": {"type": "string", "minLength": 1, "maxLength": R.MAX_REASON},
    },
}
CANCEL_BODY = {
    "type": "object",
    "required": ["reason"],
    "additionalProperties": False,
    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": R.MAX_REASON}},
}
RULE_BODY = {
    "type": "object",
    "required": ["feed", "op", "threshold", "reason"],
    "additionalProperties": False,
    "properties": {
        "feed": {"type": "string", "description": "AggregatorV3 address"},
        "op": {"type": "string", "enum": list(R.COMPARISONS)},
        "threshold": {"type": "string", "description": "decimal integer in the feed's decimals (int256)"},
        "ifTrue": {"type": "string", "enum": ["yes", "no", "invalid"], "default": "yes"},
        "ifFalse": {"type": "string", "enum": ["yes", "no", "invalid"], "default": "no"},
        "reason": {"type": "string", "minLength": 1, "maxLength": R.MAX_REASON},
    },
}
_API_FIELD = {"market_id": "marketId", "queue_id": "id"}


def _refuse(exc: R.RequestError) -> ApiError:
    """A core.resolution refusal as the seed's error body; the status says whose move it is."""
    field = FieldError(_API_FIELD.get(exc.field, exc.field), exc.message)
    if exc.kind == "not_found":
        return ApiError(404, "Not found", [field])
    if exc.kind == "conflict":
        return ApiError(409, "Conflict", [field])
    return ValidationFailed([field])


def _unknown(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise ValidationFailed([FieldError(k[:64], "unknown field") for k in extra])


def _who(ctx: Ctx) -> str:
    assert ctx.user is not None
    return ctx.user.address


def _queue_entry(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "marketId": r["market_id"],
        "outcome": OUTCOMES[r["outcome"]],
        "reason": r["reason"],
        "requestedBy": r["requested_by"],
        "requestedAt": iso(r["requested_at"]),
        "status": r["status"],
        "statusReason": r["status_reason"],
        "txId": r["tx_id"],
        "cancelledBy": r["cancelled_by"],
        "cancelledAt": iso(r["cancelled_at"]),
        "updatedAt": iso(r["updated_at"]),
    }


ENTRY_SQL = """SELECT id, market_id, outcome, reason, requested_by, requested_at, status, status_reason, tx_id,
                      cancelled_by, cancelled_at, updated_at FROM keeper.resolution_queue WHERE id = $1"""


async def queue_resolution(ctx: Ctx) -> dict[str, Any]:
    """Queues an operator outcome for a market past its end (as `python -m keeper resolve`)."""
    body: dict[str, Any] = ctx.body
    _unknown(body, ("marketId", "outcome", "reason"))
    try:
        market_id = R.parse_market_id(body.get("marketId"), "marketId")
        outcome = R.parse_outcome(body.get("outcome"))
        reason = R.parse_text(body.get("reason"), "reason")
        facts, now = await R.read_indexed_market(ctx.conn, ctx.chain_id, market_id)
        R.check_due(market_id, facts, now, "in the index", "marketId")
        q = await R.queue_resolution(ctx.conn, ctx.chain_id, market_id, outcome, reason, _who(ctx))
        row = await ctx.conn.fetchrow(ENTRY_SQL, q.id)
    except R.RequestError as exc:
        raise _refuse(exc) from None
    return {"__status__": 201, "data": _queue_entry(row)}


async def cancel_resolution(ctx: Ctx) -> dict[str, Any]:
    """Cancels a queued resolution before the keeper records its transaction (as `keeper cancel`)."""
    body: dict[str, Any] = ctx.body
    _unknown(body, ("reason",))
    try:
        reason = R.parse_text(body.get("reason"), "reason")
        await R.cancel_resolution(ctx.conn, ctx.chain_id, int(ctx.params["id"]), reason, _who(ctx))
        row = await ctx.conn.fetchrow(ENTRY_SQL, int(ctx.params["id"]))
    except R.RequestError as exc:
        raise _refuse(exc) from None
    return {"data": _queue_entry(row)}


async def bind_rule(ctx: Ctx) -> dict[str, Any]:
    """Binds a market to an AggregatorV3 price feed (as `python -m keeper rule`); replaces its rule."""
    body: dict[str, Any] = ctx.body
    _unknown(body, ("feed", "op", "threshold", "ifTrue", "ifFalse", "reason"))
    try:
        rule = R.FeedRule(
            market_id=R.parse_market_id(ctx.params["marketId"], "marketId"),
            feed=R.parse_address(body.get("feed"), "feed"),
            comparison=R.parse_comparison(body.get("op"), "op"),
            threshold=R.parse_threshold(body.get("threshold"), "threshold"),
            outcome_if_true=R.parse_outcome(body.get("ifTrue", "yes"), "ifTrue"),
            outcome_if_false=R.parse_outcome(body.get("ifFalse", "no"), "ifFalse"),
        )
        reason = R.parse_text(body.get("reason"), "reason")
        facts, _now = await R.read_indexed_market(ctx.conn, ctx.chain_id, rule.market_id)
        R.check_bindable(rule.market_id, facts, "in the index", "marketId")
        await R.bind_feed(ctx.conn, ctx.chain_id, rule, reason, _who(ctx))
    except R.RequestError as exc:
        raise _refuse(exc) from None
    return {
        "data": {
            "marketId": rule.market_id,
            "feed": hexs(rule.feed),
            "op": rule.comparison,
            "threshold": str(rule.threshold),
            "ifTrue": R.OUTCOME_NAMES[rule.outcome_if_true],
            "ifFalse": R.OUTCOME_NAMES[rule.outcome_if_false],
            "reason": reason,
            "createdBy": _who(ctx),
        }
    }


MAINTENANCE_BODY = {
    "type": "object",
    "required": ["message"],
    "additionalProperties": False,
    "properties": {
        "message": {"type": "string", "minLength": 1, "maxLength": 500},
        "startsAt": {"type": "string", "format": "date-time"},
        "endsAt": {"type": "string", "format": "date-time"},
    },
}


def _time(body: dict[str, Any], key: str, errors: list[FieldError]) -> dt.datetime | None:
    """The query parameters' parser (review h5: an offset taking the time past year 9999 or before
    year 1 in UTC answered 500)."""
    v = body.get(key)
    if v is None:
        return None
    t = parse_time(v) if isinstance(v, str) else None
    if t is None:
        errors.append(FieldError(key, "must be an RFC 3339 date-time (2024-12-31T23:59:59Z) in years 1..9999 UTC"))
    return t


async def maintenance(ctx: Ctx) -> dict[str, Any]:
    """Broadcasts `system:maintenance` to every feed connection on every instance."""
    body: dict[str, Any] = ctx.body
    errors = [FieldError(k[:64], "unknown field") for k in body if k not in ("message", "startsAt", "endsAt")]
    msg = body.get("message")
    if not isinstance(msg, str) or not msg.strip() or len(msg) > 500:
        errors.append(FieldError("message", "is required: 1..500 characters"))
    starts, ends = _time(body, "startsAt", errors), _time(body, "endsAt", errors)
    if starts is not None and ends is not None and ends < starts:
        errors.append(FieldError("endsAt", "must not be before startsAt"))
    if errors:
        raise ValidationFailed(errors)
    assert ctx.user is not None
    payload = {
        "type": "event",
        "event": "system:maintenance",
        "seq": None,
        "rooms": ["global:all"],
        "data": {"message": msg, "startsAt": iso(starts), "endsAt": iso(ends), "by": ctx.user.address},
        "ts": iso(dt.datetime.now(dt.UTC)),
    }
    everywhere = await ctx.state.pump.publish_broadcast(orjson.dumps(payload))
    return {
        "__status__": 202,
        "data": {"broadcast": True, "allInstances": everywhere, "localConnections": len(ctx.state.hub.clients)},
    }


# Response schemas (added by the typed-contract work, issue 14; keep them in step with the handlers).
INDEXER_STATUS = model(
    "IndexerStatus",
    obj(
        {
            "headBlock": null(INT),
            "safeBlock": null(INT),
            "finalizedBlock": null(INT),
            "indexedBlock": null(INT),
            "indexedHash": null(HASH),
            "lagBlocks": null(INT),
            "headUpdatedAt": null(TIME),
            "indexedAt": null(TIME),
            "outboxSeq": null(INT),
            "apiOutboxSeq": null(INT),
            "reorgs": INT,
            "recentReorgs": arr(
                obj(
                    {
                        "commonAncestor": INT,
                        "oldHead": INT,
                        "depth": INT,
                        "removedEvents": INT,
                        "detectedAt": TIME,
                    }
                )
            ),
            "feedConnections": INT,
        }
    ),
)
QUEUE_ITEM = model(
    "ResolutionRequest",
    obj(
        {
            "id": INT,
            "marketId": INT,
            "outcome": OUTCOME,
            "reason": null(STR),
            "requestedBy": null(STR),
            "requestedAt": null(TIME),
            "status": enum(*QUEUE_STATUSES),
            "statusReason": null(STR),
            "txId": null(INT),
            "cancelledBy": null(STR),
            "cancelledAt": null(TIME),
            "updatedAt": null(TIME),
        }
    ),
)
FEED_RULE = model(
    "FeedRule",
    obj(
        {
            "marketId": INT,
            "feed": ADDRESS,
            "op": STR,
            "threshold": {"type": "string", "pattern": r"^-?[0-9]+$"},
            "ifTrue": OUTCOME,
            "ifFalse": OUTCOME,
            "reason": STR,
            "createdBy": STR,
        }
    ),
)
KEEPER_TX = model(
    "KeeperTransaction",
    obj(
        {
            "id": INT,
            "job": STR,
            "jobKey": null(STR),
            "sender": null(ADDRESS),
            "to": null(ADDRESS),
            "nonce": null(INT),
            "status": STR,
            "marketId": null(INT),
            "creator": null(ADDRESS),
            "txHash": null(HASH),
            "minedBlock": null(INT),
            "gasUsed": null(INT),
            "feePaidWei": null(UINT),
            "finalized": null(BOOL),
            "reorgs": null(INT),
            "error": null(STR),
            "createdAt": null(TIME),
            "updatedAt": null(TIME),
            "confirmedAt": null(TIME),
        }
    ),
)
BROADCAST = obj({"broadcast": BOOL, "allInstances": BOOL, "localConnections": INT})

ENDPOINTS = [
    Endpoint(
        "GET", "/v1/admin/indexer", indexer_status, "Indexer status", "admin", auth="admin", response=INDEXER_STATUS
    ),
    Endpoint(
        "GET",
        "/v1/admin/keeper/queue",
        keeper_queue,
        "Keeper resolution queue",
        "admin",
        (Param("status", "enum", choices=QUEUE_STATUSES), *page_params()),
        auth="admin",
        paged="page",
        response=arr(QUEUE_ITEM),
    ),
    Endpoint(
        "POST",
        "/v1/admin/keeper/queue",
        queue_resolution,
        "Queue a market resolution (who and why recorded)",
        "admin",
        auth="admin",
        body=QUEUE_BODY,
        db="write",  # one connection from the write pool: the market check and the insert
        response=QUEUE_ITEM,
        status=201,
        errors=(404, 409),
    ),
    Endpoint(
        "POST",
        "/v1/admin/keeper/queue/{id}/cancel",
        cancel_resolution,
        "Cancel a queued resolution",
        "admin",
        (Param("id", "int", where="path", required=True, minimum=1, maximum=2**63 - 1, description="queue id"),),
        auth="admin",
        body=CANCEL_BODY,
        db="write",  # one connection from the write pool: the market check and the insert
        response=QUEUE_ITEM,
        errors=(404, 409),
    ),
    Endpoint(
        "PUT",
        "/v1/admin/keeper/rules/{marketId}",
        bind_rule,
        "Bind a market to a price feed",
        "admin",
        (Param("marketId", "int", where="path", required=True, minimum=0, maximum=2**63 - 1, description="market id"),),
        auth="admin",
        body=RULE_BODY,
        db="write",  # one connection from the write pool: the market check and the insert
        response=FEED_RULE,
        errors=(404, 409),
    ),
    Endpoint(
        "GET",
        "/v1/admin/keeper/transactions",
        keeper_txs,
        "Keeper transactions",
        "admin",
        (
            Param("status", "enum", choices=TX_STATUSES),
            Param("job", "enum", choices=KEEPER_JOBS),
            *page_params(),
        ),
        auth="admin",
        paged="page",
        response=arr(KEEPER_TX),
    ),
    Endpoint(
        "POST",
        "/v1/admin/maintenance",
        maintenance,
        "Broadcast system:maintenance on the feed",
        "admin",
        auth="admin",
        body=MAINTENANCE_BODY,
        status=202,
        response=BROADCAST,
    ),
]
