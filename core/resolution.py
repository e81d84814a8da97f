"""Operator resolution requests — one definition shared by the keeper CLI and the admin HTTP API.

What an operator may ask (queue an outcome, cancel a queued one, bind a market to a price feed),
how the request is validated, and the SQL that records it with who and why. The keeper's daemon
reads the same rows (keeper.resolution_queue, keeper.price_feed_rules); the database enforces the
same bounds again (sql/050_keeper_input.sql), so no bad row exists whoever writes it.

Validation has two halves:
  * `parse_*`: the request's own fields (types, ranges, lengths) — pure.
  * `check_due` / `check_bindable`: the market as seen by the caller — pure over `MarketFacts`.
    The CLI reads the facts from the chain (`read_market`, eth_call getMarket); the API, which never
    talks to the chain, from the indexer's copy (idx.markets). The keeper re-checks the contract
    before it sends anything either way (decision 7).

Errors (each message names the input, says what was wrong and what to do):
    RequestError (ValueError)   a field is malformed, or the market does not allow the request
    ├── Conflict                the market already has an active entry (`existing_id`, `existing_status`)
    └── NotCancellable          the entry is missing or already past `queued`
"""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
import asyncpg
import orjson
from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

from core.contracts import load_abi
from core.numbers import whole_number
from core.rpc_errors import revert_bytes

OUTCOMES = {"no": 0, "yes": 1, "invalid": 2}  # the contract's enum (OpinionMarket.Outcome)
OUTCOME_NAMES = {v: k for k, v in OUTCOMES.items()}
COMPARISONS = ("gt", "gte", "lt", "lte")
MAX_MARKET_ID = 2**63 - 1  # PostgreSQL bigint; the contract's ids count up from 1
MAX_REASON = 500
MAX_WHO = 200
INT256 = 2**255


class RequestError(ValueError):
    """A request the keeper must refuse; `field` names the input; `kind` says whose move it is:
    invalid (fix the input), not_found, conflict (the market or entry does not allow it now),
    unavailable (the chain did not answer)."""

    def __init__(self, field: str, message: str, kind: str = "invalid") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.kind = kind


class Conflict(RequestError):
    def __init__(self, market_id: int, existing_id: int | None, existing_status: str | None) -> None:
        what = "?" if existing_id is None else f"#{existing_id}, {existing_status}"
        super().__init__(
            "market_id",
            f"market {market_id} already has an active queue entry ({what}); cancel it first"
            " (only a `queued` entry can be cancelled)",
            "conflict",
        )
        self.existing_id = existing_id
        self.existing_status = existing_status


class NotCancellable(RequestError):
    def __init__(self, queue_id: int, status: str | None) -> None:
        super().__init__(
            "queue_id",
            f"queue entry {queue_id} cannot be cancelled (status: {status or 'not found'}); only a `queued`"
            " entry can — see `python -m keeper queue --all`",
            "conflict" if status else "not_found",
        )
        self.status = status


# ------------------------------------------------------------------ the request's own fields


def parse_market_id(value: Any, field: str = "market_id") -> int:
    """A market id: an integer 0 ≤ id < 2^63 (a decimal string is accepted, as from a CLI or URL)."""
    if isinstance(value, bool):
        raise RequestError(field, f"must be a whole number, got {value!r}")
    if isinstance(value, str):
        number = whole_number(value, negative=True)
        if number is None:
            raise RequestError(field, f"must be a whole number, got {value!r}")
        value = number
    if not isinstance(value, int):
        raise RequestError(field, f"must be a whole number, got {value!r}")
    if value < 0:
        raise RequestError(field, f"must be >= 0, got {value} (market ids are the contract's, from 1 up)")
    if value > MAX_MARKET_ID:
        raise RequestError(field, f"must be < 2^63, got {value}")
    return value


def parse_queue_id(value: Any, field: str = "QUEUE_ID") -> int:
    """A resolution queue entry's id: the `#N` that `python -m keeper queue` shows, from 1 up."""
    if isinstance(value, str) and (number := whole_number(value, negative=True)) is not None:
        value = number
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MARKET_ID:
        raise RequestError(field, f"must be a queue entry's id (the #N of `python -m keeper queue`), got {value!r}")
    return int(value)


def parse_outcome(value: Any, field: str = "outcome") -> int:
    if not isinstance(value, str) or value.strip().lower() not in OUTCOMES:
        raise RequestError(field, f"must be one of yes, no, invalid; got {value!r}")
    return OUTCOMES[value.strip().lower()]


