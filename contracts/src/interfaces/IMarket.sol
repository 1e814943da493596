// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IArbitrable} from "./IArbitrable.sol";
import {IArbitrator} from "./IArbitrator.sol";

/// @title IMarket
/// @notice Escrow, stakes, round settlement and disputes of the crowdtrain training-compute
/// market. The market holds every token: job escrows, pending round totals, stakes (active and
/// unbonding), open challenge bonds and dispute payouts not yet withdrawn.
/// @dev Amounts are in the payment token's smallest unit, times are unix seconds. Byte-level
/// definitions (leaves, EIP-712) are in docs/protocol.md; state machines in docs/contracts.md.
interface IMarket is IArbitrable {
    // ------------------------------------------------------------------ types

    /// @notice Constructor parameters (see docs/contracts.md "Parameters").
    struct MarketParams {
        uint256 minWorkerStake; // active stake a worker needs (role 1)
        uint256 minVerifierStake; // active stake a verifier needs to challenge or sit on a jury (role 2)
        uint256 challengeBond; // tokens a challenger locks per dispute
        uint16 slashBps; // share of a losing worker's role-1 stake (active + unbonding) slashed, in 1/10000
        uint16 jurorShareBps; // share of the slash (ruling 2) or the bond (ruling 1) paid to the majority jurors, in 1/10000
        uint64 unbondingPeriod; // seconds between requestUnstake and withdrawStake; also the longest challenge window a job may use
        uint64 disputeTimeout; // seconds after which anyone may close an unruled dispute with ruling 0
    }

    /// @notice Lifecycle of a job: Open -> (Completed) -> Closed.
    enum JobStatus {
        None,
        Open,
        Completed,
        Closed
    }

    /// @notice Lifecycle of a round: Committed -> Finalized.
    enum RoundStatus {
        None,
        Committed,
        Finalized
    }

    /// @notice State of a round leaf, keyed by its leaf hash.
    enum LeafStatus {
        None, // never challenged, not claimed
        Challenged, // an open dispute covers it
        Upheld, // ruled 0 or 1: payable, can never be challenged again
        Revoked, // ruled 2: not payable, its amount went back to the job escrow
        Claimed // paid
    }

    /// @notice Lifecycle of a dispute.
    enum DisputeStatus {
        None,
        Open,
        Ruled, // the arbiter called rule
        TimedOut // nobody ruled within disputeTimeout; applied as ruling 0
    }

    struct StakeView {
        uint256 active; // counts toward the minimum stake
        uint256 unbonding; // requested out, withdrawable at unlockAt, still slashable
        uint64 unlockAt; // 0 when nothing is unbonding
    }

    struct JobView {
        address owner;
        address coordinator;
        bytes32 specHash;
        uint256 rewardPerUnit;
        uint256 maxUnits;
        uint256 unitsCommitted;
        uint256 escrow; // budget not committed to any round, plus amounts revoked by lost disputes, minus refunds
        uint64 challengeWindow;
        uint64 deadline;
        JobStatus status;
    }

    struct RoundView {
        bytes32 root;
        uint256 total; // committed total
        uint256 pending; // total minus claims minus revoked leaves
        uint256 numUnits;
        uint64 committedAt;
        uint64 challengeEnd; // challenges allowed while block.timestamp < challengeEnd
        uint32 openDisputes;
        RoundStatus status;
    }

    struct DisputeView {
        uint256 jobId;
        uint256 round;
        bytes32 leaf;
        address worker;
        address challenger;
        uint256 amount; // the leaf's amount
        uint256 bond;
        uint256 arbiterDisputeId;
        uint64 openedAt;
        DisputeStatus status;
        uint8 ruling;
    }

    /// @notice Fields of a round leaf (docs/protocol.md "Round leaf").
    struct RoundLeaf {
        uint256 jobId;
        uint256 round;
        uint256 unit;
        address worker;
        uint256 amount;
        bytes32 resultHash; // EIP-712 WorkResult digest the worker signed
    }

    /// @notice Fields of a trace leaf (docs/protocol.md "Trace leaf").
    struct TraceLeaf {
        uint256 step;
        bytes32 batchDigest;
        bytes32 stateDigest; // digest of the state after the step
        uint64 lossBits; // float64 bit pattern of the step's loss
    }

    /// @notice Everything a challenge carries; emitted in full with `ChallengeEvidence`.
    struct Evidence {
        RoundLeaf leaf;
        bytes32[] leafProof; // against the round root
        bytes32 inputHash; // WorkResult fields the worker signed
        bytes32 outputHash;
        bytes32 traceRoot;
        bytes signature; // 65 bytes r ++ s ++ v over the WorkResult digest
        uint256 step; // the disputed step i
        TraceLeaf prev; // leaf i-1; ignored when step == 0 (the state before step 0 is inputHash)
        bytes32[] prevProof; // against traceRoot; ignored when step == 0
        TraceLeaf cur; // leaf i
        bytes32[] curProof; // against traceRoot
    }

