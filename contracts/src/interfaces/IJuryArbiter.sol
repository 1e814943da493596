// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IArbitrator} from "./IArbitrator.sol";
import {IMarket} from "./IMarket.sol";

/// @title IJuryArbiter
/// @notice ERC-792 arbitrator whose rulings come from a jury of the market's staked verifiers,
/// drawn pseudo-randomly when a dispute is created, voting by commit-reveal with deadlines.
/// @dev Timeline per dispute: created at t0; commits while now < t0 + commitPeriod; reveals while
/// commitDeadline <= now < commitDeadline + revealPeriod (reveals start early once every juror
/// committed); `resolve` by anyone once the reveal deadline passed, or once every juror revealed,
/// or once the commit deadline passed with no commits, or at once when no juror could be drawn.
/// Ruling: 2 if votes for 2 > votes for 1, 1 if fewer, 0 on a tie (including no votes).
/// Jurors who revealed the majority choice share the juror reward the market sends.
interface IJuryArbiter is IArbitrator {
    struct JuryParams {
        uint8 jurySize; // jurors drawn per dispute (1..32), fewer when fewer are eligible
        uint64 commitPeriod; // seconds
        uint64 revealPeriod; // seconds
    }

    struct JuryDisputeView {
        address worker;
        address challenger;
        uint64 createdAt;
        uint64 commitDeadline;
        uint64 revealDeadline;
        uint8 numJurors;
        uint8 commits;
        uint8 reveals;
        uint8 votesWorker; // revealed votes for ruling 1
        uint8 votesChallenger; // revealed votes for ruling 2
        bool resolved;
        uint8 ruling;
        uint256 jurorReward; // tokens the market sent for the majority jurors
    }

    struct VoteView {
        bytes32 commitment;
        uint8 choice; // 0 until revealed
        bool revealed;
    }

    error JuryInvalidParams(string what);
    error JuryNotMarket(address caller);
    error JuryInvalidChoices(uint256 choices);
    error JuryFeeNotAccepted(uint256 value);
    error JuryUnknownDispute(uint256 disputeId);
    error JuryNotJuror(uint256 disputeId, address account);
    error JuryCommitClosed(uint256 disputeId, uint64 commitDeadline, uint64 nowTime);
    error JuryAlreadyCommitted(uint256 disputeId, address juror);
    error JuryZeroCommitment();
    error JuryRevealNotOpen(uint256 disputeId, uint64 commitDeadline, uint64 nowTime);
    error JuryRevealClosed(uint256 disputeId, uint64 revealDeadline, uint64 nowTime);
    error JuryNotCommitted(uint256 disputeId, address juror);
    error JuryAlreadyRevealed(uint256 disputeId, address juror);
    error JuryInvalidChoice(uint256 choice);
    error JuryCommitmentMismatch(uint256 disputeId, address juror);
    error JuryNotResolvable(uint256 disputeId, uint64 revealDeadline, uint64 nowTime);
    error JuryAlreadyResolved(uint256 disputeId);
    error JuryNoReward(address account);

    event JurorsDrawn(uint256 indexed disputeId, address[] jurors, uint64 commitDeadline, uint64 revealDeadline);
    event VoteCommitted(uint256 indexed disputeId, address indexed juror, bytes32 commitment);
    event VoteRevealed(uint256 indexed disputeId, address indexed juror, uint8 choice);
    event JuryResolved(
        uint256 indexed disputeId, uint8 ruling, uint8 votesWorker, uint8 votesChallenger, uint256 jurorReward
    );
    event JurorRewarded(uint256 indexed disputeId, address indexed juror, uint256 amount);
    event RewardWithdrawn(address indexed juror, uint256 amount);

    /// @notice A drawn juror commits `keccak256(abi.encode(disputeId, juror, choice, salt))` before the commit deadline.
    function commitVote(uint256 disputeId, bytes32 commitment) external;

    /// @notice A juror reveals `choice` (1 = worker right, 2 = challenger right) and `salt` during the reveal phase.
    function revealVote(uint256 disputeId, uint8 choice, bytes32 salt) external;

    /// @notice Anyone tallies the votes and passes the ruling to the market (see the timeline above).
    function resolve(uint256 disputeId) external;

    /// @notice Withdraw the caller's accumulated juror rewards.
    function withdrawReward() external;

    function market() external view returns (IMarket);
    function params() external view returns (JuryParams memory);
    function disputeCount() external view returns (uint256);
    function getDispute(uint256 disputeId) external view returns (JuryDisputeView memory);
    function jurorsOf(uint256 disputeId) external view returns (address[] memory);
    function voteOf(uint256 disputeId, address juror) external view returns (VoteView memory);
    function rewardOf(address juror) external view returns (uint256);
    /// @notice The commitment a juror submits: keccak256(abi.encode(disputeId, juror, choice, salt)).
    function voteCommitment(uint256 disputeId, address juror, uint8 choice, bytes32 salt)
        external
        pure
        returns (bytes32);
}
