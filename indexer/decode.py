"""Pure decoding of OpinionMarket and CreatorShares logs into typed events.

topic0 → decoder, built at import from the ABIs in abi/ (topics computed, never pasted). Fixed
layout events are decoded by slicing 32-byte words (int.from_bytes on memoryview slices, about
10x faster than eth_abi); eth_abi is used only for events with dynamic fields (the strings of
MarketCreated, and the audit-only events stored in ev_other). Every event class lists the ABI's
inputs in ABI order (snake_case); a mismatch with abi/ fails at import.

Errors: DecodeError (ValueError) — a log of one of our addresses that does not match its ABI
(wrong topic count or data length). The indexer stops on it: an ABI out of date is a bug to fix,
never a row to skip.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

from eth_abi import decode as abi_decode  # type: ignore[attr-defined]

from core.contracts import event_topic, load_abi


class DecodeError(ValueError):
    pass


# Logs and events are built once per log on the backfill's hot path and never changed afterwards.
# They are plain (not frozen) slotted dataclasses because a frozen one assigns every field through
# object.__setattr__: 3.2 us against 0.34 us for a 17-field Trade (measured).


@dataclasses.dataclass(slots=True)
class Log:
    """One eth_getLogs entry with hex already converted (rpc.py does it, once)."""

    block_number: int
    block_hash: bytes
    block_time: int | None  # blockTimestamp when the node provides it
    tx_hash: bytes
    log_index: int
    address: bytes
    topics: tuple[bytes, ...]
    data: bytes


# ---------------------------------------------------------------- events (header + ABI inputs)


@dataclasses.dataclass(slots=True)
class MarketCreated:
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    market_id: int
    creator: bytes
    question: str
    category: str
    end_time: int
    initial_liquidity: int
    yes_reserve: int
    no_reserve: int
    question_bytes: bytes | None  # exact bytes when `question` is not exact (NUL, invalid UTF-8)
    category_bytes: bytes | None


@dataclasses.dataclass(slots=True)
class Trade:
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    market_id: int
    trader: bytes
    is_buy: bool
    outcome: int
    collateral: int
    shares: int
    fee: int
    creator_fee: int
    yes_reserve: int
    no_reserve: int
    trader_yes: int
    trader_no: int


@dataclasses.dataclass(slots=True)
class MarketResolved:
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    market_id: int
    outcome: int
    resolver: bytes


@dataclasses.dataclass(slots=True)
class OutcomeProposed:
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    market_id: int
    outcome: int
    proposer: bytes
    challenge_ends: int  # unix time from which anyone may finalize the proposal


@dataclasses.dataclass(slots=True)
class OutcomeDisputed:
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    market_id: int
    proposed_outcome: int
    arbiter: bytes


@dataclasses.dataclass(slots=True)
class WinningsClaimed:
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    market_id: int
    holder: bytes
    payout: int
    yes_burned: int
    no_burned: int


@dataclasses.dataclass(slots=True)
class Merged:
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    market_id: int
    holder: bytes
    amount: int  # YES and NO pairs burned = USDC paid
    trader_yes: int
    trader_no: int


@dataclasses.dataclass(slots=True)
class LiquidityWithdrawn:
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    market_id: int
    creator: bytes
    payout: int


@dataclasses.dataclass(slots=True)
class CreatorFeesCollected:
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    creator: bytes
    collector: bytes
    amount: int


@dataclasses.dataclass(slots=True)
class SharesTraded:
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    creator: bytes
    trader: bytes
    is_buy: bool
    amount: int
    price: int
    protocol_fee: int
    creator_fee: int
    dividend_fee: int
    supply: int
    trader_shares: int
    trader_claimable: int
    locked_until: int
    pool: int
    acc_per_share: int
    distributed: int  # vested and folded into acc_per_share before the trade (streamed dividends)
    # warm-up (sql/081): the trader's pending lots after the trade, pend_new earning from trader_earns_from (00:00
    # UTC, unix seconds; 0: nothing pending), pend_old a day earlier; the creator's pending shares after
    trader_pending_old: int = 0
    trader_pending_new: int = 0
    trader_earns_from: int = 0
    pending_supply: int = 0


@dataclasses.dataclass(slots=True)
class DividendsDistributed:
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    creator: bytes
    amount: int
    market_fees: int
    supply: int
    acc_per_share: int
    pool: int
    earning_supply: int = 0  # the supply `amount` was credited over (sql/081)
    pending_supply: int = 0


@dataclasses.dataclass(slots=True)
class PendingMatured:
    """A fold passed 00:00: the pending lots of `creator` whose 00:00 is in days from_day..to_day earn from now,
    from the accumulator acc_per_share (1e18-scaled)."""

    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    creator: bytes
    shares: int
    from_day: int
    to_day: int
    acc_per_share: int


@dataclasses.dataclass(slots=True)
class DividendsClaimed:
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    creator: bytes
    holder: bytes
    amount: int


@dataclasses.dataclass(slots=True)
class CreatorFeesClaimed:
    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    creator: bytes
    amount: int


@dataclasses.dataclass(slots=True)
class Other:
    """Any other event of our contracts (roles, pause, configuration): kept for audit in ev_other."""

    block_number: int
    log_index: int
    block_hash: bytes
    tx_hash: bytes
    block_time: int
    address: bytes
    event: str
    args: dict[str, Any]  # JSON-ready: integers as decimal strings, bytes as 0x hex


Event = (
    MarketCreated
    | Trade
    | MarketResolved
    | WinningsClaimed
    | LiquidityWithdrawn
    | CreatorFeesCollected
    | SharesTraded
    | DividendsDistributed
    | DividendsClaimed
    | CreatorFeesClaimed
    | Merged
    | OutcomeProposed
    | OutcomeDisputed
    | PendingMatured
    | Other
)

HEADER = ("block_number", "log_index", "block_hash", "tx_hash", "block_time")
TYPED: dict[tuple[str, str], type[Any]] = {
    ("OpinionMarket", "MarketCreated"): MarketCreated,
    ("OpinionMarket", "Trade"): Trade,
    ("OpinionMarket", "MarketResolved"): MarketResolved,
    ("OpinionMarket", "WinningsClaimed"): WinningsClaimed,
    ("OpinionMarket", "LiquidityWithdrawn"): LiquidityWithdrawn,
    ("OpinionMarket", "CreatorFeesCollected"): CreatorFeesCollected,
    ("CreatorShares", "SharesTraded"): SharesTraded,
    ("CreatorShares", "DividendsDistributed"): DividendsDistributed,
    ("CreatorShares", "DividendsClaimed"): DividendsClaimed,
    ("CreatorShares", "CreatorFeesClaimed"): CreatorFeesClaimed,
    ("OpinionMarket", "Merged"): Merged,
    ("OpinionMarket", "OutcomeProposed"): OutcomeProposed,
    ("OpinionMarket", "OutcomeDisputed"): OutcomeDisputed,
    ("CreatorShares", "PendingMatured"): PendingMatured,  # last: rawlogs indexes the classes by position
}


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def text_of(raw: bytes) -> tuple[str, bytes | None]:
    """A PostgreSQL-safe text form of contract string bytes, plus the exact bytes when it is lossy."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd"), raw
    if "\x00" in text:
        return text.replace("\x00", "\ufffd"), raw
    return text, None


