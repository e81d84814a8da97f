"""Pure parts: provider error classification (real wordings), range planning, the bloom check,
decoding a recorded eth_getLogs answer, settings validation."""

from __future__ import annotations

import decimal
import itertools
import json
from typing import Any

import pytest
from eth_utils import keccak  # type: ignore[attr-defined]
from hypothesis import given
from hypothesis import strategies as st

from core.config import ConfigError
from core.rpc_errors import batch_refused, batch_unsupported
from indexer.chain import SpanPolicy, bloom_bits, bloom_may_contain, next_span, plan_range, split_span
from indexer.decode import EventDecoder, MarketCreated, Trade, text_of
from indexer.fold import usdc
from indexer.rpc import FatalRpcError, RangeTooLarge, TransientRpcError, classify, parse_log
from indexer.settings import build_settings


@pytest.mark.parametrize(
    ("code", "message", "span"),
    [
        (
            -32602,
            "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no "
            "limit on the response size, or you can request any block range with a cap of 10K logs in the "
            "response. Based on your parameters, this block range should work: [0x11e0c1, 0x11e6f1]",
            1585,
        ),
        (-32005, "query returned more than 10000 results. Try with this block range [0x1A2B, 0x1B00].", 214),
        (-32614, "eth_getLogs is limited to a 10,000 range", 9999),
        (-32602, "query exceeds max results 20000, retry with the range 100-200", 101),
        (-32000, "Maximum allowed number of requested blocks is 2000", 1999),
        (-32000, "please limit the query to at most 1000 blocks", 999),
        (-32000, "block range greater than 2000 max", 1999),
        (-32600, "block range is too wide", None),
        (-32000, "block range too large", None),
        (-32000, "backend response too large", None),
    ],
)
def test_range_refusals_are_recognised_with_the_suggested_span(code: int, message: str, span: int | None) -> None:
    """Every provider's wording becomes RangeTooLarge, with the span it suggests when it names one."""
    err = classify(code, message)
    assert isinstance(err, RangeTooLarge)
    assert err.suggested_span == span


def test_other_errors_are_transient_unless_clearly_permanent() -> None:
    """Rate limits, lagging nodes and unknown wordings are retried; a missing method is fatal."""
    assert isinstance(classify(429, "Too Many Requests"), TransientRpcError)
    assert isinstance(classify(-32000, "header not found"), TransientRpcError)
    assert isinstance(
        classify(-32602, "BlockOutOfRangeError: block height is 125 but requested was 130"), TransientRpcError
    )
    assert isinstance(classify(-32601, "the method eth_getBlockReceipts does not exist"), FatalRpcError)
    assert isinstance(classify(-32000, "the method eth_getBlockReceipts is not available"), FatalRpcError)
    # not the method, or not for good (review s21 hp, hf): retried
    assert isinstance(classify(-32000, "block 0x1f does not exist"), TransientRpcError)
    assert not isinstance(
        classify(-32000, "method eth_getLogs is not available at the moment, try again"), FatalRpcError
    )
    assert not isinstance(classify(-32600, "Batch requests are not supported"), FatalRpcError)
    assert batch_unsupported("Batch requests are not supported")
    assert not batch_unsupported("Batch of more than 3 requests are not allowed on free tier")
    assert batch_refused("Batch of more than 3 requests are not allowed on free tier")


def test_range_planning_adapts_to_density() -> None:
    """Ranges never pass the target; spans shrink toward target events, grow when sparse, split on refusal."""
    policy = SpanPolicy(initial=100, maximum=1000, target_events=1000)
    assert plan_range(10, 50, 100) == range(11, 51)
    assert plan_range(50, 50, 100) is None
    assert plan_range(10, 50, 15) == range(11, 26)
    assert next_span(100, 4000, policy) == 25
    assert next_span(100, 10, policy) == 200
    assert next_span(800, 0, policy) == 1000
    assert split_span(100, None) == 50
    assert split_span(100, 30) == 30


