"""A raw JSON-RPC client (one persistent HTTP connection, batches) and hand-rolled ABI calldata
for the property tests, where web3's formatter layers would dominate the run time.

Selectors are computed from the ABIs (keccak of the canonical signature), never pasted.
"""

from __future__ import annotations

import http.client
from typing import Any
from urllib.parse import urlsplit

import orjson
from eth_abi import encode
from eth_utils import keccak

from core.contracts import load_abi


class RpcError(RuntimeError):
    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {error}")
        self.error = error


class Rpc:
    """Synchronous JSON-RPC over one keep-alive HTTP connection."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
        self.headers = {"Content-Type": "application/json"}

    def _post(self, body: Any) -> Any:
        self.conn.request("POST", "/", orjson.dumps(body), self.headers)
        return orjson.loads(self.conn.getresponse().read())

    def call(self, method: str, *params: Any) -> Any:
        answer = self._post({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        if "error" in answer:
            raise RpcError(method, answer["error"])
        return answer["result"]

    def batch(self, requests: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        """Sends the requests as one JSON-RPC batch; returns each raw answer ({result} or {error}) in order."""
        if not requests:
            return []
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(requests)]
        answers = self._post(body)
        by_id = {a["id"]: a for a in answers}
        return [by_id[i] for i in range(len(requests))]

    def close(self) -> None:
        self.conn.close()


def _canonical(param: dict[str, Any]) -> str:
    t: str = param["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_canonical(c) for c in param["components"]) + ")" + t[5:]
    return t


class Codec:
    """Calldata encoding and word decoding for one contract's ABI (no overloads in these contracts)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.functions: dict[str, tuple[bytes, list[str]]] = {}
        self.errors: dict[str, str] = {}  # 0x-selector -> error name
        for entry in load_abi(name):
            types = [_canonical(i) for i in entry.get("inputs", [])]
            if entry["type"] == "function":
                self.functions[entry["name"]] = (keccak(text=f"{entry['name']}({','.join(types)})")[:4], types)
            elif entry["type"] == "error":
                self.errors["0x" + keccak(text=f"{entry['name']}({','.join(types)})")[:4].hex()] = entry["name"]

    def data(self, fn: str, *args: Any) -> str:
        selector, types = self.functions[fn]
        return "0x" + (selector + encode(types, list(args))).hex()


def words(hexdata: str) -> list[int]:
    """Splits ABI return data made of static words into ints (addresses and bools included)."""
    raw = bytes.fromhex(hexdata[2:])
    return [int.from_bytes(raw[i : i + 32], "big") for i in range(0, len(raw), 32)]
