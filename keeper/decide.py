"""Pure decisions: state (+ now) → action. No I/O, no clock, no globals (STYLE principle 11).

The jobs gather the state (indexer rows from PostgreSQL, contract state from eth_call, the
ledger), call these functions, and act: record → sign → send → confirm.
All amounts and fees are integers (wei / token base units).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

OUTCOME_NO, OUTCOME_YES, OUTCOME_INVALID = 0, 1, 2
OUTCOMES = {"no": OUTCOME_NO, "yes": OUTCOME_YES, "invalid": OUTCOME_INVALID}
OUTCOME_NAMES = {v: k for k, v in OUTCOMES.items()}
# OpinionMarket.STATUS_*: a resolver proposes, an arbiter may dispute, anyone finalizes after the window.
STATUS_OPEN, STATUS_PROPOSED, STATUS_DISPUTED, STATUS_RESOLVED = 0, 1, 2, 3
ACC_STORED = 10**12  # CreatorShares' accumulator scale: a fold credits floor(vested * 1e12 / supply) per share
Comparison = Literal["gt", "gte", "lt", "lte"]


# ------------------------------------------------------------------------------------- fees


@dataclasses.dataclass(frozen=True, slots=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


@dataclasses.dataclass(frozen=True, slots=True)
class FeePolicy:
    max_fee_cap: int
    priority_cap: int
    min_priority: int
    base_multiplier_pct: int = 200
    bump_bps: int = 1_250


def market_fees(next_base_fee: int, rewards: Sequence[int], policy: FeePolicy) -> Fees:
    """EIP-1559 fees for the next block: tip = median of recent percentile rewards (bounded by the
    policy), max fee = base fee * multiplier + tip, both capped."""
    ordered = sorted(r for r in rewards if r >= 0)
    tip = ordered[len(ordered) // 2] if ordered else policy.min_priority
    tip = min(max(tip, policy.min_priority), policy.priority_cap)
    max_fee = min(next_base_fee * policy.base_multiplier_pct // 100 + tip, policy.max_fee_cap)
    return Fees(max_fee_per_gas=max(max_fee, tip), max_priority_fee_per_gas=tip)


def bump(value: int, bump_bps: int) -> int:
    """value raised by at least bump_bps/10000, rounded up, and by at least 1."""
    return max(value + 1, -(-value * (10_000 + bump_bps) // 10_000))


def replacement_fees(old: Fees, market: Fees, policy: FeePolicy) -> Fees | None:
    """Fees for a replacement: ≥ bump on BOTH fields and at least the market; None only when the max
    fee cap does not allow a valid replacement (nodes refuse a smaller bump). The tip follows the
    market up to the priority cap, and past it by exactly the bump the node requires: a tip already
    at the cap must not block every replacement while the max fee still has room (the tip is bounded
    by the max fee, hence by max_fee_cap)."""
    tip = max(
        bump(old.max_priority_fee_per_gas, policy.bump_bps), min(market.max_priority_fee_per_gas, policy.priority_cap)
    )
    max_fee = max(bump(old.max_fee_per_gas, policy.bump_bps), market.max_fee_per_gas)
    if max_fee > policy.max_fee_cap:
        return None
    return Fees(max_fee_per_gas=max_fee, max_priority_fee_per_gas=min(tip, max_fee))


def bounded_gas_limit(estimate: int, margin_pct: int, block_gas_limit: int | None, cap: int) -> int | None:
    """The gas limit to sign: the estimate plus the margin, never above the latest block's gas limit or
    the configured cap (a node refuses a transaction above the block's, and a lying estimate must not
    reserve the whole balance). None when the estimate itself is above that bound: it cannot be sent."""
    bound = cap if block_gas_limit is None else min(cap, block_gas_limit)
    if estimate > bound:
        return None
    return min(estimate * (100 + margin_pct) // 100, bound)


# ------------------------------------------------------------------------------- resolution


@dataclasses.dataclass(frozen=True, slots=True)
class FeedRule:
    feed: bytes
    comparison: Comparison
    threshold: int
    outcome_if_true: int = OUTCOME_YES
    outcome_if_false: int = OUTCOME_NO


@dataclasses.dataclass(frozen=True, slots=True)
class FeedRound:
    """The round that decides a feed rule: the first one published at or after the market's end time.
    Trading closes at end time, so no trader can know it while trading is open (audit h1 F2: with the
    last round before end time, a round published in the market's last minute was public while the
    pool still traded at the old price, a risk-free buy of the side it made certain)."""

    round_id: int
    answer: int
    updated_at: int  # unix seconds


@dataclasses.dataclass(frozen=True, slots=True)
class QueueEntry:
    id: int
    outcome: int


@dataclasses.dataclass(frozen=True, slots=True)
class MarketView:
    market_id: int
    end_time: int  # unix seconds, from the contract (getMarket)
    resolved: bool  # from the contract (getMarket), never from the database alone
    queued: QueueEntry | None = None
    rule: FeedRule | None = None
    feed_round: FeedRound | None = None  # the first round at or after end_time, if fetched and published
    in_ledger: bool = False  # a live (not dropped) transaction exists for this market's job key
    status: int = STATUS_OPEN  # from the contract (getMarket)


@dataclasses.dataclass(frozen=True, slots=True)
class Resolve:
    """Propose `outcome` (OpinionMarket.proposeOutcome); it becomes final after the challenge window."""

    market_id: int
    outcome: int
    source: Literal["queue", "feed"]
    queue_id: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Skip:
    key: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Overdue:
    market_id: int
    overdue_s: int
    reason: str


ResolutionAction = Resolve | Skip | Overdue


def compare(answer: int, comparison: Comparison, threshold: int) -> bool:
    if comparison == "gt":
        return answer > threshold
    if comparison == "gte":
        return answer >= threshold
    if comparison == "lt":
        return answer < threshold
    return answer <= threshold


def feed_outcome(rule: FeedRule, rnd: FeedRound | None, end_time: int, max_staleness_s: int) -> int | None:
    """The outcome a feed rule gives, or None when the feed cannot say (no round at or after end time
    yet, one before end time, or one published more than `max_staleness_s` after end time): never a
    guess."""
    if rnd is None or rnd.updated_at < end_time or rnd.updated_at - end_time > max_staleness_s:
        return None
    return rule.outcome_if_true if compare(rnd.answer, rule.comparison, rule.threshold) else rule.outcome_if_false


def decide_resolution(m: MarketView, now: int, grace_s: int, max_staleness_s: int) -> ResolutionAction | None:
    """Propose from the operator queue first, then from a feed rule; report overdue markets past end +
    grace that have no usable source; skip markets the contract already resolved or that already
    have a proposal (someone else's)."""
    key = f"resolve:{m.market_id}"
    if m.in_ledger or now < m.end_time:
        return None
    if m.resolved or m.status == STATUS_RESOLVED:
        return Skip(key, "already_resolved")
    if m.status in (STATUS_PROPOSED, STATUS_DISPUTED):
        return Skip(key, "already_proposed")
    if m.queued is not None:
        return Resolve(m.market_id, m.queued.outcome, "queue", m.queued.id)
    reason = "no_outcome_source"
    if m.rule is not None:
        outcome = feed_outcome(m.rule, m.feed_round, m.end_time, max_staleness_s)
        if outcome is not None:
            return Resolve(m.market_id, outcome, "feed")
        reason = "feed_unusable"
    if now >= m.end_time + grace_s:
        return Overdue(m.market_id, now - m.end_time, reason)
    return None


# ------------------------------------------------------------------- finalize, dispute, expiry


@dataclasses.dataclass(frozen=True, slots=True)
class ProposalView:
    """A market's resolution state from the contract (getMarket), never from the database alone."""

    market_id: int
    end_time: int  # unix seconds
    status: int  # STATUS_*
    proposed_outcome: int
    challenge_ends: int  # unix seconds; 0 before any proposal; when disputed, the arbitration deadline
    in_ledger: bool = False  # a live transaction exists for the step's job key (finalize:/expire:)


@dataclasses.dataclass(frozen=True, slots=True)
class Finalize:
    market_id: int
    outcome: int  # the proposed outcome that becomes final


@dataclasses.dataclass(frozen=True, slots=True)
class Disputed:
    """An arbiter disputed the proposal: alert, never finalize (the arbiter settles it)."""

    market_id: int
    proposed_outcome: int


@dataclasses.dataclass(frozen=True, slots=True)
class Expire:
    """resolveExpired: an open market past end + resolution window becomes INVALID; a disputed one also past
    its arbitration deadline."""

    market_id: int
    status: int


def decide_finalize(p: ProposalView, now: int) -> Finalize | Disputed | Skip | None:
    """Finalize an undisputed proposal once its challenge window has ended; report a disputed one."""
    if p.status == STATUS_DISPUTED:
        return Disputed(p.market_id, p.proposed_outcome)
    if p.in_ledger:
        return None
    key = f"finalize:{p.market_id}"
    if p.status == STATUS_RESOLVED:
        return Skip(key, "already_resolved")
    if p.status != STATUS_PROPOSED:
        return Skip(key, "not_proposed")
    if now < p.challenge_ends:
        return None  # the window is open: an arbiter may still dispute
    return Finalize(p.market_id, p.proposed_outcome)


def expires_at(p: ProposalView, resolution_window_s: int) -> int:
    """When resolveExpired accepts the market (OpinionMarket.resolveExpired): end + resolution window, and for a
    disputed market not before its arbitration deadline (getMarket's challengeEnds once disputed), so the
    arbiter keeps its time to rule after a dispute that came late."""
    expires = p.end_time + resolution_window_s
    if p.status == STATUS_DISPUTED:
        expires = max(expires, p.challenge_ends)
    return expires


def decide_expiry(p: ProposalView, now: int, resolution_window_s: int) -> Expire | Skip | None:
    """From `expires_at` an open or disputed market is resolved INVALID (anyone may); a proposed one is
    the finalize job's (the contract refuses resolveExpired on it)."""
    if p.in_ledger:
        return None
    if p.status == STATUS_RESOLVED:
        return Skip(f"expire:{p.market_id}", "already_resolved")
    if p.status == STATUS_PROPOSED or now < expires_at(p, resolution_window_s):
        return None
    return Expire(p.market_id, p.status)


# ----------------------------------------------------------------------------- distribution


@dataclasses.dataclass(frozen=True, slots=True)
class CreatorView:
    creator: bytes
    pool: int  # not yet credited, vesting in CreatorShares (pendingPool)
    market_fees: int  # accrued in OpinionMarket, collected by the distribution (pendingPool)
    supply: int  # shares outstanding (supplyOf)
    vested: int  # of the pool and the market fees, what a distribution now credits (dividendStream)
    in_ledger: bool = False  # a live transaction exists for this creator and period
    # the warm-up (dividendStream): the supply a distribution credits over, and the pending shares it would
    # start earning (a lot's 00:00 passed since the last fold); a distribution that only matures lots succeeds
    earning: int = 0
    maturing: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Distribute:
    creator: bytes
    period: str
    amount: int  # what vested at decision time (the market fees joining the pool included): credited to holders


def distribution_key(creator: bytes, period: str) -> str:
    return f"distribute:0x{creator.hex()}:{period}"


def decide_distribution(c: CreatorView, period: str) -> Distribute | Skip | None:
    """Once per period, only where holders exist and the call does something: credits at least one unit per
    1e12 earning shares of what vested (as `CreatorShares._fold` rounds), brings market fees into the pool, or
    starts pending shares earning (lots whose 00:00 passed)."""
    if c.in_ledger:
        return None
    key = distribution_key(c.creator, period)
    if c.supply == 0:
        return Skip(key, "no_holders")
    if c.pool + c.market_fees == 0 and c.maturing == 0:
        return Skip(key, "empty_pool")
    earning = c.earning or c.supply  # >= 1 whenever supply > 0
    if c.market_fees == 0 and c.maturing == 0 and c.vested * ACC_STORED // earning == 0:
        return Skip(key, "nothing_vested")  # only dust, or a pool that began vesting moments ago
    return Distribute(c.creator, period, c.vested)


# ------------------------------------------------------------------------- tx tracking


TxStatus = Literal["pending", "mined", "confirmed", "reverted", "dropped"]


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    index: int
    fees: Fees
    sent_block: int | None  # None: recorded but never broadcast (crash before broadcast)
    known: bool  # the node knows the hash (mempool or chain)
    cancel: bool = False  # a zero-value self-transfer freeing the nonce (the call would now revert)
    last_sent_block: int | None = None  # head at our latest (re)broadcast of it; None: as sent_block
    refusals: int = 0  # consecutive broadcasts of it the node refused for good (broadcast_refused_for_good)


@dataclasses.dataclass(frozen=True, slots=True)
class Receipt:
    attempt: int
    block_number: int
    block_hash: bytes
    success: bool
    gas_used: int
    effective_gas_price: int


@dataclasses.dataclass(frozen=True, slots=True)
class TxView:
    status: TxStatus
    nonce: int
    gas_limit: int
    value: int
    attempts: tuple[Attempt, ...]
    receipt: Receipt | None  # the receipt of any attempt, on the canonical chain
    mined_block_hash: bytes | None  # what the ledger recorded when it saw it mined
    mined_attempt: int | None
    finalized: bool
    # A receipt lookup failed (an error, not a null): without a receipt, nothing can be concluded.
    lookup_failed: bool = False
    # The hash of the block the node has at the recorded mined block number (same node and pass as the
    # receipts); None when it has no block there (it is behind) or was not asked.
    block_hash_at_mined: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ChainView:
    head: int
    finalized: int
    nonce_latest: int  # the sender's mined transaction count
    balance: int
    fees: Fees  # market fees for the next block
    nonce_finalized: int | None = None  # the count at the finalized block; None: the node did not say


@dataclasses.dataclass(frozen=True, slots=True)
class MarkMined:
    receipt: Receipt
    confirmed: bool
    finalized: bool


@dataclasses.dataclass(frozen=True, slots=True)
class MarkFinalized:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Reorged:
    rebroadcast_attempt: int


@dataclasses.dataclass(frozen=True, slots=True)
class Dropped:
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Rebroadcast:
    attempt: int
    stuck_reason: str = ""  # set when a replacement was due but not possible (cap, funds)


@dataclasses.dataclass(frozen=True, slots=True)
class Replace:
    fees: Fees


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Abandon:
    """The node refused every broadcast of this attempt for good: replace it with a zero-value
    self-transfer at the same nonce, so the nonces above it can mine."""

    fees: Fees


TxAction = MarkMined | MarkFinalized | Reorged | Dropped | Rebroadcast | Replace | Wait | Abandon

# How nodes say they hold the transaction already (geth/anvil, parity, nethermind, erigon's DuplicateHash).
ALREADY_KNOWN = (
    "already known",
    "known transaction",
    "already imported",
    "existing tx with same hash",
    "already exists",
)
# What nodes answer eth_sendRawTransaction with when the transaction may yet go in as it is, or is in
# already (geth, erigon, nethermind, reth, anvil wording): a fee below the pool's or the base fee, a
# nonce taken meanwhile, a full or busy pool, a rate limit, funds (KeeperLowBalance: top up). Any
# other refusal is about the transaction itself (gas above the block's limit, a fee above the node's
# cap, a bad signature or chain id, oversized data) and sending the same bytes again cannot help.
TRANSIENT_REFUSALS = (
    *ALREADY_KNOWN,
    "underpriced",
    "fee too low",
    "less than block base fee",
    "nonce too low",
    "nonce too high",
    "insufficient funds",
    "txpool is full",
    "pool is full",
    "too many",
    "rate limit",
    "limit exceeded",
    "timeout",
    "timed out",
    "try again",
    "temporarily",
    "busy",
    "unavailable",
)


def broadcast_refused_for_good(message: str) -> bool:
    """Whether a node's eth_sendRawTransaction error is about the transaction itself (permanent)."""
    text = message.lower()
    return not any(m in text for m in TRANSIENT_REFUSALS)


DROP_GRACE_BLOCKS = 2  # blocks after our last send before "nonce used, no receipt" is looked into
NONCE_USED_NOT_FINAL = "nonce_used_receipt_pending"  # waits for finality before "dropped"
NONCE_USED_UNPROVEN = "nonce_used_finality_unknown"  # our send is final; the node gives no count to prove it


def last_send(attempts: Sequence[Attempt]) -> int | None:
    """The head at our latest broadcast of any attempt (a reorg rebroadcast counts), None if never sent."""
    blocks = [b for a in attempts for b in (a.sent_block, a.last_sent_block) if b is not None]
    return max(blocks) if blocks else None


def decide_tx(
    tx: TxView,
    chain: ChainView,
    confirmations: int,
    replace_after: int,
    policy: FeePolicy,
    confirm_at_finalized: bool = False,
    max_refusals: int = 5,
) -> TxAction | None:
    """What to do with one ledger transaction now. `confirmations` counts the mined block itself; with
    `confirm_at_finalized` a transaction is confirmed only once its block is finalized; an attempt the
    node refused for good `max_refusals` times in a row is abandoned (a cancel at its nonce)."""
    latest = tx.attempts[-1]
    r = tx.receipt
    if r is not None:
        if any(a.cancel and a.index == r.attempt for a in tx.attempts):
            if r.block_number > chain.finalized:
                # Not final: a reorg may yet mine the call it replaced, at the same nonce, and a dropped row is
                # never looked at again (review s21 hk: the ledger said "cancelled" for the keeper's own mined
                # proposal). Held as mined, the job key stays taken until the cancel is final.
                if tx.status == "pending" or tx.mined_block_hash != r.block_hash:
                    return MarkMined(r, False, False)
                return None
            if abandoned(tx.attempts, r.attempt, max_refusals):
                return Dropped(ABANDONED)
            return Dropped("cancelled: the call would revert")  # the job key is free; the job re-checks
        final = r.block_number <= chain.finalized
        confirmed = final if confirm_at_finalized else chain.head - r.block_number + 1 >= confirmations
        if tx.status == "pending" or tx.mined_block_hash != r.block_hash:
            return MarkMined(r, confirmed, final)
        if tx.status == "mined" and confirmed:
            return MarkMined(r, True, final)
        if tx.status in ("confirmed", "reverted") and final and not tx.finalized:
            return MarkFinalized()
        return None
    if tx.lookup_failed:
        return None  # the node did not answer: no decision this pass (never "no receipt")
    if tx.status in ("mined", "confirmed", "reverted"):
        # No receipt. A reorg only when the node has another block at the height we recorded: a node
        # behind that height, or one with our block but without its receipt yet, proves nothing.
        if tx.block_hash_at_mined is None or tx.block_hash_at_mined == tx.mined_block_hash:
            return None
        return Reorged(rebroadcast_attempt=latest.index if tx.mined_attempt is None else tx.mined_attempt)
    if tx.status != "pending":
        return None
    if chain.nonce_latest > tx.nonce:
        # Our nonce was used and none of our attempts has a receipt. Nodes can show the new nonce
        # before the receipt (seen on anvil under load; behind a load balancer, two nodes may
        # disagree), so wait until the head is DROP_GRACE_BLOCKS past our last send — of any attempt,
        # a reorg rebroadcast included. Never sent as far as the ledger knows: send it first (the
        # node refuses it or it lands), which starts the grace.
        sent = last_send(tx.attempts)
        if sent is None:
            return Rebroadcast(latest.index)
        if chain.head - sent < DROP_GRACE_BLOCKS:
            return None
        # Dropped only once the nonce is used in finalized state: a node whose receipts lag its nonce (an
        # index catching up, a load balancer) showed a mined tx as "nonce used, no receipt" for blocks, and
        # calling it dropped freed the job key: a creator was distributed twice in a day (review s15).
        # Without that count (the node answers it neither by tag nor by number) nothing proves it: wait,
        # and once our send is final say so (tx_stuck): an operator, or a node that answers, decides.
        if chain.nonce_finalized is None:
            return Wait(NONCE_USED_UNPROVEN if sent <= chain.finalized else NONCE_USED_NOT_FINAL)
        if chain.nonce_finalized <= tx.nonce:
            return Wait(NONCE_USED_NOT_FINAL)
        return Dropped("nonce_consumed_by_unrecorded_tx")
    # While the node holds the attempt (eth_getTransactionByHash), an error answered to its broadcast is
    # not a refusal: a provider that broadcast it and answered an error anyway, or erigon's answer to a
    # repeat, made the keeper cancel its own valid transaction after max_refusals passes (review s15).
    if latest.refusals >= max_refusals and not latest.cancel and not latest.known:
        # every broadcast of these bytes was refused for good: free the nonce for the ones above it
        return Abandon(replacement_fees(latest.fees, chain.fees, policy) or chain.fees)
    if latest.refusals > 0 and not latest.known:  # refused for good last time: a fee bump cannot help
        return Rebroadcast(latest.index, "cancel_refused" if latest.cancel else "broadcast_refused")
    if latest.sent_block is None:
        return Rebroadcast(latest.index)  # recorded, never sent (crash between record and broadcast)
    if chain.head - latest.sent_block < replace_after:
        return None if latest.known else Rebroadcast(latest.index)
    if tx.nonce > chain.nonce_latest:
        # queued behind a lower nonce of ours that has not mined: no fee makes it mine first, so a bump
        # only raises what it will pay (the lowest one is bumped; this one follows it). A node that
        # lost it gets the same bytes again.
        return Wait("queued_behind_lower_nonce") if latest.known else Rebroadcast(latest.index)
    fees = replacement_fees(latest.fees, chain.fees, policy)
    if fees is None:
        return Wait("fee_cap_reached") if latest.known else Rebroadcast(latest.index, "fee_cap_reached")
    if chain.balance < tx.value + tx.gas_limit * fees.max_fee_per_gas:
        reason = "insufficient_funds_for_bump"
        return Wait(reason) if latest.known else Rebroadcast(latest.index, reason)
    return Replace(fees)


ABANDONED = "cancelled: every broadcast was refused"


def abandoned(attempts: Sequence[Attempt], cancel_index: int, max_refusals: int) -> bool:
    """Whether the cancel at `cancel_index` replaced an attempt the node refused for good."""
    before = [a for a in attempts if a.index < cancel_index and not a.cancel]
    return bool(before) and before[-1].refusals >= max_refusals


# ------------------------------------------------------------------------------- nonces


def next_nonce(
    local_next: int | None, chain_pending: int, chain_latest: int, live_nonces: Sequence[int], mined_floor: int = 0
) -> int:
    """The next nonce to allocate. Never below a live (recorded, unmined) nonce + 1 or the local
    counter while anything is live; with nothing live, the chain's count is the truth — but never below
    `mined_floor` (the highest nonce the ledger saw mined, + 1): a lagging node's older count made the
    keeper sign at a nonce its own mined transaction holds (review s15)."""
    live = [n for n in live_nonces if n >= chain_latest]
    if not live:
        return max(chain_pending, chain_latest, mined_floor)
    floor = max(max(live) + 1, chain_pending, chain_latest, mined_floor)
    return floor if local_next is None else max(local_next, floor)


def nonce_gaps(chain_latest: int, live_nonces: Sequence[int], held_nonces: Sequence[int] = ()) -> list[int]:
    """Nonces between the chain's count and our highest live (pending) nonce that no ledger transaction
    holds: everything above a gap is stuck until it is filled. `held_nonces` are the nonces of every
    other ledger row (e.g. one seen mined after `chain_latest` was read), which are never gaps."""
    live = {n for n in live_nonces if n >= chain_latest}
    if not live:
        return []
    held = live | set(held_nonces)
    return [n for n in range(chain_latest, max(live)) if n not in held]
