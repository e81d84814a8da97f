"""The benchmark's rate-limited provider (bench/throttle.py): a batch over the per-call budget gets the
calls that fit answered and the rest refused in a rate-limit wording the client classifies (with the
wait), a single call over budget gets HTTP 429 + Retry-After, and a range over the cap is refused in a
wording the client reads as that provider's cap."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from bench.throttle import Throttle
from core.rpc_errors import RangeTooLarge, RateLimited, classify
from tests.chain import Anvil

pytestmark = pytest.mark.anvil


def post(url: str, body: Any) -> tuple[int, Any, dict[str, str]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, None, dict(exc.headers)


def test_the_budget_is_per_call_and_the_cap_per_range() -> None:
    node = Anvil()
    try:
        with Throttle(node.url, rate=5, rtt=0.0, range_cap=10) as proxy:
            batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": []} for i in range(8)]
            status, answers, _ = post(proxy.url, batch)
            assert status == 200
            assert [a.get("result") for a in answers[:5]] == ["0x7a69"] * 5
            refused = [classify(a["error"]["code"], a["error"]["message"]) for a in answers[5:]]
            assert all(isinstance(e, RateLimited) and e.retry_after is not None for e in refused)
            status, _, headers = post(proxy.url, batch[0])
            assert status == 429
            assert float(headers["Retry-After"]) > 0
            time.sleep(1.1)  # the bucket refills
            logs = {"fromBlock": "0x0", "toBlock": "0xa", "address": ["0x" + "aa" * 20]}
            status, answer, _ = post(proxy.url, {"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [logs]})
            cap = classify(answer["error"]["code"], answer["error"]["message"])
            assert isinstance(cap, RangeTooLarge)
            assert (cap.per_provider, cap.suggested_span) == (True, 9)
            assert (proxy.calls, proxy.refused, proxy.capped) == (5, 4, 1)
    finally:
        node.stop()
