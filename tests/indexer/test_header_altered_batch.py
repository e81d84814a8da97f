"""Review hf (of 78cc0cf, Seals): 50 altered headers "in a row" are taken as the chain's new layout, but a
single batch of headers from one lying provider is 50 in a row by itself.

indexer.rpc.Seals counts unsealed headers across every answer: once UNSEALED_REFUSED (50) come with no
sealed one between, it sets chain_seals = False and takes them (and every later unsealed header, until a
sealed one comes). The intent (its docstring): only when *every provider* answers unsealed (a fork that added a
header field). But Rpc.headers asks up to 500 headers in ONE JSON-RPC batch, parsed element by element with
Seals.check: a batch of >= 50 headers answered by the proxy that alters timestamps makes the 50th element reach
the limit, and the 50th..last are taken with their altered time, while the honest provider (configured, up,
sealing) was never given the chance to answer "between". The backfill's RangeFetcher asks such batches: every
block with logs, the range's ends and every block above finality (64 here) in one rpc.headers call.

Setup: anvil (honest, sealed headers) and ShiftedTimeProxy in front of it (test_header_altered: every block
object one day later, hash/number/parent unchanged) as the two providers; 120 blocks; Seals learnt at start
(learn_seals, as the service and the fetch process do); then rpc.headers(1..120) until the proxy has answered
at least one batch. Expected: no header returned with a time the proxy shifted.
"""

from __future__ import annotations

import asyncio

import pytest
from web3 import Web3

from tests.indexer.faultproxy import Faults
from tests.indexer.helpers import Node
from tests.indexer.test_faults import QUIET
from tests.indexer.test_header_altered import ShiftedTimeProxy

BLOCKS = 120


@pytest.mark.anvil
def test_one_batch_of_altered_headers_is_not_taken_as_the_chains_layout(node: Node) -> None:
    from indexer.rpc import Rpc

    node.anvil.call("anvil_mine", hex(BLOCKS))
    w3 = Web3(Web3.HTTPProvider(node.url))
    true_time = {n: int(w3.eth.get_block(n)["timestamp"]) for n in range(1, BLOCKS + 1)}
    proxy = ShiftedTimeProxy(node.url, 5, Faults(**{**QUIET, "range_cap": 10**6}))

    async def go() -> tuple[dict[int, int], int]:
        got: dict[int, int] = {}
        async with Rpc([node.url, proxy.url], 5.0, seed=1) as rpc:
            await rpc.learn_seals()
            assert rpc.seals.chain_seals, "anvil's headers seal: learnt at start"
            for _ in range(16):  # each batch goes to one of the two providers (drawn by score)
                before = proxy.counts.get("shifted", 0)
                for n, h in (await rpc.headers(list(range(1, BLOCKS + 1)))).items():
                    if h.time != true_time[n]:
                        got[n] = h.time
                if proxy.counts.get("shifted", 0) - before >= BLOCKS:
                    break  # the proxy answered a whole batch
        return got, proxy.counts.get("shifted", 0)

    try:
        shifted, answered = asyncio.run(go())
    finally:
        proxy.stop()
    assert answered >= BLOCKS, "the scenario did not happen: the proxy never answered a batch"
    assert not shifted, (
        f"{len(shifted)} of {BLOCKS} headers taken with the time the proxy shifted by a day (blocks"
        f" {min(shifted)}..{max(shifted)}), the honest provider up: one batch was '50 unsealed in a row'"
    )
