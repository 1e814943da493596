// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IMarket} from "../src/interfaces/IMarket.sol";
import {Merkle} from "./utils/Merkle.sol";
import {MarketFixture} from "./utils/MarketFixture.sol";

/// @notice commitRound / finalizeRound / claim.
contract MarketRoundTest is MarketFixture {
    uint256 internal jobId;
    bytes32 internal constant ROOT = keccak256("root");

    function setUp() public override {
        super.setUp();
        jobId = _postJob(100 * REWARD, 50);
    }

    function _commit(uint256 round, uint256 total, uint256 numUnits) internal {
        vm.prank(coordinator);
        market.commitRound(jobId, round, ROOT, total, numUnits);
    }

    // ------------------------------------------------------------------ commitRound

    function test_commitRound_movesTotalFromEscrowToPending() public {
        _commit(3, 10 * REWARD - 1, 10);
        IMarket.RoundView memory r = market.getRound(jobId, 3);
        assertEq(r.root, ROOT, "root");
        assertEq(r.total, 10 * REWARD - 1, "total");
        assertEq(r.pending, 10 * REWARD - 1, "pending");
        assertEq(r.numUnits, 10, "numUnits");
        assertEq(r.committedAt, block.timestamp, "committedAt");
        assertEq(r.challengeEnd, block.timestamp + WINDOW, "challengeEnd");
        assertEq(r.openDisputes, 0, "openDisputes");
        assertEq(uint256(r.status), uint256(IMarket.RoundStatus.Committed), "status");
        IMarket.JobView memory j = market.getJob(jobId);
        assertEq(j.escrow, 90 * REWARD + 1, "escrow");
        assertEq(j.unitsCommitted, 10, "unitsCommitted");
    }

    function test_commitRound_revertsForNonCoordinator() public {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketNotCoordinator.selector, jobId, owner, coordinator));
        market.commitRound(jobId, 0, ROOT, 1, 1);
    }

    function test_commitRound_revertsOnUnknownJob() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketUnknownJob.selector, 77));
        market.commitRound(77, 0, ROOT, 1, 1);
    }

    function test_commitRound_revertsTwiceForSameRound() public {
        _commit(0, 1, 1);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketRoundAlreadyCommitted.selector, jobId, 0));
        market.commitRound(jobId, 0, keccak256("other"), 1, 1);
    }

    function test_commitRound_revertsOnZeroRoot() public {
        vm.prank(coordinator);
        vm.expectRevert(IMarket.MarketZeroRoot.selector);
        market.commitRound(jobId, 0, bytes32(0), 1, 1);
    }

    function test_commitRound_revertsOnZeroUnits() public {
        vm.prank(coordinator);
        vm.expectRevert(IMarket.MarketZeroUnits.selector);
        market.commitRound(jobId, 0, ROOT, 0, 0);
    }

    function test_commitRound_revertsAboveRewardCap() public {
        vm.prank(coordinator);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketRoundTotalTooHigh.selector, jobId, 0, 3 * REWARD + 1, 3 * REWARD)
        );
        market.commitRound(jobId, 0, ROOT, 3 * REWARD + 1, 3);
    }

    function test_commitRound_revertsBeyondMaxUnits() public {
        _commit(0, 1, 45);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketTooManyUnits.selector, jobId, 45, 6, 50));
        market.commitRound(jobId, 1, ROOT, 1, 6);
        _commit(1, 1, 5); // exactly maxUnits is fine
        assertEq(market.getJob(jobId).unitsCommitted, 50, "all units committed");
    }

    function test_commitRound_revertsAboveEscrow() public {
        _fund(owner, 10);
        vm.prank(owner);
        uint256 small =
            market.postJob(keccak256("s"), 10, 100, 10, coordinator, WINDOW, uint64(block.timestamp + 1 days));
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInsufficientEscrow.selector, small, 10, 11));
        market.commitRound(small, 0, ROOT, 11, 1);
    }

    function test_commitRound_revertsAtDeadline() public {
        uint64 deadline = market.getJob(jobId).deadline;
        vm.warp(deadline);
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketJobExpired.selector, jobId, deadline, deadline));
        market.commitRound(jobId, 0, ROOT, 1, 1);
    }

    function test_commitRound_revertsAfterCompletion() public {
        vm.startPrank(coordinator);
        market.completeJob(jobId);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketJobNotOpen.selector, jobId, IMarket.JobStatus.Completed));
        market.commitRound(jobId, 0, ROOT, 1, 1);
        vm.stopPrank();
    }

    function test_commitRound_overflowingCapAcceptsAnyTotal() public {
        // numUnits * rewardPerUnit overflows: every total is within the cap, escrow still binds
        _fund(owner, 1);
        vm.prank(owner);
        uint256 big = market.postJob(
            keccak256("s"), 1, type(uint256).max, 10, coordinator, WINDOW, uint64(block.timestamp + 1 days)
        );
        vm.prank(coordinator);
        market.commitRound(big, 0, ROOT, 1, 2);
        assertEq(market.getRound(big, 0).total, 1, "committed");
    }

    function test_commitRound_revertsOnTotalAboveUint128() public {
        uint256 huge = uint256(type(uint128).max) + 1;
        _fund(owner, huge);
        vm.prank(owner);
        uint256 big =
            market.postJob(keccak256("s"), huge, huge, 10, coordinator, WINDOW, uint64(block.timestamp + 1 days));
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketAmountTooLarge.selector, huge, type(uint128).max));
        market.commitRound(big, 0, ROOT, huge, 1);
    }

    // ------------------------------------------------------------------ finalizeRound

    function test_finalizeRound_afterWindow() public {
        _commit(0, 1, 1);
        vm.warp(block.timestamp + WINDOW);
        market.finalizeRound(jobId, 0);
        assertEq(uint256(market.getRound(jobId, 0).status), uint256(IMarket.RoundStatus.Finalized), "status");
    }

    function test_finalizeRound_revertsDuringWindow() public {
        _commit(0, 1, 1);
        uint64 end = uint64(block.timestamp + WINDOW);
        vm.warp(end - 1);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketChallengeWindowOpen.selector, jobId, 0, end, end - 1));
        market.finalizeRound(jobId, 0);
    }

    function test_finalizeRound_revertsOnUnknownRound() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketUnknownRound.selector, jobId, 9));
        market.finalizeRound(jobId, 9);
    }

    function test_finalizeRound_revertsTwice() public {
        _commit(0, 1, 1);
        vm.warp(block.timestamp + WINDOW);
        market.finalizeRound(jobId, 0);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketRoundAlreadyFinalized.selector, jobId, 0));
        market.finalizeRound(jobId, 0);
    }

    function test_finalizeRound_revertsWithOpenDispute() public {
        _stakeAll();
        _commitRound(jobId, 0, 3);
        _challenge(verifiers[1], _evidence(jobId, 0, 3, 0, 0));
        vm.warp(block.timestamp + WINDOW);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketRoundHasOpenDisputes.selector, jobId, 0, uint32(1)));
        market.finalizeRound(jobId, 0);
    }

    // ------------------------------------------------------------------ claim

    /// @dev Build the claim arguments first: expectRevert applies to the very next call.
    function _expectClaimRevert(bytes memory err, uint256 round, uint256 unit, bytes32[] memory h) internal {
        IMarket.RoundLeaf memory l = _roundLeaf(jobId, round, unit);
        bytes32[] memory proof = Merkle.proof(h, unit);
        vm.expectRevert(err);
        market.claim(jobId, round, unit, l.worker, l.amount, l.resultHash, proof);
    }

    function _finalized(uint256 round, uint256 numUnits) internal returns (bytes32[] memory h) {
        h = _commitRound(jobId, round, numUnits);
        vm.warp(block.timestamp + WINDOW);
        market.finalizeRound(jobId, round);
    }

    function test_claim_paysWorkerOnce() public {
        bytes32[] memory h = _finalized(0, 5);
        _claim(jobId, 0, 3, h);
        assertEq(token.balanceOf(_workerOf(3)), REWARD, "paid");
        assertEq(market.getRound(jobId, 0).pending, 4 * REWARD, "pending");
        assertEq(market.isLeafClaimed(h[3]), true, "claimed");
        assertEq(uint256(market.leafStatus(h[3])), uint256(IMarket.LeafStatus.Claimed), "status");
        _expectClaimRevert(
            abi.encodeWithSelector(IMarket.MarketLeafNotClaimable.selector, h[3], IMarket.LeafStatus.Claimed), 0, 3, h
        );
    }

    function test_claim_anyoneMayCallButOnlyWorkerIsPaid() public {
        bytes32[] memory h = _finalized(0, 2);
        vm.prank(address(0xDEAD));
        _claim(jobId, 0, 1, h);
        assertEq(token.balanceOf(_workerOf(1)), REWARD, "worker paid");
        assertEq(token.balanceOf(address(0xDEAD)), 0, "caller not paid");
    }

    function test_claim_singleLeafRoundHasEmptyProof() public {
        bytes32[] memory h = _finalized(0, 1);
        assertEq(Merkle.root(h), h[0], "root is the leaf");
        _claim(jobId, 0, 0, h);
        assertEq(token.balanceOf(_workerOf(0)), REWARD, "paid");
    }

    function test_claim_revertsBeforeFinalization() public {
        bytes32[] memory h = _commitRound(jobId, 0, 2);
        _expectClaimRevert(abi.encodeWithSelector(IMarket.MarketRoundNotFinalized.selector, jobId, 0), 0, 0, h);
    }

    function test_claim_revertsOnUnknownRound() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketUnknownRound.selector, jobId, 4));
        market.claim(jobId, 4, 0, workers[0], 1, bytes32(0), new bytes32[](0));
    }

    function test_claim_revertsOnBadProof() public {
        bytes32[] memory h = _finalized(0, 4);
        IMarket.RoundLeaf memory l = _roundLeaf(jobId, 0, 2);
        bytes32[] memory proof = Merkle.proof(h, 1); // the wrong leaf's proof
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidProof.selector, h[2], Merkle.root(h)));
        market.claim(jobId, 0, 2, l.worker, l.amount, l.resultHash, proof);
    }

    function test_claim_revertsOnInflatedAmount() public {
        bytes32[] memory h = _finalized(0, 4);
        IMarket.RoundLeaf memory l = _roundLeaf(jobId, 0, 2);
        l.amount += 1;
        bytes32 forged = market.hashRoundLeaf(l);
        bytes32[] memory proof = Merkle.proof(h, 2);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidProof.selector, forged, Merkle.root(h)));
        market.claim(jobId, 0, 2, l.worker, l.amount, l.resultHash, proof);
    }

    function test_claim_neverPaysMoreThanRoundTotal() public {
        // a faulty coordinator commits leaves summing to more than the round total
        bytes32[] memory h = _roundLeafHashes(jobId, 0, 3);
        vm.prank(coordinator);
        market.commitRound(jobId, 0, Merkle.root(h), 2 * REWARD + 1, 3);
        vm.warp(block.timestamp + WINDOW);
        market.finalizeRound(jobId, 0);
        _claim(jobId, 0, 0, h);
        _claim(jobId, 0, 1, h);
        _expectClaimRevert(abi.encodeWithSelector(IMarket.MarketRoundOverpaid.selector, jobId, 0, 1, REWARD), 0, 2, h);
        assertEq(token.balanceOf(address(market)), 98 * REWARD, "escrow (98R - 1) + the 1 never paid");
    }

    function test_claim_revertsOnRevokedLeaf() public {
        _stakeAll();
        bytes32[] memory h = _commitRound(jobId, 0, 3);
        uint256 id = _challenge(verifiers[0], _evidence(jobId, 0, 3, 1, 1));
        _juryVotes(market.getDispute(id).arbiterDisputeId, _unanimous(2));
        jury.resolve(market.getDispute(id).arbiterDisputeId);
        vm.warp(block.timestamp + WINDOW);
        market.finalizeRound(jobId, 0);
        _expectClaimRevert(
            abi.encodeWithSelector(IMarket.MarketLeafNotClaimable.selector, h[1], IMarket.LeafStatus.Revoked), 0, 1, h
        );
        _claim(jobId, 0, 0, h); // other leaves still pay
        _claim(jobId, 0, 2, h);
        assertEq(market.getRound(jobId, 0).pending, 0, "round drained");
    }

    function test_claim_paysUpheldLeaf() public {
        _stakeAll();
        bytes32[] memory h = _commitRound(jobId, 0, 3);
        uint256 id = _challenge(verifiers[0], _evidence(jobId, 0, 3, 1, 1));
        _juryVotes(market.getDispute(id).arbiterDisputeId, _unanimous(1));
        jury.resolve(market.getDispute(id).arbiterDisputeId);
        vm.warp(block.timestamp + WINDOW);
        market.finalizeRound(jobId, 0);
        _claim(jobId, 0, 1, h);
        assertEq(token.balanceOf(_workerOf(1)), REWARD, "upheld leaf paid");
    }

    function test_fuzz_claim_everyLeafOfAnyTreeSize(uint256 numUnits, uint256 unit) public {
        numUnits = bound(numUnits, 1, 40);
        unit = bound(unit, 0, numUnits - 1);
        bytes32[] memory h = _finalized(7, numUnits);
        _claim(jobId, 7, unit, h);
        assertEq(market.getRound(jobId, 7).pending, (numUnits - 1) * REWARD, "pending after one claim");
        assertEq(token.balanceOf(_workerOf(unit)), REWARD, "paid");
    }

    function test_fuzz_commitRound_capAndEscrow(uint256 total, uint256 numUnits) public {
        numUnits = bound(numUnits, 1, 50);
        total = bound(total, 0, 200 * REWARD);
        uint256 cap = numUnits * REWARD;
        vm.prank(coordinator);
        if (total > cap) {
            vm.expectRevert(abi.encodeWithSelector(IMarket.MarketRoundTotalTooHigh.selector, jobId, 1, total, cap));
        }
        market.commitRound(jobId, 1, ROOT, total, numUnits);
        uint256 committed = total > cap ? 0 : total;
        assertEq(market.getJob(jobId).escrow + committed, 100 * REWARD, "escrow + pending == budget");
    }
}
