// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";

/// @title Registry of datanets and their immutable versions
/// @notice A version pins the merkle root of the ordered accepted rows; once published it never changes, so
///         attribution and model provenance can reference (datanetId, version) forever.
///         The datanets service publishes on behalf of owners with PUBLISHER_ROLE; owners may also act directly.
contract DatanetRegistry is AccessControlDefaultAdminRules {
    bytes32 public constant PUBLISHER_ROLE = keccak256("PUBLISHER_ROLE");

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

    event DatanetCreated(uint256 indexed datanetId, address indexed owner, string metadataURI);
    event DatanetVersionPublished(
        uint256 indexed datanetId, uint32 indexed version, bytes32 rowsRoot, uint64 rowCount, uint64 contributorCount
    );
    event DatanetMetadataUpdated(uint256 indexed datanetId, string metadataURI);
    event DatanetOwnershipTransferred(uint256 indexed datanetId, address indexed from, address indexed to);

    error ZeroAddress();
    error EmptyMetadataURI();
    error UnknownDatanet(uint256 datanetId);
    error NotDatanetOwner(uint256 datanetId, address caller);
    error ZeroRoot();
    error ZeroRows();
    error InvalidContributorCount(uint64 contributorCount, uint64 rowCount);

    constructor(address admin, uint48 adminDelay) AccessControlDefaultAdminRules(adminDelay, admin) {}

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
