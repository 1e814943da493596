// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IArbitrable} from "./interfaces/IArbitrable.sol";
import {IArbitrator} from "./interfaces/IArbitrator.sol";
import {IMarket} from "./interfaces/IMarket.sol";
import {Leaves} from "./libraries/Leaves.sol";
import {MarketStaking} from "./MarketStaking.sol";

/// @title Market
/// @notice Escrow, round settlement and disputes of crowdtrain (stakes in MarketStaking).
/// Money flow, state machines and timeouts: docs/contracts.md.
/// @dev Deploy wiring: `new Market(token, params)` by the deployer (owner), then
/// `new JuryArbiter(market, juryParams)`, then `market.setArbiter(arbiter)` once.
contract Market is MarketStaking, EIP712, Ownable {
    using SafeERC20 for IERC20;

    struct Job {
        address owner; // slot 0
        uint64 deadline;
        JobStatus status;
        address coordinator; // slot 1
        uint64 challengeWindow;
        bytes32 specHash; // slot 2
        uint256 rewardPerUnit; // slot 3
        uint128 maxUnits; // slot 4
        uint128 unitsCommitted;
        uint256 escrow; // slot 5
    }

    /// @dev Three slots; claim reads slots 0-1 and writes slot 1 only.
    struct Round {
        bytes32 root; // slot 0
        uint128 pending; // slot 1
        uint64 challengeEnd;
        uint32 openDisputes;
        RoundStatus status;
        uint128 total; // slot 2
        uint128 numUnits;
    }

    struct Dispute {
        uint256 jobId;
        uint256 round;
        bytes32 leaf;
        address worker;
        uint64 openedAt;
        DisputeStatus status;
        uint8 ruling;
        address challenger;
        uint256 amount;
        uint256 bond;
        uint256 arbiterDisputeId;
    }

    /// @dev Money moved by one ruling (fields of `DisputeResolved`).
    struct Outcome {
        uint256 slashed;
        uint256 challengerPayout;
        uint256 workerPayout;
        uint256 jurorShare;
        uint256 returned;
    }

    IArbitrator private _arbiter;
    uint256 private _jobCount;
    uint256 private _disputeCount;
    mapping(uint256 jobId => Job) private _jobs;
    mapping(uint256 jobId => mapping(uint256 round => Round)) private _rounds;
    mapping(bytes32 leaf => LeafStatus) private _leafStatus;
    mapping(uint256 disputeId => Dispute) private _disputes;
    mapping(uint256 arbiterDisputeId => uint256 disputeId) private _disputeIdOf;

    /// @param token_ Payment token (any ERC20 without transfer fees or rebasing).
    /// @param p Parameters, see IMarket.MarketParams.
    constructor(IERC20 token_, MarketParams memory p)
        MarketStaking(token_, p)
        EIP712("Crowdtrain", "1")
        Ownable(msg.sender)
    {}

    /// @inheritdoc IMarket
    function setArbiter(IArbitrator arbiter_) external onlyOwner {
        if (address(arbiter_) == address(0)) revert MarketZeroAddress();
        if (address(_arbiter) != address(0)) revert MarketArbiterAlreadySet(address(_arbiter));
        _arbiter = arbiter_;
        emit ArbiterSet(arbiter_);
    }

    // ------------------------------------------------------------------ jobs

    /// @inheritdoc IMarket
    function postJob(
        bytes32 specHash,
        uint256 budget,
        uint256 rewardPerUnit,
        uint256 maxUnits,
        address coordinator,
        uint64 challengeWindow,
        uint64 deadline
    ) external nonReentrant returns (uint256 jobId) {
        if (budget == 0) revert MarketZeroBudget();
        if (rewardPerUnit == 0) revert MarketZeroRewardPerUnit();
        if (maxUnits == 0) revert MarketZeroMaxUnits();
        if (maxUnits > type(uint128).max) revert MarketAmountTooLarge(maxUnits, type(uint128).max);
        if (coordinator == address(0)) revert MarketZeroAddress();
        if (challengeWindow == 0 || challengeWindow > _unbondingPeriod) {
            revert MarketInvalidChallengeWindow(challengeWindow, _unbondingPeriod);
        }
        if (deadline <= block.timestamp) revert MarketDeadlineInPast(deadline, uint64(block.timestamp));
        jobId = ++_jobCount;
        Job storage j = _jobs[jobId];
        j.owner = msg.sender;
        j.deadline = deadline;
        j.status = JobStatus.Open;
        j.coordinator = coordinator;
        j.challengeWindow = challengeWindow;
        j.specHash = specHash;
        j.rewardPerUnit = rewardPerUnit;
        // casting is safe: maxUnits <= type(uint128).max, checked above
        // forge-lint: disable-next-line(unsafe-typecast)
        j.maxUnits = uint128(maxUnits);
        j.escrow = budget;
        emit JobPosted(
            jobId, msg.sender, coordinator, specHash, budget, rewardPerUnit, maxUnits, challengeWindow, deadline
        );
        _token.safeTransferFrom(msg.sender, address(this), budget);
    }

    /// @inheritdoc IMarket
    function topUp(uint256 jobId, uint256 amount) external nonReentrant {
        if (amount == 0) revert MarketZeroAmount();
        Job storage j = _job(jobId);
        if (j.status != JobStatus.Open) revert MarketJobNotOpen(jobId, j.status);
        uint256 escrow = j.escrow + amount;
        j.escrow = escrow;
        emit JobToppedUp(jobId, msg.sender, amount, escrow);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IMarket
    function completeJob(uint256 jobId) external {
        Job storage j = _job(jobId);
        if (msg.sender != j.coordinator) revert MarketNotCoordinator(jobId, msg.sender, j.coordinator);
        if (j.status != JobStatus.Open) revert MarketJobNotOpen(jobId, j.status);
        j.status = JobStatus.Completed;
        emit JobCompleted(jobId);
    }

    /// @inheritdoc IMarket
    function closeJob(uint256 jobId) external nonReentrant {
        Job storage j = _job(jobId);
        if (msg.sender != j.owner) revert MarketNotJobOwner(jobId, msg.sender, j.owner);
        if (j.status == JobStatus.Open && block.timestamp < j.deadline) {
            revert MarketJobNotClosable(jobId, j.deadline, uint64(block.timestamp));
        }
        j.status = JobStatus.Closed;
        uint256 refund = j.escrow;
        j.escrow = 0;
        emit JobClosed(jobId, refund);
        if (refund != 0) _token.safeTransfer(msg.sender, refund);
    }

    // ------------------------------------------------------------------ rounds

    /// @inheritdoc IMarket
    function commitRound(uint256 jobId, uint256 round, bytes32 root, uint256 total, uint256 numUnits) external {
        Job storage j = _job(jobId);
        if (msg.sender != j.coordinator) revert MarketNotCoordinator(jobId, msg.sender, j.coordinator);
        if (j.status != JobStatus.Open) revert MarketJobNotOpen(jobId, j.status);
        if (block.timestamp >= j.deadline) revert MarketJobExpired(jobId, j.deadline, uint64(block.timestamp));
        if (root == bytes32(0)) revert MarketZeroRoot();
        if (numUnits == 0) revert MarketZeroUnits();
        Round storage r = _rounds[jobId][round];
        if (r.status != RoundStatus.None) revert MarketRoundAlreadyCommitted(jobId, round);
        uint256 committed = j.unitsCommitted;
        uint256 maxUnits = j.maxUnits;
        // committed <= maxUnits always holds, so the subtraction cannot underflow
        if (numUnits > maxUnits - committed) revert MarketTooManyUnits(jobId, committed, numUnits, maxUnits);
        (bool fits, uint256 cap) = _mulCapped(numUnits, j.rewardPerUnit);
        if (fits && total > cap) revert MarketRoundTotalTooHigh(jobId, round, total, cap);
        uint256 escrow = j.escrow;
        if (total > escrow) revert MarketInsufficientEscrow(jobId, escrow, total);
        if (total > type(uint128).max) revert MarketAmountTooLarge(total, type(uint128).max);
        unchecked {
            j.escrow = escrow - total; // total <= escrow
            // casting is safe: committed + numUnits <= maxUnits < 2**128
            // forge-lint: disable-next-line(unsafe-typecast)
            j.unitsCommitted = uint128(committed + numUnits);
        }
        uint64 challengeEnd = uint64(block.timestamp) + j.challengeWindow;
        r.root = root;
        // casting is safe: total <= type(uint128).max, checked above
        // forge-lint: disable-next-line(unsafe-typecast)
        r.pending = uint128(total);
        r.challengeEnd = challengeEnd;
        r.status = RoundStatus.Committed;
        // casting is safe: total <= type(uint128).max, checked above
        // forge-lint: disable-next-line(unsafe-typecast)
        r.total = uint128(total);
        // casting is safe: numUnits <= maxUnits < 2**128
        // forge-lint: disable-next-line(unsafe-typecast)
        r.numUnits = uint128(numUnits);
        emit RoundCommitted(jobId, round, root, total, numUnits, challengeEnd);
    }

    /// @inheritdoc IMarket
    function finalizeRound(uint256 jobId, uint256 round) external {
        Round storage r = _rounds[jobId][round];
        if (r.status == RoundStatus.None) revert MarketUnknownRound(jobId, round);
        if (r.status == RoundStatus.Finalized) revert MarketRoundAlreadyFinalized(jobId, round);
        if (block.timestamp < r.challengeEnd) {
            revert MarketChallengeWindowOpen(jobId, round, r.challengeEnd, uint64(block.timestamp));
        }
        if (r.openDisputes != 0) revert MarketRoundHasOpenDisputes(jobId, round, r.openDisputes);
        r.status = RoundStatus.Finalized;
        emit RoundFinalized(jobId, round);
    }

    /// @inheritdoc IMarket
    function claim(
        uint256 jobId,
        uint256 round,
        uint256 unit,
        address worker,
        uint256 amount,
        bytes32 resultHash,
        bytes32[] calldata proof
    ) external nonReentrant {
        Round storage r = _rounds[jobId][round];
        RoundStatus status = r.status;
        if (status != RoundStatus.Finalized) {
            if (status == RoundStatus.None) revert MarketUnknownRound(jobId, round);
            revert MarketRoundNotFinalized(jobId, round);
        }
        bytes32 leaf = Leaves.roundLeaf(jobId, round, unit, worker, amount, resultHash);
        if (!MerkleProof.verifyCalldata(proof, r.root, leaf)) revert MarketInvalidProof(leaf, r.root);
        LeafStatus ls = _leafStatus[leaf];
        if (ls != LeafStatus.None && ls != LeafStatus.Upheld) revert MarketLeafNotClaimable(leaf, ls);
        uint256 pending = r.pending;
        if (amount > pending) revert MarketRoundOverpaid(jobId, round, pending, amount);
        _leafStatus[leaf] = LeafStatus.Claimed;
        unchecked {
            // casting is safe: pending - amount <= pending < 2**128
            // forge-lint: disable-next-line(unsafe-typecast)
            r.pending = uint128(pending - amount);
        }
        emit Claimed(jobId, round, unit, worker, amount, leaf);
        if (amount != 0) _token.safeTransfer(worker, amount);
    }

    // ------------------------------------------------------------------ disputes

    /// @inheritdoc IMarket
    function challenge(Evidence calldata ev) external nonReentrant returns (uint256 disputeId) {
        IArbitrator arb = _arbiter;
        if (address(arb) == address(0)) revert MarketArbiterNotSet();
        uint256 active = _activeStake(msg.sender, ROLE_VERIFIER);
        if (active < _minVerifierStake) revert MarketInsufficientStake(msg.sender, active, _minVerifierStake);
        address worker = ev.leaf.worker;
        if (msg.sender == worker) revert MarketSelfChallenge(msg.sender);
        Round storage r = _rounds[ev.leaf.jobId][ev.leaf.round];
        bytes32 leaf = _checkLeaf(r, ev);
        _checkSignedResult(ev);
        _checkTrace(ev);
        bytes memory extraData = abi.encode(worker, msg.sender);
        uint256 fee = arb.arbitrationCost(extraData);
        if (fee != 0) revert MarketArbitrationFeeUnsupported(fee);

        disputeId = ++_disputeCount;
        _disputes[disputeId] = Dispute({
            jobId: ev.leaf.jobId,
            round: ev.leaf.round,
            leaf: leaf,
            worker: worker,
            openedAt: uint64(block.timestamp),
            status: DisputeStatus.Open,
            ruling: 0,
            challenger: msg.sender,
            amount: ev.leaf.amount,
            bond: _challengeBond,
            arbiterDisputeId: 0 // set below, once the arbiter answered
        });
        _leafStatus[leaf] = LeafStatus.Challenged;
        ++r.openDisputes;
        _enterDispute(worker, msg.sender);

        _token.safeTransferFrom(msg.sender, address(this), _challengeBond);
        // The arbiter is trusted (set once by the owner); it may read this market's views.
        uint256 arbiterDisputeId = arb.createDispute(2, extraData);
        _disputes[disputeId].arbiterDisputeId = arbiterDisputeId;
        _disputeIdOf[arbiterDisputeId] = disputeId;
        emit DisputeOpened(
            disputeId, arbiterDisputeId, ev.leaf.jobId, ev.leaf.round, leaf, worker, msg.sender, _challengeBond
        );
        emit ChallengeEvidence(disputeId, ev);
    }

    /// @inheritdoc IArbitrable
    function rule(uint256 arbiterDisputeId, uint256 ruling) external nonReentrant {
        if (msg.sender != address(_arbiter)) revert MarketNotArbiter(msg.sender, address(_arbiter));
        uint256 disputeId = _disputeIdOf[arbiterDisputeId];
        if (disputeId == 0) revert MarketUnknownDispute(arbiterDisputeId);
        if (ruling > 2) revert MarketInvalidRuling(ruling);
        // casting is safe: ruling <= 2, checked above
        // forge-lint: disable-next-line(unsafe-typecast)
        _resolve(disputeId, uint8(ruling), DisputeStatus.Ruled);
        emit Ruling(_arbiter, arbiterDisputeId, ruling);
    }

    /// @inheritdoc IMarket
    function timeoutDispute(uint256 disputeId) external nonReentrant {
        Dispute storage d = _disputes[disputeId];
        if (d.status != DisputeStatus.Open) revert MarketDisputeNotOpen(disputeId, d.status);
        uint64 timeoutAt = d.openedAt + _disputeTimeout;
        if (block.timestamp < timeoutAt) {
            revert MarketDisputeNotTimedOut(disputeId, timeoutAt, uint64(block.timestamp));
        }
        _resolve(disputeId, 0, DisputeStatus.TimedOut);
        emit DisputeTimedOut(disputeId);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IMarket
    function arbiter() external view returns (IArbitrator) {
        return _arbiter;
    }

    /// @inheritdoc IMarket
    function getJob(uint256 jobId) external view returns (JobView memory v) {
        Job storage j = _jobs[jobId];
        v = JobView({
            owner: j.owner,
            coordinator: j.coordinator,
            specHash: j.specHash,
            rewardPerUnit: j.rewardPerUnit,
            maxUnits: j.maxUnits,
            unitsCommitted: j.unitsCommitted,
            escrow: j.escrow,
            challengeWindow: j.challengeWindow,
            deadline: j.deadline,
            status: j.status
        });
    }

    /// @inheritdoc IMarket
    function getRound(uint256 jobId, uint256 round) external view returns (RoundView memory v) {
        Round storage r = _rounds[jobId][round];
        v = RoundView({
            root: r.root,
            total: r.total,
            pending: r.pending,
            numUnits: r.numUnits,
            committedAt: r.status == RoundStatus.None ? 0 : r.challengeEnd - _jobs[jobId].challengeWindow,
            challengeEnd: r.challengeEnd,
            openDisputes: r.openDisputes,
            status: r.status
        });
    }

    /// @inheritdoc IMarket
    function getDispute(uint256 disputeId) external view returns (DisputeView memory v) {
        Dispute storage d = _disputes[disputeId];
        v = DisputeView({
            jobId: d.jobId,
            round: d.round,
            leaf: d.leaf,
            worker: d.worker,
            challenger: d.challenger,
            amount: d.amount,
            bond: d.bond,
            arbiterDisputeId: d.arbiterDisputeId,
            openedAt: d.openedAt,
            status: d.status,
            ruling: d.ruling
        });
    }

    /// @inheritdoc IMarket
    function disputeIdOf(uint256 arbiterDisputeId) external view returns (uint256) {
        return _disputeIdOf[arbiterDisputeId];
    }

    /// @inheritdoc IMarket
    function leafStatus(bytes32 leaf) external view returns (LeafStatus) {
        return _leafStatus[leaf];
    }

    /// @inheritdoc IMarket
    function isLeafClaimed(bytes32 leaf) external view returns (bool) {
        return _leafStatus[leaf] == LeafStatus.Claimed;
    }

    /// @inheritdoc IMarket
    function jobCount() external view returns (uint256) {
        return _jobCount;
    }

    /// @inheritdoc IMarket
    function disputeCount() external view returns (uint256) {
        return _disputeCount;
    }

    /// @inheritdoc IMarket
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @inheritdoc IMarket
    function hashWorkResult(
        uint256 jobId,
        uint256 round,
        uint256 unit,
        bytes32 inputHash,
        bytes32 outputHash,
        bytes32 traceRoot
    ) public view returns (bytes32) {
        return _hashTypedDataV4(Leaves.workResultStructHash(jobId, round, unit, inputHash, outputHash, traceRoot));
    }

    /// @inheritdoc IMarket
    function hashRoundLeaf(RoundLeaf calldata leaf) external pure returns (bytes32) {
        return Leaves.roundLeaf(leaf);
    }

    /// @inheritdoc IMarket
    function hashTraceLeaf(TraceLeaf calldata leaf) external pure returns (bytes32) {
        return Leaves.traceLeaf(leaf);
    }

    // ------------------------------------------------------------------ internal

    function _job(uint256 jobId) private view returns (Job storage j) {
        j = _jobs[jobId];
        if (j.status == JobStatus.None) revert MarketUnknownJob(jobId);
    }

    /// @dev a * b, or (false, 0) when it overflows (then every uint256 total is within the cap).
    function _mulCapped(uint256 a, uint256 b) private pure returns (bool fits, uint256 product) {
        unchecked {
            product = a * b;
            fits = a == 0 || product / a == b; // standard overflow check
        }
    }

    /// @dev Round is challengeable now and the leaf is in it, unchallenged and unruled.
    function _checkLeaf(Round storage r, Evidence calldata ev) private view returns (bytes32 leaf) {
        uint256 jobId = ev.leaf.jobId;
        uint256 round = ev.leaf.round;
        if (r.status == RoundStatus.None) revert MarketUnknownRound(jobId, round);
        if (r.status == RoundStatus.Finalized) revert MarketRoundAlreadyFinalized(jobId, round);
        if (block.timestamp >= r.challengeEnd) {
            revert MarketChallengeWindowClosed(jobId, round, r.challengeEnd, uint64(block.timestamp));
        }
        leaf = Leaves.roundLeaf(ev.leaf);
        if (!MerkleProof.verifyCalldata(ev.leafProof, r.root, leaf)) revert MarketInvalidProof(leaf, r.root);
        LeafStatus ls = _leafStatus[leaf];
        if (ls != LeafStatus.None) revert MarketLeafNotChallengeable(leaf, ls);
    }

    /// @dev resultHash is the EIP-712 digest of the WorkResult fields and leaf.worker signed it.
    function _checkSignedResult(Evidence calldata ev) private view {
        bytes32 digest =
            hashWorkResult(ev.leaf.jobId, ev.leaf.round, ev.leaf.unit, ev.inputHash, ev.outputHash, ev.traceRoot);
        if (digest != ev.leaf.resultHash) revert MarketResultHashMismatch(ev.leaf.resultHash, digest);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, ev.signature);
        if (err != ECDSA.RecoverError.NoError || signer != ev.leaf.worker) {
            revert MarketInvalidSignature(ev.leaf.worker, signer);
        }
    }

    /// @dev Trace leaf i (and i-1 when i > 0) are in the signed trace tree at the right steps.
    function _checkTrace(Evidence calldata ev) private pure {
        uint256 step = ev.step;
        if (ev.cur.step != step) revert MarketInvalidTraceStep(step, ev.cur.step);
        bytes32 curLeaf = Leaves.traceLeaf(ev.cur);
        if (!MerkleProof.verifyCalldata(ev.curProof, ev.traceRoot, curLeaf)) {
            revert MarketInvalidTraceProof(step, curLeaf, ev.traceRoot);
        }
        if (step == 0) return;
        unchecked {
            if (ev.prev.step != step - 1) revert MarketInvalidTraceStep(step - 1, ev.prev.step); // step > 0
        }
        bytes32 prevLeaf = Leaves.traceLeaf(ev.prev);
        if (!MerkleProof.verifyCalldata(ev.prevProof, ev.traceRoot, prevLeaf)) {
            revert MarketInvalidTraceProof(ev.prev.step, prevLeaf, ev.traceRoot);
        }
    }

    /// @dev Apply `ruling` to an open dispute. 2: revoke the leaf (its amount, capped at the
    /// round's pending, returns to the job escrow), slash the worker, pay the challenger bond +
    /// slash - juror share. 1: the leaf stays payable, the worker gets bond - juror share.
    /// 0: the leaf stays payable, the bond goes back. The juror share goes to the arbiter.
    function _resolve(uint256 disputeId, uint8 ruling, DisputeStatus status) private {
        Dispute storage d = _disputes[disputeId];
        if (d.status != DisputeStatus.Open) revert MarketDisputeNotOpen(disputeId, d.status);
        d.status = status;
        d.ruling = ruling;
        unchecked {
            --_rounds[d.jobId][d.round].openDisputes; // incremented when this dispute opened
        }
        _leaveDispute(d.worker, d.challenger);
        Outcome memory o = ruling == 2 ? _revoke(d, disputeId) : _uphold(d, ruling);
        _credit(d.challenger, disputeId, o.challengerPayout);
        _credit(d.worker, disputeId, o.workerPayout);
        emit DisputeResolved(disputeId, ruling, o.slashed, o.challengerPayout, o.workerPayout, o.jurorShare, o.returned);
        if (o.jurorShare != 0) _token.safeTransfer(address(_arbiter), o.jurorShare);
    }

    /// @dev Ruling 2: the leaf is revoked and the worker slashed.
    function _revoke(Dispute storage d, uint256 disputeId) private returns (Outcome memory o) {
        _leafStatus[d.leaf] = LeafStatus.Revoked;
        Round storage r = _rounds[d.jobId][d.round];
        uint256 pending = r.pending;
        o.returned = d.amount < pending ? d.amount : pending;
        unchecked {
            // casting is safe: pending - returned <= pending < 2**128
            // forge-lint: disable-next-line(unsafe-typecast)
            r.pending = uint128(pending - o.returned);
        }
        _jobs[d.jobId].escrow += o.returned;
        o.slashed = _slash(d.worker, ROLE_WORKER, disputeId);
        o.jurorShare = Math.mulDiv(o.slashed, _jurorShareBps, BPS);
        o.challengerPayout = d.bond + o.slashed - o.jurorShare;
    }

    /// @dev Ruling 1 or 0: the leaf stays payable and can never be challenged again.
    function _uphold(Dispute storage d, uint8 ruling) private returns (Outcome memory o) {
        _leafStatus[d.leaf] = LeafStatus.Upheld;
        if (ruling == 1) {
            o.jurorShare = Math.mulDiv(d.bond, _jurorShareBps, BPS);
            o.workerPayout = d.bond - o.jurorShare;
        } else {
            o.challengerPayout = d.bond;
        }
    }
}