def test_bloom_says_maybe_for_a_member_and_no_for_others() -> None:
    """The 2048-bit logsBloom as the yellow paper defines it (three 11-bit indices of keccak)."""
    bloom = bytearray(256)
    member = bytes.fromhex("9fe46736679d2d9a65f0992f2272de9f3c7fa6e0")
    for bit in bloom_bits(member):
        bloom[255 - bit // 8] |= 1 << (bit % 8)
    assert bloom_may_contain(bytes(bloom), [member])
    assert not bloom_may_contain(bytes(bloom), [keccak(b"other")[:20]])
    assert bloom_may_contain(b"", [member])  # no bloom: never skip a block


def recorded_logs() -> list[dict[str, Any]]:
    """An eth_getLogs answer recorded from anvil (MarketCreated + Trade), hex as the node sends it."""
    om = "0x9fe46736679d2d9a65f0992f2272de9f3c7fa6e0"
    bh = "0x" + "ab" * 32
    return [
        {
            "address": om,
            "blockHash": bh,
            "blockNumber": "0x10",
            "blockTimestamp": "0x6b0cb6f3",
            "transactionHash": "0x" + "01" * 32,
            "transactionIndex": "0x0",
            "logIndex": "0x0",
            "removed": False,
            "topics": ["0x" + MARKET_CREATED.hex(), "0x" + "00" * 31 + "01", "0x" + "00" * 12 + "22" * 20],
            "data": "0x"
            + (
                (192).to_bytes(32, "big")
                + (256).to_bytes(32, "big")
                + (1900000000).to_bytes(32, "big")
                + (5_000_000).to_bytes(32, "big") * 3
                + (3).to_bytes(32, "big")
                + b"Q?\x00".ljust(32, b"\x00")
                + (0).to_bytes(32, "big")
            ).hex(),
        },
        {
            "address": om,
            "blockHash": bh,
            "blockNumber": "0x10",
            "blockTimestamp": "0x6b0cb6f3",
            "transactionHash": "0x" + "02" * 32,
            "transactionIndex": "0x1",
            "logIndex": "0x1",
            "removed": False,
            "topics": ["0x" + TRADE.hex(), "0x" + "00" * 31 + "01", "0x" + "00" * 12 + "33" * 20],
            "data": "0x"
            + b"".join(
                v.to_bytes(32, "big")
                for v in (1, 1, 1_000_000, 1_470_000, 20_000, 10_000, 4_000_000, 5_980_000, 1_470_000, 0)
            ).hex(),
        },
    ]


from core.contracts import event_topic, load_abi  # noqa: E402


def event_abi(contract: str, name: str) -> dict[str, Any]:
    return next(e for e in load_abi(contract) if e["type"] == "event" and e["name"] == name)


MARKET_CREATED = event_topic(event_abi("OpinionMarket", "MarketCreated"))
TRADE = event_topic(event_abi("OpinionMarket", "Trade"))


def test_recorded_getlogs_answer_decodes_to_golden_events() -> None:
    """Hex → bytes/int at the boundary, then word slicing; strings via eth_abi with a lossless twin."""
    logs = [parse_log(r) for r in recorded_logs()]
    decoder = EventDecoder({bytes.fromhex("9fe46736679d2d9a65f0992f2272de9f3c7fa6e0"): "OpinionMarket"})
    created, trade = decoder.decode(logs, {})
    assert created == MarketCreated(
        16,
        0,
        b"\xab" * 32,
        b"\x01" * 32,
        0x6B0CB6F3,
        1,
        b"\x22" * 20,
        "Q?\ufffd",
        "",
        1_900_000_000,
        5_000_000,
        5_000_000,
        5_000_000,
        b"Q?\x00",
        None,
    )
    assert trade == Trade(
        16,
        1,
        b"\xab" * 32,
        b"\x02" * 32,
        0x6B0CB6F3,
        1,
        b"\x33" * 20,
        True,
        1,
        1_000_000,
        1_470_000,
        20_000,
        10_000,
        4_000_000,
        5_980_000,
        1_470_000,
        0,
    )
    assert text_of(b"\xff") == ("\ufffd", b"\xff")
    assert text_of("ok ✓".encode()) == ("ok ✓", None)


def test_settings_reject_unknown_keys_and_name_the_key(tmp_path: Any) -> None:
    """Config errors name the key; an unknown [indexer] key is refused."""
    dep = tmp_path / "d.json"
    contracts = {"OpinionMarket": "0x" + "01" * 20, "CreatorShares": "0x" + "02" * 20, "USDC": "0x" + "03" * 20}
    dep.write_text(json.dumps({"chain_id": 31337, "deploy_block": 1, "contracts": contracts}))
    base = {
        "database": {"dsn": "postgresql://x"},
        "chain": {"chain_id": 31337, "rpc_urls": ["http://a"], "deployment": str(dep)},
    }
    assert build_settings({**base, "indexer": {"concurrency": 2}}).options.concurrency == 2
    with pytest.raises(ConfigError, match=r"indexer\.concurency"):
        build_settings({**base, "indexer": {"concurency": 2}})
    with pytest.raises(ConfigError, match=r"indexer\.finality"):
        build_settings({**base, "indexer": {"finality": "vibes"}})
    with pytest.raises(ConfigError, match=r"indexer\.concurrency"):
        build_settings({**base, "indexer": {"concurrency": "two"}})
    with pytest.raises(
        ConfigError,
        match=r"indexer\.outbox_retention_hours must be from 0 to 87,600 hours \(0 = keep forever\), got -1",
    ):
        build_settings({**base, "indexer": {"outbox_retention_hours": -1}})
    assert "redacted" in repr(build_settings(base).chain)
    # accepted before, fatal later: busy loops, a watchdog firing at once, no feed, finality poisoned
    for section_, key, value, named in (
        ("indexer", "poll_interval", 0, r"indexer\.poll_interval must be more than 0 and at most 3,600 seconds"),
        ("indexer", "stall_seconds", -1, r"indexer\.stall_seconds must be more than 0"),
        ("indexer", "standby_poll", 0.0, r"indexer\.standby_poll must be more than 0"),
        ("indexer", "outbox_max_lag", -1, r"indexer\.outbox_max_lag must be from 0 to 10,000,000 blocks"),
        ("chain", "finality_depth", 0, r"chain\.finality_depth must be between 1 and"),
        ("chain", "finality_depth", 10**6, r"chain\.finality_depth must be between 1 and"),
        (
            "chain",
            "rpc_urls",
            ["http://a", "http://b", "http://a"],
            r"chain\.rpc_urls\[2\] is the same node as chain\.rpc_urls\[0\]",
        ),
        ("chain", "confirmations", 0, r"chain\.confirmations must be from 1 to 100,000 blocks, got 0"),
    ):
        raw = {**base, "indexer": {}, "chain": dict(base["chain"])}
        raw[section_] = {**raw[section_], key: value}
        with pytest.raises(ConfigError, match=named):
            build_settings(raw)


@given(st.integers(min_value=-(2**256), max_value=2**256))
def test_usdc_strings_are_exact_with_six_decimals(amount: int) -> None:
    with decimal.localcontext() as ctx:
        ctx.prec = 100
        want = format(decimal.Decimal(amount).scaleb(-6), "f")
    assert usdc(amount) == want
    whole, fraction = usdc(amount).split(".")
    assert len(fraction) == 6
    assert whole.lstrip("-") == str(abs(amount) // 10**6)


def test_fold_follows_propose_dispute_resolve_and_emits_feed_messages() -> None:
    """OutcomeProposed sets status 'proposed' with the outcome and window end, OutcomeDisputed 'disputed' with
    challenge_ends moved to the arbitration deadline (dispute time + window), MarketResolved 'resolved'; each
    emits its feed message (market:proposed, market:disputed, market:resolved)."""
    from indexer import fold as F
    from indexer.decode import MarketResolved, OutcomeDisputed, OutcomeProposed

    creator, arbiter = b"\x01" * 20, b"\x02" * 20

    def header(n: int) -> tuple[int, int, bytes, bytes, int]:
        return (n, 0, bytes([n]) * 32, bytes([n + 100]) * 32, 1_000 + n)

    created = MarketCreated(*header(1), 7, creator, "q", "c", 1_001, 10, 10, 10, None, None)
    ctx = F.Context(1, journal_above=10**9, outbox_from=0)
    opened = F.fold(F.Snapshot(), [created], ctx)
    state = opened.markets
    assert state[7].status == "open"
    (announced,) = opened.messages
    assert announced.payload["end_date"] == "1970-01-01T00:16:41Z"  # endDate, as over HTTP
    assert not {"end_time", "end_time_iso"} & set(announced.payload)
    proposed = F.fold(F.Snapshot(markets=state), [OutcomeProposed(*header(2), 7, 1, creator, 1_062)], ctx)
    m = proposed.markets[7]
    assert (m.status, m.proposed_outcome, m.challenge_ends, m.resolved) == ("proposed", 1, 1_062, False)
    (msg,) = proposed.messages
    assert msg.event == "market:proposed"
    # one name and format per field, as over HTTP (proposedOutcome, challengeEndsAt once camelCased)
    assert (msg.payload["proposed_outcome"], msg.payload["challenge_ends_at"]) == ("yes", "1970-01-01T00:17:42Z")
    assert not {"outcome", "challenge_ends", "challenge_ends_iso"} & set(msg.payload)
    assert m.proposed_time == 1_002
    disputed = F.fold(F.Snapshot(markets=proposed.markets), [OutcomeDisputed(*header(3), 7, 1, arbiter)], ctx)
    m = disputed.markets[7]
    # the arbitration deadline, as getMarket says after disputeOutcome: dispute time + the 60 s window
    assert (m.status, m.disputed_time, m.challenge_ends) == ("disputed", 1_003, 1_063)
    assert [x.event for x in disputed.messages] == ["market:disputed"]
    done = F.fold(F.Snapshot(markets=disputed.markets), [MarketResolved(*header(4), 7, 0, arbiter)], ctx)
    m = done.markets[7]
    assert (m.status, m.resolved, m.outcome, m.proposed_outcome) == ("resolved", True, 0, 1)
    assert [x.event for x in done.messages] == ["market:resolved"]


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30), st.integers(0, 10**9))
def test_one_head_answer_never_moves_finality(reads: list[int], spike: int) -> None:
    """Finality follows what two reads in a row agree on, never drops, and a single read far ahead
    (inserted anywhere) leaves it where the honest reads put it."""
    from indexer.chain import next_finality

    def follow(seq: list[int]) -> list[int]:
        kept, before, out = 0, None, []
        for r in seq:
            kept, before = next_finality(kept, before, r), r
            out.append(kept)
        return out

    honest = follow(reads)
    assert honest == sorted(honest)  # never goes back
    assert all(f <= max([0, *(min(a, b) for a, b in itertools.pairwise(reads))]) for f in honest)
    for at in range(len(reads) + 1):
        spiked = follow([*reads[:at], max(spike, max(reads) + 1), *reads[at:]])
        assert max(spiked) <= max(reads)  # the spike alone never became final