def parse_text(value: Any, field: str, limit: int = MAX_REASON) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(field, "is required: a non-blank text")
    if len(value) > limit:
        raise RequestError(field, f"must be at most {limit} characters, got {len(value)}")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise RequestError(field, "must not contain NUL (\\u0000) characters")
    try:  # argv bytes that are not UTF-8 arrive as lone surrogates (surrogateescape): no database can store them
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(
            field,
            f"must be valid UTF-8 text; character {exc.start + 1} is not (a byte from a non-UTF-8 terminal or"
            " paste?): type it again in a UTF-8 locale",
        ) from None
    return value.strip()


def parse_address(value: Any, field: str) -> bytes:
    text = value.strip() if isinstance(value, str) else ""
    body = text[2:] if text.lower().startswith("0x") else ""
    try:
        raw = bytes.fromhex(body)
    except ValueError:
        raw = b""
    if len(raw) != 20:
        raise RequestError(field, f"must be a 0x-prefixed 20-byte hex address, got {value!r}")
    return raw


def parse_comparison(value: Any, field: str = "op") -> str:
    if value not in COMPARISONS:
        raise RequestError(field, f"must be one of {', '.join(COMPARISONS)}; got {value!r}")
    return str(value)


def parse_threshold(value: Any, field: str = "threshold") -> int:
    """An int256 in the feed's own decimals (AggregatorV3 answers are signed)."""
    if isinstance(value, str) and (number := whole_number(value, negative=True)) is not None:
        value = number
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(field, f"must be a whole number in the feed's decimals, got {value!r}")
    if not -INT256 <= value < INT256:
        raise RequestError(field, "must fit an int256")
    return int(value)


# ------------------------------------------------------------------ the market


@dataclasses.dataclass(frozen=True, slots=True)
class MarketFacts:
    market_id: int
    end_time: int  # unix seconds
    resolved: bool
    status: str = "open"  # open | proposed | disputed | resolved (OpinionMarket's resolution status)


STATUS_NAMES = ("open", "proposed", "disputed", "resolved")  # OpinionMarket.STATUS_* 0..3


def check_due(market_id: int, facts: MarketFacts | None, now: int, source: str, field: str = "market_id") -> None:
    """A resolution may be queued for a market that exists, is past its end time and is unresolved."""
    if facts is None:
        raise RequestError(
            field,
            f"market {market_id} does not exist ({source}); check the id (`GET /v1/markets/{{id}}`)",
            "not_found",
        )
    if facts.resolved:
        raise RequestError(field, f"market {market_id} is already resolved ({source}); nothing to queue", "conflict")
    if facts.status in ("proposed", "disputed"):
        raise RequestError(
            field,
            f"market {market_id} already has a proposed outcome (status {facts.status}, {source}): it becomes final"
            " after its challenge window, or the arbiter decides a disputed one; nothing to queue",
            "conflict",
        )
    if now < facts.end_time:
        raise RequestError(
            field,
            f"market {market_id} has not ended: it ends at unix {facts.end_time}, {facts.end_time - now} s from now"
            f" ({source}); queue its outcome after the end time",
            "conflict",
        )


def check_bindable(market_id: int, facts: MarketFacts | None, source: str, field: str = "market_id") -> None:
    """A price-feed rule may be bound to a market that exists and is not resolved (before or after its end)."""
    if facts is None:
        raise RequestError(field, f"market {market_id} does not exist ({source}); check the id", "not_found")
    if facts.resolved:
        raise RequestError(
            field, f"market {market_id} is already resolved ({source}); a rule would never run", "conflict"
        )


# ------------------------------------------------------------------ facts from the chain (the CLI)


def _get_market_abi() -> tuple[bytes, list[str], list[str]]:
    """Selector, output types and output names of OpinionMarket.getMarket from abi/ (outputs are read
    by name, so a contract that adds fields keeps working)."""
    (fn,) = [f for f in load_abi("OpinionMarket") if f.get("type") == "function" and f.get("name") == "getMarket"]
    ins = ",".join(i["type"] for i in fn["inputs"])
    return (
        bytes(keccak(text=f"getMarket({ins})"))[:4],
        [o["type"] for o in fn["outputs"]],
        [o["name"] for o in fn["outputs"]],
    )


