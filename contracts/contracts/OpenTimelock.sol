// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @title The platform's timelock: holds every admin role of every OpenLedger contract
/// @notice OpenZeppelin's TimelockController with one addition: a floor under its delay. The delay is what gives
///         users time to leave (withdraw, unbond) before an executed proposal can touch them, so governance
///         itself must not be able to shrink it below `minDelayFloor` (fixed at deployment).
///
///         The constructor accepts an initial delay below the floor, so that a deployment can wire the platform
///         through the timelock with delay 0 and then raise it (deployPlatform's production profile does, in
///         the same batch that removes the deployer's roles); once raised, `updateDelay` never goes below it.
contract OpenTimelock is TimelockController {
    /// @notice The lowest delay `updateDelay` accepts.
    uint256 public immutable minDelayFloor;

    error DelayBelowFloor(uint256 delay, uint256 floor);

    constructor(
        uint256 minDelay,
        address[] memory proposers,
        address[] memory executors,
        address admin,
        uint256 minDelayFloor_
    ) TimelockController(minDelay, proposers, executors, admin) {
        minDelayFloor = minDelayFloor_;
    }

    /// @inheritdoc TimelockController
    function updateDelay(uint256 newDelay) public override {
        if (newDelay < minDelayFloor) revert DelayBelowFloor(newDelay, minDelayFloor);
        super.updateDelay(newDelay);
    }
}