    // ------------------------------------------------------------------ errors

    error MarketZeroAddress();
    error MarketInvalidParams(string what);
    error MarketInvalidRole(uint8 role);
    error MarketZeroAmount();
    error MarketAmountTooLarge(uint256 amount, uint256 max);
    error MarketInsufficientStake(address account, uint256 stake, uint256 needed);
    error MarketUnstakeTooLarge(address account, uint8 role, uint256 active, uint256 requested);
    error MarketNothingUnbonding(address account, uint8 role);
    error MarketStakeLocked(address account, uint8 role, uint64 unlockAt, uint64 nowTime);
    error MarketAccountInDispute(address account, uint256 openDisputes);

    error MarketZeroBudget();
    error MarketZeroRewardPerUnit();
    error MarketZeroMaxUnits();
    error MarketInvalidChallengeWindow(uint64 window, uint64 maxWindow);
    error MarketDeadlineInPast(uint64 deadline, uint64 nowTime);
    error MarketUnknownJob(uint256 jobId);
    error MarketNotJobOwner(uint256 jobId, address caller, address owner);
    error MarketNotCoordinator(uint256 jobId, address caller, address coordinator);
    error MarketJobNotOpen(uint256 jobId, JobStatus status);
    error MarketJobNotClosable(uint256 jobId, uint64 deadline, uint64 nowTime);
    error MarketJobExpired(uint256 jobId, uint64 deadline, uint64 nowTime);

    error MarketZeroRoot();
    error MarketZeroUnits();
    error MarketRoundAlreadyCommitted(uint256 jobId, uint256 round);
    error MarketRoundTotalTooHigh(uint256 jobId, uint256 round, uint256 total, uint256 cap);
    error MarketTooManyUnits(uint256 jobId, uint256 unitsCommitted, uint256 numUnits, uint256 maxUnits);
    error MarketInsufficientEscrow(uint256 jobId, uint256 escrow, uint256 needed);
    error MarketUnknownRound(uint256 jobId, uint256 round);
    error MarketRoundNotFinalized(uint256 jobId, uint256 round);
    error MarketRoundAlreadyFinalized(uint256 jobId, uint256 round);
    error MarketChallengeWindowOpen(uint256 jobId, uint256 round, uint64 challengeEnd, uint64 nowTime);
    error MarketChallengeWindowClosed(uint256 jobId, uint256 round, uint64 challengeEnd, uint64 nowTime);
    error MarketRoundHasOpenDisputes(uint256 jobId, uint256 round, uint32 openDisputes);
    error MarketInvalidProof(bytes32 leaf, bytes32 root);
    error MarketLeafNotClaimable(bytes32 leaf, LeafStatus status);
    error MarketRoundOverpaid(uint256 jobId, uint256 round, uint256 pending, uint256 amount);

    error MarketArbiterNotSet();
    error MarketArbiterAlreadySet(address arbiter);
    error MarketArbitrationFeeUnsupported(uint256 cost);
    error MarketSelfChallenge(address account);
    error MarketLeafNotChallengeable(bytes32 leaf, LeafStatus status);
    error MarketResultHashMismatch(bytes32 committed, bytes32 recomputed);
    error MarketInvalidSignature(address worker, address recovered);
    error MarketInvalidTraceStep(uint256 expected, uint256 given);
    error MarketInvalidTraceProof(uint256 step, bytes32 leaf, bytes32 traceRoot);
    error MarketNotArbiter(address caller, address arbiter);
    error MarketUnknownDispute(uint256 arbiterDisputeId);
    error MarketDisputeNotOpen(uint256 disputeId, DisputeStatus status);
    error MarketInvalidRuling(uint256 ruling);
    error MarketDisputeNotTimedOut(uint256 disputeId, uint64 timeoutAt, uint64 nowTime);
    error MarketNoPayout(address account);

    // ------------------------------------------------------------------ events

    event ArbiterSet(IArbitrator indexed arbiter);
    event Staked(address indexed account, uint8 indexed role, uint256 amount, uint256 active);
    event UnstakeRequested(
        address indexed account, uint8 indexed role, uint256 amount, uint256 unbonding, uint64 unlockAt
    );
    event StakeWithdrawn(address indexed account, uint8 indexed role, uint256 amount);
    /// @param reason Machine-readable reason code, e.g. `"faulty-training-step"` as bytes32.
    event Slashed(
        address indexed account, uint8 indexed role, uint256 amount, uint256 indexed disputeId, bytes32 reason
    );

