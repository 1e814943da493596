// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IArbitrator} from "./IArbitrator.sol";

/// @title IArbitrable
/// @notice The arbitrable side of the ERC-792 pattern: the arbitrator calls `rule` once per dispute.
interface IArbitrable {
    /// @notice The arbitrator gave `ruling` for its dispute `disputeID`.
    /// @param arbitrator The arbitrator that ruled.
    /// @param disputeID The arbitrator's dispute id.
    /// @param ruling 0 = no decision, 1 = worker was right, 2 = challenger was right.
    event Ruling(IArbitrator indexed arbitrator, uint256 indexed disputeID, uint256 ruling);

    /// @notice Apply the arbitrator's ruling. Only the arbitrator may call, once per dispute.
    /// @param disputeID The arbitrator's dispute id (not the market's own dispute id).
    /// @param ruling 0 = no decision, 1 = worker was right, 2 = challenger was right.
    function rule(uint256 disputeID, uint256 ruling) external;
}
