"""The benchmark chain's synthetic logs have the layout abi/ gives each event (the dividend warm-up added
fields to SharesTraded and DividendsDistributed, and the bench chain broke until it followed)."""

from __future__ import annotations

import random

from bench.indexer_chain import Model, plan_events
from core.contracts import event_topic, load_abi


def layouts() -> dict[bytes, tuple[str, int, int]]:
    """topic0 -> (event name, topics, data bytes) for every fixed-layout event of both contracts."""
    out = {}
    for contract in ("OpinionMarket", "CreatorShares"):
        for e in load_abi(contract):
            if e["type"] != "event" or any(i["type"] in ("string", "bytes") for i in e["inputs"]):
                continue
            indexed = sum(1 for i in e["inputs"] if i["indexed"])
            out[event_topic(e)] = (e["name"], 1 + indexed, 32 * (len(e["inputs"]) - indexed))
    return out


def test_every_synthetic_log_has_its_events_layout() -> None:
    expected = layouts()
    seen = set()
    records = [r for _, r in plan_events(5_000, markets=20)]
    model = Model(random.Random(2), [b"\x01" * 20], [b"\x02" * 20])
    records.append(model.shares_traded()[1])  # the creator's first share
    distribution = model.distribute()
    assert distribution is not None
    records.append(distribution[1])
    for r in records:
        header = int.from_bytes(r[:32], "big")
        n_topics, data_len = header >> 32, header & 0xFFFFFFFF
        topic0 = r[32:64]
        if topic0 not in expected:  # MarketCreated: strings, not a fixed layout
            continue
        name, topics, size = expected[topic0]
        assert (n_topics, data_len) == (topics, size), name
        seen.add(name)
    assert {"Trade", "SharesTraded", "DividendsDistributed"} <= seen
