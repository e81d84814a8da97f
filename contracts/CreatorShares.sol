// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControlDefaultAdminRules} from "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {ExpiringPause} from "./ExpiringPause.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @notice What CreatorShares needs from OpinionMarket: the creator's market fees accrued there (and the part of
///         them that accrued before today, UTC), and a pull of them, paid to this contract only.
interface ICreatorFeeSource {
    function creatorFeesAccrued(address creator) external view returns (uint256);
    function creatorFeesByDay(address creator)
        external
        view
        returns (uint256 accrued, uint256 atDayStart, uint256 day);
    function collectCreatorFees(address creator, uint256 amount) external returns (uint256);
}

/// @title CreatorShares
/// @notice Per-creator shares on a friend.tech-style bonding curve priced in USDC, with a dividend
///         pool per creator that vests until the end of its UTC day to the holders of earning shares; a share
///         bought on day e earns from 00:00 UTC of day e+2 (warm-up), so no fee that arrives less than a day
///         after a buy ever reaches the shares it bought.
/// @dev Pricing comes from one reserve function, R(s) = unit * (s-1) s (2s-1) / 6 = unit * sum_{i<s} i^2,
///      so buying n shares at supply s costs R(s+n) - R(s) and selling returns R(s) - R(s-n): the
///      curve reserve always equals R(supply). The creator buys the first share (price 0) and can never
///      sell it, so every other holder can always sell. Dividends use accumulated-per-share accounting.
///
///      Dividends on UTC days (`EPOCH`). A fee is not credited when it arrives but joins the creator's `pool`,
///      which vests linearly from the last fold (`lastFold`) until the end of that fold's day; market fees that
///      arrived in OpinionMarket since the last fold join the pool before it vests, as if they had arrived at
///      the last fold (never earlier than they did). Every trade and distribution first folds what vested into
///      the accumulator over the earning supply, `supply - pendingNext - pendingLater`.
///
///      Warm-up: shares bought on day e are pending until 00:00 of day e+2 (the creator's first buy excepted:
///      nobody else holds then, and it keeps the earning supply >= 1, as the first share is never sold). Since a
///      pool never vests across 00:00 and maturity happens only at 00:00, a fold's vesting has one earning supply;
///      the first fold past a 00:00 writes the accumulator at that boundary once per creator and day
///      (`maturedAcc`), and a matured lot is credited `lot * (acc - acc at its boundary)` when its holder is next
///      settled. A holder keeps at most two pending lots: `pendingOld` (bought the day before its last buy) and
///      `pendingNew` (bought on the day of its last buy, `lockedUntil - lockPeriod`). Sells take pending shares
///      first, newest first. So a fee that arrives before 00:00 of the second day after a buy has vested before
///      the bought shares earn, whoever brings it (a whale's own trade, a pending trade in the mempool, fees
///      waiting in OpinionMarket).
///
///      The accumulator is stored scaled by 1e12 (it fits the holder's slot next to its balance) and is
///      shown scaled by 1e18 (x 1e6, exact) in events and views; claimable = credited + floor(earning *
///      (acc - accPaid) / 1e18) + per matured lot floor(lot * (acc - acc at its boundary) / 1e18) gives the same
///      integer either way. Each fold reserves ceil(delta * earning / 1e12) from the pool and every credit term
///      rounds down, so claims never exceed what was folded. Market fees folded but still held by OpinionMarket
///      are pulled before any dividend claim of that creator is paid.
contract CreatorShares is AccessControlDefaultAdminRules, ExpiringPause, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    uint256 public constant BPS = 10_000;
    /// @notice Scale of `accPerShare` in events and views.
    uint256 public constant ACC_PRECISION = 1e18;
    /// @dev Scale of the stored accumulator; ACC_PRECISION / ACC_STORED is exact.
    uint256 private constant ACC_STORED = 1e12;
    uint256 private constant ACC_SHOWN = ACC_PRECISION / ACC_STORED;
    uint256 public constant MAX_SUPPLY = type(uint24).max;
    /// @notice The dividend day (UTC): a pool vests until the end of its last fold's day, and shares bought on
    ///         day e earn from the start of day e+2.
    uint256 public constant EPOCH = 1 days;

    error CreatorMustBuyFirstShare(address creator);
    error ZeroAmount();
    error DeadlineExpired(uint256 deadline);
    error SlippageExceeded(uint256 amount, uint256 bound);
    error InsufficientShares(uint256 requested, uint256 available);
    error CannotSellFirstShare(address creator);
    error SharesLocked(address creator, address holder, uint256 lockedUntil);
    error NothingToDistribute(address creator);
    error NothingToClaim();
    error SupplyCapExceeded(uint256 supply);
    error InvalidFeeConfig();

    /// @dev Slot 0 of a creator, read and written by every trade.
    struct Creator {
        uint24 supply;
        uint24 pendingNext; // pending shares that earn from 00:00 of the day after `lastFold`'s
        uint24 pendingLater; // pending shares that earn from 00:00 two days after `lastFold`'s
        uint96 pool; // arrived and not yet credited: vests linearly from `lastFold` until the end of its day
        uint88 creatorFees; // creator's own trading fees, claimable by the creator
    }

    /// @dev The market fees waiting in OpinionMarket at a fold, by when they arrived (_marketBacklog); memory only.
    struct Backlog {
        uint256 earlier; // join the pool as of the last fold
        uint256 ofDay; // of `day`, after the last fold's day and before today: credited at once to that day's shares
        uint256 day;
        uint256 today; // join after the vest and the maturities
    }

    /// @dev Slot 1 of a creator, read by every trade, written when something is folded.
    struct Accrual {
        uint96 acc; // 1 + dividends per earning share scaled by ACC_STORED (0 = creator has no shares yet)
        uint112 marketFolded; // part of OpinionMarket's creatorFeesAccrued[creator] that already joined the pool
        uint32 lastFold; // when the pool last vested into acc
    }

    /// @dev One slot per holder per creator; `accPaid` is the stored accumulator value already credited.
    struct Holding {
        uint24 shares; // all shares; earning = shares - pendingOld - pendingNew
        uint24 pendingOld; // bought the day before the last buy's: earn from 00:00 of the day after the last buy's
        uint24 pendingNew; // bought on the last buy's day (lockedUntil - lockPeriod): earn from 00:00 two days after
        uint32 lockedUntil;
        uint56 credited; // dividends credited and not yet claimed
        uint96 accPaid; // the accumulator the earning shares were last settled at
    }

    /// @param price curve price of the shares (R difference), excluding fees.
    /// @param traderClaimable the trader's claimable dividends after settlement at `accPerShare`.
    /// @param pool not yet credited after the trade (this trade's dividend fee included), vesting until the
    ///        stream's end (see `dividendStream`).
    /// @param accPerShare the accumulator after the fold that preceded the trade, scaled by 1e18.
    /// @param distributed vested since the previous fold and folded into `accPerShare` before the trade,
    ///        credited to the earning holders before the trade; on the creator's first buy, the market fees its
    ///        markets earned before it, credited to the creator.
    /// @param traderPendingOld, traderPendingNew the trader's pending shares after the trade (traderShares less
    ///        these earn); `traderPendingNew` earns from `traderEarnsFrom`, `traderPendingOld` one day earlier.
    /// @param traderEarnsFrom 00:00 UTC at which `traderPendingNew` starts earning; 0 when nothing is pending.
    /// @param pendingSupply the creator's pending shares after the trade (supply less these earn).
    event SharesTraded(
        address indexed creator,
        address indexed trader,
        bool isBuy,
        uint256 amount,
        uint256 price,
        uint256 protocolFee,
        uint256 creatorFee,
        uint256 dividendFee,
        uint256 supply,
        uint256 traderShares,
        uint256 traderClaimable,
        uint256 lockedUntil,
        uint256 pool,
        uint256 accPerShare,
        uint256 distributed,
        uint256 traderPendingOld,
        uint256 traderPendingNew,
        uint256 traderEarnsFrom,
        uint256 pendingSupply
    );

    /// @param amount vested since the last fold, reserved for holders (rounded up; holders' credits round down,
    ///        so what they can claim never exceeds the sum of these amounts); `marketFees` came from
    ///        OpinionMarket in this call.
    /// @param pool not yet credited: still vesting, and rounding dust.
    /// @param earningSupply the supply `amount` was credited over (supply less the pending shares before the fold).
    /// @param pendingSupply the creator's pending shares after the fold.
    event DividendsDistributed(
        address indexed creator,
        uint256 amount,
        uint256 marketFees,
        uint256 supply,
        uint256 accPerShare,
        uint256 pool,
        uint256 earningSupply,
        uint256 pendingSupply
    );

    /// @notice A fold passed 00:00 and `shares` pending shares of `creator` (every lot whose 00:00 is at or before
    ///         this block's time and after the previous fold) earn from now on.
    /// @param fromDay, toDay the UTC days (timestamp / EPOCH) whose 00:00 the fold passed: the lots that earn from
    ///        00:00 of a day in [fromDay, toDay] matured (at most two days; the accumulator is the same at both).
    /// @param accPerShare the accumulator at those boundaries, scaled by 1e18.
    event PendingMatured(address indexed creator, uint256 shares, uint256 fromDay, uint256 toDay, uint256 accPerShare);

    /// @notice Emitted once, at deployment, so an indexer prices shares from logs alone.
    event CurveConfigured(
        uint256 curveUnit, uint256 protocolFeeBps, uint256 creatorFeeBps, uint256 dividendFeeBps, uint256 lockPeriod
    );

    event DividendsClaimed(address indexed creator, address indexed holder, uint256 amount);
    event CreatorFeesClaimed(address indexed creator, uint256 amount);
    event ProtocolFeesWithdrawn(address indexed to, uint256 amount);

    IERC20 public immutable usdc;
    ICreatorFeeSource public immutable marketFeeSource;
    /// @notice Price of share i is i^2 * curveUnit (USDC units).
    uint256 public immutable curveUnit;
    uint256 public immutable protocolFeeBps;
    uint256 public immutable creatorFeeBps;
    uint256 public immutable dividendFeeBps;
    uint256 public immutable lockPeriod;

    /// @dev Protocol fees + 1: the slot never returns to zero, so the first fee after a withdrawal
    ///      costs no zero-to-nonzero write.
    uint256 private protocolFeesPlusOne = 1;
    mapping(address => Creator) private creators;
    mapping(address => Accrual) private accruals;
    mapping(address => mapping(address => Holding)) private holdings;
    /// @dev creator => day >> 1 => two uint128 lanes (low: even day, high: odd day): the stored accumulator at
    ///      00:00 of `day`, written once by the fold that passed it with lots maturing there. A boundary passed
    ///      together with the day before's (one fold) has an empty lane: its accumulator is the day before's.
    mapping(address => mapping(uint256 => uint256)) private maturedAcc;

    constructor(
        IERC20 usdc_,
        ICreatorFeeSource marketFeeSource_,
        uint256 curveUnit_,
        uint256 protocolFeeBps_,
        uint256 creatorFeeBps_,
        uint256 dividendFeeBps_,
        uint256 lockPeriod_,
        address admin,
        uint48 adminDelay
    ) AccessControlDefaultAdminRules(adminDelay, admin) {
        if (curveUnit_ == 0 || protocolFeeBps_ + creatorFeeBps_ + dividendFeeBps_ > 2_000) revert InvalidFeeConfig();
        usdc = usdc_;
        marketFeeSource = marketFeeSource_;
        curveUnit = curveUnit_;
        protocolFeeBps = protocolFeeBps_;
        creatorFeeBps = creatorFeeBps_;
        dividendFeeBps = dividendFeeBps_;
        lockPeriod = lockPeriod_;
        emit CurveConfigured(curveUnit_, protocolFeeBps_, creatorFeeBps_, dividendFeeBps_, lockPeriod_);
    }

    // ---------------------------------------------------------------- trading

    /// @notice Buys `amount` shares of `creator`, paying exactly price + fees (never more).
    /// @param maxTotalCost slippage bound on price + fees.
    function buyShares(address creator, uint256 amount, uint256 maxTotalCost, uint256 deadline)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 totalCost)
    {
        if (block.timestamp > deadline) revert DeadlineExpired(deadline);
        if (amount == 0) revert ZeroAmount();
        Creator memory c = creators[creator];
        if (c.supply == 0 && msg.sender != creator) revert CreatorMustBuyFirstShare(creator);
        uint256 newSupply = c.supply + amount;
        if (newSupply > MAX_SUPPLY) revert SupplyCapExceeded(newSupply);

        uint256 price = reserveAt(newSupply) - reserveAt(c.supply);
        (uint256 pFee, uint256 cFee, uint256 dFee) = _fees(price);
        totalCost = price + pFee + cFee + dFee;
        if (totalCost > maxTotalCost) revert SlippageExceeded(totalCost, maxTotalCost);

        Accrual memory a = accruals[creator];
        uint256 distributed;
        bool first = c.supply == 0;
        if (first) {
            // the creator's first buy, once per creator (the first share is never sold): acc starts at 1 so
            // later folds never pay a zero-to-nonzero write, and the pool's first fee vests from now
            a.acc = 1;
            a.lastFold = uint32(block.timestamp); // < 2**32 until 2106, as every timestamp this contract keeps
            // Market fees the creator's markets earned before this share are the creator's, credited whole now:
            // streamed, they went to whoever bought next at a near-free price and held a day (review s15 F2)
            if (address(marketFeeSource) != address(0)) {
                distributed = marketFeeSource.creatorFeesAccrued(creator);
                a.marketFolded = distributed.toUint112(); // still in OpinionMarket: a claim collects them first
            }
            accruals[creator] = a;
        } else {
            (distributed,,) = _fold(creator, c, a);
            accruals[creator] = a;
        }
        Holding memory h = _settle(creator, holdings[creator][msg.sender], a.acc, a.lastFold);
        if (first) {
            // msg.sender is the creator; its first shares earn at once (nobody else holds, no pool yet)
            h.credited = (h.credited + distributed).toUint56();
        } else {
            // after the settle, a lot bought before yesterday has matured; yesterday's keeps its 00:00 (tomorrow's)
            // as the older lot, and today's (merged with this buy) earns from 00:00 of the day after tomorrow
            if (h.pendingNew != 0 && _lastBuyDay(h) + 1 == block.timestamp / EPOCH) {
                h.pendingOld = h.pendingNew;
                h.pendingNew = 0;
            }
            h.pendingNew += uint24(amount); // <= MAX_SUPPLY - supply, checked above, as every sum below
            c.pendingLater += uint24(amount);
        }
        h.shares += uint24(amount);
        h.lockedUntil = (block.timestamp + lockPeriod).toUint32();
        holdings[creator][msg.sender] = h;

        c.supply = uint24(newSupply); // <= MAX_SUPPLY, checked above
        c.pool = (c.pool + dFee).toUint96(); // joins today's pool
        c.creatorFees = (c.creatorFees + cFee).toUint88();
        creators[creator] = c;
        if (pFee > 0) protocolFeesPlusOne += pFee;

        usdc.safeTransferFrom(msg.sender, address(this), totalCost);
        _emitTrade(creator, true, amount, price, pFee, cFee, dFee, c, h, a.acc, distributed);
    }

    /// @notice Sells `amount` shares of `creator` back to the curve. Works while paused: exits stay open.
    /// @param minProceeds slippage bound on the USDC received after fees.
    function sellShares(address creator, uint256 amount, uint256 minProceeds, uint256 deadline)
        external
        nonReentrant
        returns (uint256 proceeds)
    {
        if (block.timestamp > deadline) revert DeadlineExpired(deadline);
        if (amount == 0) revert ZeroAmount();
        Creator memory c = creators[creator];
        Holding memory h = holdings[creator][msg.sender];
        if (amount > h.shares) revert InsufficientShares(amount, h.shares);
        if (msg.sender == creator && amount == h.shares) revert CannotSellFirstShare(creator);
        if (block.timestamp < h.lockedUntil) revert SharesLocked(creator, msg.sender, h.lockedUntil);

        uint256 newSupply = c.supply - amount;
        uint256 price = reserveAt(c.supply) - reserveAt(newSupply);
        (uint256 pFee, uint256 cFee, uint256 dFee) = _fees(price);
        proceeds = price - pFee - cFee - dFee;
        if (proceeds < minProceeds) revert SlippageExceeded(proceeds, minProceeds);

        Accrual memory a = accruals[creator];
        (uint256 distributed,,) = _fold(creator, c, a);
        accruals[creator] = a;
        h = _settle(creator, h, a.acc, a.lastFold);
        // pending shares go first, newest first, then earning ones. After the settle (lastFold = now) the newest
        // lot was bought today (earns two 00:00s ahead: pendingLater) or yesterday (the next: pendingNext); an
        // older lot is left only when the last buy was today (yesterday's lot: pendingNext).
        uint256 x = amount;
        if (h.pendingNew != 0) {
            uint24 t = uint24(Math.min(x, h.pendingNew));
            h.pendingNew -= t;
            x -= t;
            if (_lastBuyDay(h) == block.timestamp / EPOCH) c.pendingLater -= t;
            else c.pendingNext -= t;
        }
        if (x != 0 && h.pendingOld != 0) {
            uint24 t = uint24(Math.min(x, h.pendingOld));
            h.pendingOld -= t;
            c.pendingNext -= t;
        }
        h.shares -= uint24(amount); // amount <= h.shares, checked above
        holdings[creator][msg.sender] = h;
        c.supply = uint24(newSupply); // below the supply it came from
        c.pool = (c.pool + dFee).toUint96(); // joins today's pool
        c.creatorFees = (c.creatorFees + cFee).toUint88();
        creators[creator] = c;
        if (pFee > 0) protocolFeesPlusOne += pFee;

        if (proceeds > 0) usdc.safeTransfer(msg.sender, proceeds);
        _emitTrade(creator, false, amount, price, pFee, cFee, dFee, c, h, a.acc, distributed);
    }

    // ---------------------------------------------------------------- dividends

    /// @notice Folds: the market fees that arrived in OpinionMarket join the pool, what vested since the last fold
    ///         is credited to the earning holders pro rata, pending shares whose 00:00 passed start earning, and the
    ///         market fees' USDC moves into this contract. Anyone may call it (the keeper does, daily at 00:00): a
    ///         fold only credits what vested to whoever earned it, so no caller gains by its timing, and holders
    ///         whose shares matured do not depend on one key to start earning (review s19 h5: a keeper that
    ///         skipped a quiet creator gave days of market fees to the earners of the last fold). Reverts when
    ///         nothing vested, arrived or matured. Trades fold too.
    function distributeDividends(address creator) external nonReentrant returns (uint256 amount) {
        Creator memory c = creators[creator];
        if (c.supply == 0) revert NothingToDistribute(creator);
        Accrual memory a = accruals[creator];
        uint256 earning = uint256(c.supply) - c.pendingNext - c.pendingLater;
        (uint256 folded, uint256 arrived, uint256 matured) = _fold(creator, c, a);
        if (folded == 0 && arrived == 0 && matured == 0) revert NothingToDistribute(creator);
        amount = folded;
        uint256 marketFees = _collect(creator, a); // all of it joined the pool in the fold
        accruals[creator] = a;
        creators[creator] = c;
        emit DividendsDistributed(
            creator,
            amount,
            marketFees,
            c.supply,
            _shown(a.acc),
            c.pool,
            earning,
            uint256(c.pendingNext) + c.pendingLater
        );
    }

    /// @notice Pays the caller's credited dividends from `creator`. Works while paused.
    function claimDividends(address creator) external nonReentrant returns (uint256 amount) {
        Holding memory h = holdings[creator][msg.sender];
        Accrual memory a = accruals[creator];
        h = _settle(creator, h, a.acc, a.lastFold); // no fold: a lot whose 00:00 passed since waits for the next
        amount = h.credited;
        if (amount == 0) revert NothingToClaim();
        if (a.marketFolded > 0) {
            // part of the pool is still held by OpinionMarket: bring it here before paying (fees that arrived
            // there since the last fold stay there until the next fold starts them vesting)
            _collect(creator, a);
            accruals[creator] = a;
        }
        h.credited = 0;
        holdings[creator][msg.sender] = h;
        usdc.safeTransfer(msg.sender, amount);
        emit DividendsClaimed(creator, msg.sender, amount);
    }

    /// @notice Pays the creator their share-trading fees. Works while paused.
    function claimCreatorFees() external nonReentrant returns (uint256 amount) {
        Creator storage c = creators[msg.sender];
        amount = c.creatorFees;
        if (amount == 0) revert NothingToClaim();
        c.creatorFees = 0;
        usdc.safeTransfer(msg.sender, amount);
        emit CreatorFeesClaimed(msg.sender, amount);
    }

    function withdrawProtocolFees(address to) external onlyRole(DEFAULT_ADMIN_ROLE) returns (uint256 amount) {
        amount = protocolFeesPlusOne - 1;
        protocolFeesPlusOne = 1;
        if (amount > 0) usdc.safeTransfer(to, amount);
        emit ProtocolFeesWithdrawn(to, amount);
    }

    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    // ---------------------------------------------------------------- views

    /// @notice Curve reserve at supply s: unit * sum_{i=0}^{s-1} i^2.
    function reserveAt(uint256 s) public view returns (uint256) {
        if (s == 0) return 0;
        return (curveUnit * (s - 1) * s * (2 * s - 1)) / 6;
    }

    function buyPrice(address creator, uint256 amount) external view returns (uint256 price, uint256 totalCost) {
        uint256 s = creators[creator].supply;
        price = reserveAt(s + amount) - reserveAt(s);
        (uint256 p, uint256 c, uint256 d) = _fees(price);
        totalCost = price + p + c + d;
    }

    function sellPrice(address creator, uint256 amount) external view returns (uint256 price, uint256 proceeds) {
        uint256 s = creators[creator].supply;
        price = reserveAt(s) - reserveAt(s - amount);
        (uint256 p, uint256 c, uint256 d) = _fees(price);
        proceeds = price - p - c - d;
    }

    function protocolFees() external view returns (uint256) {
        return protocolFeesPlusOne - 1;
    }

    function supplyOf(address creator) external view returns (uint256) {
        return creators[creator].supply;
    }

    function sharesOf(address creator, address holder) external view returns (uint256) {
        return holdings[creator][holder].shares;
    }

    function lockedUntil(address creator, address holder) external view returns (uint256) {
        return holdings[creator][holder].lockedUntil;
    }

    /// @notice Dividends per share credited so far, scaled by 1e18.
    function accPerShare(address creator) external view returns (uint256) {
        return _shown(accruals[creator].acc);
    }

    /// @notice Not yet credited to holders: `pool` (vesting, see `dividendStream`), and `marketFees` that
    ///         arrived in OpinionMarket since the last fold, which join the pool at the next fold.
    function pendingPool(address creator) external view returns (uint256 pool, uint256 marketFees) {
        pool = creators[creator].pool;
        if (address(marketFeeSource) != address(0)) {
            marketFees = marketFeeSource.creatorFeesAccrued(creator) - accruals[creator].marketFolded;
        }
    }

    /// @notice The dividend stream: `pool` vests linearly from `lastFold` until `streamEnd`, the end of
    ///         `lastFold`'s UTC day. What a fold now would do: the market fees that waited in OpinionMarket since
    ///         before today (UTC) join the pool, `vested` (before rounding) is credited over `earningSupply`,
    ///         `maturing` pending shares start earning, and today's market fees join the pool, vesting from now.
    function dividendStream(address creator)
        external
        view
        returns (
            uint256 pool,
            uint256 lastFold,
            uint256 streamEnd,
            uint256 vested,
            uint256 earningSupply,
            uint256 maturing
        )
    {
        Creator memory c = creators[creator];
        Accrual memory a = accruals[creator];
        pool = c.pool;
        lastFold = a.lastFold;
        streamEnd = (lastFold / EPOCH + 1) * EPOCH;
        if (c.supply == 0) return (pool, lastFold, streamEnd, 0, 0, 0);
        Backlog memory b; // today's market fees join after the vest; a day's since the last fold, at once
        if (address(marketFeeSource) != address(0)) (, b) = _marketBacklog(creator, a.marketFolded, lastFold / EPOCH);
        vested = _vested(pool + b.earlier, lastFold, streamEnd) + b.ofDay;
        earningSupply = uint256(c.supply) - c.pendingNext - c.pendingLater;
        uint256 d = block.timestamp / EPOCH;
        uint256 d0 = lastFold / EPOCH;
        if (d > d0) maturing = d == d0 + 1 ? c.pendingNext : uint256(c.pendingNext) + c.pendingLater;
    }

    /// @notice `holder`'s shares of `creator` as of now: `earning` (lots whose 00:00 has passed count, even before
    ///         the fold that credits them), and the pending ones: `pendingNew` earns from `earnsFrom` (00:00 UTC),
    ///         `pendingOld` one day earlier; `earnsFrom` is 0 when nothing is pending.
    function warmupOf(address creator, address holder)
        external
        view
        returns (uint256 earning, uint256 pendingOld, uint256 pendingNew, uint256 earnsFrom)
    {
        Holding memory h = holdings[creator][holder];
        pendingOld = h.pendingOld;
        pendingNew = h.pendingNew;
        if ((pendingOld | pendingNew) != 0) {
            uint256 later = (_lastBuyDay(h) + 2) * EPOCH;
            if (later - EPOCH <= block.timestamp) pendingOld = 0;
            if (later <= block.timestamp) pendingNew = 0;
            if ((pendingOld | pendingNew) != 0) earnsFrom = later;
        }
        earning = h.shares - pendingOld - pendingNew;
    }

    /// @notice Market fees in the pool but still held by OpinionMarket (pulled before a claim).
    function marketFeesFolded(address creator) external view returns (uint256) {
        return accruals[creator].marketFolded;
    }

    function creatorFeesOf(address creator) external view returns (uint256) {
        return creators[creator].creatorFees;
    }

    /// @notice Credited dividends `holder` can claim now (what vested since the last fold is credited at the
    ///         next fold: a trade of this creator's shares or a distribution).
    function claimableDividends(address creator, address holder) external view returns (uint256) {
        Accrual memory a = accruals[creator];
        return _settle(creator, holdings[creator][holder], a.acc, a.lastFold).credited;
    }

    // ---------------------------------------------------------------- internals

    /// @dev Folds: the market fees accrued in OpinionMarket since the last fold join the pool first (as of the last
    ///      fold's day), then what vested since the last fold goes into the accumulator over the earning supply
    ///      (>= 1: the creator's first shares earn and are sold last), then the pending lots whose 00:00 passed
    ///      start earning, the accumulator at that 00:00 kept for their holders' settlement. A pool vests until
    ///      the end of its day and lots mature only at 00:00, so the vesting had one earning supply throughout.
    ///      Updates `c` and `a` in memory; the caller writes both. Returns the amount reserved for holders (0 when
    ///      only dust vested), the market fees that joined the pool and the shares that started earning.
    function _fold(address creator, Creator memory c, Accrual memory a)
        private
        returns (uint256 amount, uint256 arrived, uint256 matured)
    {
        uint256 last = a.lastFold;
        uint256 d0 = last / EPOCH;
        Backlog memory b;
        if (address(marketFeeSource) != address(0)) {
            (arrived, b) = _marketBacklog(creator, a.marketFolded, d0);
            if (arrived > 0) {
                a.marketFolded = (a.marketFolded + arrived).toUint112();
                c.pool = (c.pool + b.earlier).toUint96();
            }
        }
        uint256 earning = uint256(c.supply) - c.pendingNext - c.pendingLater;
        uint256 delta = (_vested(c.pool, last, (d0 + 1) * EPOCH) * ACC_STORED) / earning;
        // Rounds up: credits are floor(shares * accumulated delta / 1e12) over any number of folds, which can
        // exceed the sum of per-fold floors by one unit each time. delta * earning <= vested * 1e12, so the
        // rounded-up amount never exceeds what vested.
        amount = Math.ceilDiv(delta * earning, ACC_STORED);
        if (amount > 0) {
            a.acc = (a.acc + delta).toUint96();
            c.pool -= uint96(amount); // amount <= vested <= pool
        }
        uint256 d = block.timestamp / EPOCH;
        if (d > d0) {
            // passed 00:00 of day d0 + 1, and of d0 + 2 when d >= d0 + 2: nothing vested across either (the pool
            // ended at the first), so both boundaries have the accumulator of now, unless market fees of day
            // d0 + 1 go to the shares earning that day between them
            uint256 next = c.pendingNext;
            uint256 later = d == d0 + 1 ? 0 : c.pendingLater;
            matured = next + later;
            if (b.ofDay > 0 && b.day == d0 + 1 && later > 0) {
                _mature(creator, a, next, d0 + 1, d0 + 1, d0 + 1);
                amount += _creditFees(c, a, b.ofDay, earning + next);
                b.ofDay = 0;
                _mature(creator, a, later, d0 + 2, d0 + 2, d0 + 2);
            } else {
                // one lane: the first boundary with lots; a later one reads it through _accAt's fallback
                _mature(creator, a, matured, next > 0 ? d0 + 1 : d0 + 2, d0 + 1, Math.min(d, d0 + 2));
            }
            earning += matured;
            (c.pendingNext, c.pendingLater) = d == d0 + 1 ? (c.pendingLater, uint24(0)) : (uint24(0), uint24(0));
        }
        if (b.ofDay > 0) amount += _creditFees(c, a, b.ofDay, earning);
        if (b.today > 0) c.pool = (c.pool + b.today).toUint96();
        a.lastFold = uint32(block.timestamp); // < 2**32 until 2106, as every timestamp this contract keeps
    }

    /// @dev Lots of `shares` start earning at the accumulator of now, written in the lane of `laneDay` (each
    ///      boundary passes once).
    function _mature(address creator, Accrual memory a, uint256 shares, uint256 laneDay, uint256 fromDay, uint256 toDay)
        private
    {
        if (shares == 0) return;
        maturedAcc[creator][laneDay >> 1] |= uint256(a.acc) << ((laneDay & 1) << 7);
        emit PendingMatured(creator, shares, fromDay, toDay, _shown(a.acc));
    }

    /// @dev Credits `fees` at once over `earning` shares (the market fees of a day that ended with no fold after
    ///      its 00:00: they had vested by its end); the rounding dust joins the pool. Returns the amount reserved.
    function _creditFees(Creator memory c, Accrual memory a, uint256 fees, uint256 earning)
        private
        pure
        returns (uint256 credited)
    {
        uint256 delta = (fees * ACC_STORED) / earning;
        credited = Math.ceilDiv(delta * earning, ACC_STORED); // <= fees
        a.acc = (a.acc + delta).toUint96();
        c.pool = (c.pool + (fees - credited)).toUint96();
    }

    /// @dev The market fees waiting in OpinionMarket beyond `folded` (those already joined): all of them, split by
    ///      when they arrived, from OpinionMarket's start of the day of the creator's last market fee (review s21
    ///      hc, hf). Fees of the last fold's day, or of days before that last fee's day, join as of the last fold:
    ///      joined when they arrived they had vested by their day's end (a lump of several days goes to the
    ///      earliest's earners: nobody earns a fee from before its shares earn). The last fee's day, when it is
    ///      after the last fold's and before today, is credited at once to the shares earning that day. Today's
    ///      join after the vest and the maturities and vest from now (joined as of the last fold, the part
    ///      "vested" before they existed went to whoever sold right after them: 2,421.88 of a 5,000 USDC fee).
    function _marketBacklog(address creator, uint256 folded, uint256 d0)
        private
        view
        returns (uint256 all, Backlog memory b)
    {
        (uint256 accrued, uint256 atDayStart, uint256 day) = marketFeeSource.creatorFeesByDay(creator);
        all = accrued - folded;
        uint256 before = atDayStart > folded ? atDayStart - folded : 0; // arrived before `day`'s 00:00
        if (day >= block.timestamp / EPOCH) {
            (b.earlier, b.today) = (before, all - before);
        } else if (day <= d0) {
            b.earlier = all; // all of them on the last fold's day, after it
        } else {
            (b.earlier, b.ofDay, b.day) = (before, all - before, day);
        }
    }

    /// @dev The part of `pool` that vested between `last` and now, linearly until `end`.
    function _vested(uint256 pool, uint256 last, uint256 end) private view returns (uint256) {
        if (block.timestamp >= end) return pool;
        return (pool * (block.timestamp - last)) / (end - last);
    }

    /// @dev The stored accumulator at 00:00 of `day`, which a fold passed with lots of `creator` maturing there.
    function _accAt(address creator, uint256 day) private view returns (uint256 acc) {
        acc = uint128(maturedAcc[creator][day >> 1] >> ((day & 1) << 7));
        // an empty lane: that fold passed the day before's 00:00 too and wrote the (equal) accumulator there
        if (acc == 0) acc = uint128(maturedAcc[creator][(day - 1) >> 1] >> (((day - 1) & 1) << 7));
    }

    /// @dev UTC day of the holder's last buy (0 for a holding that never bought; only read with lots pending).
    function _lastBuyDay(Holding memory h) private view returns (uint256) {
        return (h.lockedUntil - lockPeriod) / EPOCH;
    }

    /// @dev Pulls the market fees that joined the pool from OpinionMarket (paid to this contract); fees that
    ///      arrived there since the last fold stay there. `a.marketFolded` becomes 0; the caller writes `a`.
    ///      Returns the amount collected.
    function _collect(address creator, Accrual memory a) private returns (uint256 collected) {
        collected = a.marketFolded;
        if (collected == 0) return 0; // also without a market fee source: nothing ever joined from it
        a.marketFolded = 0;
        marketFeeSource.collectCreatorFees(creator, collected);
    }

    /// @dev The holding with dividends earned since its last settlement credited at stored accumulator `acc`:
    ///      its earning shares since `accPaid`, and each lot that matured at a fold up to `lastFold` since the
    ///      accumulator at its 00:00 (the lot then earns with the rest). Each term rounds down on its own.
    function _settle(address creator, Holding memory h, uint256 acc, uint256 lastFold)
        private
        view
        returns (Holding memory)
    {
        uint256 credit = ((uint256(h.shares) - h.pendingOld - h.pendingNew) * (acc - h.accPaid)) / ACC_STORED;
        if ((uint256(h.pendingOld) | h.pendingNew) != 0) {
            uint256 b = _lastBuyDay(h);
            if (h.pendingOld != 0 && (b + 1) * EPOCH <= lastFold) {
                credit += (uint256(h.pendingOld) * (acc - _accAt(creator, b + 1))) / ACC_STORED;
                h.pendingOld = 0;
            }
            if (h.pendingNew != 0 && (b + 2) * EPOCH <= lastFold) {
                credit += (uint256(h.pendingNew) * (acc - _accAt(creator, b + 2))) / ACC_STORED;
                h.pendingNew = 0;
            }
        }
        if (credit != 0) h.credited = (h.credited + credit).toUint56();
        h.accPaid = uint96(acc);
        return h;
    }

    function _shown(uint256 acc) private pure returns (uint256) {
        return acc == 0 ? 0 : (acc - 1) * ACC_SHOWN;
    }

    function _emitTrade(
        address creator,
        bool isBuy,
        uint256 amount,
        uint256 price,
        uint256 pFee,
        uint256 cFee,
        uint256 dFee,
        Creator memory c,
        Holding memory h,
        uint256 acc,
        uint256 distributed
    ) private {
        // SharesTraded's 17 data words in two halves (all static: the concatenation is the tuple's encoding), logged
        // by hand: one `emit` with every word on the stack at once is too deep for the compiler
        bytes memory data = bytes.concat(
            abi.encode(isBuy, amount, price, pFee, cFee, dFee, c.supply, h.shares, h.credited),
            abi.encode(
                h.lockedUntil,
                c.pool,
                _shown(acc),
                distributed,
                h.pendingOld,
                h.pendingNew,
                (h.pendingOld | h.pendingNew) == 0 ? 0 : (_lastBuyDay(h) + 2) * EPOCH,
                uint256(c.pendingNext) + c.pendingLater
            )
        );
        bytes32 topic0 = SharesTraded.selector;
        address trader = msg.sender;
        assembly ("memory-safe") {
            log3(add(data, 0x20), mload(data), topic0, creator, trader)
        }
    }

    function _fees(uint256 price) private view returns (uint256 p, uint256 c, uint256 d) {
        p = (price * protocolFeeBps) / BPS;
        c = (price * creatorFeeBps) / BPS;
        d = (price * dividendFeeBps) / BPS;
    }
}