class ChainUnavailable(RequestError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            "chain", f"cannot read the chain ({detail}); check [chain].rpc_urls and that the node runs", "unavailable"
        )


async def read_market(
    rpc_urls: tuple[str, ...] | list[str], opinion_market: str, market_id: int, timeout_s: float = 10.0
) -> tuple[MarketFacts | None, int]:
    """(facts or None when the contract has no such market, the latest block's timestamp), from the
    first RPC URL that answers."""
    selector, out_types, out_names = _get_market_abi()
    data = "0x" + (selector + encode(["uint256"], [market_id])).hex()
    body = orjson.dumps(
        [
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "eth_call",
                "params": [{"to": opinion_market, "data": data}, "latest"],
            },
            {"jsonrpc": "2.0", "id": 2, "method": "eth_getBlockByNumber", "params": ["latest", False]},
        ]
    )
    last = "no rpc_urls"
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, headers={"Content-Type": "application/json"}) as http:
        for url in rpc_urls:
            try:
                async with http.post(url, data=body) as resp:
                    answers = orjson.loads(await resp.read())
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
                last = type(exc).__name__
                continue
            if not isinstance(answers, list):
                last = "the node refused a batch"
                continue
            by_id = {a.get("id"): a for a in answers}
            block = by_id.get(2, {}).get("result")
            if not block:
                last = "no latest block"
                continue
            now = int(block["timestamp"], 16)
            call = by_id.get(1, {})
            if "error" in call:
                err = call["error"]
                revert = revert_bytes(err.get("data")) if isinstance(err, dict) else None
                if revert is not None and revert.startswith(MARKET_NOT_FOUND):  # getMarket: an unknown id
                    return None, now
                last = f"eth_call failed ({str(err)[:160]})"  # a rate limit, a node error: not an answer
                continue
            raw = bytes.fromhex(str(call.get("result", "0x"))[2:])
            if len(raw) < 32 * len(out_types):
                return None, now
            fields = dict(zip(out_names, decode(out_types, raw), strict=True))
            status = STATUS_NAMES[int(fields["status"])]
            return MarketFacts(market_id, int(fields["endTime"]), status == "resolved", status), now
    raise ChainUnavailable(last)


ROUND_TYPES = ["uint80", "int256", "uint256", "uint256", "uint80"]  # AggregatorV3 latestRoundData()
MARKET_NOT_FOUND = bytes(keccak(text="MarketNotFound(uint256)"))[:4]


async def feed_problem(rpc_urls: tuple[str, ...] | list[str], address: bytes, timeout_s: float = 10.0) -> str | None:
    """Why `address` cannot serve as a price feed — no contract there, latestRoundData() reverts, or its
    answer is not an AggregatorV3 round (another contract's fallback, another shape) — or None when it
    answers a round. The keeper decodes exactly this at resolution time."""
    where = "0x" + address.hex()
    call = {"to": where, "data": "0x" + bytes(keccak(text="latestRoundData()"))[:4].hex()}
    body = orjson.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_getCode", "params": [where, "latest"]},
            {"jsonrpc": "2.0", "id": 2, "method": "eth_call", "params": [call, "latest"]},
        ]
    )
    last = "no rpc_urls"
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, headers={"Content-Type": "application/json"}) as http:
        for url in rpc_urls:
            try:
                async with http.post(url, data=body) as resp:
                    answers = orjson.loads(await resp.read())
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
                last = type(exc).__name__
                continue
            if not isinstance(answers, list):
                last = "the node refused a batch"
                continue
            by_id = {a.get("id"): a for a in answers if isinstance(a, dict)}
            code = by_id.get(1, {}).get("result")
            if not isinstance(code, str):
                last = "no result"
                continue
            if code in ("0x", "0x0", ""):
                return f"no contract at {where} on chain"
            answer = by_id.get(2, {})
            if "error" in answer:
                return f"{where}.latestRoundData() reverts: it is not an AggregatorV3 price feed"
            raw = bytes.fromhex(str(answer.get("result", "0x"))[2:])
            try:
                decode(ROUND_TYPES, raw)
            except Exception as exc:
                return (
                    f"{where}.latestRoundData() answered {len(raw)} bytes that are not an AggregatorV3 round"
                    f" ({type(exc).__name__}): it is not a price feed"
                )
            return None
    raise ChainUnavailable(last)


# ------------------------------------------------------------------ facts from the index (the API)

