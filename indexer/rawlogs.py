"""The backfill's hot path: eth_getLogs JSON objects straight to event values and COPY text lines.

    RawDecoder(chain_id, {address: contract}).decode(raw_logs, headers) -> (events, payloads)

raw_logs: wire.RawLog objects (typed by msgspec as the JSON is parsed).
events: [(class index in CLASSES, field values)] in log order, the form that crosses the pipe from
the fetch process; payloads: COPY text per raw event table. Same results as wire.parse_log →
EventDecoder.decode → rows.raw_payloads (property-tested), without the intermediate objects: each
fixed-layout event gets a reader built from its ABI layout that takes its words from the hex strings
(int(s, 16)), and the COPY line reuses the node's hex for hashes and addresses instead of re-encoding bytes. The
block's hash and time come from its header (checked against every log's blockHash), the tx hash is
converted once per transaction. 6.8 µs per event against 16.2 µs for the three steps (1M-event backfill:
see docs/benchmarks.md). MarketCreated (dynamic strings) and the audit-only events take the generic
path.

Errors: DecodeError (layout does not match abi/, the indexer stops), ChainMismatch (a log's block
hash is not its header's), ValueError/TypeError (a malformed hex field: the caller retries; missing
fields and wrong JSON types are caught earlier, when msgspec parses the answer into RawLog).
"""

from __future__ import annotations

import dataclasses
import operator
from binascii import unhexlify
from collections.abc import Callable, Sequence
from typing import Any

from core.contracts import event_topic, load_abi
from indexer.chain import BlockRef, ChainMismatch
from indexer.decode import TYPED, DecodeError, EventDecoder, MarketCreated, Other, snake
from indexer.rows import EVENT_TABLES, raw_payloads, ts
from indexer.wire import RawLog, parse_log, raw_log_dict

CLASSES: tuple[type[Any], ...] = (*TYPED.values(), Other)
INDEX = {cls: i for i, cls in enumerate(CLASSES)}
VALUES = {cls: operator.attrgetter(*(f.name for f in dataclasses.fields(cls))) for cls in CLASSES}

# (topics, data hex) -> (ABI field values, their COPY text columns joined by tabs)
Body = Callable[[Sequence[str], str], tuple[tuple[Any, ...], str]]


# How each ABI input is read from its 64 hex digits and written as COPY text.
ADDRESS, BOOL, UINT, INT, BYTES32 = range(5)
_KINDS = {"address": ADDRESS, "bool": BOOL, "bytes32": BYTES32}
_BYTEA = "\\\\x"
from_bytes = int.from_bytes  # big-endian by default (3.11)


def _kind(abi_type: str) -> int:
    kind = _KINDS.get(abi_type)
    if kind is not None:
        return kind
    if abi_type.startswith("uint"):
        return UINT
    if abi_type.startswith("int"):
        return INT
    raise DecodeError(f"unsupported static type {abi_type}")


def _body(cls: type[Any], abi: dict[str, Any]) -> Body:
    """The reader of one fixed-layout event (checked against the dataclass like decode's): for each
    input, where its word is (a topic, or an offset into the data hex) and its kind."""
    inputs = abi["inputs"]
    if [snake(i["name"]) for i in inputs] != [f.name for f in dataclasses.fields(cls)][5:]:
        raise DecodeError(f"{cls.__name__} fields do not match abi/ inputs")
    n_topics = 1 + sum(1 for i in inputs if i["indexed"])
    size = 2 + 64 * sum(1 for i in inputs if not i["indexed"])
    words: list[tuple[int, int, int]] = []  # (kind, topic index or 0, data offset)
    topic = word = 0
    for i in inputs:
        if i["indexed"]:
            topic += 1
            words.append((_kind(i["type"]), topic, 0))
        else:
            words.append((_kind(i["type"]), 0, 2 + 64 * word))
            word += 1
    name = cls.__name__
    layout = tuple(words)

    def body(t: Sequence[str], d: str) -> tuple[tuple[Any, ...], str]:
        if len(t) != n_topics or len(d) != size:
            raise DecodeError(
                f"{name}: {len(t)} topics, {(len(d) - 2) // 2} data bytes; abi/ expects {n_topics} and {size // 2 - 1}"
            )
        # The data as bytes, strictly (hex digits only: int(word, 16) would also take a sign, spaces or
        # "_"); its uint words are read from the bytes, faster than from 64 hex digits each.
        raw = unhexlify(d[2:])
        values: list[Any] = []
        texts: list[str] = []
        for kind, ti, at in layout:
            if kind == UINT and not ti:
                o = at // 2 - 1
                v: Any = from_bytes(raw[o : o + 32])
                texts.append(str(v))
                values.append(v)
                continue
            h = t[ti][2:] if ti else d[at : at + 64]
            if kind == UINT:
                v = int(h, 16)
                texts.append(str(v))
            elif kind == ADDRESS:
                a = h[24:]
                v = bytes.fromhex(a)
                if len(v) != 20:
                    raise ValueError("address: 20 bytes of hex expected")
                texts.append(_BYTEA + a)
            elif kind == BOOL:
                v = h[62:64] != "00"  # the last byte, as decode reads it
                texts.append("t" if v else "f")
            elif kind == INT:
                v = int(h, 16)
                if v >= 1 << 255:
                    v -= 1 << 256
                texts.append(str(v))
            else:
                v = bytes.fromhex(h)
                if len(v) != 32:
                    raise ValueError("bytes32: 32 bytes of hex expected")
                texts.append(_BYTEA + h)
            values.append(v)
        return tuple(values), "\t".join(texts)

    return body


