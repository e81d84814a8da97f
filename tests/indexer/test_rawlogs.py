"""rawlogs.RawDecoder (the backfill's fused path) equals parse_log → EventDecoder.decode →
store.raw_payloads on any log the ABIs allow, and rejects what that path rejects."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from eth_abi import encode as abi_encode  # type: ignore[attr-defined]
from hypothesis import given, settings
from hypothesis import strategies as st

from core.contracts import event_topic, load_abi
from indexer.chain import BlockRef, ChainMismatch
from indexer.decode import TYPED, DecodeError, EventDecoder
from indexer.rawlogs import INDEX, VALUES, RawDecoder
from indexer.rows import raw_payloads
from indexer.rpc import RawLog, parse_log

OM, CS = "0x" + "a1" * 20, "0x" + "b2" * 20
CONTRACTS = {OM: "OpinionMarket", CS: "CreatorShares"}
CHAIN = 8453
EVENTS = {(c, e["name"]): e for c in ("OpinionMarket", "CreatorShares") for e in load_abi(c) if e["type"] == "event"}


def word_for(kind: str, draw: Any) -> bytes:
    if kind == "address":
        return bytes(12) + draw(st.binary(min_size=20, max_size=20))
    if kind == "bool":
        return draw(st.integers(0, 1)).to_bytes(32, "big")
    if kind == "bytes32":
        return draw(st.binary(min_size=32, max_size=32))
    bits = int(kind[4:] or 256)
    return draw(st.integers(0, 2**bits - 1)).to_bytes(32, "big")


@st.composite
def raw_log(draw: Any, block: int, tx: str) -> dict[str, Any]:
    contract, name = draw(st.sampled_from(sorted(k for k in EVENTS if k in TYPED or k[1] == "RoleGranted")))
    abi = EVENTS[(contract, name)]
    topics = ["0x" + event_topic(abi).hex()]
    data = b""
    if name == "MarketCreated":
        for i in abi["inputs"]:
            if i["indexed"]:
                topics.append("0x" + word_for(i["type"], draw).hex())
        text = st.binary(max_size=40)
        data = abi_encode(
            ["bytes", "bytes", "uint256", "uint256", "uint256", "uint256"],
            [draw(text), draw(text), *(draw(st.integers(0, 2**256 - 1)) for _ in range(4))],
        )
    else:
        for i in abi["inputs"]:
            w = word_for(i["type"], draw)
            if i["indexed"]:
                topics.append("0x" + w.hex())
            else:
                data += w
    return {
        "address": OM if contract == "OpinionMarket" else CS,
        "blockHash": "0x" + block.to_bytes(32, "big").hex(),
        "blockNumber": hex(block),
        "transactionHash": tx,
        "logIndex": hex(draw(st.integers(0, 2**16))),
        "topics": topics,
        "data": "0x" + data.hex(),
    }


@st.composite
def answers(draw: Any) -> tuple[list[dict[str, Any]], dict[int, BlockRef]]:
    logs: list[dict[str, Any]] = []
    headers: dict[int, BlockRef] = {}
    for block in sorted(draw(st.sets(st.integers(1, 2**40), min_size=1, max_size=4))):
        headers[block] = BlockRef(block, block.to_bytes(32, "big"), b"\x00" * 32, draw(st.integers(0, 2**33)), b"")
        for _ in range(draw(st.integers(1, 3))):
            tx = "0x" + draw(st.binary(min_size=32, max_size=32)).hex()
            logs += draw(st.lists(raw_log(block, tx), min_size=1, max_size=4))
    return logs, headers


def typed(logs: list[dict[str, Any]]) -> list[RawLog]:
    """Log dicts as the RPC client hands them over: parsed into RawLog (unknown keys dropped)."""
    return msgspec.convert(logs, list[RawLog])


def reference(logs: list[dict[str, Any]], headers: dict[int, BlockRef]) -> tuple[list[Any], dict[str, bytes]]:
    decoder = EventDecoder({bytes.fromhex(a[2:]): c for a, c in CONTRACTS.items()})
    events = decoder.decode([parse_log(r) for r in logs], {n: h.time for n, h in headers.items()})
    return [(INDEX[type(e)], VALUES[type(e)](e)) for e in events], raw_payloads(CHAIN, events)


@settings(max_examples=300, deadline=None)
@given(answers())
def test_fused_decoding_equals_parse_decode_encode(answer: tuple[list[dict[str, Any]], dict[int, BlockRef]]) -> None:
    logs, headers = answer
    want_events, want_raw = reference(logs, headers)
    got_events, got_raw = RawDecoder(CHAIN, CONTRACTS).decode(typed(logs), headers)
    assert got_events == want_events
    assert got_raw.keys() == want_raw.keys()
    for table in want_raw:  # same rows; the generic path's tables may come in another order
        assert sorted(got_raw[table].splitlines()) == sorted(want_raw[table].splitlines()), table


def trade_log() -> tuple[dict[str, Any], dict[int, BlockRef]]:
    abi = EVENTS[("OpinionMarket", "Trade")]
    n_data = sum(1 for i in abi["inputs"] if not i["indexed"])
    log = {
        "address": OM,
        "blockHash": "0x" + "0c" * 32,
        "blockNumber": "0x7",
        "transactionHash": "0x" + "11" * 32,
        "logIndex": "0x2",
        "topics": ["0x" + event_topic(abi).hex(), "0x" + "00" * 31 + "05", "0x" + "00" * 12 + "33" * 20],
        "data": "0x" + "00" * 31 * n_data + "01" * n_data,
    }
    return log, {7: BlockRef(7, b"\x0c" * 32, b"\x00" * 32, 1_700_000_000, b"")}


def test_trade_row_is_exact() -> None:
    log, headers = trade_log()
    [(_, values)], raw = RawDecoder(CHAIN, CONTRACTS).decode(typed([log]), headers)
    assert values[:7] == (7, 2, b"\x0c" * 32, b"\x11" * 32, 1_700_000_000, 5, b"\x33" * 20)
    line = raw["ev_trade"].decode()
    assert line.startswith(f"{CHAIN}\t7\t2\t\\\\x{'0c' * 32}\t\\\\x{'11' * 32}\t2023-11-14T22:13:20+00:00\t5\t")
    assert line.endswith("\n")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"blockHash": "0x" + "0d" * 32}, ChainMismatch),  # not the header's block
        ({"data": "0x00"}, DecodeError),  # layout differs from abi/
        ({"transactionHash": "0x" + "11" * 30 + "\t\t11"}, ValueError),  # would break a COPY line
        ({"topics": ["0x" + event_topic(EVENTS[("OpinionMarket", "Trade")]).hex(), "0x05", "0x12"]}, ValueError),
        ({"address": "0x" + "99" * 20}, DecodeError),  # not ours
    ],
)
def test_bad_logs_are_rejected(change: dict[str, Any], error: type[Exception]) -> None:
    log, headers = trade_log()
    with pytest.raises(error):
        RawDecoder(CHAIN, CONTRACTS).decode(typed([{**log, **change}]), headers)


@pytest.mark.parametrize(
    "word", [" " * 63 + "5", "-" + "0" * 62 + "5", "0" * 30 + "_" + "0" * 32 + "5", "0x" + "0" * 61 + "5"]
)
def test_a_data_word_int_would_take_but_hex_does_not_is_refused(word: str) -> None:
    """The reader takes data words strictly as hex digits: `int(word, 16)` alone would read a padded,
    signed, underscored or 0x-prefixed word (a provider's corrupt answer committed as -5 or 5)."""
    log, headers = trade_log()
    data = log["data"]
    bad = {**log, "data": data[:2] + word + data[66:]}  # the first word (isBuy): all the data is read as hex
    assert len(bad["data"]) == len(data)
    with pytest.raises(ValueError, match="Non-hexadecimal digit"):
        RawDecoder(CHAIN, CONTRACTS).decode(typed([bad]), headers)


def test_upper_case_hex_is_accepted() -> None:
    log, headers = trade_log()
    upper = {
        **log,
        "blockHash": log["blockHash"].upper().replace("0X", "0x"),
        "address": OM.upper().replace("0X", "0x"),
    }
    assert (
        RawDecoder(CHAIN, CONTRACTS).decode(typed([upper]), headers)[0]
        == RawDecoder(CHAIN, CONTRACTS).decode(typed([log]), headers)[0]
    )
