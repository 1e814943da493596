// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {Market} from "../src/Market.sol";
import {IMarket} from "../src/interfaces/IMarket.sol";
import {IArbitrator} from "../src/interfaces/IArbitrator.sol";
import {Merkle} from "./utils/Merkle.sol";
import {MarketFixture} from "./utils/MarketFixture.sol";
import {Vm} from "./utils/Vm.sol";

/// @dev An arbitrator that asks for an ether fee, which the market does not support.
contract FeeArbiter is IArbitrator {
    function createDispute(uint256, bytes calldata) external payable returns (uint256) {
        return 1;
    }

    function arbitrationCost(bytes calldata) external pure returns (uint256) {
        return 1 ether;
    }

    function disputeStatus(uint256) external pure returns (DisputeStatus) {
        return DisputeStatus.Waiting;
    }

    function currentRuling(uint256) external pure returns (uint256) {
        return 0;
    }
}

/// @notice challenge / rule / timeoutDispute / withdrawPayout and the money each ruling moves.
contract MarketDisputeTest is MarketFixture {
    uint256 internal jobId;
    uint256 internal constant UNITS = 6;
    address internal challenger;

    function setUp() public override {
        super.setUp();
        _stakeAll();
        challenger = verifiers[0];
        jobId = _postJob(100 * REWARD, 50);
        _commitRound(jobId, 0, UNITS);
    }

    function _ev(uint256 unit, uint256 step) internal view returns (IMarket.Evidence memory) {
        return _evidence(jobId, 0, UNITS, unit, step);
    }

    function _expectChallengeRevert(address who, IMarket.Evidence memory ev, bytes memory err) internal {
        _fund(who, BOND);
        vm.prank(who);
        vm.expectRevert(err);
        market.challenge(ev);
    }

    function _arbiterId(uint256 disputeId) internal view returns (uint256) {
        return market.getDispute(disputeId).arbiterDisputeId;
    }

    /// @dev The arbiter rules directly (the jury's own flow is tested in JuryArbiter.t.sol).
    function _rule(uint256 disputeId, uint256 ruling) internal {
        uint256 arbiterId = _arbiterId(disputeId);
        vm.prank(address(jury));
        market.rule(arbiterId, ruling);
    }

    // ------------------------------------------------------------------ challenge: success

    function test_challenge_opensDisputeAndLocksBond() public {
        IMarket.Evidence memory ev = _ev(4, 2);
        uint256 id = _challenge(challenger, ev);
        assertEq(id, 1, "first dispute id");
        IMarket.DisputeView memory d = market.getDispute(id);
        bytes32 leaf = market.hashRoundLeaf(ev.leaf);
        assertEq(d.jobId, jobId, "job");
        assertEq(d.round, 0, "round");
        assertEq(d.leaf, leaf, "leaf");
        assertEq(d.worker, _workerOf(4), "worker");
        assertEq(d.challenger, challenger, "challenger");
        assertEq(d.amount, REWARD, "amount");
        assertEq(d.bond, BOND, "bond");
        assertEq(uint256(d.status), uint256(IMarket.DisputeStatus.Open), "status");
        assertEq(market.disputeIdOf(d.arbiterDisputeId), id, "arbiter id maps back");
        assertEq(uint256(market.leafStatus(leaf)), uint256(IMarket.LeafStatus.Challenged), "leaf status");
        assertEq(market.getRound(jobId, 0).openDisputes, 1, "round open disputes");
        assertEq(market.openDisputesOf(challenger), 1, "challenger in dispute");
        assertEq(market.openDisputesOf(_workerOf(4)), 1, "worker in dispute");
        assertEq(token.balanceOf(challenger), 0, "bond pulled");
        address[] memory js = jury.jurorsOf(d.arbiterDisputeId);
        assertEq(js.length, JURY, "jury drawn");
        for (uint256 i; i < js.length; ++i) {
            assertTrue(js[i] != challenger && js[i] != d.worker, "parties are never jurors");
            assertTrue(market.isEligibleVerifier(js[i]), "jurors are staked verifiers");
        }
    }

    function test_challenge_emitsFullEvidence() public {
        IMarket.Evidence memory ev = _ev(2, 3);
        _fund(challenger, BOND);
        vm.recordLogs();
        vm.prank(challenger);
        uint256 id = market.challenge(ev);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bytes32 sig = IMarket.ChallengeEvidence.selector;
        bool found;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter != address(market) || logs[i].topics[0] != sig) continue;
            found = true;
            assertEq(uint256(logs[i].topics[1]), id, "dispute id topic");
            IMarket.Evidence memory got = abi.decode(logs[i].data, (IMarket.Evidence));
            assertEq(keccak256(abi.encode(got)), keccak256(abi.encode(ev)), "evidence round-trips through the log");
        }
        assertTrue(found, "ChallengeEvidence emitted");
    }

    function test_challenge_stepZeroIgnoresPrev() public {
        IMarket.Evidence memory ev = _ev(0, 0);
        ev.prev.stateDigest = keccak256("garbage");
        ev.prevProof = new bytes32[](1);
        uint256 id = _challenge(challenger, ev);
        assertEq(uint256(market.getDispute(id).status), uint256(IMarket.DisputeStatus.Open), "opened");
    }

    function test_challenge_lastStep() public {
        uint256 id = _challenge(challenger, _ev(5, TRACE_STEPS - 1));
        assertEq(uint256(market.getDispute(id).status), uint256(IMarket.DisputeStatus.Open), "opened");
    }

    // ------------------------------------------------------------------ challenge: reverts

    function test_challenge_revertsWithoutArbiter() public {
        Market m = new Market(IERC20(address(token)), _params());
        IMarket.Evidence memory ev = _ev(0, 1);
        vm.expectRevert(IMarket.MarketArbiterNotSet.selector);
        m.challenge(ev);
    }

    function test_challenge_revertsWithFeeArbiter() public {
        Market m = new Market(IERC20(address(token)), _params());
        m.setArbiter(new FeeArbiter());
        token.mint(challenger, MIN_VERIFIER + BOND);
        token.mint(owner, 10 * REWARD);
        vm.startPrank(challenger);
        token.approve(address(m), type(uint256).max);
        m.stake(VERIFIER, MIN_VERIFIER);
        vm.startPrank(owner);
        token.approve(address(m), type(uint256).max);
        uint64 deadline = uint64(block.timestamp + 2 days);
        uint256 j = m.postJob(keccak256("spec"), 10 * REWARD, REWARD, 10, coordinator, WINDOW, deadline);
        vm.stopPrank();
        // a one-leaf round whose result is signed under m's EIP-712 domain
        IMarket.Evidence memory ev = _ev(0, 1);
        ev.leaf.jobId = j;
        ev.leaf.resultHash = m.hashWorkResult(j, 0, 0, ev.inputHash, ev.outputHash, ev.traceRoot);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(workerKeys[0], ev.leaf.resultHash);
        ev.signature = abi.encodePacked(r, s, v);
        ev.leafProof = new bytes32[](0);
        bytes32 root = m.hashRoundLeaf(ev.leaf);
        vm.prank(coordinator);
        m.commitRound(j, 0, root, REWARD, 1);
        vm.prank(challenger);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketArbitrationFeeUnsupported.selector, 1 ether));
        m.challenge(ev);
    }

    function test_challenge_revertsWithoutVerifierStake() public {
        address nobody = address(0xBAD);
        _expectChallengeRevert(
            nobody, _ev(0, 1), abi.encodeWithSelector(IMarket.MarketInsufficientStake.selector, nobody, 0, MIN_VERIFIER)
        );
    }

    function test_challenge_revertsWhenStakeIsUnbonding() public {
        vm.prank(challenger);
        market.requestUnstake(VERIFIER, 1);
        _expectChallengeRevert(
            challenger,
            _ev(0, 1),
            abi.encodeWithSelector(IMarket.MarketInsufficientStake.selector, challenger, MIN_VERIFIER - 1, MIN_VERIFIER)
        );
    }

    function test_challenge_revertsOnSelfChallenge() public {
        address worker = _workerOf(1);
        _stake(worker, VERIFIER, MIN_VERIFIER);
        _expectChallengeRevert(worker, _ev(1, 1), abi.encodeWithSelector(IMarket.MarketSelfChallenge.selector, worker));
    }

    function test_challenge_revertsOnUnknownRound() public {
        IMarket.Evidence memory ev = _ev(0, 1);
        ev.leaf.round = 9;
        _expectChallengeRevert(challenger, ev, abi.encodeWithSelector(IMarket.MarketUnknownRound.selector, jobId, 9));
    }

    function test_challenge_revertsAfterWindow() public {
        uint64 end = uint64(block.timestamp + WINDOW);
        vm.warp(end);
        _expectChallengeRevert(
            challenger,
            _ev(0, 1),
            abi.encodeWithSelector(IMarket.MarketChallengeWindowClosed.selector, jobId, 0, end, end)
        );
    }

    function test_challenge_revertsOnFinalizedRound() public {
        vm.warp(block.timestamp + WINDOW);
        market.finalizeRound(jobId, 0);
        _expectChallengeRevert(
            challenger, _ev(0, 1), abi.encodeWithSelector(IMarket.MarketRoundAlreadyFinalized.selector, jobId, 0)
        );
    }

    function test_challenge_revertsOnLeafNotInRound() public {
        IMarket.Evidence memory ev = _ev(3, 1);
        ev.leafProof = Merkle.proof(_roundLeafHashes(jobId, 0, UNITS), 2);
        bytes32 root = market.getRound(jobId, 0).root;
        _expectChallengeRevert(
            challenger,
            ev,
            abi.encodeWithSelector(IMarket.MarketInvalidProof.selector, market.hashRoundLeaf(ev.leaf), root)
        );
    }

    function test_challenge_revertsOnLeafAlreadyChallenged() public {
        IMarket.Evidence memory ev = _ev(3, 1);
        _challenge(challenger, ev);
        _expectChallengeRevert(
            verifiers[1],
            ev,
            abi.encodeWithSelector(
                IMarket.MarketLeafNotChallengeable.selector,
                market.hashRoundLeaf(ev.leaf),
                IMarket.LeafStatus.Challenged
            )
        );
    }

    function test_challenge_revertsOnRuledLeafEvenForOthers() public {
        IMarket.Evidence memory ev = _ev(3, 4);
        uint256 id = _challenge(challenger, ev);
        _juryVotes(_arbiterId(id), _unanimous(1));
        jury.resolve(_arbiterId(id));
        _expectChallengeRevert(
            verifiers[1],
            _ev(3, 2),
            abi.encodeWithSelector(
                IMarket.MarketLeafNotChallengeable.selector, market.hashRoundLeaf(ev.leaf), IMarket.LeafStatus.Upheld
            )
        );
    }

    function test_challenge_revertsOnResultHashMismatch() public {
        IMarket.Evidence memory ev = _ev(1, 1);
        ev.outputHash = keccak256("a different output");
        bytes32 recomputed = market.hashWorkResult(jobId, 0, 1, ev.inputHash, ev.outputHash, ev.traceRoot);
        _expectChallengeRevert(
            challenger,
            ev,
            abi.encodeWithSelector(IMarket.MarketResultHashMismatch.selector, ev.leaf.resultHash, recomputed)
        );
    }

    function test_challenge_revertsWhenSignerIsNotWorker() public {
        IMarket.Evidence memory ev = _ev(1, 1);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(0xE7E7, ev.leaf.resultHash);
        ev.signature = abi.encodePacked(r, s, v);
        _expectChallengeRevert(
            challenger,
            ev,
            abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, ev.leaf.worker, vm.addr(0xE7E7))
        );
    }

    function test_challenge_revertsOnMalformedSignature() public {
        IMarket.Evidence memory ev = _ev(1, 1);
        ev.signature = hex"1234";
        _expectChallengeRevert(
            challenger, ev, abi.encodeWithSelector(IMarket.MarketInvalidSignature.selector, ev.leaf.worker, address(0))
        );
    }

    function test_challenge_revertsOnWrongCurrentStep() public {
        IMarket.Evidence memory ev = _ev(1, 2);
        ev.step = 3;
        _expectChallengeRevert(challenger, ev, abi.encodeWithSelector(IMarket.MarketInvalidTraceStep.selector, 3, 2));
    }

    function test_challenge_revertsOnWrongPreviousStep() public {
        IMarket.Evidence memory ev = _ev(1, 3);
        ev.prev = ev.cur;
        _expectChallengeRevert(challenger, ev, abi.encodeWithSelector(IMarket.MarketInvalidTraceStep.selector, 2, 3));
    }

    function test_challenge_revertsOnBadCurrentTraceProof() public {
        IMarket.Evidence memory ev = _ev(1, 3);
        ev.cur.stateDigest = keccak256("forged state");
        _expectChallengeRevert(
            challenger,
            ev,
            abi.encodeWithSelector(IMarket.MarketInvalidTraceProof.selector, 3, _traceHash(ev.cur), ev.traceRoot)
        );
    }

    function test_challenge_revertsOnBadPreviousTraceProof() public {
        IMarket.Evidence memory ev = _ev(1, 3);
        ev.prev.lossBits += 1;
        _expectChallengeRevert(
            challenger,
            ev,
            abi.encodeWithSelector(IMarket.MarketInvalidTraceProof.selector, 2, _traceHash(ev.prev), ev.traceRoot)
        );
    }

    function test_challenge_revertsWithoutBondFunds() public {
        IMarket.Evidence memory ev = _ev(1, 3);
        vm.prank(challenger);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientBalance.selector, challenger, 0, BOND));
        market.challenge(ev);
    }

    function test_challenge_revertsWithoutBondAllowance() public {
        IMarket.Evidence memory ev = _ev(1, 3);
        token.mint(challenger, BOND);
        vm.prank(challenger);
        token.approve(address(market), BOND - 1);
        vm.prank(challenger);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), BOND - 1, BOND)
        );
        market.challenge(ev);
    }

    // ------------------------------------------------------------------ rule

    function test_rule_revertsForNonArbiter() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketNotArbiter.selector, address(this), address(jury)));
        market.rule(1, 2);
    }

    function test_rule_revertsOnUnknownDispute() public {
        vm.prank(address(jury));
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketUnknownDispute.selector, 42));
        market.rule(42, 2);
    }

    function test_rule_revertsOnInvalidRuling() public {
        uint256 id = _challenge(challenger, _ev(1, 1));
        uint256 arbiterId = _arbiterId(id);
        vm.prank(address(jury));
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidRuling.selector, 3));
        market.rule(arbiterId, 3);
    }

    function test_rule_revertsTwice() public {
        uint256 id = _challenge(challenger, _ev(1, 1));
        uint256 arbiterId = _arbiterId(id);
        vm.startPrank(address(jury));
        market.rule(arbiterId, 0);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketDisputeNotOpen.selector, id, IMarket.DisputeStatus.Ruled));
        market.rule(arbiterId, 2);
        vm.stopPrank();
    }

    function test_rule_challengerRight_revokesSlashesAndPays() public {
        IMarket.Evidence memory ev = _ev(4, 2);
        address worker = ev.leaf.worker;
        uint256 id = _challenge(challenger, ev);
        uint256 escrowBefore = market.getJob(jobId).escrow;
        _juryVotes(_arbiterId(id), _unanimous(2));
        jury.resolve(_arbiterId(id));

        uint256 slashed = MIN_WORKER * SLASH_BPS / 10_000;
        uint256 jurorShare = slashed * JUROR_BPS / 10_000;
        IMarket.DisputeView memory d = market.getDispute(id);
        assertEq(uint256(d.status), uint256(IMarket.DisputeStatus.Ruled), "status");
        assertEq(d.ruling, 2, "ruling");
        assertEq(uint256(market.leafStatus(d.leaf)), uint256(IMarket.LeafStatus.Revoked), "revoked");
        assertEq(market.getStake(worker, WORKER).active, MIN_WORKER - slashed, "worker slashed");
        assertEq(market.payoutOf(challenger), BOND + slashed - jurorShare, "challenger credited");
        assertEq(market.payoutOf(worker), 0, "worker credited nothing");
        assertEq(market.getJob(jobId).escrow, escrowBefore + REWARD, "leaf amount back to escrow");
        assertEq(market.getRound(jobId, 0).pending, (UNITS - 1) * REWARD, "pending reduced");
        assertEq(market.getRound(jobId, 0).openDisputes, 0, "round has no open dispute");
        assertEq(market.openDisputesOf(worker), 0, "worker released");
        assertEq(market.openDisputesOf(challenger), 0, "challenger released");
        assertEq(token.balanceOf(address(jury)), jurorShare, "juror share at the arbiter");
        vm.prank(challenger);
        market.withdrawPayout();
        assertEq(token.balanceOf(challenger), BOND + slashed - jurorShare, "challenger paid");
        assertEq(market.payoutOf(challenger), 0, "payout cleared");
    }

    function test_rule_slashReachesUnbondingStake() public {
        IMarket.Evidence memory ev = _ev(4, 2);
        address worker = ev.leaf.worker;
        vm.prank(worker);
        market.requestUnstake(WORKER, MIN_WORKER - 10);
        uint256 id = _challenge(challenger, ev);
        _rule(id, 2);
        uint256 slashed = MIN_WORKER * SLASH_BPS / 10_000;
        IMarket.StakeView memory s = market.getStake(worker, WORKER);
        assertEq(s.active, 0, "active taken first");
        assertEq(s.unbonding, MIN_WORKER - slashed, "rest from unbonding");
    }

    function test_rule_slashOfUnstakedWorkerIsZero() public {
        // the worker left before the coordinator committed its leaf: nothing left to slash
        address worker = _workerOf(4);
        vm.prank(worker);
        market.requestUnstake(WORKER, MIN_WORKER);
        vm.warp(block.timestamp + UNBONDING);
        vm.prank(worker);
        market.withdrawStake(WORKER);
        _commitRound(jobId, 1, UNITS);
        uint256 id = _challenge(challenger, _evidence(jobId, 1, UNITS, 4, 2));
        _rule(id, 2);
        assertEq(market.payoutOf(challenger), BOND, "bond back, no reward");
        assertEq(token.balanceOf(address(jury)), 0, "no juror share");
        assertEq(
            uint256(market.leafStatus(market.getDispute(id).leaf)), uint256(IMarket.LeafStatus.Revoked), "still revoked"
        );
    }

    function test_rule_workerRight_bondPaysWorkerAndJurors() public {
        IMarket.Evidence memory ev = _ev(1, 1);
        uint256 id = _challenge(challenger, ev);
        _juryVotes(_arbiterId(id), _unanimous(1));
        jury.resolve(_arbiterId(id));
        uint256 jurorShare = BOND * JUROR_BPS / 10_000;
        assertEq(market.payoutOf(ev.leaf.worker), BOND - jurorShare, "worker gets bond minus juror share");
        assertEq(market.payoutOf(challenger), 0, "challenger loses bond");
        assertEq(token.balanceOf(address(jury)), jurorShare, "juror share");
        assertEq(market.getStake(ev.leaf.worker, WORKER).active, MIN_WORKER, "no slash");
        assertEq(
            uint256(market.leafStatus(market.hashRoundLeaf(ev.leaf))), uint256(IMarket.LeafStatus.Upheld), "upheld"
        );
        assertEq(market.getRound(jobId, 0).pending, UNITS * REWARD, "round untouched");
    }

    function test_rule_noDecision_refundsBond() public {
        IMarket.Evidence memory ev = _ev(1, 1);
        uint256 id = _challenge(challenger, ev);
        _rule(id, 0);
        assertEq(market.payoutOf(challenger), BOND, "bond back");
        assertEq(market.payoutOf(ev.leaf.worker), 0, "worker nothing");
        assertEq(
            uint256(market.leafStatus(market.hashRoundLeaf(ev.leaf))), uint256(IMarket.LeafStatus.Upheld), "upheld"
        );
    }

    // ------------------------------------------------------------------ timeoutDispute

    function test_timeoutDispute_appliesNoDecision() public {
        IMarket.Evidence memory ev = _ev(2, 2);
        uint256 id = _challenge(challenger, ev);
        vm.warp(block.timestamp + DISPUTE_TIMEOUT);
        market.timeoutDispute(id);
        IMarket.DisputeView memory d = market.getDispute(id);
        assertEq(uint256(d.status), uint256(IMarket.DisputeStatus.TimedOut), "timed out");
        assertEq(d.ruling, 0, "ruling 0");
        assertEq(market.payoutOf(challenger), BOND, "bond back");
        market.finalizeRound(jobId, 0); // the round is no longer blocked
        // the arbiter can no longer rule it
        vm.prank(address(jury));
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketDisputeNotOpen.selector, id, IMarket.DisputeStatus.TimedOut)
        );
        market.rule(d.arbiterDisputeId, 2);
    }

    function test_timeoutDispute_revertsBeforeTimeout() public {
        uint256 id = _challenge(challenger, _ev(2, 2));
        uint64 at = uint64(block.timestamp + DISPUTE_TIMEOUT);
        vm.warp(at - 1);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketDisputeNotTimedOut.selector, id, at, at - 1));
        market.timeoutDispute(id);
    }

    function test_timeoutDispute_revertsOnUnknownOrClosed() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketDisputeNotOpen.selector, 9, IMarket.DisputeStatus.None));
        market.timeoutDispute(9);
        uint256 id = _challenge(challenger, _ev(2, 2));
        _rule(id, 1);
        vm.warp(block.timestamp + DISPUTE_TIMEOUT);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketDisputeNotOpen.selector, id, IMarket.DisputeStatus.Ruled));
        market.timeoutDispute(id);
    }

    // ------------------------------------------------------------------ fuzz

    function test_fuzz_rulingConservesMoney(uint8 ruling, uint256 unit, uint256 step, uint256 workerStake) public {
        ruling = uint8(bound(ruling, 0, 2));
        unit = bound(unit, 0, UNITS - 1);
        step = bound(step, 0, TRACE_STEPS - 1);
        workerStake = bound(workerStake, 0, 1e30);
        IMarket.Evidence memory ev = _ev(unit, step);
        address worker = ev.leaf.worker;
        if (workerStake != 0) _stake(worker, WORKER, workerStake);
        uint256 balanceBefore = token.balanceOf(address(market));
        uint256 stakeBefore = market.getStake(worker, WORKER).active;
        uint256 id = _challenge(challenger, ev);
        _rule(id, ruling);
        uint256 stakeAfter = market.getStake(worker, WORKER).active;
        uint256 slashed = stakeBefore - stakeAfter;
        assertLe(slashed, stakeBefore, "slash never exceeds the stake");
        uint256 toJury = token.balanceOf(address(jury));
        // the market kept everything except the juror share; the bond came in
        assertEq(token.balanceOf(address(market)), balanceBefore + BOND - toJury, "market balance");
        uint256 credited = market.payoutOf(challenger) + market.payoutOf(worker);
        assertEq(credited + toJury, BOND + slashed, "bond + slash fully distributed");
        if (ruling != 2) assertEq(slashed, 0, "only ruling 2 slashes");
    }
}