# ---------------------------------------------------------------- decoder construction

Decoder = Callable[[Log, int], Event]


def _word_reader(kind: str) -> Callable[[Any], Any]:
    if kind == "address":
        return lambda w: bytes(w[12:32])
    if kind == "bool":
        return lambda w: w[31] != 0
    if kind.startswith("uint") or kind.startswith("int"):
        if kind.startswith("int"):
            return lambda w: int.from_bytes(w, "big", signed=True)
        return lambda w: int.from_bytes(w, "big")
    if kind == "bytes32":
        return lambda w: bytes(w)
    raise DecodeError(f"unsupported static type {kind}")


def _fixed_decoder(cls: type[Any], abi: dict[str, Any]) -> Decoder:
    """Slices topics and 32-byte data words by position; one generated constructor call per log."""
    inputs = abi["inputs"]
    names = [snake(i["name"]) for i in inputs]
    expected = [f.name for f in dataclasses.fields(cls)][len(HEADER) :]
    if names != expected:
        raise DecodeError(f"{cls.__name__} fields {expected} do not match abi/ inputs {names}")
    n_topics = 1 + sum(1 for i in inputs if i["indexed"])
    n_words = sum(1 for i in inputs if not i["indexed"])
    plan: list[tuple[bool, int, Callable[[Any], Any]]] = []
    t = w = 0
    for i in inputs:
        if i["indexed"]:
            t += 1
            plan.append((True, t, _word_reader(i["type"])))
        else:
            plan.append((False, w * 32, _word_reader(i["type"])))
            w += 1
    size = n_words * 32
    name = cls.__name__

    def decode(log: Log, block_time: int) -> Event:
        topics = log.topics
        data = log.data
        if len(topics) != n_topics or len(data) != size:
            raise DecodeError(
                f"{name} at block {log.block_number} log {log.log_index}: {len(topics)} topics, "
                f"{len(data)} data bytes; abi/ expects {n_topics} and {size}"
            )
        mv = memoryview(data)
        args = [read(topics[pos]) if indexed else read(mv[pos : pos + 32]) for indexed, pos, read in plan]
        return cls(log.block_number, log.log_index, log.block_hash, log.tx_hash, block_time, *args)  # type: ignore[no-any-return]

    return decode