    event JobPosted(
        uint256 indexed jobId,
        address indexed owner,
        address indexed coordinator,
        bytes32 specHash,
        uint256 budget,
        uint256 rewardPerUnit,
        uint256 maxUnits,
        uint64 challengeWindow,
        uint64 deadline
    );
    event JobToppedUp(uint256 indexed jobId, address indexed from, uint256 amount, uint256 escrow);
    event JobCompleted(uint256 indexed jobId);
    event JobClosed(uint256 indexed jobId, uint256 refund);

    event RoundCommitted(
        uint256 indexed jobId, uint256 indexed round, bytes32 root, uint256 total, uint256 numUnits, uint64 challengeEnd
    );
    event RoundFinalized(uint256 indexed jobId, uint256 indexed round);
    event Claimed(
        uint256 indexed jobId, uint256 indexed round, uint256 unit, address indexed worker, uint256 amount, bytes32 leaf
    );

    event DisputeOpened(
        uint256 indexed disputeId,
        uint256 indexed arbiterDisputeId,
        uint256 indexed jobId,
        uint256 round,
        bytes32 leaf,
        address worker,
        address challenger,
        uint256 bond
    );
    /// @notice The full evidence of dispute `disputeId`, for verifiers and jurors to read from logs.
    event ChallengeEvidence(uint256 indexed disputeId, Evidence evidence);
    /// @notice Outcome of dispute `disputeId` (ruling 0 also after a timeout).
    /// @param slashed Taken from the worker's stake (ruling 2).
    /// @param challengerPayout Credited to the challenger (bond back + reward on 2, bond back on 0).
    /// @param workerPayout Credited to the worker (bond minus juror share on 1).
    /// @param jurorShare Sent to the arbiter for the majority jurors.
    /// @param returnedToEscrow The revoked leaf's amount moved from the round back to the job escrow (ruling 2).
    event DisputeResolved(
        uint256 indexed disputeId,
        uint8 ruling,
        uint256 slashed,
        uint256 challengerPayout,
        uint256 workerPayout,
        uint256 jurorShare,
        uint256 returnedToEscrow
    );
    event DisputeTimedOut(uint256 indexed disputeId);
    event PayoutCredited(address indexed account, uint256 indexed disputeId, uint256 amount);
    event PayoutWithdrawn(address indexed account, uint256 amount);

    // ------------------------------------------------------------------ admin

    /// @notice Wire the arbiter; callable once, by the owner (deployer).
    /// @param arbiter_ The ERC-792 arbitrator that rules this market's disputes (fee must be 0).
    function setArbiter(IArbitrator arbiter_) external;

    // ------------------------------------------------------------------ stakes

    /// @notice Pull `amount` tokens from the caller into their active stake for `role`.
    /// @param role 1 = Worker, 2 = Verifier.
    /// @param amount Tokens (> 0); the caller must have approved the market.
    function stake(uint8 role, uint256 amount) external;

    /// @notice Move `amount` from active to unbonding stake; unlockAt restarts at now + unbondingPeriod
    /// for everything unbonding in this role. Unbonding stake stays slashable.
    /// @param role 1 = Worker, 2 = Verifier.
    /// @param amount Tokens (> 0, <= active).
    function requestUnstake(uint8 role, uint256 amount) external;

    /// @notice Pay out all unbonding stake of `role` once unlockAt has passed and the caller is
    /// party to no open dispute.
    /// @param role 1 = Worker, 2 = Verifier.
    function withdrawStake(uint8 role) external;

    // ------------------------------------------------------------------ jobs

    /// @notice Post a job and pull `budget` tokens from the caller into its escrow.
    /// @param specHash SHA-256 of the canonical job spec (docs/protocol.md).
    /// @param budget Tokens escrowed (> 0).
    /// @param rewardPerUnit Most a single unit may pay (> 0).
    /// @param maxUnits Most units all rounds together may commit (> 0, < 2**128).
    /// @param coordinator The only address that may commit rounds and complete the job.
    /// @param challengeWindow Seconds after a round commit during which it can be challenged
    /// (> 0, <= unbondingPeriod).
    /// @param deadline No round commits at or after this time; the owner may close from then on.
    /// @return jobId Sequential id starting at 1.
    function postJob(
        bytes32 specHash,
        uint256 budget,
        uint256 rewardPerUnit,
        uint256 maxUnits,
        address coordinator,
        uint64 challengeWindow,
        uint64 deadline
    ) external returns (uint256 jobId);

    /// @notice Add `amount` tokens from the caller to an open job's escrow (anyone may; refunds go to the owner).
    function topUp(uint256 jobId, uint256 amount) external;

