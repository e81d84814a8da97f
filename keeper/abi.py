"""Calldata for the few functions the keeper calls, built from the checked-in ABIs (selectors are
computed, never pasted), and decoding of results and custom-error reverts."""

from __future__ import annotations

from functools import cache
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

from core.contracts import load_abi


def _types(params: list[dict[str, Any]]) -> list[str]:
    out = []
    for p in params:
        t: str = p["type"]
        if t.startswith("tuple"):
            t = "(" + ",".join(_types(p["components"])) + ")" + t[5:]
        out.append(t)
    return out


@cache
def _function(contract: str, name: str) -> tuple[bytes, tuple[str, ...], tuple[str, ...]]:
    for item in load_abi(contract):
        if item["type"] == "function" and item["name"] == name:
            ins, outs = _types(item["inputs"]), _types(item.get("outputs", []))
            selector = bytes(keccak(text=f"{name}({','.join(ins)})"))[:4]
            return selector, tuple(ins), tuple(outs)
    raise KeyError(f"{contract}.{name} is not in abi/{contract}.json")


def encode_call(contract: str, name: str, *args: Any) -> bytes:
    selector, ins, _ = _function(contract, name)
    return selector + encode(list(ins), list(args))


def decode_result(contract: str, name: str, data: bytes) -> tuple[Any, ...]:
    _, _, outs = _function(contract, name)
    return tuple(decode(list(outs), data))


@cache
def _errors() -> dict[bytes, tuple[str, tuple[str, ...]]]:
    found: dict[bytes, tuple[str, tuple[str, ...]]] = {}
    for contract in ("OpinionMarket", "CreatorShares", "MockPriceFeed"):
        for item in load_abi(contract):
            if item["type"] == "error":
                ins = tuple(_types(item["inputs"]))
                found[bytes(keccak(text=f"{item['name']}({','.join(ins)})"))[:4]] = (item["name"], ins)
    found[bytes.fromhex("08c379a0")] = ("Error", ("string",))
    found[bytes.fromhex("4e487b71")] = ("Panic", ("uint256",))
    return found


def error_name(revert: bytes | None) -> str:
    """`MarketAlreadyResolved` etc. for custom errors; 'revert' when the node gave no data."""
    if not revert or len(revert) < 4:
        return "revert"
    name, ins = _errors().get(revert[:4], (f"error_0x{revert[:4].hex()}", ()))
    if name == "Error":
        try:
            (msg,) = decode(list(ins), revert[4:])
            return f"Error({str(msg)[:80]})"
        except Exception:
            return "Error"
    return name
