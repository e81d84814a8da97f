"""wire.sealed: a block object's logsBloom is trusted only when the object hashes to its block hash."""

from __future__ import annotations

import time
from typing import Any

import pytest

from indexer.wire import parse_header, sealed
from tests.chain import Anvil


@pytest.fixture(scope="module")
def block() -> dict[str, Any]:
    """A real block with a log from anvil (every fork's header fields, Prague's requestsHash included)."""
    node = Anvil()
    try:
        # a contract creation whose init code emits LOG1 (anvil mines it at once)
        tx = node.call("eth_sendTransaction", {"from": node.call("eth_accounts")[0], "data": "0x6000600060006000a1"})
        for _ in range(100):  # its receipt can lag the send by a moment under load
            receipt = node.call("eth_getTransactionReceipt", tx)
            if receipt is not None:
                raw: dict[str, Any] = node.call("eth_getBlockByNumber", receipt["blockNumber"], False)
                return raw
            node.mine()
            time.sleep(0.05)
        raise AssertionError("anvil never mined the transaction")
    finally:
        node.stop()


def test_a_real_header_is_sealed_and_any_changed_field_is_not(block: dict[str, Any]) -> None:
    assert int(block["logsBloom"], 16) != 0
    assert sealed(block)
    assert parse_header(block).sealed
    zeroed = {**block, "logsBloom": "0x" + "00" * 256}
    assert not sealed(zeroed)
    assert not parse_header(zeroed).sealed
    assert not sealed({**block, "timestamp": hex(int(block["timestamp"], 16) + 1)})
    assert not sealed({**block, "hash": "0x" + "11" * 32})


def test_a_header_of_another_layout_is_not_sealed_and_never_a_crash(block: dict[str, Any]) -> None:
    """Missing base fields, a later fork's field without the earlier one, junk values: not sealed."""
    assert not sealed({k: v for k, v in block.items() if k != "mixHash"})
    assert not sealed({k: v for k, v in block.items() if k != "baseFeePerGas"})  # later forks then misplaced
    assert not sealed({**block, "gasUsed": "zz"})
    assert not sealed({**block, "extraData": None})
    assert not sealed({})
