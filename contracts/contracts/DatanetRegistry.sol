// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title Registry of datanets and their immutable versions
/// @notice A version pins the merkle root of the ordered accepted rows; once published it never changes, so
///         attribution and model provenance can reference (datanetId, version) forever.
///         The datanets service publishes on behalf of owners with PUBLISHER_ROLE; owners may also act directly.
///
///         The owner also decides who may register a *small model* (a model trained on the datanet alone, whose
///         owner earns the model owner's share of every fee) on it: `approveBuilder`, or the same approval signed
///         off-chain (EIP-712 `BuilderApproval`, with the owner's nonce and a deadline) and relayed by anyone
///         with `approveBuilderBySig`. ModelRegistry checks `isApprovedBuilder`. The publisher service cannot
///         approve builders: only the owner's own key can.
contract DatanetRegistry is AccessControlDefaultAdminRules, EIP712, Nonces {
    bytes32 public constant PUBLISHER_ROLE = keccak256("PUBLISHER_ROLE");
    bytes32 public constant BUILDER_APPROVAL_TYPEHASH = keccak256(
        "BuilderApproval(uint256 datanetId,address builder,bool approved,uint256 nonce,uint256 deadline)"
    );

    struct Datanet {
        address owner;
        uint64 createdAt;
        uint32 versionCount;
        string metadataURI;
    }

    struct Version {
        bytes32 rowsRoot;
        uint64 rowCount;
        uint64 contributorCount;
        uint64 publishedAt;
    }

    uint256 public datanetCount;
    mapping(uint256 datanetId => Datanet datanet) private _datanets;
    mapping(uint256 datanetId => mapping(uint256 version => Version v)) private _versions;
    mapping(uint256 datanetId => mapping(address builder => bool approved)) private _builders;

    event DatanetCreated(uint256 indexed datanetId, address indexed owner, string metadataURI);
    event DatanetVersionPublished(
        uint256 indexed datanetId, uint32 indexed version, bytes32 rowsRoot, uint64 rowCount, uint64 contributorCount
    );
    event DatanetMetadataUpdated(uint256 indexed datanetId, string metadataURI);
    event DatanetOwnershipTransferred(uint256 indexed datanetId, address indexed from, address indexed to);
    event BuilderApproved(uint256 indexed datanetId, address indexed builder, bool approved);

    error ZeroAddress();
    error EmptyMetadataURI();
    error UnknownDatanet(uint256 datanetId);
    error NotDatanetOwner(uint256 datanetId, address caller);
    error ZeroRoot();
    error ZeroRows();
    error InvalidContributorCount(uint64 contributorCount, uint64 rowCount);
    error ApprovalExpired(uint256 deadline);
    error InvalidApprovalSignature();

    constructor(address admin, uint48 adminDelay)
        AccessControlDefaultAdminRules(adminDelay, admin)
        EIP712("OpenLedger DatanetRegistry", "1")
    {}

    /// @notice Create a datanet owned by the caller.
    function createDatanet(string calldata metadataURI) external returns (uint256 datanetId) {
        return _create(msg.sender, metadataURI);
    }

    /// @notice Create a datanet owned by `owner` (the datanets service acting for an authenticated user).
    function createDatanetFor(address owner, string calldata metadataURI)
        external
        onlyRole(PUBLISHER_ROLE)
        returns (uint256 datanetId)
    {
        return _create(owner, metadataURI);
    }

    /// @notice Publish the next version (1, 2, ...) of a datanet. Owner or PUBLISHER_ROLE.
    function publishVersion(uint256 datanetId, bytes32 rowsRoot, uint64 rowCount, uint64 contributorCount)
        external
        returns (uint32 version)
    {
        Datanet storage d = _ownedOrPublisher(datanetId);
        if (rowsRoot == bytes32(0)) revert ZeroRoot();
        if (rowCount == 0) revert ZeroRows();
        if (contributorCount == 0 || contributorCount > rowCount) {
            revert InvalidContributorCount(contributorCount, rowCount);
        }
        version = d.versionCount + 1;
        d.versionCount = version;
        _versions[datanetId][version] = Version(rowsRoot, rowCount, contributorCount, uint64(block.timestamp));
        emit DatanetVersionPublished(datanetId, version, rowsRoot, rowCount, contributorCount);
    }

    function setMetadataURI(uint256 datanetId, string calldata metadataURI) external {
        Datanet storage d = _ownedOrPublisher(datanetId);
        if (bytes(metadataURI).length == 0) revert EmptyMetadataURI();
        d.metadataURI = metadataURI;
        emit DatanetMetadataUpdated(datanetId, metadataURI);
    }

    /// @notice Only the owner itself can hand a datanet over (not the publisher service).
    function transferDatanetOwnership(uint256 datanetId, address newOwner) external {
        Datanet storage d = _existing(datanetId);
        if (d.owner != msg.sender) revert NotDatanetOwner(datanetId, msg.sender);
        if (newOwner == address(0)) revert ZeroAddress();
        d.owner = newOwner;
        emit DatanetOwnershipTransferred(datanetId, msg.sender, newOwner);
    }

    /// @notice Allow (or stop allowing) `builder` to register small models trained on this datanet. Owner only.
    function approveBuilder(uint256 datanetId, address builder, bool approved) external {
        Datanet storage d = _existing(datanetId);
        if (d.owner != msg.sender) revert NotDatanetOwner(datanetId, msg.sender);
        _approveBuilder(datanetId, builder, approved);
    }

    /// @notice The same approval, signed by the datanet's owner (EIP-712 `BuilderApproval`) and relayed by
    ///         anyone, so the owner pays no gas. Each signature carries the owner's next nonce: it works once,
    ///         and a later approval (or revocation) cannot be undone by replaying an earlier one.
    function approveBuilderBySig(
        uint256 datanetId,
        address builder,
        bool approved,
        uint256 deadline,
        bytes calldata signature
    ) external {
        if (block.timestamp > deadline) revert ApprovalExpired(deadline);
        address owner = _existing(datanetId).owner;
        bytes32 digest = _hashTypedDataV4(
            keccak256(
                abi.encode(
                    BUILDER_APPROVAL_TYPEHASH, datanetId, builder, approved, _useNonce(owner), deadline
                )
            )
        );
        // SignatureChecker: an EOA owner's ECDSA signature, or a contract owner's (a multisig's) ERC-1271.
        if (!SignatureChecker.isValidSignatureNow(owner, digest, signature)) revert InvalidApprovalSignature();
        _approveBuilder(datanetId, builder, approved);
    }

    /// @notice Whether `account` may register small models trained on this datanet: its owner, or a builder
    ///         the owner approved.
    function isApprovedBuilder(uint256 datanetId, address account) external view returns (bool) {
        Datanet storage d = _datanets[datanetId];
        return d.owner != address(0) && (d.owner == account || _builders[datanetId][account]);
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function getDatanet(uint256 datanetId) external view returns (Datanet memory) {
        return _existing(datanetId);
    }

    function getVersion(uint256 datanetId, uint32 version) external view returns (Version memory v) {
        v = _versions[datanetId][version];
        if (v.rowsRoot == bytes32(0)) revert UnknownDatanet(datanetId);
    }

    function versionExists(uint256 datanetId, uint32 version) external view returns (bool) {
        return _versions[datanetId][version].rowsRoot != bytes32(0);
    }

    function _create(address owner, string calldata metadataURI) private returns (uint256 datanetId) {
        if (owner == address(0)) revert ZeroAddress();
        if (bytes(metadataURI).length == 0) revert EmptyMetadataURI();
        datanetId = ++datanetCount;
        _datanets[datanetId] = Datanet(owner, uint64(block.timestamp), 0, metadataURI);
        emit DatanetCreated(datanetId, owner, metadataURI);
    }

    function _approveBuilder(uint256 datanetId, address builder, bool approved) private {
        if (builder == address(0)) revert ZeroAddress();
        _builders[datanetId][builder] = approved;
        emit BuilderApproved(datanetId, builder, approved);
    }

    function _existing(uint256 datanetId) private view returns (Datanet storage d) {
        d = _datanets[datanetId];
        if (d.owner == address(0)) revert UnknownDatanet(datanetId);
    }

    function _ownedOrPublisher(uint256 datanetId) private view returns (Datanet storage d) {
        d = _existing(datanetId);
        if (d.owner != msg.sender && !hasRole(PUBLISHER_ROLE, msg.sender)) {
            revert NotDatanetOwner(datanetId, msg.sender);
        }
    }
}
