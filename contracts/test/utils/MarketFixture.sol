// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Market} from "../../src/Market.sol";
import {JuryArbiter} from "../../src/JuryArbiter.sol";
import {TestToken} from "../../src/TestToken.sol";
import {IMarket} from "../../src/interfaces/IMarket.sol";
import {IJuryArbiter} from "../../src/interfaces/IJuryArbiter.sol";
import {Merkle} from "./Merkle.sol";
import {Test} from "./Test.sol";

/// @notice A deployed token + Market + JuryArbiter with funded actors, and builders for
/// signed work results, trace trees, round trees and challenge evidence.
/// @dev The token has 6 decimals so nothing silently assumes 18. Unit k of a round is done by
/// worker k % 3; its trace has TRACE_STEPS steps with digests derived from (job, round, unit, step).
abstract contract MarketFixture is Test {
    uint256 internal constant ONE = 1e6; // one token at 6 decimals
    uint256 internal constant MIN_WORKER = 100 * ONE;
    uint256 internal constant MIN_VERIFIER = 50 * ONE;
    uint256 internal constant BOND = 10 * ONE;
    uint16 internal constant SLASH_BPS = 5000;
    uint16 internal constant JUROR_BPS = 1000;
    uint64 internal constant UNBONDING = 7 days;
    uint64 internal constant DISPUTE_TIMEOUT = 3 days;
    uint64 internal constant WINDOW = 1 days;
    uint64 internal constant COMMIT_PERIOD = 12 hours;
    uint64 internal constant REVEAL_PERIOD = 12 hours;
    uint8 internal constant JURY = 3;
    uint256 internal constant REWARD = 2 * ONE;
    uint256 internal constant TRACE_STEPS = 5;
    uint8 internal constant WORKER = 1;
    uint8 internal constant VERIFIER = 2;

    TestToken internal token;
    Market internal market;
    JuryArbiter internal jury;

    address internal owner = address(0xA11CE);
    address internal coordinator = address(0xC00D);
    uint256[3] internal workerKeys = [uint256(0xB0B1), 0xB0B2, 0xB0B3];
    address[3] internal workers;
    address[5] internal verifiers;

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        token = new TestToken("Crowdtrain Test", "CTT", 6);
        market = new Market(IERC20(address(token)), _params());
        jury = new JuryArbiter(market, IJuryArbiter.JuryParams(JURY, COMMIT_PERIOD, REVEAL_PERIOD));
        market.setArbiter(jury);
        for (uint256 i; i < 3; ++i) {
            workers[i] = vm.addr(workerKeys[i]);
            vm.label(workers[i], string.concat("worker", vm.toString(i)));
        }
        for (uint256 i; i < 5; ++i) {
            verifiers[i] = address(uint160(0xF000 + i));
            vm.label(verifiers[i], string.concat("verifier", vm.toString(i)));
        }
        vm.label(owner, "owner");
        vm.label(coordinator, "coordinator");
    }

    function _params() internal pure returns (IMarket.MarketParams memory) {
        return IMarket.MarketParams({
            minWorkerStake: MIN_WORKER,
            minVerifierStake: MIN_VERIFIER,
            challengeBond: BOND,
            slashBps: SLASH_BPS,
            jurorShareBps: JUROR_BPS,
            unbondingPeriod: UNBONDING,
            disputeTimeout: DISPUTE_TIMEOUT
        });
    }

    // ------------------------------------------------------------------ money helpers

    function _fund(address who, uint256 amount) internal {
        token.mint(who, amount);
        vm.prank(who);
        token.approve(address(market), type(uint256).max);
    }

    function _stake(address who, uint8 role, uint256 amount) internal {
        _fund(who, amount);
        vm.prank(who);
        market.stake(role, amount);
    }

    function _stakeAll() internal {
        for (uint256 i; i < 3; ++i) {
            _stake(workers[i], WORKER, MIN_WORKER);
        }
        for (uint256 i; i < 5; ++i) {
            _stake(verifiers[i], VERIFIER, MIN_VERIFIER);
        }
    }

    function _postJob(uint256 budget, uint256 maxUnits) internal returns (uint256 jobId) {
        _fund(owner, budget);
        vm.prank(owner);
        jobId = market.postJob(
            keccak256("spec"), budget, REWARD, maxUnits, coordinator, WINDOW, uint64(block.timestamp + 30 days)
        );
    }

    // ------------------------------------------------------------------ unit results

    struct UnitResult {
        bytes32 inputHash;
        bytes32 outputHash;
        bytes32 traceRoot;
        bytes32 resultHash;
        bytes signature;
        IMarket.TraceLeaf[] trace;
        bytes32[] traceHashes;
    }

    function _workerOf(uint256 unit) internal view returns (address) {
        return workers[unit % 3];
    }

    function _traceLeaf(uint256 jobId, uint256 round, uint256 unit, uint256 step)
        internal
        pure
        returns (IMarket.TraceLeaf memory)
    {
        return IMarket.TraceLeaf({
            step: step,
            batchDigest: keccak256(abi.encode("batch", jobId, round, unit, step)),
            stateDigest: keccak256(abi.encode("state", jobId, round, unit, step)),
            lossBits: uint64(0x4000000000000000 + step)
        });
    }

    function _traceHash(IMarket.TraceLeaf memory l) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(l.step, l.batchDigest, l.stateDigest, l.lossBits))));
    }

    /// @dev The worker's signed result for (jobId, round, unit), signed by `signerKey`.
    function _unitResultSignedBy(uint256 jobId, uint256 round, uint256 unit, uint256 signerKey)
        internal
        view
        returns (UnitResult memory u)
    {
        u.trace = new IMarket.TraceLeaf[](TRACE_STEPS);
        u.traceHashes = new bytes32[](TRACE_STEPS);
        for (uint256 s; s < TRACE_STEPS; ++s) {
            u.trace[s] = _traceLeaf(jobId, round, unit, s);
            u.traceHashes[s] = _traceHash(u.trace[s]);
        }
        u.traceRoot = Merkle.root(u.traceHashes);
        u.inputHash = keccak256(abi.encode("input", jobId, round, unit));
        u.outputHash = keccak256(abi.encode("output", jobId, round, unit));
        u.resultHash = market.hashWorkResult(jobId, round, unit, u.inputHash, u.outputHash, u.traceRoot);
        (uint8 v, bytes32 r, bytes32 s_) = vm.sign(signerKey, u.resultHash);
        u.signature = abi.encodePacked(r, s_, v);
    }

    function _unitResult(uint256 jobId, uint256 round, uint256 unit) internal view returns (UnitResult memory) {
        return _unitResultSignedBy(jobId, round, unit, workerKeys[unit % 3]);
    }

    // ------------------------------------------------------------------ rounds

    function _roundLeaf(uint256 jobId, uint256 round, uint256 unit) internal view returns (IMarket.RoundLeaf memory) {
        return IMarket.RoundLeaf({
            jobId: jobId,
            round: round,
            unit: unit,
            worker: _workerOf(unit),
            amount: REWARD,
            resultHash: _unitResult(jobId, round, unit).resultHash
        });
    }

    function _roundLeafHashes(uint256 jobId, uint256 round, uint256 numUnits)
        internal
        view
        returns (bytes32[] memory h)
    {
        h = new bytes32[](numUnits);
        for (uint256 k; k < numUnits; ++k) {
            h[k] = market.hashRoundLeaf(_roundLeaf(jobId, round, k));
        }
    }

    /// @dev Commit a round of `numUnits` units each paying REWARD; returns the tree's leaf hashes.
    function _commitRound(uint256 jobId, uint256 round, uint256 numUnits) internal returns (bytes32[] memory h) {
        h = _roundLeafHashes(jobId, round, numUnits);
        vm.prank(coordinator);
        market.commitRound(jobId, round, Merkle.root(h), numUnits * REWARD, numUnits);
    }

    function _claim(uint256 jobId, uint256 round, uint256 unit, bytes32[] memory h) internal {
        IMarket.RoundLeaf memory l = _roundLeaf(jobId, round, unit);
        market.claim(jobId, round, unit, l.worker, l.amount, l.resultHash, Merkle.proof(h, unit));
    }

    // ------------------------------------------------------------------ disputes

    /// @dev Complete, valid evidence against `unit` at trace step `step` of a round of `numUnits`.
    function _evidence(uint256 jobId, uint256 round, uint256 numUnits, uint256 unit, uint256 step)
        internal
        view
        returns (IMarket.Evidence memory ev)
    {
        UnitResult memory u = _unitResult(jobId, round, unit);
        ev.leaf = _roundLeaf(jobId, round, unit);
        ev.leafProof = Merkle.proof(_roundLeafHashes(jobId, round, numUnits), unit);
        ev.inputHash = u.inputHash;
        ev.outputHash = u.outputHash;
        ev.traceRoot = u.traceRoot;
        ev.signature = u.signature;
        ev.step = step;
        ev.cur = u.trace[step];
        ev.curProof = Merkle.proof(u.traceHashes, step);
        if (step > 0) {
            ev.prev = u.trace[step - 1];
            ev.prevProof = Merkle.proof(u.traceHashes, step - 1);
        }
    }

    function _challenge(address challenger, IMarket.Evidence memory ev) internal returns (uint256 disputeId) {
        _fund(challenger, BOND);
        vm.prank(challenger);
        disputeId = market.challenge(ev);
    }

    /// @dev Every drawn juror commits and reveals `choice`; then anyone resolves.
    function _juryVotes(uint256 arbiterId, uint8[] memory choices) internal {
        address[] memory js = jury.jurorsOf(arbiterId);
        for (uint256 i; i < js.length && i < choices.length; ++i) {
            if (choices[i] == 0) continue; // 0: this juror stays silent
            bytes32 commitment = jury.voteCommitment(arbiterId, js[i], choices[i], bytes32(i + 1));
            vm.prank(js[i]);
            jury.commitVote(arbiterId, commitment);
        }
        vm.warp(block.timestamp + COMMIT_PERIOD);
        for (uint256 i; i < js.length && i < choices.length; ++i) {
            if (choices[i] == 0) continue;
            vm.prank(js[i]);
            jury.revealVote(arbiterId, choices[i], bytes32(i + 1));
        }
    }

    function _unanimous(uint8 choice) internal pure returns (uint8[] memory c) {
        c = new uint8[](3);
        c[0] = choice;
        c[1] = choice;
        c[2] = choice;
    }
}
