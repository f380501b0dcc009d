// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IStakingView} from "./IStakingView.sol";

interface IStakingSlashProposer {
    struct Position {
        uint128 active;
        uint128 unbonding;
        uint64 unbondingEnd;
    }

    function proposeSlash(
        address account,
        IStakingView.StakeRole role,
        bytes32 subject,
        uint256 amount,
        bytes32 evidenceHash,
        address reporter
    ) external returns (uint256 id);

    function positionOf(address account, IStakingView.StakeRole role, bytes32 subject)
        external
        view
        returns (Position memory);
}

interface IValidatorSet {
    function isActiveValidator(address account) external view returns (bool);
    function requiredSignatures() external view returns (uint256);
}

/// @title Disputes of validators' signed attribution results, filed only by a quorum of validators
/// @notice Holds Staking's SLASH_PROPOSER_ROLE so that a validator slash proposal can be filed without any
///         single key (the operator key holds the role too, for contributors' slashes, and is not bound by
///         this contract's rule): a proposal against `validator` is filed here only with
///         - the validator's own EIP-712 `AttributionResult{inferenceId, resultHash}` signature over
///           `signedResultHash` (attribution domain: "OpenLedger Attribution", "1", this chain, the
///           RewardDistributor) — the evidence binds the exact bytes it signed;
///         - EIP-712 `AttributionDispute{validator, inferenceId, signedResultHash, quorumResultHash}` signatures,
///           strictly ascending by signer, of at least `requiredSignatures()` active validators other than the
///           accused, saying that the result recomputed from public inputs is `quorumResultHash`.
///         One proposal per (validator, inference). The amount is `slashBps` of the position (active +
///         unbonding) now, within Staking's `maxSlashBps`; the proposal then waits Staking's dispute window,
///         during which the guardian or governance can veto it.
contract ValidatorDisputes is EIP712 {
    bytes32 public constant DISPUTE_TYPEHASH = keccak256(
        "AttributionDispute(address validator,bytes32 inferenceId,bytes32 signedResultHash,bytes32 quorumResultHash)"
    );
    bytes32 public constant ATTRIBUTION_RESULT_TYPEHASH =
        keccak256("AttributionResult(bytes32 inferenceId,bytes32 resultHash)");
    uint256 public constant BPS = 10_000;

    IStakingSlashProposer public immutable staking;
    IValidatorSet public immutable validators;
    /// @notice Share of the accused's position (active + unbonding) a dispute proposes to slash.
    uint256 public immutable slashBps;
    /// @notice Domain separator of the validators' attribution signatures (bound to the RewardDistributor).
    bytes32 public immutable attributionDomainSeparator;

    /// @notice keccak256(validator, inferenceId) => slash proposal id (0: none filed).
    mapping(bytes32 key => uint256 proposalId) public proposalOf;

    event DisputeFiled(
        address indexed validator,
        bytes32 indexed inferenceId,
        uint256 indexed proposalId,
        bytes32 signedResultHash,
        bytes32 quorumResultHash,
        bytes32 evidenceHash,
        uint256 amount
    );

    error SameResult();
    error NotSignedByValidator(address recovered);
    error AlreadyFiled(uint256 proposalId);
    error SignersNotSorted(address signer, address previous);
    error NotActiveValidator(address signer);
    error AccusedCannotSign();
    error NoQuorum(uint256 have, uint256 need);
    error NothingToSlash();
    error BadSlashBps();

    constructor(address staking_, address distributor_, uint256 slashBps_) EIP712("OpenLedger ValidatorDisputes", "1") {
        if (slashBps_ == 0 || slashBps_ > BPS) revert BadSlashBps();
        staking = IStakingSlashProposer(staking_);
        validators = IValidatorSet(distributor_);
        slashBps = slashBps_;
        attributionDomainSeparator = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("OpenLedger Attribution"),
                keccak256("1"),
                block.chainid,
                distributor_
            )
        );
    }

    /// @notice The digest dispute signers sign (EIP-712, this contract's domain).
    function disputeDigest(address validator, bytes32 inferenceId, bytes32 signedResultHash, bytes32 quorumResultHash)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(
            keccak256(abi.encode(DISPUTE_TYPEHASH, validator, inferenceId, signedResultHash, quorumResultHash))
        );
    }

    /// @notice The evidence hash a filed proposal carries: binds the inference, both results and the accused's
    ///         signature over the wrong one.
    function evidenceHashOf(
        bytes32 inferenceId,
        bytes32 signedResultHash,
        bytes32 quorumResultHash,
        bytes calldata validatorSignature
    ) public pure returns (bytes32) {
        return keccak256(abi.encode(inferenceId, signedResultHash, quorumResultHash, keccak256(validatorSignature)));
    }

    /// @notice File a slash proposal against `validator` for signing `signedResultHash` when a quorum of the
    ///         other active validators recomputed `quorumResultHash`. Anyone may submit (the reporter is the
    ///         caller: Staking caps its cut); the signatures decide.
    function fileDispute(
        address validator,
        bytes32 inferenceId,
        bytes32 signedResultHash,
        bytes calldata validatorSignature,
        bytes32 quorumResultHash,
        bytes[] calldata disputeSignatures
    ) external returns (uint256 proposalId) {
        if (signedResultHash == quorumResultHash) revert SameResult();
        bytes32 key = keccak256(abi.encode(validator, inferenceId));
        if (proposalOf[key] != 0) revert AlreadyFiled(proposalOf[key]);
        _checkSignedByAccused(validator, inferenceId, signedResultHash, validatorSignature);
        _checkQuorum(
            validator, disputeDigest(validator, inferenceId, signedResultHash, quorumResultHash), disputeSignatures
        );
        bytes32 evidenceHash = evidenceHashOf(inferenceId, signedResultHash, quorumResultHash, validatorSignature);
        uint256 amount;
        (proposalId, amount) = _propose(validator, evidenceHash);
        proposalOf[key] = proposalId;
        emit DisputeFiled(validator, inferenceId, proposalId, signedResultHash, quorumResultHash, evidenceHash, amount);
    }

    function _checkSignedByAccused(
        address validator,
        bytes32 inferenceId,
        bytes32 signedResultHash,
        bytes calldata validatorSignature
    ) private view {
        bytes32 signed = keccak256(
            abi.encodePacked(
                "\x19\x01",
                attributionDomainSeparator,
                keccak256(abi.encode(ATTRIBUTION_RESULT_TYPEHASH, inferenceId, signedResultHash))
            )
        );
        address recovered = ECDSA.recover(signed, validatorSignature);
        if (recovered != validator) revert NotSignedByValidator(recovered);
    }

    function _checkQuorum(address validator, bytes32 digest, bytes[] calldata disputeSignatures) private view {
        address previous;
        for (uint256 i = 0; i < disputeSignatures.length; ++i) {
            address signer = ECDSA.recover(digest, disputeSignatures[i]);
            if (signer <= previous) revert SignersNotSorted(signer, previous);
            if (signer == validator) revert AccusedCannotSign();
            if (!validators.isActiveValidator(signer)) revert NotActiveValidator(signer);
            previous = signer;
        }
        uint256 need = validators.requiredSignatures();
        if (need == 0 || disputeSignatures.length < need) revert NoQuorum(disputeSignatures.length, need);
    }

    function _propose(address validator, bytes32 evidenceHash) private returns (uint256 id, uint256 amount) {
        IStakingSlashProposer.Position memory p =
            staking.positionOf(validator, IStakingView.StakeRole.Validator, bytes32(0));
        amount = ((uint256(p.active) + p.unbonding) * slashBps) / BPS;
        if (amount == 0) revert NothingToSlash();
        id = staking.proposeSlash(validator, IStakingView.StakeRole.Validator, bytes32(0), amount, evidenceHash, msg.sender);
    }
}