    /// @notice Coordinator marks the job complete: no more rounds; the owner may close at once.
    function completeJob(uint256 jobId) external;

    /// @notice Owner refunds the escrow after the deadline or completion. Callable again to
    /// sweep amounts that lost disputes return to the escrow later (refund may be 0).
    function closeJob(uint256 jobId) external;

    // ------------------------------------------------------------------ rounds

    /// @notice Coordinator commits one Merkle root over a round's leaves and moves `total` from
    /// escrow to the round's pending payout. Cost does not depend on `numUnits`.
    /// @param round Any id not committed before for this job.
    /// @param root Root of the round tree (docs/protocol.md "Round leaf").
    /// @param total Sum of the leaves' amounts (<= numUnits * rewardPerUnit, <= escrow, < 2**128).
    /// @param numUnits Leaves in the tree (> 0; all rounds together <= maxUnits).
    function commitRound(uint256 jobId, uint256 round, bytes32 root, uint256 total, uint256 numUnits) external;

    /// @notice Anyone finalizes a round once its challenge window is over and no dispute is open.
    function finalizeRound(uint256 jobId, uint256 round) external;

    /// @notice Anyone pays a finalized round's leaf to its `worker`, once; revoked leaves never pay.
    /// @param proof Merkle proof of the leaf against the round root.
    function claim(
        uint256 jobId,
        uint256 round,
        uint256 unit,
        address worker,
        uint256 amount,
        bytes32 resultHash,
        bytes32[] calldata proof
    ) external;

    // ------------------------------------------------------------------ disputes

    /// @notice A verifier with at least minVerifierStake active challenges one leaf inside the
    /// round's challenge window, locking `challengeBond` tokens. The market checks the leaf proof,
    /// that resultHash is the EIP-712 digest of the WorkResult fields signed by leaf.worker, and the
    /// trace leaves' proofs; then it opens a dispute at the arbiter. One dispute per leaf, ever.
    /// @return disputeId The market's dispute id (sequential from 1).
    function challenge(Evidence calldata evidence) external returns (uint256 disputeId);

    /// @notice Anyone closes a dispute the arbiter has not ruled within disputeTimeout, as ruling 0.
    function timeoutDispute(uint256 disputeId) external;

    /// @notice Withdraw dispute payouts credited to the caller.
    function withdrawPayout() external;

    // ------------------------------------------------------------------ views

    function token() external view returns (IERC20);
    function arbiter() external view returns (IArbitrator);
    function params() external view returns (MarketParams memory);
    /// @notice Minimum active stake for `role` (1 = Worker, 2 = Verifier).
    function minStake(uint8 role) external view returns (uint256);
    function getStake(address account, uint8 role) external view returns (StakeView memory);
    function getJob(uint256 jobId) external view returns (JobView memory);
    function getRound(uint256 jobId, uint256 round) external view returns (RoundView memory);
    function getDispute(uint256 disputeId) external view returns (DisputeView memory);
    /// @notice The market's dispute id for arbiter dispute `arbiterDisputeId` (0 if unknown).
    function disputeIdOf(uint256 arbiterDisputeId) external view returns (uint256);
    function leafStatus(bytes32 leaf) external view returns (LeafStatus);
    function isLeafClaimed(bytes32 leaf) external view returns (bool);
    function jobCount() external view returns (uint256);
    function disputeCount() external view returns (uint256);
    /// @notice Open disputes the account is party to (as worker or challenger); blocks withdrawStake.
    function openDisputesOf(address account) external view returns (uint256);
    function payoutOf(address account) external view returns (uint256);

    /// @notice Verifiers with active role-2 stake >= minVerifierStake (the jury pool), in set order.
    function verifierCount() external view returns (uint256);
    function verifierAt(uint256 index) external view returns (address);
    function isEligibleVerifier(address account) external view returns (bool);

    /// @notice EIP-712 domain separator (name "Crowdtrain", version "1", this chain, this contract).
    function domainSeparator() external view returns (bytes32);
    /// @notice EIP-712 digest of WorkResult(jobId, round, unit, inputHash, outputHash, traceRoot).
    function hashWorkResult(
        uint256 jobId,
        uint256 round,
        uint256 unit,
        bytes32 inputHash,
        bytes32 outputHash,
        bytes32 traceRoot
    ) external view returns (bytes32);
    /// @notice Round leaf hash (double keccak of the ABI-encoded fields).
    function hashRoundLeaf(RoundLeaf calldata leaf) external pure returns (bytes32);
    /// @notice Trace leaf hash (double keccak of the ABI-encoded fields).
    function hashTraceLeaf(TraceLeaf calldata leaf) external pure returns (bytes32);
}
