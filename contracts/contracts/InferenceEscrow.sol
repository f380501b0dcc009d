// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @title Prepaid OPEN balances of inference consumers
/// @notice Consumers deposit; the settlement service charges settled fees (SETTLER_ROLE) into a pool that the
///         RewardDistributor draws from when it posts an epoch (DISTRIBUTOR_ROLE).
///
///         Withdrawals respect what is owed: a consumer first requests a withdrawal, waits `withdrawalDelay`,
///         then withdraws. During the delay the settler can still charge the full balance, so fees for inference
///         the gateway already served (it checks `spendableOf` before computing) are always collectable as long
///         as settlement charges within the delay. Charges shrink a pending withdrawal if needed. A consumer
///         who cannot cover a charge is skipped, not the batch (see `charge`).
///
///         **The settler is bounded by the consumers' own daily caps.** Each consumer's charges in one UTC day
///         (`block.timestamp / 1 days`) never exceed its daily cap: the cap it set (`setDailyCap`), or else the
///         governance default `defaultDailyCap`, which can never exceed `maxDefaultDailyCap` (fixed at
///         deployment). So a leaked settlement key can take at most a day's cap per consumer per day, and only
///         into the settled pool, which pays out nothing without a validator-quorum root. Raising a cap takes
///         effect at once; lowering it takes effect after `withdrawalDelay` (like a withdrawal), so fees for
///         inference already served stay collectable; `spendableOf` applies the lower cap at once, so the
///         gateway stops serving beyond it immediately. The guardian may pause charging.
contract InferenceEscrow is AccessControlDefaultAdminRules, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 public constant SETTLER_ROLE = keccak256("SETTLER_ROLE");
    bytes32 public constant DISTRIBUTOR_ROLE = keccak256("DISTRIBUTOR_ROLE");
    /// @notice Pauses charging (and nothing else here).
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    uint256 public constant MAX_WITHDRAWAL_DELAY = 30 days;
    /// @notice Caps count charges per UTC day.
    uint256 public constant CAP_PERIOD = 1 days;

    struct ConsumerAccount {
        uint128 balance;
        uint128 pendingWithdrawal;
        uint64 withdrawableAt;
    }

    /// @dev Two slots: what was charged today (read and written by every charge), and the caps.
    struct Allowance {
        uint128 spentInDay;
        /// @dev The day (`timestamp / CAP_PERIOD`) `spentInDay` counts.
        uint32 day;
        /// @dev The consumer set its own cap; otherwise `defaultDailyCap` applies.
        bool own;
        /// @dev When `pendingCap` (a lowered cap) takes effect; 0 = nothing pending.
        uint40 pendingCapAt;
        uint128 dailyCap;
        uint128 pendingCap;
    }

    /// @notice A consumer's cap as the contract applies it now.
    struct CapView {
        /// @dev What charges are checked against today.
        uint256 cap;
        uint256 spentToday;
        uint256 remainingToday;
        /// @dev A lowered cap waiting for `pendingCapAt` (0 when none).
        uint256 pendingCap;
        uint64 pendingCapAt;
        bool isDefault;
    }

    IERC20 public immutable token;
    /// @notice The highest `defaultDailyCap` governance can set: a consumer who never set a cap is never exposed
    ///         to more than this per day. Fixed at deployment.
    uint256 public immutable maxDefaultDailyCap;
    uint64 public withdrawalDelay;
    /// @notice Daily cap of consumers who did not set their own.
    uint128 public defaultDailyCap;
    /// @notice Sum of all consumer balances.
    uint256 public totalBalances;
    /// @notice Charged (settled) fees not yet drawn by the distributor.
    uint256 public settledUndrawn;
    /// @notice Lifetime totals, for reconciliation with the settlement ledger.
    uint256 public totalCharged;
    uint256 public totalDrawn;

    mapping(address consumer => ConsumerAccount account) private _accounts;
    mapping(address consumer => Allowance allowance) private _allowances;
    /// @notice Charge batches already applied: makes a retried settlement transaction a no-op revert.
    mapping(bytes32 batchId => bool used) public chargeBatchApplied;

    event Deposited(address indexed consumer, address indexed funder, uint256 amount, uint256 newBalance);
    event WithdrawalRequested(address indexed consumer, uint256 amount, uint64 withdrawableAt);
    event WithdrawalCancelled(address indexed consumer);
    event Withdrawn(address indexed consumer, uint256 amount);
    event Charged(bytes32 indexed batchId, address indexed consumer, uint256 amount, uint256 newBalance);
    /// @notice A consumer whose balance or remaining daily cap could not cover `amount`: nothing was taken from
    ///         them in this batch.
    event ChargeSkipped(
        bytes32 indexed batchId, address indexed consumer, uint256 amount, uint256 balance, uint256 capRemaining
    );
    event ChargeBatchApplied(bytes32 indexed batchId, uint256 charged, uint256 skipped, uint256 total);
    event Drawn(address indexed distributor, uint256 amount);
    event DrawReturned(address indexed distributor, uint256 amount);
    event WithdrawalDelaySet(uint64 delay);
    event DailyCapSet(address indexed consumer, uint256 cap);
    event DailyCapDecreaseScheduled(address indexed consumer, uint256 cap, uint40 effectiveAt);
    event DefaultDailyCapSet(uint256 cap);

    error ZeroAmount();
    error ZeroAddress();
    error InsufficientBalance(address consumer, uint256 balance, uint256 requested);
    error NoPendingWithdrawal();
    error WithdrawalLocked(uint64 withdrawableAt);
    error BatchAlreadyApplied(bytes32 batchId);
    error EmptyBatch();
    error LengthMismatch();
    error ExceedsSettled(uint256 available, uint256 requested);
    error ExceedsDrawn(uint256 drawn, uint256 requested);
    error WithdrawalDelayTooLong(uint256 delay);
    error DefaultCapTooHigh(uint256 cap, uint256 max);

    constructor(
        IERC20 token_,
        address admin,
        uint48 adminDelay,
        uint64 withdrawalDelay_,
        uint128 defaultDailyCap_,
        uint128 maxDefaultDailyCap_
    ) AccessControlDefaultAdminRules(adminDelay, admin) {
        if (address(token_) == address(0)) revert ZeroAddress();
        token = token_;
        maxDefaultDailyCap = maxDefaultDailyCap_;
        _setWithdrawalDelay(withdrawalDelay_);
        _setDefaultDailyCap(defaultDailyCap_);
    }

    // ---------------------------------------------------------------- consumers

    function deposit(uint256 amount) external nonReentrant {
        _deposit(msg.sender, amount);
    }

    /// @notice Top up someone else's balance (tokens come from the caller).
    function depositFor(address consumer, uint256 amount) external nonReentrant {
        if (consumer == address(0)) revert ZeroAddress();
        _deposit(consumer, amount);
    }

    /// @notice Start the withdrawal delay for `amount` (replaces any previous request).
    function requestWithdrawal(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        ConsumerAccount storage a = _accounts[msg.sender];
        if (amount > a.balance) revert InsufficientBalance(msg.sender, a.balance, amount);
        uint64 at = uint64(block.timestamp) + withdrawalDelay;
        a.pendingWithdrawal = uint128(amount);
        a.withdrawableAt = at;
        emit WithdrawalRequested(msg.sender, amount, at);
    }

    function cancelWithdrawal() external {
        ConsumerAccount storage a = _accounts[msg.sender];
        if (a.pendingWithdrawal == 0) revert NoPendingWithdrawal();
        a.pendingWithdrawal = 0;
        a.withdrawableAt = 0;
        emit WithdrawalCancelled(msg.sender);
    }

    /// @notice After the delay, withdraw the requested amount (less anything charged in the meantime).
    function withdraw() external nonReentrant returns (uint256 amount) {
        ConsumerAccount storage a = _accounts[msg.sender];
        amount = a.pendingWithdrawal;
        if (amount == 0) revert NoPendingWithdrawal();
        if (block.timestamp < a.withdrawableAt) revert WithdrawalLocked(a.withdrawableAt);
        // Charges during the delay already shrank pendingWithdrawal to at most the balance.
        a.balance -= uint128(amount);
        a.pendingWithdrawal = 0;
        a.withdrawableAt = 0;
        totalBalances -= amount;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice Set the most the settler may charge you per UTC day. Raising takes effect at once; lowering takes
    ///         effect after `withdrawalDelay` (what the gateway may still serve you drops at once).
    function setDailyCap(uint128 cap) external {
        Allowance storage al = _allowances[msg.sender];
        uint128 current = uint128(_currentCap(al, defaultDailyCap));
        if (cap >= current) {
            al.dailyCap = cap;
            al.own = true;
            al.pendingCap = 0;
            al.pendingCapAt = 0;
            emit DailyCapSet(msg.sender, cap);
        } else {
            // Keep today's cap (fixing the default's value, if that was it) until the decrease takes effect.
            al.dailyCap = current;
            al.own = true;
            uint40 at = uint40(block.timestamp + withdrawalDelay);
            al.pendingCap = cap;
            al.pendingCapAt = at;
            emit DailyCapDecreaseScheduled(msg.sender, cap, at);
        }
    }

    // ---------------------------------------------------------------- settlement

    /// @notice Charge settled fees. `batchId` makes the call idempotent: settlement records it as an intent
    ///         and can resubmit safely. All or nothing per consumer, never for the batch: a consumer whose
    ///         balance cannot cover their amount is skipped (`ChargeSkipped`, nothing taken from them) and the
    ///         others are charged, so one short consumer (overspent, or withdrew) cannot block everyone's
    ///         settlement. Settlement reads the outcome from the events and carries the skipped fees over.
    ///         The same holds for a consumer's daily cap: a charge beyond what is left of it today is skipped.
    function charge(bytes32 batchId, address[] calldata consumers, uint256[] calldata amounts)
        external
        onlyRole(SETTLER_ROLE)
        whenNotPaused
        returns (uint256 total)
    {
        if (chargeBatchApplied[batchId]) revert BatchAlreadyApplied(batchId);
        uint256 n = consumers.length;
        if (n == 0) revert EmptyBatch();
        if (n != amounts.length) revert LengthMismatch();
        chargeBatchApplied[batchId] = true;
        uint256 skipped;
        uint128 defaultCap = defaultDailyCap;
        uint32 today = uint32(block.timestamp / CAP_PERIOD);
        for (uint256 i = 0; i < n; ++i) {
            uint256 amount = amounts[i];
            if (amount == 0) revert ZeroAmount();
            if (_chargeOne(batchId, consumers[i], amount, defaultCap, today)) total += amount;
            else ++skipped;
        }
        totalBalances -= total;
        settledUndrawn += total;
        totalCharged += total;
        emit ChargeBatchApplied(batchId, n - skipped, skipped, total);
    }

    /// @dev One consumer of a batch: all of `amount` or nothing (ChargeSkipped). Returns whether it was charged.
    function _chargeOne(bytes32 batchId, address consumer, uint256 amount, uint128 defaultCap, uint32 today)
        private
        returns (bool)
    {
        ConsumerAccount storage a = _accounts[consumer];
        Allowance storage al = _allowances[consumer];
        uint256 balance = a.balance;
        uint256 cap = _settleCap(al, defaultCap);
        uint256 spent = al.day == today ? al.spentInDay : 0;
        uint256 capRemaining = cap > spent ? cap - spent : 0;
        if (amount > balance || amount > capRemaining) {
            emit ChargeSkipped(batchId, consumer, amount, balance, capRemaining);
            return false;
        }
        uint256 newBalance = balance - amount;
        a.balance = uint128(newBalance);
        if (a.pendingWithdrawal > newBalance) a.pendingWithdrawal = uint128(newBalance);
        al.spentInDay = uint128(spent + amount);
        al.day = today;
        emit Charged(batchId, consumer, amount, newBalance);
        return true;
    }

    /// @notice The distributor takes `amount` of settled fees (an epoch's new earnings). Cannot exceed what
    ///         was charged and not yet drawn.
    function draw(uint256 amount) external onlyRole(DISTRIBUTOR_ROLE) nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 available = settledUndrawn;
        if (amount > available) revert ExceedsSettled(available, amount);
        settledUndrawn = available - amount;
        totalDrawn += amount;
        emit Drawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice The distributor gives back what it drew for an epoch that was revoked.
    function returnDrawn(uint256 amount) external onlyRole(DISTRIBUTOR_ROLE) nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 drawn = totalDrawn;
        if (amount > drawn) revert ExceedsDrawn(drawn, amount);
        totalDrawn = drawn - amount;
        settledUndrawn += amount;
        emit DrawReturned(msg.sender, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    // ---------------------------------------------------------------- admin

    function setWithdrawalDelay(uint64 delay) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setWithdrawalDelay(delay);
    }

    /// @notice The daily cap of consumers who set none; never above `maxDefaultDailyCap`.
    function setDefaultDailyCap(uint128 cap) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setDefaultDailyCap(cap);
    }

    function pause() external onlyRole(GUARDIAN_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    // ---------------------------------------------------------------- views

    function accountOf(address consumer) external view returns (ConsumerAccount memory) {
        return _accounts[consumer];
    }

    function balanceOf(address consumer) external view returns (uint256) {
        return _accounts[consumer].balance;
    }

    /// @notice What the gateway may still let a consumer spend: the balance minus a pending withdrawal, and no
    ///         more than what is left today of its daily cap (the lower one, if a decrease is pending).
    function spendableOf(address consumer) external view returns (uint256) {
        ConsumerAccount storage a = _accounts[consumer];
        Allowance storage al = _allowances[consumer];
        uint256 cap = _currentCap(al, defaultDailyCap);
        if (al.pendingCapAt != 0 && al.pendingCap < cap) cap = al.pendingCap;
        return _min(a.balance - a.pendingWithdrawal, _remaining(al, cap));
    }

    /// @notice What a charge could take from `consumer` right now: its balance, within today's remaining cap.
    function chargeableOf(address consumer) external view returns (uint256) {
        Allowance storage al = _allowances[consumer];
        return _min(_accounts[consumer].balance, _remaining(al, _currentCap(al, defaultDailyCap)));
    }

    function dailyCapOf(address consumer) external view returns (CapView memory v) {
        Allowance storage al = _allowances[consumer];
        v.cap = _currentCap(al, defaultDailyCap);
        v.remainingToday = _remaining(al, v.cap);
        v.spentToday = al.day == uint32(block.timestamp / CAP_PERIOD) ? al.spentInDay : 0;
        bool matured = al.pendingCapAt != 0 && block.timestamp >= al.pendingCapAt;
        if (al.pendingCapAt != 0 && !matured) {
            v.pendingCap = al.pendingCap;
            v.pendingCapAt = al.pendingCapAt;
        }
        v.isDefault = !al.own && al.pendingCapAt == 0;
    }

    // ---------------------------------------------------------------- internals

    function _deposit(address consumer, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        ConsumerAccount storage a = _accounts[consumer];
        uint256 newBalance = uint256(a.balance) + amount;
        a.balance = SafeCast.toUint128(newBalance);
        totalBalances += amount;
        emit Deposited(consumer, msg.sender, amount, newBalance);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @dev The cap in force now (a matured decrease counts), without writing.
    function _currentCap(Allowance storage al, uint128 defaultCap) private view returns (uint256) {
        uint40 at = al.pendingCapAt;
        if (at != 0 && block.timestamp >= at) return al.pendingCap;
        return al.own ? al.dailyCap : defaultCap;
    }

    /// @dev As `_currentCap`, and records a matured decrease (once) so later reads need no pending slot.
    function _settleCap(Allowance storage al, uint128 defaultCap) private returns (uint256) {
        uint40 at = al.pendingCapAt;
        if (at != 0 && block.timestamp >= at) {
            uint128 cap = al.pendingCap;
            al.dailyCap = cap;
            al.pendingCap = 0;
            al.pendingCapAt = 0;
            return cap;
        }
        return al.own ? al.dailyCap : defaultCap;
    }

    function _remaining(Allowance storage al, uint256 cap) private view returns (uint256) {
        uint256 spent = al.day == uint32(block.timestamp / CAP_PERIOD) ? al.spentInDay : 0;
        return cap > spent ? cap - spent : 0;
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }

    function _setDefaultDailyCap(uint128 cap) private {
        if (cap > maxDefaultDailyCap) revert DefaultCapTooHigh(cap, maxDefaultDailyCap);
        defaultDailyCap = cap;
        emit DefaultDailyCapSet(cap);
    }

    function _setWithdrawalDelay(uint64 delay) private {
        if (delay > MAX_WITHDRAWAL_DELAY) revert WithdrawalDelayTooLong(delay);
        withdrawalDelay = delay;
        emit WithdrawalDelaySet(delay);
    }
}