INDEXED_MARKET_SQL = """
SELECT extract(epoch FROM m.end_time)::bigint AS end_time, m.resolved, m.status,
       extract(epoch FROM coalesce((SELECT b.block_time FROM idx.blocks b WHERE b.chain_id = $1
                                     ORDER BY b.block_number DESC LIMIT 1), now()))::bigint AS now
  FROM (SELECT 1) one LEFT JOIN idx.markets m ON m.chain_id = $1 AND m.market_id = $2
"""


async def read_indexed_market(conn: Any, chain_id: int, market_id: int) -> tuple[MarketFacts | None, int]:
    """(facts from idx.markets or None, the latest indexed block's time — the chain's clock as the
    index last saw it, or the database clock before anything is indexed)."""
    row = await conn.fetchrow(INDEXED_MARKET_SQL, chain_id, market_id)
    facts = (
        None
        if row["end_time"] is None
        else MarketFacts(market_id, int(row["end_time"]), bool(row["resolved"]), str(row["status"]))
    )
    return facts, int(row["now"])


# ------------------------------------------------------------------ the writes


@dataclasses.dataclass(frozen=True, slots=True)
class Queued:
    id: int
    market_id: int
    outcome: int
    reason: str
    requested_by: str


async def queue_resolution(conn: Any, chain_id: int, market_id: int, outcome: int, reason: str, by: str) -> Queued:
    """Inserts a queued entry; Conflict when the market already has a queued or sent one."""
    try:
        async with conn.transaction():
            qid = await conn.fetchval(
                "INSERT INTO keeper.resolution_queue (chain_id, market_id, outcome, reason, requested_by)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                chain_id,
                market_id,
                outcome,
                reason,
                by,
            )
    except asyncpg.UniqueViolationError:
        existing = await conn.fetchrow(
            "SELECT id, status FROM keeper.resolution_queue WHERE chain_id = $1 AND market_id = $2"
            " AND status IN ('queued', 'sent')",
            chain_id,
            market_id,
        )
        raise Conflict(
            market_id, None if existing is None else existing["id"], None if existing is None else existing["status"]
        ) from None
    return Queued(int(qid), market_id, outcome, reason, by)


async def cancel_resolution(conn: Any, chain_id: int, queue_id: int, reason: str, by: str) -> int:
    """Cancels a still-queued entry (the keeper's record locks the same row: one of them wins);
    returns its market id."""
    row = await conn.fetchrow(
        "UPDATE keeper.resolution_queue SET status = 'cancelled', cancelled_by = $3, cancelled_at = now(),"
        " cancel_reason = $4, updated_at = now() WHERE id = $1 AND chain_id = $2 AND status = 'queued'"
        " RETURNING market_id",
        queue_id,
        chain_id,
        by,
        reason,
    )
    if row is None:
        status = await conn.fetchval(
            "SELECT status FROM keeper.resolution_queue WHERE id = $1 AND chain_id = $2", queue_id, chain_id
        )
        raise NotCancellable(queue_id, status)
    return int(row["market_id"])


@dataclasses.dataclass(frozen=True, slots=True)
class FeedRule:
    market_id: int
    feed: bytes
    comparison: str
    threshold: int
    outcome_if_true: int
    outcome_if_false: int


async def bind_feed(conn: Any, chain_id: int, rule: FeedRule, reason: str | None, by: str) -> None:
    """Creates or replaces the market's price-feed rule."""
    await conn.execute(
        """
        INSERT INTO keeper.price_feed_rules (chain_id, market_id, feed, comparison, threshold, outcome_if_true,
                                             outcome_if_false, created_by, reason)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (chain_id, market_id) DO UPDATE SET feed = EXCLUDED.feed, comparison = EXCLUDED.comparison,
            threshold = EXCLUDED.threshold, outcome_if_true = EXCLUDED.outcome_if_true,
            outcome_if_false = EXCLUDED.outcome_if_false, created_by = EXCLUDED.created_by,
            reason = EXCLUDED.reason, created_at = now()
        """,
        chain_id,
        rule.market_id,
        rule.feed,
        rule.comparison,
        rule.threshold,
        rule.outcome_if_true,
        rule.outcome_if_false,
        by,
        reason,
    )


def describe_rule(rule: FeedRule) -> str:
    return (
        f"market {rule.market_id}: {OUTCOME_NAMES[rule.outcome_if_true]} if answer {rule.comparison}"
        f" {rule.threshold} at end time, else {OUTCOME_NAMES[rule.outcome_if_false]}"
    )
