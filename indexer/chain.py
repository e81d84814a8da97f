"""Pure chain logic: block references, range planning, reorg detection, the common-ancestor walk,
finality and the logsBloom check. No I/O, no clock.

Errors:
    ReorgTooDeep   — the stored chain and the node disagree at or below the finalized block we
                     pruned undo data for; the process stops (exit code 3), never guesses.
    ChainMismatch  — the data fetched for a range is not self-consistent (a reorg happened while
                     fetching); the caller refetches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from eth_utils import keccak  # type: ignore[attr-defined]


class ReorgTooDeep(RuntimeError):
    def __init__(self, message: str, block_number: int) -> None:
        super().__init__(message)
        self.block_number = block_number


class ChainMismatch(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class BlockRef:
    number: int
    hash: bytes
    parent_hash: bytes
    time: int = 0
    bloom: bytes = b""
    # The block object hashes to `hash` (wire.sealed): its logsBloom is the block's own, so a bloom
    # that rules our logs out may be trusted. False: the bloom is a hint only (always asked).
    sealed: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Cursor:
    """The last block fully indexed."""

    number: int
    hash: bytes


# ---------------------------------------------------------------- ranges


def plan_range(after: int, target: int, span: int) -> range | None:
    """The next block range to fetch after block `after`, at most `span` blocks, ending at or before `target`."""
    start = after + 1
    if start > target or span < 1:
        return None
    return range(start, min(target, start + span - 1) + 1)


@dataclasses.dataclass(frozen=True, slots=True)
class SpanPolicy:
    initial: int = 2_000
    maximum: int = 100_000
    target_events: int = 10_000


def next_span(span: int, events: int, policy: SpanPolicy) -> int:
    """After a successful range: grow when sparse, shrink toward the target when dense."""
    if events > policy.target_events:
        span = max(1, span * policy.target_events // max(events, 1))
    elif events < policy.target_events // 4:
        span = span * 2
    return max(1, min(policy.maximum, span))


def split_span(span: int, suggested: int | None) -> int:
    """After a range refused as too large: the provider's suggestion when it gives one, else half."""
    if suggested is not None and 0 < suggested < span:
        return suggested
    return max(1, span // 2)


# ---------------------------------------------------------------- consistency and reorgs


def find_ancestor(stored: Mapping[int, bytes], canonical: Mapping[int, bytes], floor: int) -> int | None:
    """The common ancestor: the highest stored block below the lowest disagreement whose hash the node
    confirms. None when nothing disagrees (blocks the node does not have yet — a lagging node — are
    not disagreements).

    stored: our block hashes (every block above `floor` up to our cursor, plus blocks with events);
    canonical: the node's hashes for the same numbers (missing = the node does not have it);
    floor: the highest block we treat as final (undo data pruned at and below it).
    Raises ReorgTooDeep when the disagreement reaches the floor.
    """
    bad = [n for n, h in stored.items() if n in canonical and canonical[n] != h]
    if not bad:
        return None
    lowest_bad = min(bad)
    for number in sorted((n for n in stored if n < lowest_bad), reverse=True):
        if number < floor:
            break
        if canonical.get(number) == stored[number]:
            return number
    raise ReorgTooDeep(
        f"the node disagrees with stored block {lowest_bad} and no stored block from {floor} up matches: "
        f"the chain reorganized at or below block {floor}, which was treated as final. Re-index from scratch "
        f"(python -m indexer reset --config FILE) or raise the finality depth",
        lowest_bad,
    )


def finalized_block(head: int, tag_finalized: int | None, depth: int) -> int:
    """Finality from the node's tag when it has one, else head - depth (never negative)."""
    if tag_finalized is not None:
        return max(0, min(tag_finalized, head))
    return max(0, head - depth)


def next_finality(kept: int, before: int | None, read: int) -> int:
    """Finality after a head read that implies `read`, the one before implied `before`: never lower
    than `kept` (a lagging node is not a reorg) and never above what two reads in a row agree on —
    finality is kept for good, so one answer far ahead must not move it."""
    return kept if before is None else max(min(read, before), kept)


# ---------------------------------------------------------------- logsBloom


def bloom_bits(value: bytes) -> tuple[int, int, int]:
    h = keccak(value)
    return tuple(((h[i] << 8) | h[i + 1]) & 2047 for i in (0, 2, 4))  # type: ignore[return-value]


def bloom_may_contain(bloom: bytes, values: Iterable[bytes]) -> bool:
    """True if the 2048-bit logsBloom may hold any of `values` (addresses or topics)."""
    if len(bloom) != 256:
        return True  # no bloom: assume maybe
    for v in values:
        if all(bloom[255 - bit // 8] & (1 << (bit % 8)) for bit in bloom_bits(v)):
            return True
    return False