def _bodies() -> dict[tuple[str, str], tuple[int, str, Body]]:
    """(contract, topic0 hex) -> (class index, table, body) for every fixed-layout typed event."""
    out: dict[tuple[str, str], tuple[int, str, Body]] = {}
    for (contract, name), cls in TYPED.items():
        if cls is MarketCreated:
            continue
        abi = next(e for e in load_abi(contract) if e["type"] == "event" and e["name"] == name)
        out[(contract, "0x" + event_topic(abi).hex())] = (INDEX[cls], EVENT_TABLES[cls].table, _body(cls, abi))
    return out


BODIES = _bodies()


class RawDecoder:
    """Binds the event readers to one deployment's addresses."""

    def __init__(self, chain_id: int, addresses: dict[str, str]) -> None:
        self.chain = str(chain_id)
        self.chain_id = chain_id
        names = {a.lower(): c for a, c in addresses.items()}
        self.fast = {(a, topic): spec for a, c in names.items() for (c2, topic), spec in BODIES.items() if c == c2}
        self.slow = EventDecoder({bytes.fromhex(a[2:]): c for a, c in names.items()})

    def decode(
        self, raw_logs: Sequence[RawLog], headers: dict[int, BlockRef]
    ) -> tuple[list[tuple[int, tuple[Any, ...]]], dict[str, bytes]]:
        chain = self.chain
        fast = self.fast
        events: list[tuple[int, tuple[Any, ...]]] = []
        lines: dict[str, list[str]] = {}
        slow: list[Any] = []
        blocks: dict[int, tuple[str, bytes, int, str, str, str]] = {}
        last_tx, tx_bytes, tx_text = "", b"", ""
        for r in raw_logs:
            bn = int(r.blockNumber, 16)
            blk = blocks.get(bn)
            if blk is None:
                h = headers[bn]
                hx = "0x" + h.hash.hex()
                blk = blocks[bn] = (hx, h.hash, h.time, f"{chain}\t{bn}\t", f"\t\\\\x{hx[2:]}", ts(h.time).isoformat())
            hx, hb, bt, head, bpart, btext = blk
            bh = r.blockHash
            if bh != hx and bh.lower() != hx:
                raise ChainMismatch(f"log at block {bn} has a hash the header does not")
            th = r.transactionHash
            if th != last_tx:
                tx_bytes = bytes.fromhex(th[2:])
                if len(tx_bytes) != 32 or len(th) != 66:
                    raise ValueError(f"transactionHash {th[:80]!r} is not 32 bytes of hex")
                last_tx, tx_text = th, f"\t\\\\x{th[2:]}\t"
            li = int(r.logIndex, 16)
            topics = r.topics
            spec = fast.get((r.address, topics[0])) if topics else None
            if spec is None:
                spec = fast.get((r.address.lower(), topics[0].lower())) if topics else None
            if spec is None:
                ev = self.slow.decode([parse_log(raw_log_dict(r))], {bn: bt})[0]
                events.append((INDEX[type(ev)], VALUES[type(ev)](ev)))
                slow.append(ev)
                continue
            idx, table, body = spec
            try:
                values, text = body(topics, r.data)
            except DecodeError as exc:
                raise DecodeError(f"block {bn} log {li}: {exc}") from None
            events.append((idx, (bn, li, hb, tx_bytes, bt, *values)))
            out = lines.get(table)
            if out is None:
                out = lines[table] = []
            out.append(f"{head}{li}{bpart}{tx_text}{btext}\t{text}\n")
        payloads = {table: "".join(rows).encode() for table, rows in lines.items()}
        for table, data in raw_payloads(self.chain_id, slow).items():
            payloads[table] = payloads.get(table, b"") + data
        return events, payloads
