// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

interface ICreatorFeeSource {
    function collectCreatorFees(address creator) external returns (uint256);
}

/// @title CreatorShares
/// @notice Per-creator shares on a friend.tech-style bonding curve priced in USDC, with a dividend
///         pool per creator paid to holders pro rata.
/// @dev Pricing comes from one reserve function, R(s) = unit * (s-1) s (2s-1) / 6 = unit * sum_{i<s} i^2,
///      so buying n shares at supply s costs R(s+n) - R(s) and selling returns R(s) - R(s-n): the
///      curve reserve always equals R(supply). The creator buys the first share (price 0) and the last
///      share can never be sold. Dividends use accumulated-per-share accounting scaled by 1e18:
///      each distribution reserves ceil(delta * supply / 1e18) from the pool and every holder's credit
///      rounds down, so claims never exceed what was distributed, however many distributions pass
///      between a holder's settlements.
contract CreatorShares is AccessControl, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 public constant KEEPER_ROLE = keccak256("KEEPER_ROLE");
    uint256 public constant BPS = 10_000;
    uint256 public constant ACC_PRECISION = 1e18;
    uint256 public constant MAX_SUPPLY = type(uint32).max;

    error CreatorMustBuyFirstShare(address creator);
    error ZeroAmount();
    error DeadlineExpired(uint256 deadline);
    error SlippageExceeded(uint256 amount, uint256 bound);
    error InsufficientShares(uint256 requested, uint256 available);
    error CannotSellLastShare(address creator);
    error SharesLocked(address creator, address holder, uint256 lockedUntil);
    error NothingToDistribute(address creator);
    error NothingToClaim();
    error SupplyCapExceeded(uint256 supply);
    error InvalidFeeConfig();

    /// @dev One slot, read and written by every trade.
    struct Creator {
        uint32 supply;
        uint112 pool; // dividend pool (share-trade fees + collected market fees), not yet distributed
        uint112 creatorFees; // creator's own trading fees, claimable by the creator
    }

    /// @dev One slot per holder per creator; `accPaid` is the accumulator value already credited.
    struct Holding {
        uint32 shares;
        uint40 lockedUntil;
        uint128 credited; // dividends credited and not yet claimed
    }

    /// @param price curve price of the shares (R difference), excluding fees.
    /// @param traderClaimable the trader's claimable dividends after settlement at `accPerShare`.
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
        uint256 accPerShare
    );

    /// @param amount reserved for holders (rounded up; holders' credits round down, so what they can claim
    ///        never exceeds the sum of these amounts); `marketFees` of the pool came from OpinionMarket in this call.
    /// @param pool dust left undistributed (rounding), carried to the next distribution.
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

    uint256 public protocolFees;
    mapping(address => Creator) private creators;
    mapping(address => uint256) public accPerShare;
    mapping(address => mapping(address => Holding)) private holdings;
    mapping(address => mapping(address => uint256)) private accPaid;

    constructor(
        IERC20 usdc_,
        ICreatorFeeSource marketFeeSource_,
        uint256 curveUnit_,
        uint256 protocolFeeBps_,
        uint256 creatorFeeBps_,
        uint256 dividendFeeBps_,
        uint256 lockPeriod_,
        address admin
    ) {
        if (curveUnit_ == 0 || protocolFeeBps_ + creatorFeeBps_ + dividendFeeBps_ > 2_000) revert InvalidFeeConfig();
        usdc = usdc_;
        marketFeeSource = marketFeeSource_;
        curveUnit = curveUnit_;
        protocolFeeBps = protocolFeeBps_;
        creatorFeeBps = creatorFeeBps_;
        dividendFeeBps = dividendFeeBps_;
        lockPeriod = lockPeriod_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
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

        uint256 acc = accPerShare[creator];
        Holding memory h = _settle(creator, msg.sender, acc);
        h.shares += uint32(amount);
        h.lockedUntil = uint40(block.timestamp + lockPeriod);
        holdings[creator][msg.sender] = h;

        c.supply = uint32(newSupply);
        c.pool += uint112(dFee);
        c.creatorFees += uint112(cFee);
        creators[creator] = c;
        if (pFee > 0) protocolFees += pFee;

        usdc.safeTransferFrom(msg.sender, address(this), totalCost);
        emit SharesTraded(
            creator, msg.sender, true, amount, price, pFee, cFee, dFee, newSupply, h.shares, h.credited, h.lockedUntil, c.pool, acc
        );
    }

    /// @notice Sells `amount` shares of `creator` back to the curve.
    /// @param minProceeds slippage bound on the USDC received after fees.
    function sellShares(address creator, uint256 amount, uint256 minProceeds, uint256 deadline)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 proceeds)
    {
        if (block.timestamp > deadline) revert DeadlineExpired(deadline);
        if (amount == 0) revert ZeroAmount();
        Creator memory c = creators[creator];
        uint256 acc = accPerShare[creator];
        Holding memory h = _settle(creator, msg.sender, acc);
        if (amount > h.shares) revert InsufficientShares(amount, h.shares);
        if (amount >= c.supply) revert CannotSellLastShare(creator);
        if (block.timestamp < h.lockedUntil) revert SharesLocked(creator, msg.sender, h.lockedUntil);

        uint256 newSupply = c.supply - amount;
        uint256 price = reserveAt(c.supply) - reserveAt(newSupply);
        (uint256 pFee, uint256 cFee, uint256 dFee) = _fees(price);
        proceeds = price - pFee - cFee - dFee;
        if (proceeds < minProceeds) revert SlippageExceeded(proceeds, minProceeds);

        h.shares -= uint32(amount);
        holdings[creator][msg.sender] = h;
        c.supply = uint32(newSupply);
        c.pool += uint112(dFee);
        c.creatorFees += uint112(cFee);
        creators[creator] = c;
        if (pFee > 0) protocolFees += pFee;

        if (proceeds > 0) usdc.safeTransfer(msg.sender, proceeds);
        emit SharesTraded(
            creator, msg.sender, false, amount, price, pFee, cFee, dFee, newSupply, h.shares, h.credited, h.lockedUntil, c.pool, acc
        );
    }

    // ---------------------------------------------------------------- dividends

    /// @notice Collects the creator's market fees from OpinionMarket into the pool and credits the whole
    ///         pool to current holders pro rata. Keeper role; reverts when there is nothing to credit.
    function distributeDividends(address creator) external onlyRole(KEEPER_ROLE) nonReentrant returns (uint256 amount) {
        Creator memory c = creators[creator];
        if (c.supply == 0) revert NothingToDistribute(creator);
        uint256 marketFees = address(marketFeeSource) == address(0) ? 0 : marketFeeSource.collectCreatorFees(creator);
        uint256 pool = c.pool + marketFees;
        uint256 delta = (pool * ACC_PRECISION) / c.supply;
        // Rounds up: holders' credits are floor(shares * accumulated delta / 1e18) over any number of
        // distributions, which can exceed the sum of per-distribution floors by one unit each time.
        // delta * supply <= pool * 1e18, so the rounded-up amount never exceeds the pool.
        amount = Math.ceilDiv(delta * c.supply, ACC_PRECISION);
        if (amount == 0) revert NothingToDistribute(creator);
        uint256 acc = accPerShare[creator] + delta;
        accPerShare[creator] = acc;
        c.pool = uint112(pool - amount);
        creators[creator] = c;
        emit DividendsDistributed(creator, amount, marketFees, c.supply, acc, c.pool);
    }

    /// @notice Pays the caller's credited dividends from `creator`'s pool.
    function claimDividends(address creator) external nonReentrant returns (uint256 amount) {
        Holding memory h = _settle(creator, msg.sender, accPerShare[creator]);
        amount = h.credited;
        if (amount == 0) revert NothingToClaim();
        h.credited = 0;
        holdings[creator][msg.sender] = h;
        usdc.safeTransfer(msg.sender, amount);
        emit DividendsClaimed(creator, msg.sender, amount);
    }

    /// @notice Pays the creator their share-trading fees.
    function claimCreatorFees() external nonReentrant returns (uint256 amount) {
        Creator storage c = creators[msg.sender];
        amount = c.creatorFees;
        if (amount == 0) revert NothingToClaim();
        c.creatorFees = 0;
        usdc.safeTransfer(msg.sender, amount);
        emit CreatorFeesClaimed(msg.sender, amount);
    }

    function withdrawProtocolFees(address to) external onlyRole(DEFAULT_ADMIN_ROLE) returns (uint256 amount) {
        amount = protocolFees;
        protocolFees = 0;
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

    function supplyOf(address creator) external view returns (uint256) {
        return creators[creator].supply;
    }

    function sharesOf(address creator, address holder) external view returns (uint256) {
        return holdings[creator][holder].shares;
    }

    function lockedUntil(address creator, address holder) external view returns (uint256) {
        return holdings[creator][holder].lockedUntil;
    }

    /// @notice Dividend pool not yet distributed, including market fees still held by OpinionMarket.
    function pendingPool(address creator) external view returns (uint256 pool, uint256 marketFees) {
        pool = creators[creator].pool;
        if (address(marketFeeSource) != address(0)) {
            marketFees = OpinionMarketFees(address(marketFeeSource)).creatorFeesAccrued(creator);
        }
    }

    function creatorFeesOf(address creator) external view returns (uint256) {
        return creators[creator].creatorFees;
    }

    function claimableDividends(address creator, address holder) external view returns (uint256) {
        Holding memory h = holdings[creator][holder];
        return h.credited + (h.shares * (accPerShare[creator] - accPaid[creator][holder])) / ACC_PRECISION;
    }

    // ---------------------------------------------------------------- internals

    /// @dev Credits dividends earned since the holder's last settlement; writes the accumulator mark
    ///      only when it moved, so holders trading between distributions pay no extra SSTORE.
    function _settle(address creator, address holder, uint256 acc) private returns (Holding memory h) {
        h = holdings[creator][holder];
        uint256 paid = accPaid[creator][holder];
        if (paid != acc) {
            h.credited += uint128((h.shares * (acc - paid)) / ACC_PRECISION);
            accPaid[creator][holder] = acc;
        }
    }

    function _fees(uint256 price) private view returns (uint256 p, uint256 c, uint256 d) {
        p = (price * protocolFeeBps) / BPS;
        c = (price * creatorFeeBps) / BPS;
        d = (price * dividendFeeBps) / BPS;
    }
}

interface OpinionMarketFees {
    function creatorFeesAccrued(address creator) external view returns (uint256);
}
