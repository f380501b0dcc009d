// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";

interface IDatanetVersions {
    function versionExists(uint256 datanetId, uint32 version) external view returns (bool);

    function isApprovedBuilder(uint256 datanetId, address account) external view returns (bool);
}

/// @title Registry of models and LoRA adapters
/// @notice Records who owns a model, what it is (content hash of its files), which base model an adapter
///         extends, which datanet versions it was trained on (the provenance attribution pays), and its prices.
///         A *model* (not an adapter) trained on datanets — a small model built from those datanets alone — can
///         only be registered for an owner each datanet's owner approved (`DatanetRegistry.isApprovedBuilder`),
///         so nobody can take a datanet's small model, set its price and collect the model owner's share.
///         Adapters stay open: anyone may fine-tune on published data, and span attribution pays its rows.
contract ModelRegistry is AccessControlDefaultAdminRules {
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");

    enum ModelKind {
        Model,
        Adapter
    }

    struct DatanetVersionRef {
        uint256 datanetId;
        uint32 version;
    }

    struct Model {
        address owner;
        ModelKind kind;
        bool retired;
        uint64 registeredAt;
        bytes32 contentHash;
        /// @dev For adapters: the content hash (or name hash) of the base model they extend; zero for models.
        bytes32 baseModel;
        /// @dev Wei of OPEN per 1000 tokens.
        uint128 pricePer1kInput;
        uint128 pricePer1kOutput;
        string metadataURI;
    }

    struct Registration {
        ModelKind kind;
        bytes32 contentHash;
        bytes32 baseModel;
        DatanetVersionRef[] trainedOn;
        uint128 pricePer1kInput;
        uint128 pricePer1kOutput;
        string metadataURI;
    }

    IDatanetVersions public immutable datanets;
    uint256 public modelCount;
    mapping(uint256 modelId => Model model) private _models;
    mapping(uint256 modelId => DatanetVersionRef[] refs) private _trainedOn;
    mapping(bytes32 contentHash => uint256 modelId) public modelIdByContentHash;

    event ModelRegistered(
        uint256 indexed modelId,
        address indexed owner,
        ModelKind kind,
        bytes32 indexed contentHash,
        bytes32 baseModel,
        DatanetVersionRef[] trainedOn,
        uint128 pricePer1kInput,
        uint128 pricePer1kOutput,
        string metadataURI
    );
    event ModelPricesUpdated(uint256 indexed modelId, uint128 pricePer1kInput, uint128 pricePer1kOutput);
    event ModelRetired(uint256 indexed modelId, address indexed by);
    event ModelOwnershipTransferred(uint256 indexed modelId, address indexed from, address indexed to);

    error ZeroAddress();
    error ZeroContentHash();
    error DuplicateContentHash(bytes32 contentHash, uint256 existingModelId);
    error AdapterNeedsBaseModel();
    error ModelCannotHaveBaseModel();
    error UnknownDatanetVersion(uint256 datanetId, uint32 version);
    error UnknownModel(uint256 modelId);
    error NotModelOwner(uint256 modelId, address caller);
    error ModelIsRetired(uint256 modelId);
    error BuilderNotApproved(uint256 datanetId, address owner);

    constructor(IDatanetVersions datanets_, address admin, uint48 adminDelay)
        AccessControlDefaultAdminRules(adminDelay, admin)
    {
        if (address(datanets_) == address(0)) revert ZeroAddress();
        datanets = datanets_;
    }

    function registerModel(Registration calldata r) external returns (uint256 modelId) {
        return _register(msg.sender, r);
    }

    /// @notice Register for `owner` (a service acting for an authenticated builder).
    function registerModelFor(address owner, Registration calldata r)
        external
        onlyRole(REGISTRAR_ROLE)
        returns (uint256 modelId)
    {
        return _register(owner, r);
    }

    function updatePrices(uint256 modelId, uint128 pricePer1kInput, uint128 pricePer1kOutput) external {
        Model storage m = _ownedLive(modelId);
        m.pricePer1kInput = pricePer1kInput;
        m.pricePer1kOutput = pricePer1kOutput;
        emit ModelPricesUpdated(modelId, pricePer1kInput, pricePer1kOutput);
    }

    /// @notice Retire a model for good (owner, or the admin for abuse). Retired models are not served or paid.
    function retire(uint256 modelId) external {
        Model storage m = _existing(modelId);
        if (m.owner != msg.sender && !hasRole(DEFAULT_ADMIN_ROLE, msg.sender)) {
            revert NotModelOwner(modelId, msg.sender);
        }
        if (m.retired) revert ModelIsRetired(modelId);
        m.retired = true;
        emit ModelRetired(modelId, msg.sender);
    }

    function transferModelOwnership(uint256 modelId, address newOwner) external {
        Model storage m = _ownedLive(modelId);
        if (newOwner == address(0)) revert ZeroAddress();
        m.owner = newOwner;
        emit ModelOwnershipTransferred(modelId, msg.sender, newOwner);
    }

    function getModel(uint256 modelId) external view returns (Model memory) {
        return _existing(modelId);
    }

    function getTrainingData(uint256 modelId) external view returns (DatanetVersionRef[] memory) {
        _existing(modelId);
        return _trainedOn[modelId];
    }

    function _register(address owner, Registration calldata r) private returns (uint256 modelId) {
        if (owner == address(0)) revert ZeroAddress();
        if (r.contentHash == bytes32(0)) revert ZeroContentHash();
        uint256 existing = modelIdByContentHash[r.contentHash];
        if (existing != 0) revert DuplicateContentHash(r.contentHash, existing);
        if (r.kind == ModelKind.Adapter && r.baseModel == bytes32(0)) revert AdapterNeedsBaseModel();
        if (r.kind == ModelKind.Model && r.baseModel != bytes32(0)) revert ModelCannotHaveBaseModel();
        modelId = ++modelCount;
        DatanetVersionRef[] storage refs = _trainedOn[modelId];
        for (uint256 i = 0; i < r.trainedOn.length; ++i) {
            DatanetVersionRef calldata ref = r.trainedOn[i];
            if (!datanets.versionExists(ref.datanetId, ref.version)) {
                revert UnknownDatanetVersion(ref.datanetId, ref.version);
            }
            if (r.kind == ModelKind.Model && !datanets.isApprovedBuilder(ref.datanetId, owner)) {
                revert BuilderNotApproved(ref.datanetId, owner);
            }
            refs.push(ref);
        }
        modelIdByContentHash[r.contentHash] = modelId;
        _models[modelId] = Model({
            owner: owner,
            kind: r.kind,
            retired: false,
            registeredAt: uint64(block.timestamp),
            contentHash: r.contentHash,
            baseModel: r.baseModel,
            pricePer1kInput: r.pricePer1kInput,
            pricePer1kOutput: r.pricePer1kOutput,
            metadataURI: r.metadataURI
        });
        emit ModelRegistered(
            modelId,
            owner,
            r.kind,
            r.contentHash,
            r.baseModel,
            r.trainedOn,
            r.pricePer1kInput,
            r.pricePer1kOutput,
            r.metadataURI
        );
    }

    function _existing(uint256 modelId) private view returns (Model storage m) {
        m = _models[modelId];
        if (m.owner == address(0)) revert UnknownModel(modelId);
    }

    function _ownedLive(uint256 modelId) private view returns (Model storage m) {
        m = _existing(modelId);
        if (m.owner != msg.sender) revert NotModelOwner(modelId, msg.sender);
        if (m.retired) revert ModelIsRetired(modelId);
    }
}
