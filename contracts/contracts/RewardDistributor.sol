// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import {IStakingView} from "./IStakingView.sol";

interface IEscrowDraw {
    function draw(uint256 amount) external;
    function returnDrawn(uint256 amount) external;
}

/// @title Epoch roots of cumulative earnings, claimed with merkle proofs
/// @notice Each epoch posts one merkle root over (chainId, distributor, epoch, account, cumulativeAmount) leaves,
///         where cumulativeAmount is everything the account has earned since genesis. `claimed[account]` only
///         grows; a claim pays `cumulativeAmount - claimed[account]`. Posting costs the same for 10 or 10^6
///         recipients because only the root goes on chain.
///
///         A root is accepted only with EIP-712 signatures of `threshold` distinct registered validators
///         (sorted by signer address, strictly ascending), each also meeting the minimum validator stake in
///         Staking when a staking contract is set. Posting draws the epoch's new earnings
///         (cumulativeTotal - previous cumulativeTotal) from the escrow, so the distributor always holds the
///         latest valid cumulative total minus what was claimed. A root becomes claimable after
///         `activationDelay`; until then a GUARDIAN can revoke it, which returns its draw to the escrow.
contract RewardDistributor is AccessControlDefaultAdminRules, Pausable, ReentrancyGuardTransient, EIP712 {
    using SafeERC20 for IERC20;
    using EnumerableSet for EnumerableSet.AddressSet;

    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    bytes32 public constant EPOCH_ROOT_TYPEHASH =
        keccak256("EpochRoot(uint64 epoch,bytes32 root,uint256 cumulativeTotal)");
    uint256 public constant MAX_ACTIVATION_DELAY = 30 days;
    uint256 public constant MAX_VALIDATORS = 64;

    struct ClaimRequest {
        address account;
        uint256 cumulativeAmount;
        bytes32[] proof;
    }

    struct Epoch {
        bytes32 root;
        uint128 cumulativeTotal;
        uint40 activatesAt;
        /// @dev The latest non-revoked epoch before this one (0 = none): where `lastValidEpoch` returns on revoke.
        uint64 previousValid;
        bool revoked;
    }

    IERC20 public immutable token;
    IEscrowDraw public immutable escrow;
    IStakingView public staking;

    EnumerableSet.AddressSet private _validators;
    uint256 public threshold;
    uint64 public activationDelay;

    /// @notice Highest epoch number posted (revoked or not); the next post must be latestEpoch + 1.
    uint64 public latestEpoch;
    /// @notice Latest posted epoch that is not revoked (pending or active); its total is what has been drawn.
    uint64 public lastValidEpoch;

    mapping(uint64 epoch => Epoch data) private _epochs;
    mapping(address account => uint256 amount) public claimed;

    event EpochPosted(
        uint64 indexed epoch, bytes32 root, uint256 cumulativeTotal, uint256 drawn, uint40 activatesAt
    );
    event EpochRevoked(uint64 indexed epoch, address indexed guardian, uint256 returnedToEscrow);
    event Claimed(address indexed account, uint64 indexed epoch, uint256 amount, uint256 cumulativeAmount);
    event ValidatorAdded(address indexed validator);
    event ValidatorRemoved(address indexed validator);
    event ThresholdSet(uint256 threshold);
    event ActivationDelaySet(uint64 delay);
    event StakingSet(address staking);

    error ZeroAddress();
    error ZeroRoot();
    error UnexpectedEpoch(uint64 expected, uint64 given);
    error CumulativeTotalDecreased(uint256 previous, uint256 given);
    error QuorumNotConfigured();
    error InsufficientSignatures(uint256 given, uint256 required);
    error SignersNotSorted(address signer, address previous);
    error NotValidator(address signer);
    error ValidatorUnderstaked(address signer);
    error UnknownEpoch(uint64 epoch);
    error EpochIsRevoked(uint64 epoch);
    error EpochNotActive(uint64 epoch, uint40 activatesAt);
    error EpochAlreadyActive(uint64 epoch);
    error NotLatestValidEpoch(uint64 epoch, uint64 lastValid);
    error InvalidProof();
    error AmountExceedsEpochTotal();
    error NothingToClaim(uint256 cumulativeAmount, uint256 alreadyClaimed);
    error ValidatorAlreadyRegistered(address validator);
    error ValidatorNotRegistered(address validator);
    error TooManyValidators();
    error InvalidThreshold(uint256 threshold, uint256 validators);
    error ActivationDelayTooLong(uint256 delay);

    constructor(
        IERC20 token_,
        IEscrowDraw escrow_,
        IStakingView staking_,
        address admin,
        uint48 adminDelay,
        uint64 activationDelay_
    ) AccessControlDefaultAdminRules(adminDelay, admin) EIP712("OpenLedger RewardDistributor", "1") {
        if (address(token_) == address(0) || address(escrow_) == address(0)) revert ZeroAddress();
        token = token_;
        escrow = escrow_;
        staking = staking_;
        _setActivationDelay(activationDelay_);
    }

    // ---------------------------------------------------------------- epochs

    /// @notice Post epoch `latestEpoch + 1` with signatures of a validator quorum. Anyone may relay it.
    function postEpoch(uint64 epoch, bytes32 root, uint256 cumulativeTotal, bytes[] calldata signatures)
        external
        whenNotPaused
        nonReentrant
    {
        uint64 expected = latestEpoch + 1;
        if (epoch != expected) revert UnexpectedEpoch(expected, epoch);
        if (root == bytes32(0)) revert ZeroRoot();
        uint64 previousValid = lastValidEpoch;
        uint256 previousTotal = _epochs[previousValid].cumulativeTotal;
        if (cumulativeTotal < previousTotal) revert CumulativeTotalDecreased(previousTotal, cumulativeTotal);
        _verifyQuorum(epochDigest(epoch, root, cumulativeTotal), signatures);

        uint40 activatesAt = uint40(block.timestamp + activationDelay);
        _epochs[epoch] = Epoch({
            root: root,
            cumulativeTotal: SafeCast.toUint128(cumulativeTotal),
            activatesAt: activatesAt,
            previousValid: previousValid,
            revoked: false
        });
        latestEpoch = epoch;
        lastValidEpoch = epoch;
        uint256 drawn = cumulativeTotal - previousTotal;
        emit EpochPosted(epoch, root, cumulativeTotal, drawn, activatesAt);
        // Reverts (ExceedsSettled) when settlement has not charged enough: an epoch never exceeds its funding.
        if (drawn != 0) escrow.draw(drawn);
    }

    /// @notice Revoke the latest valid epoch while it is still pending. Revoke newer epochs first.
    function revokeEpoch(uint64 epoch) external onlyRole(GUARDIAN_ROLE) nonReentrant {
        uint64 lastValid = lastValidEpoch;
        if (epoch == 0 || epoch != lastValid) revert NotLatestValidEpoch(epoch, lastValid);
        Epoch storage e = _epochs[epoch];
        if (block.timestamp >= e.activatesAt) revert EpochAlreadyActive(epoch);
        e.revoked = true;
        uint64 previousValid = e.previousValid;
        lastValidEpoch = previousValid;
        uint256 refund = uint256(e.cumulativeTotal) - _epochs[previousValid].cumulativeTotal;
        emit EpochRevoked(epoch, msg.sender, refund);
        if (refund != 0) {
            token.forceApprove(address(escrow), refund);
            escrow.returnDrawn(refund);
        }
    }

    // ---------------------------------------------------------------- claims

    /// @notice Pay `account` its unclaimed earnings proven against an active epoch root. Anyone may call it;
    ///         the tokens always go to `account`.
    function claim(uint64 epoch, address account, uint256 cumulativeAmount, bytes32[] calldata proof)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 amount)
    {
        Epoch storage e = _activeEpoch(epoch);
        amount = _claim(e, epoch, account, cumulativeAmount, proof);
        if (amount == 0) revert NothingToClaim(cumulativeAmount, claimed[account]);
    }

    /// @notice Relay many claims against one epoch in a single transaction (e.g. a service paying gas for its
    ///         users). Accounts that have nothing left to claim are skipped rather than reverting the batch, so
    ///         a user claiming on their own in the meantime cannot block it; an invalid proof still reverts.
    function claimMany(uint64 epoch, ClaimRequest[] calldata requests)
        external
        whenNotPaused
        nonReentrant
        returns (uint256 total)
    {
        Epoch storage e = _activeEpoch(epoch);
        for (uint256 i = 0; i < requests.length; ++i) {
            ClaimRequest calldata r = requests[i];
            total += _claim(e, epoch, r.account, r.cumulativeAmount, r.proof);
        }
    }

    // ---------------------------------------------------------------- admin

    function addValidator(address validator) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (validator == address(0)) revert ZeroAddress();
        if (_validators.length() >= MAX_VALIDATORS) revert TooManyValidators();
        if (!_validators.add(validator)) revert ValidatorAlreadyRegistered(validator);
        emit ValidatorAdded(validator);
    }

    /// @notice Remove a validator; the threshold must still be reachable afterwards.
    function removeValidator(address validator) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (!_validators.remove(validator)) revert ValidatorNotRegistered(validator);
        if (threshold > _validators.length()) revert InvalidThreshold(threshold, _validators.length());
        emit ValidatorRemoved(validator);
    }

    function setThreshold(uint256 threshold_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint256 n = _validators.length();
        if (threshold_ == 0 || threshold_ > n) revert InvalidThreshold(threshold_, n);
        threshold = threshold_;
        emit ThresholdSet(threshold_);
    }

    function setActivationDelay(uint64 delay) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setActivationDelay(delay);
    }

    /// @notice Set (or clear, with address(0)) the staking contract whose minimum validator stake signers need.
    function setStaking(IStakingView staking_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        staking = staking_;
        emit StakingSet(address(staking_));
    }

    function pause() external onlyRole(GUARDIAN_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    // ---------------------------------------------------------------- views

    function getEpoch(uint64 epoch) external view returns (Epoch memory) {
        return _epochs[epoch];
    }

    function isEpochActive(uint64 epoch) external view returns (bool) {
        Epoch storage e = _epochs[epoch];
        return e.root != bytes32(0) && !e.revoked && block.timestamp >= e.activatesAt;
    }

    function validators() external view returns (address[] memory) {
        return _validators.values();
    }

    function isValidator(address account) external view returns (bool) {
        return _validators.contains(account);
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice The EIP-712 digest validators sign for an epoch root.
    function epochDigest(uint64 epoch, bytes32 root, uint256 cumulativeTotal) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(EPOCH_ROOT_TYPEHASH, epoch, root, cumulativeTotal)));
    }

    /// @notice Double-hashed leaf (as OpenZeppelin's StandardMerkleTree) bound to this chain, contract and epoch.
    function leafHash(uint64 epoch, address account, uint256 cumulativeAmount) public view returns (bytes32) {
        return keccak256(
            bytes.concat(keccak256(abi.encode(block.chainid, address(this), epoch, account, cumulativeAmount)))
        );
    }

    // ---------------------------------------------------------------- internals

    function _activeEpoch(uint64 epoch) private view returns (Epoch storage e) {
        e = _epochs[epoch];
        if (e.root == bytes32(0)) revert UnknownEpoch(epoch);
        if (e.revoked) revert EpochIsRevoked(epoch);
        if (block.timestamp < e.activatesAt) revert EpochNotActive(epoch, e.activatesAt);
    }

    /// @dev Verifies and pays one claim; returns 0 (paying nothing) when everything was already claimed.
    function _claim(
        Epoch storage e,
        uint64 epoch,
        address account,
        uint256 cumulativeAmount,
        bytes32[] calldata proof
    ) private returns (uint256 amount) {
        if (cumulativeAmount > e.cumulativeTotal) revert AmountExceedsEpochTotal();
        if (!MerkleProof.verifyCalldata(proof, e.root, leafHash(epoch, account, cumulativeAmount))) {
            revert InvalidProof();
        }
        uint256 already = claimed[account];
        if (cumulativeAmount <= already) return 0;
        amount = cumulativeAmount - already;
        // No global "total claimed" counter: it would add a storage write to every claim, and the same figure
        // is `latest valid cumulativeTotal - token.balanceOf(this)` (or the sum of Claimed events).
        claimed[account] = cumulativeAmount;
        emit Claimed(account, epoch, amount, cumulativeAmount);
        token.safeTransfer(account, amount);
    }

    function _verifyQuorum(bytes32 digest, bytes[] calldata signatures) private view {
        uint256 required = threshold;
        if (required == 0) revert QuorumNotConfigured();
        uint256 n = signatures.length;
        if (n < required) revert InsufficientSignatures(n, required);
        IStakingView stakingView = staking;
        address previous = address(0);
        for (uint256 i = 0; i < n; ++i) {
            address signer = ECDSA.recover(digest, signatures[i]);
            // Strictly ascending signers: rejects duplicates without a seen-set.
            if (signer <= previous) revert SignersNotSorted(signer, previous);
            if (!_validators.contains(signer)) revert NotValidator(signer);
            if (
                address(stakingView) != address(0)
                    && !stakingView.meetsMinimum(signer, IStakingView.StakeRole.Validator, bytes32(0))
            ) revert ValidatorUnderstaked(signer);
            previous = signer;
        }
    }

    function _setActivationDelay(uint64 delay) private {
        if (delay > MAX_ACTIVATION_DELAY) revert ActivationDelayTooLong(delay);
        activationDelay = delay;
        emit ActivationDelaySet(delay);
    }
}
