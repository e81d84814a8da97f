"""An executable model of OpinionMarket + CreatorShares + the USDC balances they move, in plain
Python, for the stateful property tests.

Each operation either returns what the contract call returns and applies its effects, or raises
`Revert(contract, error)` naming the custom error the contract must revert with, leaving the model
untouched. The checks follow the contracts' order (modifiers first). Pure: no chain, no clock; the
caller passes the block timestamp.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import defaultdict
from fractions import Fraction

from tests.contracts import model as m

MAX_RESERVE = 2**112 - 1
MAX_SUPPLY = 2**24 - 1
MIN_INITIAL_LIQUIDITY = 10**6
ACC_STORED = 10**12  # CreatorShares stores the accumulator at this scale (+1 once the creator has shares)
ACC_SHOWN = m.ACC_PRECISION // ACC_STORED
U56, U88, U96, U112 = 2**56 - 1, 2**88 - 1, 2**96 - 1, 2**112 - 1
EPOCH = m.EPOCH
PAUSE_DURATION = 3 * 86_400  # ExpiringPause.PAUSE_DURATION
PAUSE_COOLDOWN = 86_400  # ExpiringPause.PAUSE_COOLDOWN
RESOLUTION_WINDOW = 30 * 86_400  # OpinionMarket.resolutionWindow (DeployParams.resolution_window)
CHALLENGE_WINDOW = 60  # OpinionMarket.challengeWindow (DeployParams.challenge_window)
OPEN, PROPOSED, DISPUTED, RESOLVED = 0, 1, 2, 3  # OpinionMarket.STATUS_*


class Revert(Exception):
    def __init__(self, contract: str, error: str) -> None:
        super().__init__(f"{contract}.{error}")
        self.contract = contract
        self.error = error


def pause_step(contract: str, until: int, paused: bool, now: int) -> int:
    """ExpiringPause._pause (paused=True) / _unpause: the new pausedUntil, or the contract's revert."""
    if paused:
        if now < until:
            raise Revert(contract, "EnforcedPause")
        if until and now < until + PAUSE_COOLDOWN:
            raise Revert(contract, "PauseCooldown")
        return now + PAUSE_DURATION
    if not now < until:
        raise Revert(contract, "ExpectedPause")
    return now


@dataclasses.dataclass(slots=True)
class Market:
    creator: str
    end: int
    yes: int
    no: int
    collateral: int  # complete sets minted and not burned by sells (= YES outstanding = NO outstanding)
    status: int = OPEN
    outcome: int = 0
    withdrawn: bool = False
    paid: int = 0  # claims and liquidity withdrawal paid after resolution
    proposed: int = 0
    challenge_ends: int = 0

    @property
    def resolved(self) -> bool:
        return self.status == RESOLVED


@dataclasses.dataclass(slots=True)
class Holding:
    shares: int = 0
    locked_until: int = 0
    credited: int = 0
    acc_paid: int = 0  # stored scale (ACC_STORED)
    pending_old: int = 0  # bought the day before the last buy's: earns from 00:00 of the day after the last buy's
    pending_new: int = 0  # bought on the last buy's day: earns from 00:00 two days after it


@dataclasses.dataclass(slots=True)
class Fee:
    """A fee in the time-fair ledger: when it arrived (in OpinionMarket, or with a share trade) and how much
    of it has not vested yet, in exact fractions."""

    arrived: int
    left: Fraction


@dataclasses.dataclass(slots=True)
class Params:
    fee_bps: int
    creator_share_bps: int
    unit: int
    protocol_bps: int
    creator_bps: int
    dividend_bps: int
    lock: int
    lp_share_bps: int = 0


