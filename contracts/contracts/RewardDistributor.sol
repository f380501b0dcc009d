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
///         A root is accepted only with EIP-712 signatures (sorted by signer address, strictly ascending) of
///         `requiredSignatures()` distinct *active* validators: registered here by governance AND holding at
///         least the minimum Validator stake in Staking right now. The number required is a fraction of the
///         active set (`quorumNumerator / quorumDenominator`, never below 2/3, rounded up) and never fewer than
///         `minSignatures`: a validator that unbonds or is slashed below the minimum stops counting at once,
///         both as a signer and in the size of the set. Posting draws the epoch's new earnings
///         (cumulativeTotal - previous cumulativeTotal) from the escrow, so the distributor always holds the
///         latest valid cumulative total minus what was claimed. A root becomes claimable after
///         `activationDelay` (never below `minActivationDelay`, fixed at deployment); until then a GUARDIAN can
///         revoke it, which returns its draw to the escrow. A root's cumulative total never goes below the
///         previous valid one.
///
///         It also stores the governance-set fee split (`feeSplit`) that settlement reads for every fee.
contract RewardDistributor is AccessControlDefaultAdminRules, Pausable, ReentrancyGuardTransient, EIP712 {
    using SafeERC20 for IERC20;
    using EnumerableSet for EnumerableSet.AddressSet;

    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    bytes32 public constant EPOCH_ROOT_TYPEHASH =
        keccak256("EpochRoot(uint64 epoch,bytes32 root,uint256 cumulativeTotal)");
    uint256 public constant MAX_ACTIVATION_DELAY = 30 days;
    uint256 public constant MAX_VALIDATORS = 64;
    uint256 public constant BPS = 10_000;
    /// @notice Fee-split bounds governance cannot cross: the treasury never takes more than this share, and data
    ///         contributors (whom the platform exists to pay) never get less than this one.
    uint256 public constant MAX_TREASURY_BPS = 2_500;
    uint256 public constant MIN_CONTRIBUTORS_BPS = 2_500;

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

    /// @notice How each fee is split, in basis points summing to 10,000 (see ARCHITECTURE.md, Settlement).
    struct FeeSplit {
        uint16 treasuryBps;
        uint16 validatorsBps;
        uint16 modelOwnerBps;
        uint16 contributorsBps;
    }

    IERC20 public immutable token;
    IEscrowDraw public immutable escrow;
    IStakingView public immutable staking;
    /// @notice Lower bound of `activationDelay` (the guardian's window to revoke a bad root), fixed at deployment.
    uint64 public immutable minActivationDelay;

    EnumerableSet.AddressSet private _validators;
    uint16 public quorumNumerator;
    uint16 public quorumDenominator;
    uint16 public minSignatures;
    uint64 public activationDelay;
    FeeSplit private _feeSplit;

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
    event QuorumSet(uint16 numerator, uint16 denominator, uint16 minSignatures);
    event ActivationDelaySet(uint64 delay);
    event FeeSplitSet(uint16 treasuryBps, uint16 validatorsBps, uint16 modelOwnerBps, uint16 contributorsBps);

    error ZeroAddress();
    error ZeroRoot();
    error UnexpectedEpoch(uint64 expected, uint64 given);
    error CumulativeTotalDecreased(uint256 previous, uint256 given);
    error NoActiveValidators();
    error InsufficientSignatures(uint256 given, uint256 required);
    error SignersNotSorted(address signer, address previous);
    error NotValidator(address signer);
    error ValidatorInactive(address signer);
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
    error InvalidQuorum(uint256 numerator, uint256 denominator, uint256 minSignatures);
    error ActivationDelayOutOfRange(uint256 delay, uint256 min, uint256 max);
    error InvalidFeeSplit();

    constructor(
        IERC20 token_,
        IEscrowDraw escrow_,
        IStakingView staking_,
        address admin,
        uint48 adminDelay,
        uint64 activationDelay_,
        uint64 minActivationDelay_,
        FeeSplit memory feeSplit_
    ) AccessControlDefaultAdminRules(adminDelay, admin) EIP712("OpenLedger RewardDistributor", "1") {
        if (
            address(token_) == address(0) || address(escrow_) == address(0) || address(staking_) == address(0)
        ) revert ZeroAddress();
        if (minActivationDelay_ > MAX_ACTIVATION_DELAY) {
            revert ActivationDelayOutOfRange(minActivationDelay_, 0, MAX_ACTIVATION_DELAY);
        }
        token = token_;
        escrow = escrow_;
        staking = staking_;
        minActivationDelay = minActivationDelay_;
        _setActivationDelay(activationDelay_);
        _setQuorum(2, 3, 1);
        _setFeeSplit(feeSplit_);
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

    function removeValidator(address validator) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (!_validators.remove(validator)) revert ValidatorNotRegistered(validator);
        emit ValidatorRemoved(validator);
    }

    /// @notice Signatures required = max(ceil(active * numerator / denominator), minSignatures_). The fraction
    ///         can never go below 2/3.
    function setQuorum(uint16 numerator, uint16 denominator, uint16 minSignatures_)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        _setQuorum(numerator, denominator, minSignatures_);
    }

    function setActivationDelay(uint64 delay) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setActivationDelay(delay);
    }

    /// @notice The split settlement applies to every fee from now on.
    function setFeeSplit(FeeSplit calldata split) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setFeeSplit(split);
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

    /// @notice Registered validators that hold the minimum Validator stake now: the set quorums are counted on.
    function activeValidators() public view returns (address[] memory active) {
        address[] memory all = _validators.values();
        active = new address[](all.length);
        uint256 n;
        for (uint256 i = 0; i < all.length; ++i) {
            if (_isStaked(all[i])) active[n++] = all[i];
        }
        assembly ("memory-safe") {
            mstore(active, n)
        }
    }

    function isActiveValidator(address account) external view returns (bool) {
        return _validators.contains(account) && _isStaked(account);
    }

    /// @notice Signatures `postEpoch` needs now (0 when no validator is active: nothing can be posted).
    function requiredSignatures() external view returns (uint256) {
        uint256 active = activeValidators().length;
        return active == 0 ? 0 : _required(active);
    }

    function feeSplit() external view returns (FeeSplit memory) {
        return _feeSplit;
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
        uint256 active = activeValidators().length;
        if (active == 0) revert NoActiveValidators();
        uint256 required = _required(active);
        uint256 n = signatures.length;
        if (n < required) revert InsufficientSignatures(n, required);
        address previous = address(0);
        for (uint256 i = 0; i < n; ++i) {
            address signer = ECDSA.recover(digest, signatures[i]);
            // Strictly ascending signers: rejects duplicates without a seen-set.
            if (signer <= previous) revert SignersNotSorted(signer, previous);
            if (!_validators.contains(signer)) revert NotValidator(signer);
            if (!_isStaked(signer)) revert ValidatorInactive(signer);
            previous = signer;
        }
    }

    function _isStaked(address validator) private view returns (bool) {
        return staking.meetsMinimum(validator, IStakingView.StakeRole.Validator, bytes32(0));
    }

    function _required(uint256 active) private view returns (uint256 required) {
        uint256 den = quorumDenominator;
        required = (active * quorumNumerator + den - 1) / den;
        if (required < minSignatures) required = minSignatures;
    }

    function _setQuorum(uint16 numerator, uint16 denominator, uint16 minSignatures_) private {
        // numerator/denominator >= 2/3, at most 1; at least one signature, at most the largest possible set.
        if (
            denominator == 0 || numerator > denominator || uint256(numerator) * 3 < uint256(denominator) * 2
                || minSignatures_ == 0 || minSignatures_ > MAX_VALIDATORS
        ) revert InvalidQuorum(numerator, denominator, minSignatures_);
        quorumNumerator = numerator;
        quorumDenominator = denominator;
        minSignatures = minSignatures_;
        emit QuorumSet(numerator, denominator, minSignatures_);
    }

    function _setActivationDelay(uint64 delay) private {
        if (delay < minActivationDelay || delay > MAX_ACTIVATION_DELAY) {
            revert ActivationDelayOutOfRange(delay, minActivationDelay, MAX_ACTIVATION_DELAY);
        }
        activationDelay = delay;
        emit ActivationDelaySet(delay);
    }

    function _setFeeSplit(FeeSplit memory f) private {
        if (
            uint256(f.treasuryBps) + f.validatorsBps + f.modelOwnerBps + f.contributorsBps != BPS
                || f.treasuryBps > MAX_TREASURY_BPS || f.contributorsBps < MIN_CONTRIBUTORS_BPS
        ) revert InvalidFeeSplit();
        _feeSplit = f;
        emit FeeSplitSet(f.treasuryBps, f.validatorsBps, f.modelOwnerBps, f.contributorsBps);
    }
}
