// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControlDefaultAdminRules} from "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {ExpiringPause} from "./ExpiringPause.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @title OpinionMarket
/// @notice Binary YES/NO opinion markets collateralised in USDC, priced by a fixed-product market
///         maker (Gnosis FPMM): every unit of collateral mints one YES and one NO share, the pool
///         keeps `yesReserve * noReserve` from decreasing, and price_yes = noReserve / (yesReserve +
///         noReserve). Positions are internal balances (no ERC-1155) to keep trades cheap.
/// @dev Events are the indexer's whole input: each carries the post-state it changed.
///      Rounding always favours the pool, so the market stays solvent: the collateral held for a
///      market always equals the YES shares outstanding (pool + traders) = the NO shares outstanding.
contract OpinionMarket is AccessControlDefaultAdminRules, ExpiringPause, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    /// @notice Proposes outcomes (the keeper).
    bytes32 public constant RESOLVER_ROLE = keccak256("RESOLVER_ROLE");
    /// @notice Disputes a proposed outcome inside its challenge window and settles disputed markets.
    bytes32 public constant ARBITER_ROLE = keccak256("ARBITER_ROLE");

    uint8 public constant OUTCOME_NO = 0;
    uint8 public constant OUTCOME_YES = 1;
    uint8 public constant OUTCOME_INVALID = 2;

    /// @notice Market status: trading until endTime, then waiting for a proposal.
    uint8 public constant STATUS_OPEN = 0;
    /// @notice An outcome is proposed; final at `challengeEnds` unless an arbiter disputes it.
    uint8 public constant STATUS_PROPOSED = 1;
    /// @notice The proposal was disputed; an arbiter settles it (or resolveExpired once both the resolution window
    ///         and the arbitration deadline in `challengeEnds` have passed).
    uint8 public constant STATUS_DISPUTED = 2;
    /// @notice Final: claims and the liquidity withdrawal are open.
    uint8 public constant STATUS_RESOLVED = 3;

    uint256 public constant BPS = 10_000;
    uint256 public constant MIN_INITIAL_LIQUIDITY = 1e6; // 1 USDC
    uint256 public constant MAX_QUESTION_BYTES = 1_000;
    uint256 public constant MAX_CATEGORY_BYTES = 64;
    uint256 private constant MAX_RESERVE = type(uint112).max;
    /// @dev Upper bound of both windows (about 136 years): keeps `challengeEnds` inside its uint40.
    uint256 private constant MAX_WINDOW = type(uint32).max;

    error MarketNotFound(uint256 marketId);
    error MarketClosed(uint256 marketId, uint256 endTime);
    error MarketNotEnded(uint256 marketId, uint256 endTime);
    error MarketAlreadyResolved(uint256 marketId);
    error MarketNotResolved(uint256 marketId);
    error InvalidOutcome(uint8 outcome);
    error InvalidEndTime(uint256 endTime);
    error LiquidityTooLow(uint256 amount, uint256 minimum);
    error StringTooLong(uint256 length, uint256 maximum);
    error ZeroAmount();
    error DeadlineExpired(uint256 deadline);
    error SlippageExceeded(uint256 amount, uint256 bound);
    error InsufficientShares(uint256 requested, uint256 available);
    error AmountTooLarge(uint256 amount);
    error NotMarketCreator(uint256 marketId);
    error LiquidityAlreadyWithdrawn(uint256 marketId);
    error InvalidFeeConfig();
    error NotCreatorShares(address caller);
    error CreatorFeesExceeded(address creator, uint256 amount, uint256 accrued);
    error InvalidOdds(uint256 yesPriceBps);
    error ResolutionWindowOpen(uint256 marketId, uint256 expiresAt);
    error InvalidWindows(uint256 challengeWindow, uint256 resolutionWindow);
    /// @notice proposeOutcome on a market that already has a proposal (status 1 Proposed or 2 Disputed).
    error MarketNotOpen(uint256 marketId, uint8 status);
    /// @notice disputeOutcome / finalizeOutcome on a market with no pending proposal (status 0 Open or 2 Disputed).
    error OutcomeNotProposed(uint256 marketId, uint8 status);
    /// @notice arbitrate on a market that is not disputed (status 0 Open or 1 Proposed).
    error OutcomeNotDisputed(uint256 marketId, uint8 status);
    /// @notice disputeOutcome from `challengeEnds` on: the proposal can only be finalized now.
    error ChallengeWindowClosed(uint256 marketId, uint256 challengeEnds);
    /// @notice finalizeOutcome before `challengeEnds`: the proposal can still be disputed.
    error ChallengeWindowOpen(uint256 marketId, uint256 challengeEnds);
    /// @notice resolveExpired on a proposed market: finalizeOutcome it from `challengeEnds` on instead.
    error ProposalPending(uint256 marketId, uint256 challengeEnds);
    /// @notice grantRole of `role` to an `account` that holds `heldRole`: no account may be both resolver and
    ///         arbiter (it could propose, dispute its own proposal and arbitrate alone).
    error RoleConflict(bytes32 role, address account, bytes32 heldRole);

    /// @dev Two slots. Slot 0 is read and written by every trade; slot 1 (232 bits) is read by every trade.
    struct Market {
        uint112 yesReserve;
        uint112 noReserve;
        uint32 endTime;
        address creator;
        uint8 status; // STATUS_*
        uint8 outcome; // the final outcome, once status is STATUS_RESOLVED
        bool liquidityWithdrawn;
        uint8 proposedOutcome; // while status is STATUS_PROPOSED or STATUS_DISPUTED
        // Proposed: unix time the proposal becomes final. Disputed: the arbitration deadline (dispute time +
        // challengeWindow), before which resolveExpired waits for the arbiter. 0 before any proposal.
        uint40 challengeEnds;
    }

    /// @dev One slot per trader per market.
    struct Position {
        uint128 yes;
        uint128 no;
    }

    event MarketCreated(
        uint256 indexed marketId,
        address indexed creator,
        string question,
        string category,
        uint256 endTime,
        uint256 initialLiquidity,
        uint256 yesReserve,
        uint256 noReserve
    );

    /// @param isBuy true for a buy (collateral in, shares out), false for a sell.
    /// @param collateral for a buy the USDC paid including the fee; for a sell the USDC received after the fee.
    /// @param shares outcome shares bought or sold.
    /// @param fee whole trading fee in USDC; `creatorFee` of it accrues to the creator's dividend pool.
    event Trade(
        uint256 indexed marketId,
        address indexed trader,
        bool isBuy,
        uint8 outcome,
        uint256 collateral,
        uint256 shares,
        uint256 fee,
        uint256 creatorFee,
        uint256 yesReserve,
        uint256 noReserve,
        uint256 traderYes,
        uint256 traderNo
    );

    /// @notice A resolver proposed `outcome`; it becomes final from `challengeEnds` unless disputed.
    event OutcomeProposed(uint256 indexed marketId, uint8 outcome, address indexed proposer, uint256 challengeEnds);

    /// @notice An arbiter disputed the proposal inside its challenge window; only `arbitrate` (or
    ///         `resolveExpired` from max(endTime + resolutionWindow, this block's time + challengeWindow))
    ///         settles the market now.
    event OutcomeDisputed(uint256 indexed marketId, uint8 proposedOutcome, address indexed arbiter);

    /// @notice The market's final outcome; `resolver` is the caller of finalizeOutcome, arbitrate or resolveExpired.
    event MarketResolved(uint256 indexed marketId, uint8 outcome, address indexed resolver);

    event WinningsClaimed(
        uint256 indexed marketId, address indexed holder, uint256 payout, uint256 yesBurned, uint256 noBurned
    );

    /// @notice `amount` YES and `amount` NO of `holder` burned for `amount` USDC (a complete set is always
    ///         worth one unit); the holder's position after.
    event Merged(uint256 indexed marketId, address indexed holder, uint256 amount, uint256 traderYes, uint256 traderNo);

    event LiquidityWithdrawn(uint256 indexed marketId, address indexed creator, uint256 payout);

    /// @notice Market fees credited to `creator`'s dividend pool moved to the CreatorShares contract.
    event CreatorFeesCollected(address indexed creator, address indexed collector, uint256 amount);

    event ProtocolFeesWithdrawn(address indexed to, uint256 amount);

    /// @notice Emitted once, at deployment, so an indexer knows the fee schedule from logs alone.
    event FeesConfigured(address indexed usdc, uint256 feeBps, uint256 creatorFeeShareBps, uint256 lpFeeShareBps);

    IERC20 public immutable usdc;
    /// @notice Trading fee on every buy and sell, in basis points of the collateral.
    uint256 public immutable feeBps;
    /// @notice Part of the trading fee (in basis points of the fee) credited to the market creator's dividend pool.
    uint256 public immutable creatorFeeShareBps;
    /// @notice Part of the trading fee (in basis points of the fee) left in the pool as complete sets for its
    ///         liquidity provider (the market creator), paid with the pool at `withdrawLiquidity`.
    uint256 public immutable lpFeeShareBps;

    uint256 public marketCount;
    uint256 public protocolFees;
    mapping(uint256 => Market) private markets;
    mapping(uint256 => mapping(address => Position)) private positions;
    /// @dev Market fees owed to a creator's dividend pool, not yet collected by CreatorShares (`accrued`), and
    ///      what of them had accrued before the first fee of `day` (UTC), the day of the last fee: one slot.
    struct CreatorFees {
        uint112 accrued;
        uint112 atDayStart;
        uint32 day;
    }

    mapping(address => CreatorFees) private creatorFees;
    /// @notice The only destination of creators' market fees (their dividend pools), fixed at deployment.
    address public immutable creatorShares;
    /// @notice Seconds after a proposal during which an arbiter may dispute it; also the arbiter's time to rule
    ///         after a dispute before resolveExpired may take over.
    uint256 public immutable challengeWindow;
    /// @notice Seconds after endTime from which anyone may resolve an open market INVALID (a disputed one also
    ///         waits for its arbitration deadline).
    uint256 public immutable resolutionWindow;

    /// @param adminDelay seconds between scheduling a transfer of the default admin role and accepting it
    ///        (AccessControlDefaultAdminRules: one admin, transferred in two steps).
    /// @param challengeWindow_ seconds a proposed outcome can be disputed (> 0).
    /// @param resolutionWindow_ seconds after a market's end from which it can be resolved INVALID by anyone (> 0).
    constructor(
        IERC20 usdc_,
        uint256 feeBps_,
        uint256 creatorFeeShareBps_,
        uint256 lpFeeShareBps_,
        address creatorShares_,
        address admin,
        uint48 adminDelay,
        uint256 challengeWindow_,
        uint256 resolutionWindow_
    ) AccessControlDefaultAdminRules(adminDelay, admin) {
        if (feeBps_ > 1_000 || creatorFeeShareBps_ + lpFeeShareBps_ > BPS) revert InvalidFeeConfig();
        if (challengeWindow_ == 0 || resolutionWindow_ == 0 || challengeWindow_ > MAX_WINDOW || resolutionWindow_ > MAX_WINDOW) {
            revert InvalidWindows(challengeWindow_, resolutionWindow_);
        }
        challengeWindow = challengeWindow_;
        resolutionWindow = resolutionWindow_;
        usdc = usdc_;
        creatorShares = creatorShares_;
        feeBps = feeBps_;
        creatorFeeShareBps = creatorFeeShareBps_;
        lpFeeShareBps = lpFeeShareBps_;
        emit FeesConfigured(address(usdc_), feeBps_, creatorFeeShareBps_, lpFeeShareBps_);
    }

    // ---------------------------------------------------------------- trading

    /// @notice Opens a market funded by the caller at even odds: `initialLiquidity` USDC mints equal YES and
    ///         NO reserves (price 0.5). The creator owns the pool's shares and withdraws their payout after
    ///         resolution with `withdrawLiquidity`.
    function createMarket(string calldata question, string calldata category, uint256 endTime, uint256 initialLiquidity)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 marketId)
    {
        marketId = _create(question, category, endTime, initialLiquidity, BPS / 2);
    }

    /// @notice Opens a market at initial odds (Gnosis FPMM's distribution hint): `initialLiquidity` USDC
    ///         mints that many YES and NO; the pool keeps all of the less likely side and just enough of the
    ///         likelier one for price_yes = yesPriceBps / 10^4 (rounded in the pool's favour), and the rest
    ///         of the likelier side goes to the creator's position. An informed creator no longer hands the
    ///         first trader the difference between 50 % and the real odds.
    /// @param yesPriceBps initial YES price in basis points, 1 to 9,999.
    /// @param deadline the creation reverts after it: a creation left waiting in the mempool would open at
    ///        odds that went stale meanwhile, and the first trader would take the gap from the deposit
    ///        (audit h1 F3: 1,000 USDC opened at 90 % YES after the event turned 50/50 gave a 200 USDC NO
    ///        buyer +217 USDC).
    function createMarketWithOdds(
        string calldata question,
        string calldata category,
        uint256 endTime,
        uint256 initialLiquidity,
        uint256 yesPriceBps,
        uint256 deadline
    ) external whenNotPaused nonReentrant returns (uint256 marketId) {
        if (block.timestamp > deadline) revert DeadlineExpired(deadline);
        if (yesPriceBps == 0 || yesPriceBps >= BPS) revert InvalidOdds(yesPriceBps);
        marketId = _create(question, category, endTime, initialLiquidity, yesPriceBps);
    }

    /// @notice Buys `outcome` shares with exactly `collateralIn` USDC (fee included).
    /// @param minSharesOut slippage bound: reverts if fewer shares would come out.
    function buy(uint256 marketId, uint8 outcome, uint256 collateralIn, uint256 minSharesOut, uint256 deadline)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 sharesOut)
    {
        if (block.timestamp > deadline) revert DeadlineExpired(deadline);
        if (outcome > OUTCOME_YES) revert InvalidOutcome(outcome);
        if (collateralIn == 0) revert ZeroAmount();
        Market storage m = _openMarket(marketId);

        uint256 fee = (collateralIn * feeBps) / BPS;
        uint256 net = collateralIn - fee;
        uint256 lpFee = (fee * lpFeeShareBps) / BPS;
        uint256 yesR = m.yesReserve;
        uint256 noR = m.noReserve;
        if (yesR + noR + 2 * (net + lpFee) > MAX_RESERVE) revert AmountTooLarge(collateralIn);
        (yesR, noR, sharesOut) = buyOutcome(yesR, noR, outcome, net);
        if (sharesOut < minSharesOut) revert SlippageExceeded(sharesOut, minSharesOut);
        yesR += lpFee; // the LP's part of the fee stays in the pool as complete sets
        noR += lpFee;

        m.yesReserve = yesR.toUint112();
        m.noReserve = noR.toUint112();
        Position storage p = positions[marketId][msg.sender];
        uint256 traderYes = p.yes;
        uint256 traderNo = p.no;
        if (outcome == OUTCOME_YES) traderYes += sharesOut;
        else traderNo += sharesOut;
        p.yes = traderYes.toUint128();
        p.no = traderNo.toUint128();
        uint256 creatorFee = _accrueFee(m.creator, fee, lpFee);

        usdc.safeTransferFrom(msg.sender, address(this), collateralIn);
        emit Trade(
            marketId, msg.sender, true, outcome, collateralIn, sharesOut, fee, creatorFee, yesR, noR, traderYes, traderNo
        );
    }

    /// @notice Sells exactly `sharesIn` `outcome` shares back to the pool. Works while paused: exits stay open.
    /// @param minCollateralOut slippage bound on the USDC received after the fee.
    function sell(uint256 marketId, uint8 outcome, uint256 sharesIn, uint256 minCollateralOut, uint256 deadline)
        external
        nonReentrant
        returns (uint256 collateralOut)
    {
        if (block.timestamp > deadline) revert DeadlineExpired(deadline);
        if (outcome > OUTCOME_YES) revert InvalidOutcome(outcome);
        if (sharesIn == 0) revert ZeroAmount();
        Market storage m = _openMarket(marketId);

        Position storage p = positions[marketId][msg.sender];
        uint256 traderYes = p.yes;
        uint256 traderNo = p.no;
        uint256 held = outcome == OUTCOME_YES ? traderYes : traderNo;
        if (sharesIn > held) revert InsufficientShares(sharesIn, held);

        (uint256 yesR, uint256 noR, uint256 gross) = sellOutcome(m.yesReserve, m.noReserve, outcome, sharesIn);
        uint256 fee = (gross * feeBps + BPS - 1) / BPS; // fee rounds up: the trader never receives a fraction too much
        collateralOut = gross - fee;
        if (collateralOut < minCollateralOut) revert SlippageExceeded(collateralOut, minCollateralOut);
        uint256 lpFee = (fee * lpFeeShareBps) / BPS;
        yesR += lpFee; // the LP's part of the fee stays in the pool as complete sets
        noR += lpFee;

        m.yesReserve = yesR.toUint112();
        m.noReserve = noR.toUint112();
        if (outcome == OUTCOME_YES) traderYes -= sharesIn;
        else traderNo -= sharesIn;
        p.yes = traderYes.toUint128();
        p.no = traderNo.toUint128();
        uint256 creatorFee = _accrueFee(m.creator, fee, lpFee);

        if (collateralOut > 0) usdc.safeTransfer(msg.sender, collateralOut);
        emit Trade(
            marketId, msg.sender, false, outcome, collateralOut, sharesIn, fee, creatorFee, yesR, noR, traderYes, traderNo
        );
    }

    /// @notice Burns `amount` YES and `amount` NO of the caller for `amount` USDC, before resolution (also
    ///         after the end time, and while paused): an exit that needs no counterparty and pays no fee.
    function merge(uint256 marketId, uint256 amount) external nonReentrant returns (uint256) {
        if (amount == 0) revert ZeroAmount();
        Market storage m = _market(marketId);
        if (m.status == STATUS_RESOLVED) revert MarketAlreadyResolved(marketId);
        Position storage p = positions[marketId][msg.sender];
        uint256 yes = p.yes;
        uint256 no = p.no;
        uint256 pairs = yes < no ? yes : no;
        if (amount > pairs) revert InsufficientShares(amount, pairs);
        yes -= amount;
        no -= amount;
        p.yes = uint128(yes); // smaller than the uint128 read
        p.no = uint128(no);
        usdc.safeTransfer(msg.sender, amount);
        emit Merged(marketId, msg.sender, amount, yes, no);
        return amount;
    }

    // ---------------------------------------------------------------- resolution and claims

    /// @notice Proposes the outcome of an ended market. It becomes final at block.timestamp + challengeWindow
    ///         (anyone calls finalizeOutcome then) unless an arbiter disputes it first.
    function proposeOutcome(uint256 marketId, uint8 outcome) external onlyRole(RESOLVER_ROLE) {
        if (outcome > OUTCOME_INVALID) revert InvalidOutcome(outcome);
        Market storage m = _market(marketId);
        uint8 status = m.status;
        if (status == STATUS_RESOLVED) revert MarketAlreadyResolved(marketId);
        if (status != STATUS_OPEN) revert MarketNotOpen(marketId, status);
        if (block.timestamp < m.endTime) revert MarketNotEnded(marketId, m.endTime);
        uint256 ends = block.timestamp + challengeWindow;
        m.status = STATUS_PROPOSED;
        m.proposedOutcome = outcome;
        m.challengeEnds = ends.toUint40();
        emit OutcomeProposed(marketId, outcome, msg.sender, ends);
    }

    /// @notice Disputes a proposed outcome before its challenge window ends; the market then waits for arbitrate.
    ///         `challengeEnds` becomes the arbitration deadline, now + challengeWindow: resolveExpired cannot
    ///         void the dispute before it, even when the dispute comes after endTime + resolutionWindow.
    function disputeOutcome(uint256 marketId) external onlyRole(ARBITER_ROLE) {
        Market storage m = _market(marketId);
        uint8 status = m.status;
        if (status == STATUS_RESOLVED) revert MarketAlreadyResolved(marketId);
        if (status != STATUS_PROPOSED) revert OutcomeNotProposed(marketId, status);
        if (block.timestamp >= m.challengeEnds) revert ChallengeWindowClosed(marketId, m.challengeEnds);
        m.status = STATUS_DISPUTED;
        m.challengeEnds = (block.timestamp + challengeWindow).toUint40();
        emit OutcomeDisputed(marketId, m.proposedOutcome, msg.sender);
    }

    /// @notice Settles a disputed market with the arbiter's `outcome` (final).
    function arbitrate(uint256 marketId, uint8 outcome) external onlyRole(ARBITER_ROLE) {
        if (outcome > OUTCOME_INVALID) revert InvalidOutcome(outcome);
        Market storage m = _market(marketId);
        uint8 status = m.status;
        if (status == STATUS_RESOLVED) revert MarketAlreadyResolved(marketId);
        if (status != STATUS_DISPUTED) revert OutcomeNotDisputed(marketId, status);
        m.status = STATUS_RESOLVED;
        m.outcome = outcome;
        emit MarketResolved(marketId, outcome, msg.sender);
    }

    /// @notice Makes an undisputed proposal final once its challenge window has ended. Anyone may call.
    function finalizeOutcome(uint256 marketId) external {
        Market storage m = _market(marketId);
        uint8 status = m.status;
        if (status == STATUS_RESOLVED) revert MarketAlreadyResolved(marketId);
        if (status != STATUS_PROPOSED) revert OutcomeNotProposed(marketId, status);
        if (block.timestamp < m.challengeEnds) revert ChallengeWindowOpen(marketId, m.challengeEnds);
        uint8 outcome = m.proposedOutcome;
        m.status = STATUS_RESOLVED;
        m.outcome = outcome;
        emit MarketResolved(marketId, outcome, msg.sender);
    }

    /// @notice The way out of a market nobody settles: from endTime + resolutionWindow on, anyone may resolve an
    ///         open market INVALID (each side is paid half a unit per share; the creator withdraws the pool's
    ///         half); a disputed one from max(endTime + resolutionWindow, its arbitration deadline
    ///         `challengeEnds`), so the arbiter always has challengeWindow to rule after a dispute. A proposed
    ///         market is finalized instead (ProposalPending).
    function resolveExpired(uint256 marketId) external {
        Market storage m = _market(marketId);
        uint8 status = m.status;
        if (status == STATUS_RESOLVED) revert MarketAlreadyResolved(marketId);
        if (status == STATUS_PROPOSED) revert ProposalPending(marketId, m.challengeEnds);
        uint256 expiresAt = uint256(m.endTime) + resolutionWindow;
        if (status == STATUS_DISPUTED) expiresAt = Math.max(expiresAt, m.challengeEnds);
        if (block.timestamp < expiresAt) revert ResolutionWindowOpen(marketId, expiresAt);
        m.status = STATUS_RESOLVED;
        m.outcome = OUTCOME_INVALID;
        emit MarketResolved(marketId, OUTCOME_INVALID, msg.sender);
    }

    /// @notice Pays the caller's winning shares of a resolved market. Idempotent: a second call pays 0
    ///         and emits nothing. Works while paused.
    function claimWinnings(uint256 marketId) external nonReentrant returns (uint256 payout) {
        Market storage m = _market(marketId);
        if (m.status != STATUS_RESOLVED) revert MarketNotResolved(marketId);
        Position storage p = positions[marketId][msg.sender];
        uint256 yes = p.yes;
        uint256 no = p.no;
        if (yes == 0 && no == 0) return 0;
        payout = payoutFor(m.outcome, yes, no);
        delete positions[marketId][msg.sender];
        if (payout > 0) usdc.safeTransfer(msg.sender, payout);
        emit WinningsClaimed(marketId, msg.sender, payout, yes, no);
    }

    /// @notice Pays the market creator the pool's own shares after resolution. Works while paused.
    function withdrawLiquidity(uint256 marketId) external nonReentrant returns (uint256 payout) {
        Market storage m = _market(marketId);
        if (msg.sender != m.creator) revert NotMarketCreator(marketId);
        if (m.status != STATUS_RESOLVED) revert MarketNotResolved(marketId);
        if (m.liquidityWithdrawn) revert LiquidityAlreadyWithdrawn(marketId);
        m.liquidityWithdrawn = true;
        payout = payoutFor(m.outcome, m.yesReserve, m.noReserve);
        if (payout > 0) usdc.safeTransfer(msg.sender, payout);
        emit LiquidityWithdrawn(marketId, msg.sender, payout);
    }

    /// @notice Market fees owed to `creator`'s dividend pool, not yet collected by CreatorShares.
    function creatorFeesAccrued(address creator) external view returns (uint256) {
        return creatorFees[creator].accrued;
    }

    /// @notice `creatorFeesAccrued`, the part of it that had accrued before the first fee of `day`, and `day`: the
    ///         UTC day of the creator's last market fee. CreatorShares splits what waits by when it arrived.
    function creatorFeesByDay(address creator) external view returns (uint256 accrued, uint256 atDayStart, uint256 day) {
        CreatorFees memory f = creatorFees[creator];
        return (f.accrued, f.atDayStart, f.day);
    }

    /// @notice Moves `amount` of `creator`'s accrued market fees to the CreatorShares contract fixed at
    ///         deployment (their dividend pool). Only that contract may call: it asks for exactly the fees that
    ///         already joined its pool, so fees that arrive later join at its next fold, never in between.
    function collectCreatorFees(address creator, uint256 amount) external returns (uint256) {
        if (msg.sender != creatorShares) revert NotCreatorShares(msg.sender);
        CreatorFees memory f = creatorFees[creator];
        if (amount > f.accrued) revert CreatorFeesExceeded(creator, amount, f.accrued);
        if (amount == 0) return 0;
        f.accrued -= uint112(amount);
        f.atDayStart = f.atDayStart > amount ? f.atDayStart - uint112(amount) : 0;
        creatorFees[creator] = f;
        usdc.safeTransfer(creatorShares, amount);
        emit CreatorFeesCollected(creator, creatorShares, amount);
        return amount;
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

    // ---------------------------------------------------------------- views (for reconciliation and wallets)

    function getMarket(uint256 marketId)
        external
        view
        returns (
            address creator,
            uint256 endTime,
            uint256 yesReserve,
            uint256 noReserve,
            uint8 status,
            uint8 outcome,
            bool liquidityWithdrawn,
            uint8 proposedOutcome,
            uint256 challengeEnds
        )
    {
        Market storage m = _market(marketId);
        return (
            m.creator,
            m.endTime,
            m.yesReserve,
            m.noReserve,
            m.status,
            m.outcome,
            m.liquidityWithdrawn,
            m.proposedOutcome,
            m.challengeEnds
        );
    }

    function positionOf(uint256 marketId, address holder) external view returns (uint256 yes, uint256 no) {
        Position storage p = positions[marketId][holder];
        return (p.yes, p.no);
    }

    /// @notice Prices scaled by 1e18; yes + no = 1e18 up to one unit of rounding.
    function prices(uint256 marketId) external view returns (uint256 yesPrice, uint256 noPrice) {
        Market storage m = _market(marketId);
        uint256 total = uint256(m.yesReserve) + m.noReserve;
        yesPrice = (uint256(m.noReserve) * 1e18) / total;
        noPrice = (uint256(m.yesReserve) * 1e18) / total;
    }

    function quoteBuy(uint256 marketId, uint8 outcome, uint256 collateralIn) external view returns (uint256 sharesOut) {
        if (outcome > OUTCOME_YES) revert InvalidOutcome(outcome);
        Market storage m = _market(marketId);
        uint256 net = collateralIn - (collateralIn * feeBps) / BPS;
        (,, sharesOut) = buyOutcome(m.yesReserve, m.noReserve, outcome, net);
    }

    function quoteSell(uint256 marketId, uint8 outcome, uint256 sharesIn) external view returns (uint256 collateralOut) {
        if (outcome > OUTCOME_YES) revert InvalidOutcome(outcome);
        Market storage m = _market(marketId);
        (,, uint256 gross) = sellOutcome(m.yesReserve, m.noReserve, outcome, sharesIn);
        collateralOut = gross - (gross * feeBps + BPS - 1) / BPS;
    }

    // ---------------------------------------------------------------- pure AMM math

    /// @notice FPMM buy: `net` collateral mints `net` of each outcome into the pool, then the pool pays
    ///         out bought-outcome shares down to ceil(k / other reserve), so k never decreases.
    function buyOutcome(uint256 yesR, uint256 noR, uint8 outcome, uint256 net)
        public
        pure
        returns (uint256 newYes, uint256 newNo, uint256 sharesOut)
    {
        uint256 k = yesR * noR;
        if (outcome == OUTCOME_YES) {
            newNo = noR + net;
            newYes = Math.ceilDiv(k, newNo);
            sharesOut = yesR + net - newYes;
        } else {
            newYes = yesR + net;
            newNo = Math.ceilDiv(k, newYes);
            sharesOut = noR + net - newNo;
        }
    }

    /// @notice FPMM sell of exactly `sharesIn`: the shares join the pool, then `gross` complete sets are
    ///         burned for collateral, the largest `gross` with (Y + s - r)(N - r) >= Y N:
    ///         r = (B - sqrt(B^2 - 4 s O)) / 2 with B = Y + N + s and O the other reserve. sqrt rounds
    ///         up and the division down, so r never exceeds the exact root and k never decreases.
    function sellOutcome(uint256 yesR, uint256 noR, uint8 outcome, uint256 sharesIn)
        public
        pure
        returns (uint256 newYes, uint256 newNo, uint256 gross)
    {
        uint256 other = outcome == OUTCOME_YES ? noR : yesR;
        uint256 b = yesR + noR + sharesIn;
        uint256 root = Math.sqrt(b * b - 4 * sharesIn * other, Math.Rounding.Ceil);
        gross = (b - root) / 2;
        if (outcome == OUTCOME_YES) {
            newYes = yesR + sharesIn - gross;
            newNo = noR - gross;
        } else {
            newYes = yesR - gross;
            newNo = noR + sharesIn - gross;
        }
    }

    /// @notice Collateral paid for a position at resolution; INVALID pays half a unit per share, rounded down.
    function payoutFor(uint8 outcome, uint256 yes, uint256 no) public pure returns (uint256) {
        if (outcome == OUTCOME_YES) return yes;
        if (outcome == OUTCOME_NO) return no;
        return (yes + no) / 2;
    }

    // ---------------------------------------------------------------- internals

    /// @dev Every grant (grantRole, and the constructor's admin grant) comes here: no account may hold both
    ///      RESOLVER_ROLE and ARBITER_ROLE, so a single resolver or arbiter key cannot propose, dispute its own
    ///      proposal and arbitrate. It does not stop the admin from granting the two roles to two accounts it
    ///      controls (docs/contracts.md, Roles).
    function _grantRole(bytes32 role, address account) internal override returns (bool) {
        if (role == ARBITER_ROLE && hasRole(RESOLVER_ROLE, account)) revert RoleConflict(role, account, RESOLVER_ROLE);
        if (role == RESOLVER_ROLE && hasRole(ARBITER_ROLE, account)) revert RoleConflict(role, account, ARBITER_ROLE);
        return super._grantRole(role, account);
    }

    function _create(
        string calldata question,
        string calldata category,
        uint256 endTime,
        uint256 initialLiquidity,
        uint256 yesPriceBps
    ) private returns (uint256 marketId) {
        if (bytes(question).length > MAX_QUESTION_BYTES) revert StringTooLong(bytes(question).length, MAX_QUESTION_BYTES);
        if (bytes(category).length > MAX_CATEGORY_BYTES) revert StringTooLong(bytes(category).length, MAX_CATEGORY_BYTES);
        if (endTime <= block.timestamp || endTime > type(uint32).max) revert InvalidEndTime(endTime);
        if (initialLiquidity < MIN_INITIAL_LIQUIDITY) revert LiquidityTooLow(initialLiquidity, MIN_INITIAL_LIQUIDITY);
        if (initialLiquidity > MAX_RESERVE / 4) revert AmountTooLarge(initialLiquidity);

        // price_yes = no / (yes + no): the less likely side stays whole, the likelier one is cut to the ratio
        // (rounded up: the pool never holds less than the odds need, the creator never gets a unit too many).
        uint256 yesR = initialLiquidity;
        uint256 noR = initialLiquidity;
        if (yesPriceBps > BPS / 2) yesR = Math.ceilDiv(initialLiquidity * (BPS - yesPriceBps), yesPriceBps);
        else if (yesPriceBps < BPS / 2) noR = Math.ceilDiv(initialLiquidity * yesPriceBps, BPS - yesPriceBps);

        marketId = ++marketCount;
        markets[marketId] = Market({
            yesReserve: yesR.toUint112(),
            noReserve: noR.toUint112(),
            endTime: endTime.toUint32(),
            creator: msg.sender,
            status: STATUS_OPEN,
            outcome: 0,
            liquidityWithdrawn: false,
            proposedOutcome: 0,
            challengeEnds: 0
        });
        if (yesR != noR) {
            // the creator's position: the outcome shares the pool does not keep
            positions[marketId][msg.sender] =
                Position({yes: (initialLiquidity - yesR).toUint128(), no: (initialLiquidity - noR).toUint128()});
        }
        usdc.safeTransferFrom(msg.sender, address(this), initialLiquidity);
        emit MarketCreated(marketId, msg.sender, question, category, endTime, initialLiquidity, yesR, noR);
    }

    function _market(uint256 marketId) private view returns (Market storage m) {
        m = markets[marketId];
        if (m.creator == address(0)) revert MarketNotFound(marketId);
    }

    function _openMarket(uint256 marketId) private view returns (Market storage m) {
        m = _market(marketId);
        if (m.status == STATUS_RESOLVED) revert MarketAlreadyResolved(marketId);
        if (block.timestamp >= m.endTime) revert MarketClosed(marketId, m.endTime);
    }

    function _accrueFee(address creator, uint256 fee, uint256 lpFee) private returns (uint256 creatorFee) {
        if (fee == 0) return 0;
        creatorFee = (fee * creatorFeeShareBps) / BPS;
        if (creatorFee > 0) {
            CreatorFees memory f = creatorFees[creator];
            uint256 today = block.timestamp / 1 days;
            if (f.day != today) (f.atDayStart, f.day) = (f.accrued, uint32(today)); // < 2**32 days
            f.accrued = (f.accrued + creatorFee).toUint112();
            creatorFees[creator] = f;
        }
        protocolFees += fee - creatorFee - lpFee;
    }
}
