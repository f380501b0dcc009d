// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

interface ITokenReceiverHook {
    function onTokenTransfer(address from, uint256 amount) external;
}

/// @notice TEST ONLY. An ERC20 that calls `onTokenTransfer` on registered receivers (ERC-777/1363 style), the
///         way a hostile or hook-bearing token would hand control to a receiver in the middle of a transfer.
contract HookToken is ERC20 {
    mapping(address account => bool hooked) public hooked;

    constructor(address holder, uint256 supply) ERC20("Hook Token", "HOOK") {
        _mint(holder, supply);
    }

    function setHooked(address account, bool on) external {
        hooked[account] = on;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (hooked[to]) ITokenReceiverHook(to).onTokenTransfer(from, value);
    }
}
