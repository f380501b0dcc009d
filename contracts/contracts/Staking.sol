// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IStakingView} from "./IStakingView.sol";

/// @title Staking for every OpenLedger role
/// @notice A stake is a position keyed by (account, role, subject). The subject says what the stake backs:
///         the datanet id (as bytes32) for contributors, the model id for model publishers, and bytes32(0)
///         for validators. Unbonded stake stays slashable until it is withdrawn, so leaving does not let an
///         offender escape a pending slashing proposal.
///
///         Two ways to slash. `slash`/`slashWithReporter` (SLASHER_ROLE) act at once: in production nobody holds
///         that role (governance may grant it through the timelock); the local dev profile gives it to the
///         operator key for speed. `proposeSlash` (SLASH_PROPOSER_ROLE, the operator's key in production) is
///         the bounded path: at most `maxSlashBps` of the position per proposal, executable by anyone only after
///         `slashDisputeWindow` (never shorter than `minSlashDisputeWindow`, fixed at deployment), during which
///         the guardian or governance can veto it, and while it is pending the position cannot be withdrawn.
///         The dispute window is always shorter than the unbonding period (both setters check it), so stake that
///         starts unbonding when an offence is found is still there when its slash can execute.
contract Staking is IStakingView, AccessControlDefaultAdminRules, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");
    bytes32 public constant SLASH_PROPOSER_ROLE = keccak256("SLASH_PROPOSER_ROLE");
    /// @notice Vetoes pending slash proposals (and nothing else here).
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    uint256 public constant BPS = 10_000;
    /// @notice Hard cap on the reporter's share of a slash, so a colluding reporter can never take most of it.
    uint256 public constant MAX_REPORTER_CUT_BPS = 5_000;
    uint256 public constant MAX_UNBONDING_PERIOD = 365 days;
    uint256 public constant MAX_SLASH_DISPUTE_WINDOW = 30 days;
    /// @notice After its dispute window a proposal can be executed for this long; then it lapses.
    uint256 public constant SLASH_EXECUTION_PERIOD = 7 days;

    enum SlashStatus {
        None,
        Pending,
        Executed,
        Vetoed,
        Lapsed
    }

    struct SlashProposal {
        address account;
        StakeRole role;
        SlashStatus status;
        uint40 executableAt;
        bytes32 subject;
        uint128 amount;
        address reporter;
        bytes32 evidenceHash;
    }

    struct Position {
        uint128 active;
        uint128 unbonding;
        /// @dev When `unbonding` can be withdrawn. A new unbond restarts the timer for the whole unbonding amount.
        uint64 unbondingEnd;
    }

    IERC20 public immutable token;
    address public treasury;
    uint64 public unbondingPeriod;
    uint16 public reporterCutBps;
    /// @notice Sum over all positions of active + unbonding stake (what this contract owes stakers).
    uint256 public totalStaked;

    mapping(StakeRole role => uint256 amount) public minStake;
    mapping(bytes32 key => Position position) private _positions;

    /// @notice Lower bound of `slashDisputeWindow`, fixed at deployment.
    uint64 public immutable minSlashDisputeWindow;
    uint64 public slashDisputeWindow;
    /// @notice Most of a position (active + unbonding, at proposal time) one slash proposal may take.
    uint16 public maxSlashBps;
    uint256 public slashProposalCount;
    mapping(uint256 id => SlashProposal proposal) private _slashProposals;
    /// @notice Pending slash proposals per position: a position with one cannot be withdrawn.
    mapping(bytes32 key => uint256 count) public pendingSlashes;

    event Staked(
        address indexed account,
        StakeRole indexed role,
        bytes32 indexed subject,
        address funder,
        uint256 amount,
        uint256 newActive
    );
    event UnbondingStarted(
        address indexed account,
        StakeRole indexed role,
        bytes32 indexed subject,
        uint256 amount,
        uint256 totalUnbonding,
        uint64 unbondingEnd
    );
    event Withdrawn(address indexed account, StakeRole indexed role, bytes32 indexed subject, uint256 amount);
    event Slashed(
        address indexed account,
        StakeRole indexed role,
        bytes32 indexed subject,
        uint256 amount,
        uint256 fromUnbonding,
        address reporter,
        uint256 reporterCut,
        bytes32 evidenceHash
    );
    event MinStakeSet(StakeRole indexed role, uint256 amount);
    event UnbondingPeriodSet(uint64 period);
    event TreasurySet(address treasury);
    event ReporterCutSet(uint16 bps);
    event SlashProposed(
        uint256 indexed id,
        address indexed account,
        StakeRole indexed role,
        bytes32 subject,
        uint256 amount,
        address reporter,
        bytes32 evidenceHash,
        uint40 executableAt
    );
    event SlashProposalExecuted(uint256 indexed id, uint256 slashed);
    event SlashProposalVetoed(uint256 indexed id, address indexed by);
    event SlashProposalLapsed(uint256 indexed id);
    event SlashDisputeWindowSet(uint64 window);
    event MaxSlashBpsSet(uint16 bps);

    error ZeroAmount();
    error ZeroAddress();
    error BelowMinimumStake(uint256 resulting, uint256 minimum);
    error InsufficientStake(uint256 available, uint256 requested);
    error NothingToWithdraw();
    error UnbondingNotFinished(uint64 unbondingEnd);
    error NothingToSlash();
    error ReporterCutTooHigh(uint256 bps);
    error UnbondingPeriodTooLong(uint256 period);
    error SlashDisputeWindowOutOfRange(uint256 window, uint256 min, uint256 max);
    error MaxSlashBpsTooHigh(uint256 bps);
    error SlashExceedsBound(uint256 amount, uint256 bound);
    error SlashNotPending(uint256 id);
    error SlashInDisputeWindow(uint256 id, uint40 executableAt);
    error SlashExecutionPeriodOver(uint256 id);
    error SlashStillExecutable(uint256 id);
    error SlashPending(bytes32 positionKey);
    error DisputeWindowNotShorterThanUnbonding(uint256 disputeWindow, uint256 unbondingPeriod);

    constructor(
        IERC20 token_,
        address admin,
        uint48 adminDelay,
        address treasury_,
        uint64 unbondingPeriod_,
        uint16 reporterCutBps_,
        uint64 minSlashDisputeWindow_
    ) AccessControlDefaultAdminRules(adminDelay, admin) {
        if (address(token_) == address(0)) revert ZeroAddress();
        if (minSlashDisputeWindow_ > MAX_SLASH_DISPUTE_WINDOW) {
            revert SlashDisputeWindowOutOfRange(minSlashDisputeWindow_, 0, MAX_SLASH_DISPUTE_WINDOW);
        }
        token = token_;
        minSlashDisputeWindow = minSlashDisputeWindow_;
        _setTreasury(treasury_);
        _setUnbondingPeriod(unbondingPeriod_);
        _setReporterCut(reporterCutBps_);
        _setSlashDisputeWindow(minSlashDisputeWindow_);
        _setMaxSlashBps(uint16(BPS / 2));
    }

    // ---------------------------------------------------------------- staking

    /// @notice Stake `amount` for yourself. The resulting active stake must reach the role's minimum.
    function stake(StakeRole role, bytes32 subject, uint256 amount) external nonReentrant {
        _stake(msg.sender, role, subject, amount);
    }

    /// @notice Stake on behalf of `account` (tokens come from the caller; the position belongs to `account`).
    function stakeFor(address account, StakeRole role, bytes32 subject, uint256 amount) external nonReentrant {
        if (account == address(0)) revert ZeroAddress();
        _stake(account, role, subject, amount);
    }

    /// @notice Move `amount` of active stake into unbonding. What remains active must be zero or reach the minimum.
    function unbond(StakeRole role, bytes32 subject, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Position storage p = _positions[positionKey(msg.sender, role, subject)];
        uint256 active = p.active;
        if (amount > active) revert InsufficientStake(active, amount);
        uint256 remaining = active - amount;
        uint256 minimum = minStake[role];
        if (remaining != 0 && remaining < minimum) revert BelowMinimumStake(remaining, minimum);
        uint256 totalUnbonding = uint256(p.unbonding) + amount;
        uint64 end = uint64(block.timestamp) + unbondingPeriod;
        p.active = uint128(remaining);
        p.unbonding = SafeCast.toUint128(totalUnbonding);
        p.unbondingEnd = end;
        emit UnbondingStarted(msg.sender, role, subject, amount, totalUnbonding, end);
    }

    /// @notice Withdraw all unbonding stake once its unbonding period has passed and no slash proposal against
    ///         the position is pending.
    function withdraw(StakeRole role, bytes32 subject) external nonReentrant {
        bytes32 key = positionKey(msg.sender, role, subject);
        if (pendingSlashes[key] != 0) revert SlashPending(key);
        Position storage p = _positions[key];
        uint256 amount = p.unbonding;
        if (amount == 0) revert NothingToWithdraw();
        if (block.timestamp < p.unbondingEnd) revert UnbondingNotFinished(p.unbondingEnd);
        p.unbonding = 0;
        p.unbondingEnd = 0;
        totalStaked -= amount;
        emit Withdrawn(msg.sender, role, subject, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------- slashing

    /// @notice Slash up to `amount` of a position (active first, then unbonding); everything goes to the treasury.
    function slash(address account, StakeRole role, bytes32 subject, uint256 amount, bytes32 evidenceHash)
        external
        onlyRole(SLASHER_ROLE)
        nonReentrant
        returns (uint256 slashed)
    {
        return _slash(account, role, subject, amount, evidenceHash, address(0));
    }

    /// @notice Like `slash`, and pays `reporter` `reporterCutBps` of the slashed amount (capped by
    ///         MAX_REPORTER_CUT_BPS); the rest goes to the treasury.
    function slashWithReporter(
        address account,
        StakeRole role,
        bytes32 subject,
        uint256 amount,
        bytes32 evidenceHash,
        address reporter
    ) external onlyRole(SLASHER_ROLE) nonReentrant returns (uint256 slashed) {
        if (reporter == address(0)) revert ZeroAddress();
        return _slash(account, role, subject, amount, evidenceHash, reporter);
    }

    /// @notice Propose slashing up to `amount` of a position. Bounded: `amount` may not exceed `maxSlashBps` of
    ///         the position's active + unbonding stake now; it executes only after the dispute window, unless
    ///         vetoed; the position cannot be withdrawn meanwhile (unbonding does not escape it).
    function proposeSlash(
        address account,
        StakeRole role,
        bytes32 subject,
        uint256 amount,
        bytes32 evidenceHash,
        address reporter
    ) external onlyRole(SLASH_PROPOSER_ROLE) returns (uint256 id) {
        if (amount == 0) revert ZeroAmount();
        bytes32 key = positionKey(account, role, subject);
        Position storage p = _positions[key];
        uint256 bound = ((uint256(p.active) + p.unbonding) * maxSlashBps) / BPS;
        if (amount > bound) revert SlashExceedsBound(amount, bound);
        id = ++slashProposalCount;
        uint40 at = uint40(block.timestamp + slashDisputeWindow);
        _slashProposals[id] = SlashProposal({
            account: account,
            role: role,
            status: SlashStatus.Pending,
            executableAt: at,
            subject: subject,
            amount: uint128(amount),
            reporter: reporter,
            evidenceHash: evidenceHash
        });
        ++pendingSlashes[key];
        emit SlashProposed(id, account, role, subject, amount, reporter, evidenceHash, at);
    }

    /// @notice Execute a pending slash proposal after its dispute window (anyone may). Takes what the position
    ///         still holds, up to the proposed amount.
    function executeSlash(uint256 id) external nonReentrant returns (uint256 slashed) {
        SlashProposal storage sp = _pendingSlash(id);
        if (block.timestamp < sp.executableAt) revert SlashInDisputeWindow(id, sp.executableAt);
        if (block.timestamp >= uint256(sp.executableAt) + SLASH_EXECUTION_PERIOD) revert SlashExecutionPeriodOver(id);
        sp.status = SlashStatus.Executed;
        bytes32 key = positionKey(sp.account, sp.role, sp.subject);
        --pendingSlashes[key];
        Position storage p = _positions[key];
        if (uint256(p.active) + p.unbonding != 0) {
            slashed = _slash(sp.account, sp.role, sp.subject, sp.amount, sp.evidenceHash, sp.reporter);
        }
        emit SlashProposalExecuted(id, slashed);
    }

    /// @notice Veto a pending slash proposal (guardian or governance), before or after its dispute window.
    function vetoSlash(uint256 id) external {
        if (!hasRole(GUARDIAN_ROLE, msg.sender) && !hasRole(DEFAULT_ADMIN_ROLE, msg.sender)) {
            revert AccessControlUnauthorizedAccount(msg.sender, GUARDIAN_ROLE);
        }
        SlashProposal storage sp = _pendingSlash(id);
        sp.status = SlashStatus.Vetoed;
        --pendingSlashes[positionKey(sp.account, sp.role, sp.subject)];
        emit SlashProposalVetoed(id, msg.sender);
    }

    /// @notice Release a proposal nobody executed within SLASH_EXECUTION_PERIOD (anyone may), so it stops
    ///         blocking the position's withdrawal.
    function lapseSlash(uint256 id) external {
        SlashProposal storage sp = _pendingSlash(id);
        if (block.timestamp < uint256(sp.executableAt) + SLASH_EXECUTION_PERIOD) revert SlashStillExecutable(id);
        sp.status = SlashStatus.Lapsed;
        --pendingSlashes[positionKey(sp.account, sp.role, sp.subject)];
        emit SlashProposalLapsed(id);
    }

    function getSlashProposal(uint256 id) external view returns (SlashProposal memory) {
        return _slashProposals[id];
    }

    // ---------------------------------------------------------------- admin

    function setSlashDisputeWindow(uint64 window) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setSlashDisputeWindow(window);
    }

    function setMaxSlashBps(uint16 bps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setMaxSlashBps(bps);
    }

    function setMinStake(StakeRole role, uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) {
        minStake[role] = amount;
        emit MinStakeSet(role, amount);
    }

    function setUnbondingPeriod(uint64 period) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setUnbondingPeriod(period);
    }

    function setTreasury(address treasury_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setTreasury(treasury_);
    }

    function setReporterCutBps(uint16 bps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setReporterCut(bps);
    }

    // ---------------------------------------------------------------- views

    function positionKey(address account, StakeRole role, bytes32 subject) public pure returns (bytes32) {
        return keccak256(abi.encode(account, role, subject));
    }

    function positionOf(address account, StakeRole role, bytes32 subject) external view returns (Position memory) {
        return _positions[positionKey(account, role, subject)];
    }

    function activeStake(address account, StakeRole role, bytes32 subject) external view returns (uint256) {
        return _positions[positionKey(account, role, subject)].active;
    }

    /// @notice Whether the position's active stake is non-zero and at least the role's minimum.
    function meetsMinimum(address account, StakeRole role, bytes32 subject) external view returns (bool) {
        uint256 active = _positions[positionKey(account, role, subject)].active;
        return active != 0 && active >= minStake[role];
    }

    // ---------------------------------------------------------------- internals

    function _stake(address account, StakeRole role, bytes32 subject, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        Position storage p = _positions[positionKey(account, role, subject)];
        uint256 newActive = uint256(p.active) + amount;
        uint256 minimum = minStake[role];
        if (newActive < minimum) revert BelowMinimumStake(newActive, minimum);
        p.active = SafeCast.toUint128(newActive);
        totalStaked += amount;
        emit Staked(account, role, subject, msg.sender, amount, newActive);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    function _slash(
        address account,
        StakeRole role,
        bytes32 subject,
        uint256 amount,
        bytes32 evidenceHash,
        address reporter
    ) private returns (uint256 slashed) {
        if (amount == 0) revert ZeroAmount();
        uint256 fromUnbonding;
        (slashed, fromUnbonding) = _debit(_positions[positionKey(account, role, subject)], amount);
        totalStaked -= slashed;
        uint256 cut = reporter == address(0) ? 0 : (slashed * reporterCutBps) / BPS;
        emit Slashed(account, role, subject, slashed, fromUnbonding, reporter, cut, evidenceHash);
        if (cut != 0) token.safeTransfer(reporter, cut);
        token.safeTransfer(treasury, slashed - cut);
    }

    /// @dev Takes up to `amount` from a position: active stake first, then stake still unbonding.
    function _debit(Position storage p, uint256 amount) private returns (uint256 slashed, uint256 fromUnbonding) {
        uint256 active = p.active;
        uint256 unbonding = p.unbonding;
        uint256 available = active + unbonding;
        if (available == 0) revert NothingToSlash();
        slashed = amount < available ? amount : available;
        uint256 fromActive = slashed < active ? slashed : active;
        fromUnbonding = slashed - fromActive;
        p.active = uint128(active - fromActive);
        if (fromUnbonding != 0) {
            p.unbonding = uint128(unbonding - fromUnbonding);
            if (unbonding == fromUnbonding) p.unbondingEnd = 0;
        }
    }

    function _pendingSlash(uint256 id) private view returns (SlashProposal storage sp) {
        sp = _slashProposals[id];
        if (sp.status != SlashStatus.Pending) revert SlashNotPending(id);
    }

    function _setSlashDisputeWindow(uint64 window) private {
        if (window < minSlashDisputeWindow || window > MAX_SLASH_DISPUTE_WINDOW) {
            revert SlashDisputeWindowOutOfRange(window, minSlashDisputeWindow, MAX_SLASH_DISPUTE_WINDOW);
        }
        // An offender who unbonds when the offence is found must still hold the stake when the slash can run.
        if (window >= unbondingPeriod) revert DisputeWindowNotShorterThanUnbonding(window, unbondingPeriod);
        slashDisputeWindow = window;
        emit SlashDisputeWindowSet(window);
    }

    function _setMaxSlashBps(uint16 bps) private {
        if (bps > BPS) revert MaxSlashBpsTooHigh(bps);
        maxSlashBps = bps;
        emit MaxSlashBpsSet(bps);
    }

    function _setTreasury(address treasury_) private {
        if (treasury_ == address(0)) revert ZeroAddress();
        treasury = treasury_;
        emit TreasurySet(treasury_);
    }

    function _setUnbondingPeriod(uint64 period) private {
        if (period > MAX_UNBONDING_PERIOD) revert UnbondingPeriodTooLong(period);
        // Checked both ways (see _setSlashDisputeWindow); at construction the window is set after this.
        if (period <= slashDisputeWindow) revert DisputeWindowNotShorterThanUnbonding(slashDisputeWindow, period);
        unbondingPeriod = period;
        emit UnbondingPeriodSet(period);
    }

    function _setReporterCut(uint16 bps) private {
        if (bps > MAX_REPORTER_CUT_BPS) revert ReporterCutTooHigh(bps);
        reporterCutBps = bps;
        emit ReporterCutSet(bps);
    }
}
