// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice The read side of Staking that other contracts (and off-chain services) rely on.
interface IStakingView {
    enum StakeRole {
        Contributor,
        Validator,
        ModelPublisher
    }

    function activeStake(address account, StakeRole role, bytes32 subject) external view returns (uint256);

    function meetsMinimum(address account, StakeRole role, bytes32 subject) external view returns (bool);
}
