// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControlDefaultAdminRules} from "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {ExpiringPause} from "./ExpiringPause.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @notice What CreatorShares needs from OpinionMarket: the creator's market fees accrued there, and a
///         pull of them, paid to this contract only.
interface ICreatorFeeSource {
    function creatorFeesAccrued(address creator) external view returns (uint256);
    function collectCreatorFees(address creator, uint256 amount) external returns (uint256);
}

/// @title CreatorShares
/// @notice Per-creator shares on a friend.tech-style bonding curve priced in USDC, with a dividend
///         pool per creator that vests over a day to holders pro rata to shares held while it vests.
/// @dev Pricing comes from one reserve function, R(s) = unit * (s-1) s (2s-1) / 6 = unit * sum_{i<s} i^2,
///      so buying n shares at supply s costs R(s+n) - R(s) and selling returns R(s) - R(s-n): the
///      curve reserve always equals R(supply). The creator buys the first share (price 0) and can never
///      sell it, so every other holder can always sell. Dividends use accumulated-per-share accounting.
///
///      Streamed dividends: a fee is not credited when it arrives but joins the creator's `pool`, which
///      vests linearly from the last fold until `streamEnd`, the amount-weighted mean of its parts' ends: a new
///      fee's is `DIVIDEND_STREAM` (one day) from its arrival, what was vesting keeps its own. Every change of supply first folds what vested since the last fold into the
///      accumulator at the supply it vested under, so between two supply changes the vested part goes
///      exactly to the holders of that interval, pro rata to their shares and to the time they held:
///      holding a creator's shares for an hour earns about an hour's worth of that creator's fee stream,
///      and buying just before a large fee arrives (a whale's own trade, or one seen in a mempool) earns
///      about hold time / one day of it, not all of it. Market fees that arrived in OpinionMarket join
///      the pool at the next fold. `distributeDividends` folds the same way (credits what vested since
///      the last fold) and moves the market fees' USDC from OpinionMarket.
///
///      The accumulator is stored scaled by 1e12 (it fits the holder's slot next to its balance) and is
///      shown scaled by 1e18 (x 1e6, exact) in events and views; claimable = credited + floor(shares *
///      (acc - accPaid) / 1e18) gives the same integer either way. Each fold reserves
///      ceil(delta * supply / 1e12) from what is pending and every holder's credit rounds down, so claims
///      never exceed what was folded. Market fees folded but still held by OpinionMarket are pulled
///      before any dividend claim of that creator is paid.
contract CreatorShares is AccessControlDefaultAdminRules, ExpiringPause, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    bytes32 public constant KEEPER_ROLE = keccak256("KEEPER_ROLE");
    uint256 public constant BPS = 10_000;
    /// @notice Scale of `accPerShare` in events and views.
    uint256 public constant ACC_PRECISION = 1e18;
    /// @dev Scale of the stored accumulator; ACC_PRECISION / ACC_STORED is exact.
    uint256 private constant ACC_STORED = 1e12;
    uint256 private constant ACC_SHOWN = ACC_PRECISION / ACC_STORED;
    uint256 public constant MAX_SUPPLY = type(uint32).max;
    /// @notice Each fee's vesting period from its arrival; the pool vests until its fees' weighted mean end, so a
    ///         fee joining a pool near its end vests sooner than this, and what was vesting later.
    uint256 public constant DIVIDEND_STREAM = 1 days;

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
        uint32 supply;
        uint96 pool; // arrived and not yet credited: vests linearly from `lastFold` until `streamEnd`
        uint96 creatorFees; // creator's own trading fees, claimable by the creator
        uint32 streamEnd; // when the pool is fully vested: amount-weighted mean of its fees' ends (see _stream)
    }

    /// @dev Slot 1 of a creator, read by every trade, written when something is folded.
    struct Accrual {
        uint112 acc; // 1 + dividends per share scaled by ACC_STORED (0 = creator has no shares yet)
        uint112 marketFolded; // part of OpinionMarket's creatorFeesAccrued[creator] that already joined the pool
        uint32 lastFold; // when the pool last vested into acc
    }

    /// @dev One slot per holder per creator; `accPaid` is the stored accumulator value already credited.
    struct Holding {
        uint32 shares;
        uint32 lockedUntil;
        uint80 credited; // dividends credited and not yet claimed
        uint112 accPaid;
    }

    /// @param price curve price of the shares (R difference), excluding fees.
    /// @param traderClaimable the trader's claimable dividends after settlement at `accPerShare`.
    /// @param pool not yet credited after the trade (this trade's dividend fee included), vesting until the
    ///        stream's end (see `dividendStream`).
    /// @param accPerShare the accumulator after the fold that preceded the trade, scaled by 1e18.
    /// @param distributed vested since the previous fold and folded into `accPerShare` before the trade,
    ///        credited to the holders before the trade; on the creator's first buy, the market fees its markets
    ///        earned before it, credited to the creator.
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
        uint256 distributed
    );

    /// @param amount vested since the last fold, reserved for holders (rounded up; holders' credits round down,
    ///        so what they can claim never exceeds the sum of these amounts); `marketFees` came from
    ///        OpinionMarket in this call.
    /// @param pool not yet credited: still vesting, and rounding dust.
    event DividendsDistributed(
        address indexed creator, uint256 amount, uint256 marketFees, uint256 supply, uint256 accPerShare, uint256 pool
    );

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
            (distributed,) = _fold(creator, c, a);
            accruals[creator] = a;
        }
        Holding memory h = _settle(holdings[creator][msg.sender], a.acc);
        if (first) h.credited = (h.credited + distributed).toUint80(); // msg.sender is the creator
        h.shares = (h.shares + amount).toUint32();
        h.lockedUntil = (block.timestamp + lockPeriod).toUint32();
        holdings[creator][msg.sender] = h;

        c.supply = uint32(newSupply); // <= MAX_SUPPLY, checked above
        _stream(c, dFee);
        c.creatorFees = (c.creatorFees + cFee).toUint96();
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
        (uint256 distributed,) = _fold(creator, c, a);
        accruals[creator] = a;
        h = _settle(h, a.acc);
        h.shares -= uint32(amount); // amount <= h.shares, checked above
        holdings[creator][msg.sender] = h;
        c.supply = uint32(newSupply); // below the uint32 supply it came from
        _stream(c, dFee);
        c.creatorFees = (c.creatorFees + cFee).toUint96();
        creators[creator] = c;
        if (pFee > 0) protocolFeesPlusOne += pFee;

        if (proceeds > 0) usdc.safeTransfer(msg.sender, proceeds);
        _emitTrade(creator, false, amount, price, pFee, cFee, dFee, c, h, a.acc, distributed);
    }

    // ---------------------------------------------------------------- dividends

    /// @notice Credits what vested since the last fold to current holders pro rata, starts the market fees
    ///         that arrived in OpinionMarket vesting, and moves their USDC into this contract. Keeper role;
    ///         reverts when nothing vested and nothing arrived. Trades fold too: this call makes a quiet
    ///         period's vested fees claimable and settles the market fees' USDC.
    function distributeDividends(address creator) external onlyRole(KEEPER_ROLE) nonReentrant returns (uint256 amount) {
        Creator memory c = creators[creator];
        if (c.supply == 0) revert NothingToDistribute(creator);
        Accrual memory a = accruals[creator];
        uint256 arrived;
        (amount, arrived) = _fold(creator, c, a);
        if (amount == 0 && arrived == 0) revert NothingToDistribute(creator);
        uint256 marketFees = _collect(creator, a); // all of it joined the pool in the fold
        accruals[creator] = a;
        creators[creator] = c;
        emit DividendsDistributed(creator, amount, marketFees, c.supply, _shown(a.acc), c.pool);
    }

    /// @notice Pays the caller's credited dividends from `creator`. Works while paused.
    function claimDividends(address creator) external nonReentrant returns (uint256 amount) {
        Holding memory h = holdings[creator][msg.sender];
        Accrual memory a = accruals[creator];
        h = _settle(h, a.acc);
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

    /// @notice The dividend stream: `pool` vests linearly from `lastFold` until `streamEnd`; `vested` is what a
    ///         fold now would credit to the holders of now (before rounding).
    function dividendStream(address creator)
        external
        view
        returns (uint256 pool, uint256 lastFold, uint256 streamEnd, uint256 vested)
    {
        Creator memory c = creators[creator];
        Accrual memory a = accruals[creator];
        return (c.pool, a.lastFold, c.streamEnd, _vested(c, a));
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
        return _settle(holdings[creator][holder], accruals[creator].acc).credited;
    }

    // ---------------------------------------------------------------- internals

    /// @dev Folds what vested since the last fold into the accumulator at the current supply (> 0), then
    ///      starts the market fees accrued in OpinionMarket since the last fold vesting. Updates `c` and `a`
    ///      in memory; the caller writes both. Returns the amount reserved for holders (0 when only dust
    ///      vested) and the market fees that joined the pool.
    function _fold(address creator, Creator memory c, Accrual memory a)
        private
        view
        returns (uint256 amount, uint256 arrived)
    {
        uint256 delta = (_vested(c, a) * ACC_STORED) / c.supply;
        // Rounds up: holders' credits are floor(shares * accumulated delta / 1e12) over any number of folds,
        // which can exceed the sum of per-fold floors by one unit each time. delta * supply <= vested * 1e12,
        // so the rounded-up amount never exceeds what vested.
        amount = Math.ceilDiv(delta * c.supply, ACC_STORED);
        if (amount > 0) {
            a.acc = (a.acc + delta).toUint112();
            c.pool -= uint96(amount); // amount <= vested <= pool
        }
        a.lastFold = uint32(block.timestamp);
        if (address(marketFeeSource) != address(0)) {
            uint256 accrued = marketFeeSource.creatorFeesAccrued(creator);
            arrived = accrued - a.marketFolded;
            if (arrived > 0) {
                a.marketFolded = accrued.toUint112();
                _stream(c, arrived);
            }
        }
    }

    /// @dev The part of `c.pool` that vested between the last fold and now: linear until `c.streamEnd`.
    function _vested(Creator memory c, Accrual memory a) private view returns (uint256) {
        uint256 last = a.lastFold;
        uint256 end = c.streamEnd;
        if (last >= end) return 0; // fully vested: what is left is dust
        uint256 upTo = block.timestamp < end ? block.timestamp : end;
        return (uint256(c.pool) * (upTo - last)) / (end - last);
    }

    /// @dev `amount` joins the pool (called right after a fold: `c.pool` is what has not vested yet). The pool
    ///      then vests until the amount-weighted mean of the two ends: what was vesting keeps its end (now, if
    ///      it had passed), `amount` gets DIVIDEND_STREAM from now. A fee therefore moves the end in proportion
    ///      to its size: dust cannot hold back a vesting pool (a restart to a full day could, pass after pass:
    ///      review s14b F2), and the vesting rate after a join is at most the rate before plus
    ///      amount / DIVIDEND_STREAM (Cauchy-Schwarz), as with a schedule per fee. Rounded up: never sooner.
    function _stream(Creator memory c, uint256 amount) private view {
        if (amount == 0) return;
        uint256 left = c.pool;
        uint256 end = c.streamEnd > block.timestamp ? c.streamEnd : block.timestamp;
        uint256 total = left + amount;
        c.pool = total.toUint96();
        // left < 2**96 and end < 2**32: no product reaches 2**129
        c.streamEnd = Math.ceilDiv(left * end + amount * (block.timestamp + DIVIDEND_STREAM), total).toUint32();
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

    /// @dev The holding with dividends earned since its last settlement credited at stored accumulator `acc`.
    function _settle(Holding memory h, uint256 acc) private pure returns (Holding memory) {
        if (h.accPaid != acc) {
            h.credited = (h.credited + (h.shares * (acc - h.accPaid)) / ACC_STORED).toUint80();
            h.accPaid = uint112(acc);
        }
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
        emit SharesTraded(
            creator,
            msg.sender,
            isBuy,
            amount,
            price,
            pFee,
            cFee,
            dFee,
            c.supply,
            h.shares,
            h.credited,
            h.lockedUntil,
            c.pool,
            _shown(acc),
            distributed
        );
    }

    function _fees(uint256 price) private view returns (uint256 p, uint256 c, uint256 d) {
        p = (price * protocolFeeBps) / BPS;
        c = (price * creatorFeeBps) / BPS;
        d = (price * dividendFeeBps) / BPS;
    }
}
