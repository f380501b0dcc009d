// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice TEST ONLY. A receiver that, when it receives tokens, re-enters a target with prepared calldata and
///         bubbles up the revert, so tests can see exactly which guard stopped it.
contract ReentrantReceiver {
    address public target;
    bytes public payload;
    bool public armed;
    uint256 public reentries;

    function exec(address to, bytes calldata data) external returns (bytes memory ret) {
        bool ok;
        (ok, ret) = to.call(data);
        if (!ok) _bubble(ret);
    }

    function arm(address to, bytes calldata data) external {
        target = to;
        payload = data;
        armed = true;
    }

    function onTokenTransfer(address, uint256) external {
        if (!armed) return;
        armed = false;
        reentries += 1;
        (bool ok, bytes memory ret) = target.call(payload);
        if (!ok) _bubble(ret);
    }

    function _bubble(bytes memory ret) private pure {
        assembly {
            revert(add(ret, 32), mload(ret))
        }
    }
}