@dataclasses.dataclass(slots=True)
class System:
    """Both contracts' state plus token balances, keyed by lower-case addresses."""

    params: Params
    om: str
    cs: str
    admin: str
    resolvers: frozenset[str]
    arbiters: frozenset[str]
    balances: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    # OpinionMarket
    markets: dict[int, Market] = dataclasses.field(default_factory=dict)
    # positions[(market_id, holder)][outcome]: index 0 = NO shares, 1 = YES shares (see `yes_no`)
    positions: defaultdict[tuple[int, str], list[int]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    creator_fees_accrued: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    # the UTC day of a creator's last market fee, and what had accrued before that day's first one
    fee_day: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    fees_at_day_start: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    om_protocol_fees: int = 0
    om_paused_until: int = 0  # ExpiringPause: paused while now < this; once over, when it ended
    # CreatorShares
    supply: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    pool: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    pending_next: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    pending_later: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    matured_acc: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)  # (creator, day): lane
    last_fold: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    creator_fees: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    acc: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))  # stored scale
    market_folded: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    holdings: defaultdict[tuple[str, str], Holding] = dataclasses.field(default_factory=lambda: defaultdict(Holding))
    cs_protocol_fees: int = 0
    cs_paused_until: int = 0
    distributed: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    dividends_claimed: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    # The time-fair entitlement, kept apart from the accumulator: the same stream in exact fractions and
    # continuous time, each second's vesting shared among the holders of that second pro rata to their
    # earning shares, a share earning from 00:00 of the second day after its buy (computed from the time, not
    # from the contract's counters; holdings only change at folds and a pool never vests across 00:00, so it is
    # exact per interval between folds); no rounding, no dust. Per fee, so the warm-up is checked per fee.
    ideal: defaultdict[tuple[str, str], Fraction] = dataclasses.field(default_factory=lambda: defaultdict(Fraction))
    ideal_pool: defaultdict[str, list[Fee]] = dataclasses.field(default_factory=lambda: defaultdict(list))
    # market fees accrued in OpinionMarket and not folded yet, oldest first: [arrival time, amount]
    fee_arrivals: defaultdict[str, list[list[int]]] = dataclasses.field(default_factory=lambda: defaultdict(list))
    # the latest 00:00 from which a share the holder holds earns (0: the creator's first shares); never lowered
    earning_since: defaultdict[tuple[str, str], int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    folds: defaultdict[str, int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    settles: defaultdict[tuple[str, str], int] = dataclasses.field(default_factory=lambda: defaultdict(int))
    claimed_by: defaultdict[tuple[str, str], int] = dataclasses.field(default_factory=lambda: defaultdict(int))

    def yes_no(self, market_id: int, holder: str) -> tuple[int, int]:
        """(yes, no) shares of `holder`, in positionOf's order."""
        no, yes = self.positions[(market_id, holder)]
        return yes, no

    def clone(self) -> System:
        return copy.deepcopy(self)

    # ------------------------------------------------------------ token

    def _pull(self, sender: str, to: str, amount: int) -> None:
        if self.balances[sender] < amount:
            raise Revert("MockUSDC", "ERC20InsufficientBalance")

    def _move(self, frm: str, to: str, amount: int) -> None:
        assert self.balances[frm] >= amount, "model: contract pays more than it holds"
        self.balances[frm] -= amount
        self.balances[to] += amount

    # ------------------------------------------------------------ OpinionMarket

    def _om_not_paused(self, now: int) -> None:
        if now < self.om_paused_until:
            raise Revert("OpinionMarket", "EnforcedPause")

    def _market(self, market_id: int) -> Market:
        market = self.markets.get(market_id)
        if market is None:
            raise Revert("OpinionMarket", "MarketNotFound")
        return market

    def _open_market(self, market_id: int, now: int) -> Market:
        market = self._market(market_id)
        if market.resolved:
            raise Revert("OpinionMarket", "MarketAlreadyResolved")
        if now >= market.end:
            raise Revert("OpinionMarket", "MarketClosed")
        return market

    def _accrue(self, creator: str, fee: int, now: int) -> int:
        creator_fee, protocol_fee = m.split_fee(fee, self.params.creator_share_bps, self.params.lp_share_bps)
        if creator_fee:
            if self.fee_day[creator] != now // EPOCH:
                self.fee_day[creator] = now // EPOCH
                self.fees_at_day_start[creator] = self.creator_fees_accrued[creator]
            self.fee_arrivals[creator].append([now, creator_fee])
        self.creator_fees_accrued[creator] += creator_fee
        self.om_protocol_fees += protocol_fee
        return creator_fee

    def create_market(self, sender: str, end: int, liquidity: int, now: int, yes_bps: int = m.BPS // 2) -> int:
        self._om_not_paused(now)
        if not 0 < yes_bps < m.BPS:
            raise Revert("OpinionMarket", "InvalidOdds")
        if end <= now or end > 2**32 - 1:
            raise Revert("OpinionMarket", "InvalidEndTime")
        if liquidity < MIN_INITIAL_LIQUIDITY:
            raise Revert("OpinionMarket", "LiquidityTooLow")
        if liquidity > MAX_RESERVE // 4:
            raise Revert("OpinionMarket", "AmountTooLarge")
        self._pull(sender, self.om, liquidity)
        market_id = len(self.markets) + 1
        yes, no = m.initial_reserves(liquidity, yes_bps)
        self.markets[market_id] = Market(sender, end, yes, no, liquidity)
        self.positions[(market_id, sender)] = [liquidity - no, liquidity - yes]  # [NO, YES] not kept by the pool
        self._move(sender, self.om, liquidity)
        return market_id

    def buy(self, sender: str, market_id: int, outcome: int, amount: int, min_out: int, deadline: int, now: int) -> int:
        self._om_not_paused(now)
        if now > deadline:
            raise Revert("OpinionMarket", "DeadlineExpired")
        if outcome > m.OUTCOME_YES:
            raise Revert("OpinionMarket", "InvalidOutcome")
        if amount == 0:
            raise Revert("OpinionMarket", "ZeroAmount")
        market = self._open_market(market_id, now)
        fee = m.buy_fee(amount, self.params.fee_bps)
        net = amount - fee
        lp = m.lp_fee(fee, self.params.lp_share_bps)
        if market.yes + market.no + 2 * (net + lp) > MAX_RESERVE:
            raise Revert("OpinionMarket", "AmountTooLarge")
        yes, no, shares = m.buy_outcome(market.yes, market.no, outcome, net)
        if shares < min_out:
            raise Revert("OpinionMarket", "SlippageExceeded")
        self._pull(sender, self.om, amount)
        assert yes * no >= market.yes * market.no, "k decreased on buy"
        market.yes, market.no = yes + lp, no + lp
        market.collateral += net + lp
        self.positions[(market_id, sender)][outcome] += shares
        self._accrue(market.creator, fee, now)
        self._move(sender, self.om, amount)
        return shares

    def sell(
        self, sender: str, market_id: int, outcome: int, shares: int, min_out: int, deadline: int, now: int
    ) -> int:
        if now > deadline:
            raise Revert("OpinionMarket", "DeadlineExpired")
        if outcome > m.OUTCOME_YES:
            raise Revert("OpinionMarket", "InvalidOutcome")
        if shares == 0:
            raise Revert("OpinionMarket", "ZeroAmount")
        market = self._open_market(market_id, now)
        position = self.positions[(market_id, sender)]
        if shares > position[outcome]:
            raise Revert("OpinionMarket", "InsufficientShares")
        yes, no, gross = m.sell_outcome(market.yes, market.no, outcome, shares)
        fee = m.sell_fee(gross, self.params.fee_bps)
        out = gross - fee
        if out < min_out:
            raise Revert("OpinionMarket", "SlippageExceeded")
        assert yes * no >= market.yes * market.no, "k decreased on sell"
        lp = m.lp_fee(fee, self.params.lp_share_bps)
        market.yes, market.no = yes + lp, no + lp
        market.collateral -= gross - lp
        position[outcome] -= shares
        self._accrue(market.creator, fee, now)
        self._move(self.om, sender, out)
        return out

    def merge(self, sender: str, market_id: int, amount: int) -> int:
        if amount == 0:
            raise Revert("OpinionMarket", "ZeroAmount")
        market = self._market(market_id)
        if market.resolved:
            raise Revert("OpinionMarket", "MarketAlreadyResolved")
        position = self.positions[(market_id, sender)]
        if amount > min(position):
            raise Revert("OpinionMarket", "InsufficientShares")
        position[0] -= amount
        position[1] -= amount
        market.collateral -= amount
        self._move(self.om, sender, amount)
        return amount

    def propose(self, sender: str, market_id: int, outcome: int, now: int) -> None:
        if sender not in self.resolvers:
            raise Revert("OpinionMarket", "AccessControlUnauthorizedAccount")
        if outcome > m.OUTCOME_INVALID:
            raise Revert("OpinionMarket", "InvalidOutcome")
        market = self._market(market_id)
        if market.resolved:
            raise Revert("OpinionMarket", "MarketAlreadyResolved")
        if market.status != OPEN:
            raise Revert("OpinionMarket", "MarketNotOpen")
        if now < market.end:
            raise Revert("OpinionMarket", "MarketNotEnded")
        market.status, market.proposed, market.challenge_ends = PROPOSED, outcome, now + CHALLENGE_WINDOW

    def dispute(self, sender: str, market_id: int, now: int) -> None:
        if sender not in self.arbiters:
            raise Revert("OpinionMarket", "AccessControlUnauthorizedAccount")
        market = self._market(market_id)
        if market.resolved:
            raise Revert("OpinionMarket", "MarketAlreadyResolved")
        if market.status != PROPOSED:
            raise Revert("OpinionMarket", "OutcomeNotProposed")
        if now >= market.challenge_ends:
            raise Revert("OpinionMarket", "ChallengeWindowClosed")
        market.status, market.challenge_ends = DISPUTED, now + CHALLENGE_WINDOW  # the arbitration deadline

    def arbitrate(self, sender: str, market_id: int, outcome: int) -> None:
        if sender not in self.arbiters:
            raise Revert("OpinionMarket", "AccessControlUnauthorizedAccount")
        if outcome > m.OUTCOME_INVALID:
            raise Revert("OpinionMarket", "InvalidOutcome")
        market = self._market(market_id)
        if market.resolved:
            raise Revert("OpinionMarket", "MarketAlreadyResolved")
        if market.status != DISPUTED:
            raise Revert("OpinionMarket", "OutcomeNotDisputed")
        market.status, market.outcome = RESOLVED, outcome

    def finalize(self, market_id: int, now: int) -> None:
        market = self._market(market_id)
        if market.resolved:
            raise Revert("OpinionMarket", "MarketAlreadyResolved")
        if market.status != PROPOSED:
            raise Revert("OpinionMarket", "OutcomeNotProposed")
        if now < market.challenge_ends:
            raise Revert("OpinionMarket", "ChallengeWindowOpen")
        market.status, market.outcome = RESOLVED, market.proposed

    def resolve_expired(self, market_id: int, now: int) -> None:
        market = self._market(market_id)
        if market.resolved:
            raise Revert("OpinionMarket", "MarketAlreadyResolved")
        if market.status == PROPOSED:
            raise Revert("OpinionMarket", "ProposalPending")
        expires = market.end + RESOLUTION_WINDOW
        if market.status == DISPUTED:  # the arbiter keeps its window to rule after a late dispute
            expires = max(expires, market.challenge_ends)
        if now < expires:
            raise Revert("OpinionMarket", "ResolutionWindowOpen")
        market.status, market.outcome = RESOLVED, m.OUTCOME_INVALID

    def claim_winnings(self, sender: str, market_id: int) -> int:
        market = self._market(market_id)
        if not market.resolved:
            raise Revert("OpinionMarket", "MarketNotResolved")
        yes, no = self.yes_no(market_id, sender)
        if yes == 0 and no == 0:
            return 0
        payout = m.payout(market.outcome, yes, no)
        self.positions[(market_id, sender)] = [0, 0]
        market.paid += payout
        self._move(self.om, sender, payout)
        return payout

    def withdraw_liquidity(self, sender: str, market_id: int) -> int:
        market = self._market(market_id)
        if sender != market.creator:
            raise Revert("OpinionMarket", "NotMarketCreator")
        if not market.resolved:
            raise Revert("OpinionMarket", "MarketNotResolved")
        if market.withdrawn:
            raise Revert("OpinionMarket", "LiquidityAlreadyWithdrawn")
        market.withdrawn = True
        payout = m.payout(market.outcome, market.yes, market.no)
        market.paid += payout
        self._move(self.om, sender, payout)
        return payout

    def set_om_paused(self, sender: str, paused: bool, now: int) -> None:
        if sender != self.admin:
            raise Revert("OpinionMarket", "AccessControlUnauthorizedAccount")
        self.om_paused_until = pause_step("OpinionMarket", self.om_paused_until, paused, now)

    # ------------------------------------------------------------ CreatorShares

    def _cs_not_paused(self, now: int) -> None:
        if now < self.cs_paused_until:
            raise Revert("CreatorShares", "EnforcedPause")

    def _last_buy_day(self, h: Holding) -> int:
        return (h.locked_until - self.params.lock) // EPOCH

    def _acc_at(self, creator: str, day: int) -> int:
        """CreatorShares._accAt: the lane of `day`, or (empty: passed in one fold with the day before) the day
        before's."""
        acc = self.matured_acc.get((creator, day), 0)
        if acc == 0:
            acc = self.matured_acc[(creator, day - 1)]
        return acc

    def _settle_terms(self, creator: str, holder: str) -> tuple[Holding, int]:
        """The holding as `_settle` returns it (a copy), at the creator's stored accumulator and last fold, and
        the number of credit terms that moved (each rounds down)."""
        h = dataclasses.replace(self.holdings[(creator, holder)])
        acc, last = self.acc[creator], self.last_fold[creator]
        terms = int(h.acc_paid != acc and h.shares - h.pending_old - h.pending_new > 0)
        credit = (h.shares - h.pending_old - h.pending_new) * (acc - h.acc_paid) // ACC_STORED
        if h.pending_old or h.pending_new:
            b = self._last_buy_day(h)
            for field, day in (("pending_old", b + 1), ("pending_new", b + 2)):
                lot = getattr(h, field)
                if lot and day * EPOCH <= last:
                    at = self._acc_at(creator, day)
                    credit += lot * (acc - at) // ACC_STORED
                    terms += int(acc != at)
                    setattr(h, field, 0)
        h.credited += credit
        assert h.credited <= U56, "credited beyond uint56"
        h.acc_paid = acc
        return h, terms

    def _settled(self, creator: str, holder: str) -> Holding:
        return self._settle_terms(creator, holder)[0]

    def _settle(self, creator: str, holder: str) -> Holding:
        h, terms = self._settle_terms(creator, holder)
        self.settles[(creator, holder)] += terms
        return h

    def _earning_at(self, creator: str, holder: str, t: int) -> tuple[int, int]:
        """(shares of `holder` earning at time t by the warm-up rule, the latest 00:00 one of them earns from):
        lots whose 00:00 is at or before t earn, whatever the contract's counters say."""
        h = self.holdings[(creator, holder)]
        earning, since = h.shares, self.earning_since[(creator, holder)]
        if h.pending_old or h.pending_new:
            b = self._last_buy_day(h)
            for lot, day in ((h.pending_old, b + 1), (h.pending_new, b + 2)):
                if lot and day * EPOCH > t:
                    earning -= lot
                elif lot:
                    since = max(since, day * EPOCH)
        return earning, since

    def _join(self, creator: str, amount: int, now: int) -> None:
        """A share trade's dividend fee joins today's pool."""
        if amount == 0:
            return
        self.pool[creator] += amount
        assert self.pool[creator] <= U96, "pool beyond uint96"
        self.ideal_pool[creator].append(Fee(now, Fraction(amount)))

    def _vest_ideal(self, creator: str, now: int) -> bool:
        """The time-fair ledger from the last fold to now: each fee's exact vested part goes to the holders
        earning then, pro rata; a fee reaching a holder must have arrived at or after the latest 00:00 from which
        any of that holder's earning shares earns (the warm-up goal, per fee). True when anything vested."""
        last = self.last_fold[creator]
        end = m.day_end(last)
        share = Fraction(min(now, end) - last, end - last)
        earning: dict[str, tuple[int, int]] = {}
        for (c, holder), h in self.holdings.items():
            if c == creator and h.shares:
                n, since = self._earning_at(creator, holder, last)
                if n:
                    earning[holder] = (n, since)
        total = sum(n for n, _ in earning.values())
        assert total == self.supply[creator] - self.pending_next[creator] - self.pending_later[creator], (
            "pending counters differ from the lots"
        )
        vested = False
        for fee in self.ideal_pool[creator]:
            part = fee.left * share
            if not part:
                continue
            vested = True
            fee.left -= part
            for holder, (n, since) in earning.items():
                assert fee.arrived >= since, (
                    f"a fee that arrived at {fee.arrived} reaches {holder}, whose shares earn from {since}"
                )
                self.ideal[(creator, holder)] += part * n / total
        self.ideal_pool[creator] = [f for f in self.ideal_pool[creator] if f.left]
        return vested

    def _fold(self, creator: str, now: int) -> tuple[int, int, int]:
        """CreatorShares._fold: the market fees accrued since the last fold join the pool, what vested goes into
        the accumulator over the earning supply (> 0), lots whose 00:00 passed start earning.
        (amount credited, fees joined, shares matured)."""
        last = self.last_fold[creator]
        d0 = last // EPOCH
        arrived, earlier, of_day, fee_day, today = self.market_backlog(creator, now)
        if arrived:
            # fees of the last fold's day (or a lump of days before the last fee's) join as of the last fold; the
            # last fee's day, between the last fold's and today, at once to its earners; today's after it all
            self.market_folded[creator] += arrived
            self._join_market_fees(creator, earlier)
        # A fold rounds whenever something vests, credited or not: a vested amount that rounds to no credit
        # at all leaves its exact share in the ideal ledger and the dust in the pool (seed 20261262 on
        # 2026-12-07: 1.16 units apart with no fold counted)
        if self._vest_ideal(creator, now):
            self.folds[creator] += 1
        earning = self.supply[creator] - self.pending_next[creator] - self.pending_later[creator]
        assert earning >= 1, "earning supply 0"
        delta = m.vested(self.pool[creator], last, now) * ACC_STORED // earning
        amount = m.ceil_div(delta * earning, ACC_STORED)
        if amount:
            self.acc[creator] += delta
            assert self.acc[creator] <= U96, "accumulator beyond uint96"
            self.pool[creator] -= amount
            self.distributed[creator] += amount
        matured = 0
        d = now // EPOCH
        if d > d0:
            nxt, pending_later = self.pending_next[creator], self.pending_later[creator]
            later = 0 if d == d0 + 1 else pending_later
            matured = nxt + later
            if of_day and fee_day == d0 + 1 and later:  # day d0 + 1's fees: between its lots and the next's
                if nxt:
                    self._lane(creator, d0 + 1)
                amount += self._credit_fees(creator, of_day, earning + nxt, fee_day)
                of_day = 0
                self._lane(creator, d0 + 2)
            elif matured:
                self._lane(creator, d0 + 1 if nxt else d0 + 2)
            earning += matured
            self.pending_next[creator], self.pending_later[creator] = (pending_later, 0) if d == d0 + 1 else (0, 0)
        if of_day:
            amount += self._credit_fees(creator, of_day, earning, fee_day)
        self._join_market_fees(creator, today)
        self.last_fold[creator] = now
        return amount, arrived, matured

    def _lane(self, creator: str, day: int) -> None:
        assert (creator, day) not in self.matured_acc, "a lane written twice"
        self.matured_acc[(creator, day)] = self.acc[creator]

    def _credit_fees(self, creator: str, fees: int, earning: int, day: int) -> int:
        """CreatorShares._creditFees: market fees of `day` (ended, no fold after its 00:00) credited at once over
        the shares earning that day; the dust joins the pool. In the time-fair ledger: to each holder earning at
        that day's 00:00, pro rata (they arrived that day, after it)."""
        delta = fees * ACC_STORED // earning
        credited = m.ceil_div(delta * earning, ACC_STORED)
        self.acc[creator] += delta
        assert self.acc[creator] <= U96, "accumulator beyond uint96"
        self.pool[creator] += fees - credited
        self.distributed[creator] += credited
        self.folds[creator] += 1  # one more rounding
        shares: dict[str, tuple[int, int]] = {}
        for (c, holder), h in self.holdings.items():
            if c == creator and h.shares:
                n, since = self._earning_at(creator, holder, day * EPOCH)
                if n:
                    shares[holder] = (n, since)
        total = sum(n for n, _ in shares.values())
        assert total == earning, f"{total} shares earn on day {day}, the contract credits {earning}"
        left, queue = fees, self.fee_arrivals[creator]
        while left:
            at, part = queue[0]
            took = min(left, part)
            for holder, (n, since) in shares.items():
                assert at >= since, f"a fee that arrived at {at} reaches {holder}, whose shares earn from {since}"
                self.ideal[(creator, holder)] += Fraction(took) * n / total
            left -= took
            if took == part:
                queue.pop(0)
            else:
                queue[0][1] -= took
        return credited

    def market_backlog(self, creator: str, now: int) -> tuple[int, int, int, int, int]:
        """CreatorShares._marketBacklog: the market fees waiting in OpinionMarket (all, earlier, of the day, that
        day, today), split at the start of the day of the creator's last fee (OpinionMarket.creatorFeesByDay)."""
        accrued, folded = self.creator_fees_accrued[creator], self.market_folded[creator]
        waiting = accrued - folded
        before = max(0, self.fees_at_day_start[creator] - folded)
        day = self.fee_day[creator]
        if day >= now // EPOCH:
            return waiting, before, 0, 0, waiting - before
        if day <= self.last_fold[creator] // EPOCH:
            return waiting, waiting, 0, 0, 0
        return waiting, before, waiting - before, day, 0

    def _join_market_fees(self, creator: str, amount: int) -> None:
        """`amount` of the market fees waiting, oldest first, joins the pool (and the time-fair ledger)."""
        if not amount:
            return
        self.pool[creator] += amount
        assert self.pool[creator] <= U96, "pool beyond uint96"
        left, queue = amount, self.fee_arrivals[creator]
        while left:
            at, part = queue[0]
            took = min(left, part)
            self.ideal_pool[creator].append(Fee(at, Fraction(took)))
            left -= took
            if took == part:
                queue.pop(0)
            else:
                queue[0][1] -= took

    def _collect(self, creator: str) -> int:
        """OpinionMarket.collectCreatorFees(creator, marketFolded) to CreatorShares: exactly the fees that joined
        the pool; those that arrived since the last fold stay in OpinionMarket."""
        collected = self.market_folded[creator]
        assert collected <= self.creator_fees_accrued[creator], "model: collecting more than accrued"
        self.creator_fees_accrued[creator] -= collected
        self.fees_at_day_start[creator] = max(0, self.fees_at_day_start[creator] - collected)
        self._move(self.om, self.cs, collected)
        self.market_folded[creator] = 0
        return collected

    def _fees(self, price: int) -> tuple[int, int, int]:
        p = self.params
        return m.share_fees(price, p.protocol_bps, p.creator_bps, p.dividend_bps)

    def buy_shares(self, sender: str, creator: str, amount: int, max_cost: int, deadline: int, now: int) -> int:
        self._cs_not_paused(now)
        if now > deadline:
            raise Revert("CreatorShares", "DeadlineExpired")
        if amount == 0:
            raise Revert("CreatorShares", "ZeroAmount")
        supply = self.supply[creator]
        if supply == 0 and sender != creator:
            raise Revert("CreatorShares", "CreatorMustBuyFirstShare")
        new_supply = supply + amount
        if new_supply > MAX_SUPPLY:
            raise Revert("CreatorShares", "SupplyCapExceeded")
        price = m.reserve_at(new_supply, self.params.unit) - m.reserve_at(supply, self.params.unit)
        pf, cf, df = self._fees(price)
        total = price + pf + cf + df
        if total > max_cost:
            raise Revert("CreatorShares", "SlippageExceeded")
        self._pull(sender, self.cs, total)
        backlog = 0
        if supply == 0:
            self.acc[creator] = 1
            self.last_fold[creator] = now
            # the market fees earned before the creator's first share: the creator's, credited whole
            backlog = self.market_folded[creator] = self.creator_fees_accrued[creator]
            self.fee_arrivals[creator] = []
        else:
            self._fold(creator, now)
        self._mark_earning(creator, sender)
        h = self._settle(creator, sender)
        if backlog:
            h.credited += backlog
            assert h.credited <= U56, "credit beyond uint56"
            self.ideal[(creator, sender)] += backlog
            self.distributed[creator] += backlog
        if supply:  # warm-up: every buy but the creator's first
            if h.pending_new and self._last_buy_day(h) + 1 == now // EPOCH:
                h.pending_old, h.pending_new = h.pending_new, 0
            h.pending_new += amount
            self.pending_later[creator] += amount
        h.shares += amount
        h.locked_until = now + self.params.lock
        self.holdings[(creator, sender)] = h
        self.supply[creator] = new_supply
        self._join(creator, df, now)
        self.creator_fees[creator] += cf
        self.cs_protocol_fees += pf
        self._move(sender, self.cs, total)
        return total

    def sell_shares(self, sender: str, creator: str, amount: int, min_out: int, deadline: int, now: int) -> int:
        if now > deadline:
            raise Revert("CreatorShares", "DeadlineExpired")
        if amount == 0:
            raise Revert("CreatorShares", "ZeroAmount")
        supply = self.supply[creator]
        held = self.holdings[(creator, sender)]
        if amount > held.shares:
            raise Revert("CreatorShares", "InsufficientShares")
        if sender == creator and amount == held.shares:
            raise Revert("CreatorShares", "CannotSellFirstShare")
        if now < held.locked_until:
            raise Revert("CreatorShares", "SharesLocked")
        new_supply = supply - amount
        price = m.reserve_at(supply, self.params.unit) - m.reserve_at(new_supply, self.params.unit)
        pf, cf, df = self._fees(price)
        proceeds = price - pf - cf - df
        if proceeds < min_out:
            raise Revert("CreatorShares", "SlippageExceeded")
        self._fold(creator, now)
        self._mark_earning(creator, sender)
        h = self._settle(creator, sender)
        x = amount  # pending first, newest first, then earning
        if h.pending_new:
            t = min(x, h.pending_new)
            h.pending_new -= t
            x -= t
            if self._last_buy_day(h) == now // EPOCH:
                self.pending_later[creator] -= t
            else:
                self.pending_next[creator] -= t
        if x and h.pending_old:
            t = min(x, h.pending_old)
            h.pending_old -= t
            self.pending_next[creator] -= t
        assert min(self.pending_next[creator], self.pending_later[creator]) >= 0, "pending counter below 0"
        h.shares -= amount
        self.holdings[(creator, sender)] = h
        self.supply[creator] = new_supply
        assert new_supply == 0 or new_supply - self.pending_next[creator] - self.pending_later[creator] >= 1
        self._join(creator, df, now)
        self.creator_fees[creator] += cf
        self.cs_protocol_fees += pf
        self._move(self.cs, sender, proceeds)
        return proceeds

    def distribute(self, sender: str, creator: str, now: int) -> int:
        supply = self.supply[creator]  # anyone may fold (review s19 h5)
        if supply == 0:
            raise Revert("CreatorShares", "NothingToDistribute")
        arriving, earlier, of_day, _, _ = self.market_backlog(creator, now)
        last = self.last_fold[creator]
        earning = supply - self.pending_next[creator] - self.pending_later[creator]
        vested = m.vested(self.pool[creator] + earlier, last, now) + of_day
        d, d0 = now // EPOCH, last // EPOCH
        maturing = 0 if d == d0 else self.pending_next[creator] + (self.pending_later[creator] if d > d0 + 1 else 0)
        if vested * ACC_STORED // earning == 0 and arriving == 0 and maturing == 0:
            raise Revert("CreatorShares", "NothingToDistribute")
        amount, _, _ = self._fold(creator, now)
        self._collect(creator)
        return amount

    def claim_dividends(self, sender: str, creator: str, now: int) -> int:
        self._mark_earning(creator, sender)
        h = self._settle(creator, sender)
        amount = h.credited
        if amount == 0:
            raise Revert("CreatorShares", "NothingToClaim")
        if self.market_folded[creator] > 0:
            self._collect(creator)
        h.credited = 0
        self.holdings[(creator, sender)] = h
        self.dividends_claimed[creator] += amount
        self.claimed_by[(creator, sender)] += amount
        self._move(self.cs, sender, amount)
        return amount

    def claim_creator_fees(self, sender: str) -> int:
        amount = self.creator_fees[sender]
        if amount == 0:
            raise Revert("CreatorShares", "NothingToClaim")
        self.creator_fees[sender] = 0
        self._move(self.cs, sender, amount)
        return amount

    def set_cs_paused(self, sender: str, paused: bool, now: int) -> None:
        if sender != self.admin:
            raise Revert("CreatorShares", "AccessControlUnauthorizedAccount")
        self.cs_paused_until = pause_step("CreatorShares", self.cs_paused_until, paused, now)

    # ------------------------------------------------------------ derived quantities

    def _mark_earning(self, creator: str, holder: str) -> None:
        """Right after a fold (lastFold = now): the latest 00:00 from which the holder's earning shares earn."""
        _, since = self._earning_at(creator, holder, self.last_fold[creator])
        self.earning_since[(creator, holder)] = since

    def claimable(self, creator: str, holder: str) -> int:
        return self._settled(creator, holder).credited

    def warmup(self, creator: str, holder: str, now: int) -> tuple[int, int, int, int]:
        """CreatorShares.warmupOf at time `now`: (earning, pendingOld, pendingNew, earnsFrom)."""
        h = self.holdings[(creator, holder)]
        old, new, since = h.pending_old, h.pending_new, 0
        if old or new:
            later = (self._last_buy_day(h) + 2) * EPOCH
            old = 0 if later - EPOCH <= now else old
            new = 0 if later <= now else new
            since = later if old or new else 0
        return h.shares - old - new, old, new, since

    def stream(self, creator: str, now: int) -> list[int]:
        """CreatorShares.dividendStream at time `now`."""
        pool, last = self.pool[creator], self.last_fold[creator]
        end = m.day_end(last)
        if self.supply[creator] == 0:
            return [pool, last, end, 0, 0, 0]
        _, earlier, of_day, _, _ = self.market_backlog(creator, now)
        vested = m.vested(pool + earlier, last, now) + of_day
        nxt, later = self.pending_next[creator], self.pending_later[creator]
        d, d0 = now // EPOCH, last // EPOCH
        maturing = 0 if d == d0 else nxt if d == d0 + 1 else nxt + later
        return [pool, last, end, vested, self.supply[creator] - nxt - later, maturing]

    def acc_shown(self, creator: str) -> int:
        """accPerShare as the contract shows it (scaled by 1e18, without the stored +1)."""
        acc = self.acc[creator]
        return 0 if acc == 0 else (acc - 1) * ACC_SHOWN

    def pending_market_fees(self, creator: str) -> int:
        return self.creator_fees_accrued[creator] - self.market_folded[creator]

    def fairness_gap(self, creator: str, holder: str) -> tuple[Fraction, int]:
        """(what `holder` was credited - its time-fair entitlement of what vested, the rounding allowance): two
        units per fold of the creator (the vested amount and the reserve round down; that dust vests again
        later, to later holders) and one per credit term of a settlement (earning shares, each matured lot:
        each rounds down)."""
        real = self.claimable(creator, holder) + self.claimed_by[(creator, holder)]
        allowance = 2 * self.folds[creator] + self.settles[(creator, holder)] + 1
        return real - self.ideal[(creator, holder)], allowance

    def om_obligations(self, holders: list[str]) -> int:
        """What OpinionMarket owes in the worst case: per market the largest total payout over the
        outcomes still possible (traders' positions plus the creator's pool if not withdrawn), plus fees."""
        total = self.om_protocol_fees + sum(self.creator_fees_accrued.values())
        for market_id, market in self.markets.items():
            outcomes = [market.outcome] if market.resolved else [m.OUTCOME_NO, m.OUTCOME_YES, m.OUTCOME_INVALID]
            worst = 0
            for outcome in outcomes:
                owed = sum(m.payout(outcome, *self.yes_no(market_id, h)) for h in holders)
                if not market.withdrawn:
                    owed += m.payout(outcome, market.yes, market.no)
                worst = max(worst, owed)
            total += worst
        return total

    def cs_obligations(self, creators: list[str], holders: list[str]) -> int:
        """Curve reserves + undistributed pools + every holder's claimable dividends + creator and protocol fees,
        less the market fees already credited that OpinionMarket still holds for CreatorShares."""
        total = self.cs_protocol_fees
        for c in creators:
            total -= self.market_folded[c]
            total += m.reserve_at(self.supply[c], self.params.unit) + self.pool[c] + self.creator_fees[c]
            total += sum(self.claimable(c, h) for h in holders)
        return total