def _decode_market_created(abi: dict[str, Any]) -> Decoder:
    names = [snake(i["name"]) for i in abi["inputs"]]
    if names != [
        "market_id",
        "creator",
        "question",
        "category",
        "end_time",
        "initial_liquidity",
        "yes_reserve",
        "no_reserve",
    ]:
        raise DecodeError(f"MarketCreated inputs changed in abi/: {names}")
    types = ["bytes", "bytes", "uint256", "uint256", "uint256", "uint256"]  # strings as raw bytes

    def decode(log: Log, block_time: int) -> Event:
        if len(log.topics) != 3:
            raise DecodeError(f"MarketCreated at block {log.block_number} log {log.log_index}: topics")
        try:
            question, category, end_time, liquidity, yes_r, no_r = abi_decode(types, log.data)
        except Exception as exc:
            raise DecodeError(f"MarketCreated at block {log.block_number} log {log.log_index}: {exc}") from None
        q, qb = text_of(question)
        c, cb = text_of(category)
        return MarketCreated(
            log.block_number,
            log.log_index,
            log.block_hash,
            log.tx_hash,
            block_time,
            int.from_bytes(log.topics[1], "big"),
            bytes(log.topics[2][12:]),
            q,
            c,
            end_time,
            liquidity,
            yes_r,
            no_r,
            qb,
            cb,
        )

    return decode


def _json_value(v: Any, kind: str = "") -> Any:
    """A JSON-ready value; addresses (eth_abi gives them checksummed) in lowercase like every table."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):
        return "0x" + v.hex()
    if isinstance(v, str):
        return v.lower() if kind.startswith("address") else v.replace("\x00", "\ufffd")
    if isinstance(v, list | tuple):
        return [_json_value(x, kind) for x in v]
    return str(v)


def _generic_decoder(abi: dict[str, Any]) -> Decoder:
    inputs = abi["inputs"]
    indexed = [i for i in inputs if i["indexed"]]
    plain = [i for i in inputs if not i["indexed"]]
    name = abi["name"]

    def decode(log: Log, block_time: int) -> Event:
        if len(log.topics) != 1 + len(indexed):
            raise DecodeError(f"{name} at block {log.block_number} log {log.log_index}: topics")
        args: dict[str, Any] = {}
        for i, topic in zip(indexed, log.topics[1:], strict=True):
            args[i["name"]] = (
                _json_value(abi_decode([i["type"]], topic)[0], i["type"])
                if i["type"] != "bytes32"
                else ("0x" + topic.hex())
            )
        try:
            values = abi_decode([i["type"] for i in plain], log.data)
        except Exception as exc:
            raise DecodeError(f"{name} at block {log.block_number} log {log.log_index}: {exc}") from None
        for i, v in zip(plain, values, strict=True):
            args[i["name"]] = _json_value(v, i["type"])
        return Other(log.block_number, log.log_index, log.block_hash, log.tx_hash, block_time, log.address, name, args)

    return decode


def build_decoders(contracts: Sequence[str] = ("OpinionMarket", "CreatorShares")) -> dict[bytes, dict[str, Decoder]]:
    """topic0 → {contract name → decoder} (two contracts may share an event, e.g. RoleGranted)."""
    table: dict[bytes, dict[str, Decoder]] = {}
    for contract in contracts:
        for item in load_abi(contract):
            if item["type"] != "event" or item.get("anonymous"):
                continue
            cls = TYPED.get((contract, item["name"]))
            if item["name"] == "MarketCreated":
                dec = _decode_market_created(item)
            elif cls is not None:
                dec = _fixed_decoder(cls, item)
            else:
                dec = _generic_decoder(item)
            table.setdefault(event_topic(item), {})[contract] = dec
    return table


DECODERS = build_decoders()


class EventDecoder:
    """Binds the decoder table to one deployment's addresses (address → contract name)."""

    __slots__ = ("by_topic", "names")

    def __init__(self, addresses: dict[bytes, str]) -> None:
        self.names = dict(addresses)
        self.by_topic: dict[tuple[bytes, bytes], Decoder] = {}
        for topic, per_contract in DECODERS.items():
            for address, contract in self.names.items():
                if contract in per_contract:
                    self.by_topic[(address, topic)] = per_contract[contract]

    def decode(self, logs: Sequence[Log], block_times: dict[int, int]) -> list[Event]:
        """Decodes logs in order; logs of other addresses or unknown topics raise DecodeError."""
        out: list[Event] = []
        by_topic = self.by_topic
        for log in logs:
            if not log.topics:
                raise DecodeError(f"anonymous log at block {log.block_number} log {log.log_index}")
            dec = by_topic.get((log.address, log.topics[0]))
            if dec is None:
                raise DecodeError(
                    f"log at block {log.block_number} index {log.log_index} from 0x{log.address.hex()} has "
                    f"topic0 0x{log.topics[0].hex()} unknown to abi/ for that address"
                )
            bt = log.block_time if log.block_time is not None else block_times[log.block_number]
            out.append(dec(log, bt))
        return out
