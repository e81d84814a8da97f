"""Review of 3a2b3bd (a batch that made progress keeps its rate-limited element's wait): the wait is taken
from the batch's *last* failed element only (core/rpc.py send(): `failed = exc` per element, and once():
`failed = part_failed or failed`). A rate-limited element followed by any other failing element of the
same batch loses its wait, and the element is sent again before it."""

from __future__ import annotations

import time
from typing import Any

from core.rpc import RetryPolicy
from core.rpc import Rpc as CoreRpc
from tests.local_http import serving
from tests.test_rpc import node


async def test_a_rate_limited_element_keeps_its_wait_when_a_later_element_also_failed() -> None:
    seen: list[Any] = []
    limited = {"error": {"code": -32005, "message": "rate limited, try again in 0.3s"}}
    behind = {"error": {"code": -32000, "message": "header not found"}}
    answers: list[Any] = [[{"result": "0x2"}, limited, behind], [{"result": "0x3"}, {"result": "0x4"}]]
    fast = RetryPolicy(attempts=10, seconds=30.0, base=0.001, cap=0.01)
    async with serving(node(answers, seen)) as url, CoreRpc([url], 5.0, retry=fast) as rpc:
        started = time.monotonic()
        got = await rpc.batch_settled([("eth_chainId", []), ("eth_gasPrice", []), ("eth_blockNumber", [])])
        left_alone = rpc._urls[0].down_until - started  # how long the provider was left alone after the failure
    assert got == ["0x2", "0x3", "0x4"]
    assert [len(s) if isinstance(s, list) else 1 for s in seen] == [3, 2]
    assert left_alone >= 0.3, f"the rate-limited element was sent again after {left_alone:.3f} s, not the 0.3 s asked"
