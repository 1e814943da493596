// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IArbitrable} from "./IArbitrable.sol";

/// @title IArbitrator
/// @notice The arbitrator side of the ERC-792 pattern (createDispute / rule), reduced to what
/// the crowdtrain market uses: no appeals, and no arbitration fee in ether (the market pays
/// jurors in the payment token out of the loser's slash or bond instead, see docs/contracts.md).
interface IArbitrator {
    /// @notice Status of a dispute at the arbitrator.
    enum DisputeStatus {
        Waiting, // voting in progress
        Appealable, // unused: no appeals
        Solved // ruling given to the arbitrable
    }

    /// @notice A dispute was created for `arbitrable`.
    /// @param disputeID The arbitrator's id of the new dispute.
    /// @param arbitrable The contract that will receive the ruling.
    event DisputeCreation(uint256 indexed disputeID, IArbitrable indexed arbitrable);

    /// @notice Create a dispute with `choices` possible rulings (1..choices; 0 = no decision).
    /// @param choices Number of rulings besides 0.
    /// @param extraData Arbitrator-specific data (the JuryArbiter takes `abi.encode(address worker, address challenger)`).
    /// @return disputeID The arbitrator's id for the dispute.
    function createDispute(uint256 choices, bytes calldata extraData) external payable returns (uint256 disputeID);

    /// @notice Fee in wei that `createDispute` requires (0 for the JuryArbiter).
    /// @param extraData As for `createDispute`.
    /// @return cost Fee in wei.
    function arbitrationCost(bytes calldata extraData) external view returns (uint256 cost);

    /// @notice Current status of dispute `disputeID`.
    /// @param disputeID The arbitrator's dispute id.
    /// @return status Waiting while votes are open, Solved once ruled.
    function disputeStatus(uint256 disputeID) external view returns (DisputeStatus status);

    /// @notice The ruling the dispute would get if resolved now (0 while undecided or tied).
    /// @param disputeID The arbitrator's dispute id.
    /// @return ruling 0, 1 or 2.
    function currentRuling(uint256 disputeID) external view returns (uint256 ruling);
}
