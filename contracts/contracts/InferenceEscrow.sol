// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
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
contract InferenceEscrow is AccessControlDefaultAdminRules, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 public constant SETTLER_ROLE = keccak256("SETTLER_ROLE");
    bytes32 public constant DISTRIBUTOR_ROLE = keccak256("DISTRIBUTOR_ROLE");
    uint256 public constant MAX_WITHDRAWAL_DELAY = 30 days;

    struct ConsumerAccount {
        uint128 balance;
        uint128 pendingWithdrawal;
        uint64 withdrawableAt;
    }

    IERC20 public immutable token;
    uint64 public withdrawalDelay;
    /// @notice Sum of all consumer balances.
    uint256 public totalBalances;
    /// @notice Charged (settled) fees not yet drawn by the distributor.
    uint256 public settledUndrawn;
    /// @notice Lifetime totals, for reconciliation with the settlement ledger.
    uint256 public totalCharged;
    uint256 public totalDrawn;

    mapping(address consumer => ConsumerAccount account) private _accounts;
    /// @notice Charge batches already applied: makes a retried settlement transaction a no-op revert.
    mapping(bytes32 batchId => bool used) public chargeBatchApplied;

    event Deposited(address indexed consumer, address indexed funder, uint256 amount, uint256 newBalance);
    event WithdrawalRequested(address indexed consumer, uint256 amount, uint64 withdrawableAt);
    event WithdrawalCancelled(address indexed consumer);
    event Withdrawn(address indexed consumer, uint256 amount);
    event Charged(bytes32 indexed batchId, address indexed consumer, uint256 amount, uint256 newBalance);
    /// @notice A consumer whose balance could not cover `amount`: nothing was taken from them in this batch.
    event ChargeSkipped(bytes32 indexed batchId, address indexed consumer, uint256 amount, uint256 balance);
    event ChargeBatchApplied(bytes32 indexed batchId, uint256 charged, uint256 skipped, uint256 total);
    event Drawn(address indexed distributor, uint256 amount);
    event DrawReturned(address indexed distributor, uint256 amount);
    event WithdrawalDelaySet(uint64 delay);

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

    constructor(IERC20 token_, address admin, uint48 adminDelay, uint64 withdrawalDelay_)
        AccessControlDefaultAdminRules(adminDelay, admin)
    {
        if (address(token_) == address(0)) revert ZeroAddress();
        token = token_;
        _setWithdrawalDelay(withdrawalDelay_);
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

    // ---------------------------------------------------------------- settlement

    /// @notice Charge settled fees. `batchId` makes the call idempotent: settlement records it as an intent
    ///         and can resubmit safely. All or nothing per consumer, never for the batch: a consumer whose
    ///         balance cannot cover their amount is skipped (`ChargeSkipped`, nothing taken from them) and the
    ///         others are charged, so one short consumer (overspent, or withdrew) cannot block everyone's
    ///         settlement. Settlement reads the outcome from the events and carries the skipped fees over.
    function charge(bytes32 batchId, address[] calldata consumers, uint256[] calldata amounts)
        external
        onlyRole(SETTLER_ROLE)
        returns (uint256 total)
    {
        if (chargeBatchApplied[batchId]) revert BatchAlreadyApplied(batchId);
        uint256 n = consumers.length;
        if (n == 0) revert EmptyBatch();
        if (n != amounts.length) revert LengthMismatch();
        chargeBatchApplied[batchId] = true;
        uint256 skipped;
        for (uint256 i = 0; i < n; ++i) {
            address consumer = consumers[i];
            uint256 amount = amounts[i];
            if (amount == 0) revert ZeroAmount();
            ConsumerAccount storage a = _accounts[consumer];
            uint256 balance = a.balance;
            if (amount > balance) {
                ++skipped;
                emit ChargeSkipped(batchId, consumer, amount, balance);
                continue;
            }
            uint256 newBalance = balance - amount;
            a.balance = uint128(newBalance);
            if (a.pendingWithdrawal > newBalance) a.pendingWithdrawal = uint128(newBalance);
            total += amount;
            emit Charged(batchId, consumer, amount, newBalance);
        }
        totalBalances -= total;
        settledUndrawn += total;
        totalCharged += total;
        emit ChargeBatchApplied(batchId, n - skipped, skipped, total);
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

    // ---------------------------------------------------------------- views

    function accountOf(address consumer) external view returns (ConsumerAccount memory) {
        return _accounts[consumer];
    }

    function balanceOf(address consumer) external view returns (uint256) {
        return _accounts[consumer].balance;
    }

    /// @notice What the gateway may still let a consumer spend: the balance minus a pending withdrawal.
    function spendableOf(address consumer) external view returns (uint256) {
        ConsumerAccount storage a = _accounts[consumer];
        return a.balance - a.pendingWithdrawal;
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

    function _setWithdrawalDelay(uint64 delay) private {
        if (delay > MAX_WITHDRAWAL_DELAY) revert WithdrawalDelayTooLong(delay);
        withdrawalDelay = delay;
        emit WithdrawalDelaySet(delay);
    }
}
