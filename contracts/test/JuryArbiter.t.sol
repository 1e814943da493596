// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {JuryArbiter} from "../src/JuryArbiter.sol";
import {Market} from "../src/Market.sol";
import {IArbitrator} from "../src/interfaces/IArbitrator.sol";
import {IJuryArbiter} from "../src/interfaces/IJuryArbiter.sol";
import {IMarket} from "../src/interfaces/IMarket.sol";
import {MarketFixture} from "./utils/MarketFixture.sol";

/// @notice JuryArbiter: draw, commit-reveal, resolve, every timeout, rewards.
contract JuryArbiterTest is MarketFixture {
    uint256 internal jobId;
    uint256 internal constant UNITS = 4;
    address internal challenger;

    function setUp() public override {
        super.setUp();
        for (uint256 i; i < 3; ++i) {
            _stake(workers[i], WORKER, MIN_WORKER);
        }
        challenger = verifiers[0];
        jobId = _postJob(100 * REWARD, 50);
        _commitRound(jobId, 0, UNITS);
    }

    function _stakeVerifiers(uint256 n) internal {
        for (uint256 i; i < n; ++i) {
            _stake(verifiers[i], VERIFIER, MIN_VERIFIER);
        }
    }

    /// @dev Open a dispute on unit `unit`; returns the arbiter's dispute id.
    function _open(uint256 unit) internal returns (uint256) {
        uint256 id = _challenge(challenger, _evidence(jobId, 0, UNITS, unit, 1));
        return market.getDispute(id).arbiterDisputeId;
    }

    function _commit(uint256 id, address juror, uint8 choice, bytes32 salt) internal {
        bytes32 c = jury.voteCommitment(id, juror, choice, salt);
        vm.prank(juror);
        jury.commitVote(id, c);
    }

    function _reveal(uint256 id, address juror, uint8 choice, bytes32 salt) internal {
        vm.prank(juror);
        jury.revealVote(id, choice, salt);
    }

    // ------------------------------------------------------------------ constructor

    function test_constructor_storesParams() public view {
        IJuryArbiter.JuryParams memory p = jury.params();
        assertEq(p.jurySize, JURY, "jurySize");
        assertEq(p.commitPeriod, COMMIT_PERIOD, "commit");
        assertEq(p.revealPeriod, REVEAL_PERIOD, "reveal");
        assertEq(address(jury.market()), address(market), "market");
        assertEq(jury.arbitrationCost(""), 0, "no fee");
    }

    function test_constructor_revertsOnBadParams() public {
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryInvalidParams.selector, "market is the zero address"));
        new JuryArbiter(IMarket(address(0)), IJuryArbiter.JuryParams(3, 1, 1));
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryInvalidParams.selector, "jurySize must be 1..32"));
        new JuryArbiter(market, IJuryArbiter.JuryParams(0, 1, 1));
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryInvalidParams.selector, "jurySize must be 1..32"));
        new JuryArbiter(market, IJuryArbiter.JuryParams(33, 1, 1));
        vm.expectRevert(
            abi.encodeWithSelector(IJuryArbiter.JuryInvalidParams.selector, "commit/reveal periods must be > 0")
        );
        new JuryArbiter(market, IJuryArbiter.JuryParams(3, 0, 1));
        vm.expectRevert(
            abi.encodeWithSelector(
                IJuryArbiter.JuryInvalidParams.selector, "commitPeriod + revealPeriod must be < market disputeTimeout"
            )
        );
        new JuryArbiter(market, IJuryArbiter.JuryParams(3, DISPUTE_TIMEOUT / 2, DISPUTE_TIMEOUT / 2));
    }

    // ------------------------------------------------------------------ createDispute / draw

    function test_createDispute_revertsForNonMarket() public {
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryNotMarket.selector, address(this)));
        jury.createDispute(2, abi.encode(address(1), address(2)));
    }

    function test_createDispute_revertsOnChoicesOtherThanTwo() public {
        vm.prank(address(market));
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryInvalidChoices.selector, 3));
        jury.createDispute(3, abi.encode(address(1), address(2)));
    }

    function test_createDispute_revertsOnEtherFee() public {
        vm.deal(address(market), 1);
        vm.prank(address(market));
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryFeeNotAccepted.selector, 1));
        jury.createDispute{value: 1}(2, abi.encode(address(1), address(2)));
    }

    function test_createDispute_drawsDistinctJurorsOtherThanParties() public {
        _stakeVerifiers(5);
        _stake(_workerOf(1), VERIFIER, MIN_VERIFIER); // the worker is in the pool too
        uint256 id = _open(1);
        address[] memory js = jury.jurorsOf(id);
        assertEq(js.length, JURY, "full jury");
        for (uint256 i; i < js.length; ++i) {
            assertTrue(js[i] != challenger && js[i] != _workerOf(1), "no party sits on its own jury");
            for (uint256 k; k < i; ++k) {
                assertTrue(js[i] != js[k], "distinct");
            }
            assertTrue(jury.voteOf(id, js[i]).commitment == bytes32(0), "no vote yet");
        }
        IJuryArbiter.JuryDisputeView memory d = jury.getDispute(id);
        assertEq(d.numJurors, JURY, "numJurors");
        assertEq(d.worker, _workerOf(1), "worker");
        assertEq(d.challenger, challenger, "challenger");
        assertEq(d.commitDeadline, block.timestamp + COMMIT_PERIOD, "commit deadline");
        assertEq(d.revealDeadline, block.timestamp + COMMIT_PERIOD + REVEAL_PERIOD, "reveal deadline");
        assertEq(jury.disputeCount(), 1, "count");
        assertEq(uint256(jury.disputeStatus(id)), uint256(IArbitrator.DisputeStatus.Waiting), "waiting");
    }

    function test_createDispute_smallPoolDrawsFewerJurors() public {
        _stakeVerifiers(3); // challenger + 2 eligible
        uint256 id = _open(0);
        assertEq(jury.jurorsOf(id).length, 2, "two jurors");
    }

    function test_createDispute_noEligibleJurorResolvesAtOnceWithNoDecision() public {
        _stakeVerifiers(1); // only the challenger
        uint256 id = _open(0);
        assertEq(jury.jurorsOf(id).length, 0, "no jurors");
        jury.resolve(id);
        IJuryArbiter.JuryDisputeView memory d = jury.getDispute(id);
        assertTrue(d.resolved, "resolved");
        assertEq(d.ruling, 0, "no decision");
        assertEq(market.payoutOf(challenger), BOND, "bond back");
    }

    function test_fuzz_draw_alwaysValid(uint256 poolSize, bytes32 randao, uint256 unit) public {
        poolSize = bound(poolSize, 1, 20);
        unit = bound(unit, 0, UNITS - 1);
        for (uint256 i; i < poolSize; ++i) {
            _stake(address(uint160(0xE000 + i)), VERIFIER, MIN_VERIFIER);
        }
        challenger = address(uint160(0xE000));
        vm.prevrandao(randao);
        uint256 id = _open(unit);
        address[] memory js = jury.jurorsOf(id);
        uint256 eligible = poolSize - 1;
        assertEq(js.length, eligible < JURY ? eligible : JURY, "jury size = min(jurySize, eligible)");
        for (uint256 i; i < js.length; ++i) {
            assertTrue(js[i] != challenger && js[i] != _workerOf(unit), "no party");
            assertTrue(market.isEligibleVerifier(js[i]), "staked");
            for (uint256 k; k < i; ++k) {
                assertTrue(js[i] != js[k], "distinct");
            }
        }
    }

    // ------------------------------------------------------------------ commitVote

    function test_commitVote_recordsCommitment() public {
        _stakeVerifiers(5);
        uint256 id = _open(0);
        address j0 = jury.jurorsOf(id)[0];
        bytes32 c = jury.voteCommitment(id, j0, 2, "salt");
        assertEq(c, keccak256(abi.encode(id, j0, uint8(2), bytes32("salt"))), "commitment formula");
        vm.prank(j0);
        jury.commitVote(id, c);
        assertEq(jury.voteOf(id, j0).commitment, c, "stored");
        assertEq(jury.getDispute(id).commits, 1, "count");
    }

    function test_commitVote_revertsForNonJuror() public {
        _stakeVerifiers(5);
        uint256 id = _open(0);
        vm.prank(challenger);
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryNotJuror.selector, id, challenger));
        jury.commitVote(id, bytes32(uint256(1)));
    }

    function test_commitVote_revertsOnUnknownDispute() public {
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryUnknownDispute.selector, 8));
        jury.commitVote(8, bytes32(uint256(1)));
    }

    function test_commitVote_revertsAfterDeadline() public {
        _stakeVerifiers(5);
        uint256 id = _open(0);
        address j0 = jury.jurorsOf(id)[0];
        uint64 deadline = uint64(block.timestamp + COMMIT_PERIOD);
        vm.warp(deadline);
        vm.prank(j0);
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryCommitClosed.selector, id, deadline, deadline));
        jury.commitVote(id, bytes32(uint256(1)));
    }

    function test_commitVote_revertsTwice() public {
        _stakeVerifiers(5);
        uint256 id = _open(0);
        address j0 = jury.jurorsOf(id)[0];
        vm.startPrank(j0);
        jury.commitVote(id, bytes32(uint256(1)));
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryAlreadyCommitted.selector, id, j0));
        jury.commitVote(id, bytes32(uint256(2)));
        vm.stopPrank();
    }

    function test_commitVote_revertsOnZeroCommitment() public {
        _stakeVerifiers(5);
        uint256 id = _open(0);
        address j0 = jury.jurorsOf(id)[0];
        vm.prank(j0);
        vm.expectRevert(IJuryArbiter.JuryZeroCommitment.selector);
        jury.commitVote(id, bytes32(0));
    }

    // ------------------------------------------------------------------ revealVote

    function test_revealVote_opensEarlyWhenAllCommitted() public {
        _stakeVerifiers(5);
        uint256 id = _open(0);
        address[] memory js = jury.jurorsOf(id);
        for (uint256 i; i < js.length; ++i) {
            _commit(id, js[i], 2, bytes32(i));
        }
        _reveal(id, js[0], 2, bytes32(0));
        assertTrue(jury.voteOf(id, js[0]).revealed, "revealed before the commit deadline");
        assertEq(jury.voteOf(id, js[0]).choice, 2, "choice");
        assertEq(jury.currentRuling(id), 2, "current ruling follows reveals");
    }

    function test_revealVote_revertsBeforeRevealPhase() public {
        _stakeVerifiers(5);
        uint256 id = _open(0);
        address j0 = jury.jurorsOf(id)[0];
        _commit(id, j0, 1, "s");
        uint64 deadline = uint64(block.timestamp + COMMIT_PERIOD);
        vm.prank(j0);
        vm.expectRevert(
            abi.encodeWithSelector(IJuryArbiter.JuryRevealNotOpen.selector, id, deadline, uint64(block.timestamp))
        );
        jury.revealVote(id, 1, "s");
    }

    function test_revealVote_revertsAfterRevealDeadline() public {
        _stakeVerifiers(5);
        uint256 id = _open(0);
        address j0 = jury.jurorsOf(id)[0];
        _commit(id, j0, 1, "s");
        uint64 deadline = uint64(block.timestamp + COMMIT_PERIOD + REVEAL_PERIOD);
        vm.warp(deadline);
        vm.prank(j0);
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryRevealClosed.selector, id, deadline, deadline));
        jury.revealVote(id, 1, "s");
    }

    function test_revealVote_revertsWithoutCommit() public {
        _stakeVerifiers(5);
        uint256 id = _open(0);
        address j0 = jury.jurorsOf(id)[0];
        vm.warp(block.timestamp + COMMIT_PERIOD);
        vm.prank(j0);
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryNotCommitted.selector, id, j0));
        jury.revealVote(id, 1, "s");
    }

    function test_revealVote_revertsForNonJuror() public {
        _stakeVerifiers(5);
        uint256 id = _open(0);
        vm.prank(address(0x99));
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryNotJuror.selector, id, address(0x99)));
        jury.revealVote(id, 1, "s");
    }

    function test_revealVote_revertsOnMismatch() public {
        _stakeVerifiers(5);
        uint256 id = _open(0);
        address j0 = jury.jurorsOf(id)[0];
        _commit(id, j0, 1, "s");
        vm.warp(block.timestamp + COMMIT_PERIOD);
        vm.prank(j0);
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryCommitmentMismatch.selector, id, j0));
        jury.revealVote(id, 2, "s"); // a different choice than committed
        vm.prank(j0);
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryCommitmentMismatch.selector, id, j0));
        jury.revealVote(id, 1, "t"); // a different salt
    }

    function test_revealVote_revertsOnInvalidChoice() public {
        _stakeVerifiers(5);
        uint256 id = _open(0);
        address j0 = jury.jurorsOf(id)[0];
        _commit(id, j0, 0, "s");
        vm.warp(block.timestamp + COMMIT_PERIOD);
        vm.prank(j0);
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryInvalidChoice.selector, 0));
        jury.revealVote(id, 0, "s");
    }

    function test_revealVote_revertsTwice() public {
        _stakeVerifiers(5);
        uint256 id = _open(0);
        address j0 = jury.jurorsOf(id)[0];
        _commit(id, j0, 1, "s");
        vm.warp(block.timestamp + COMMIT_PERIOD);
        _reveal(id, j0, 1, "s");
        vm.prank(j0);
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryAlreadyRevealed.selector, id, j0));
        jury.revealVote(id, 1, "s");
    }

    // ------------------------------------------------------------------ resolve

    function test_resolve_majorityRulesAndMajorityIsPaid() public {
        _stakeVerifiers(5);
        uint256 id = _open(2);
        address[] memory js = jury.jurorsOf(id);
        uint8[] memory votes = new uint8[](3);
        votes[0] = 2;
        votes[1] = 1;
        votes[2] = 2;
        _juryVotes(id, votes);
        jury.resolve(id);
        uint256 share = (MIN_WORKER * SLASH_BPS / 10_000) * JUROR_BPS / 10_000;
        IJuryArbiter.JuryDisputeView memory d = jury.getDispute(id);
        assertTrue(d.resolved, "resolved");
        assertEq(d.ruling, 2, "challenger wins 2-1");
        assertEq(d.votesChallenger, 2, "votes 2");
        assertEq(d.votesWorker, 1, "votes 1");
        assertEq(d.jurorReward, share, "reward received");
        assertEq(jury.rewardOf(js[0]) + jury.rewardOf(js[2]), share, "majority shares the reward");
        assertEq(jury.rewardOf(js[1]), 0, "minority gets nothing");
        assertEq(uint256(jury.disputeStatus(id)), uint256(IArbitrator.DisputeStatus.Solved), "solved");
        assertEq(jury.currentRuling(id), 2, "ruling");
        assertEq(uint256(market.getDispute(1).status), uint256(IMarket.DisputeStatus.Ruled), "market ruled");
        vm.prank(js[0]);
        jury.withdrawReward();
        assertEq(token.balanceOf(js[0]), share / 2, "withdrawn");
    }

    function test_resolve_splitRemainderIsExact() public {
        _stakeVerifiers(5);
        uint256 id = _open(2);
        address[] memory js = jury.jurorsOf(id);
        _juryVotes(id, _unanimous(1)); // reward = 10% of the 10-token bond = 1e6, split 3 ways
        jury.resolve(id);
        uint256 share = BOND * JUROR_BPS / 10_000;
        uint256 sum;
        for (uint256 i; i < 3; ++i) {
            sum += jury.rewardOf(js[i]);
        }
        assertEq(sum, share, "split is exact");
        assertEq(jury.rewardOf(js[2]), share - 2 * (share / 3), "last winner gets the remainder");
        assertEq(token.balanceOf(address(jury)), share, "arbiter holds exactly the rewards");
    }

    function test_resolve_silentJurorForfeitsReward() public {
        _stakeVerifiers(5);
        uint256 id = _open(2);
        address[] memory js = jury.jurorsOf(id);
        uint8[] memory votes = new uint8[](3);
        votes[0] = 2;
        votes[1] = 0; // never commits
        votes[2] = 2;
        _juryVotes(id, votes);
        jury.resolve(id); // all commits revealed after the commit deadline: resolvable now
        assertEq(jury.getDispute(id).ruling, 2, "ruling");
        assertEq(jury.rewardOf(js[1]), 0, "silent juror gets nothing");
        assertGt(jury.rewardOf(js[0]), 0, "voter paid");
    }

    function test_resolve_tieIsNoDecision() public {
        _stakeVerifiers(5);
        uint256 id = _open(2);
        address[] memory js = jury.jurorsOf(id);
        _commit(id, js[0], 1, "a");
        _commit(id, js[1], 2, "b");
        _commit(id, js[2], 2, "c");
        vm.warp(block.timestamp + COMMIT_PERIOD);
        _reveal(id, js[0], 1, "a");
        _reveal(id, js[1], 2, "b"); // js[2] never reveals
        uint64 revealDeadline = jury.getDispute(id).revealDeadline;
        vm.expectRevert(
            abi.encodeWithSelector(IJuryArbiter.JuryNotResolvable.selector, id, revealDeadline, uint64(block.timestamp))
        );
        jury.resolve(id);
        vm.warp(revealDeadline);
        jury.resolve(id);
        assertEq(jury.getDispute(id).ruling, 0, "tie");
        assertEq(market.payoutOf(challenger), BOND, "bond refunded");
        assertEq(token.balanceOf(address(jury)), 0, "no juror reward on no decision");
    }

    function test_resolve_noCommitsIsNoDecisionAtCommitDeadline() public {
        _stakeVerifiers(5);
        uint256 id = _open(2);
        uint64 commitDeadline = uint64(block.timestamp + COMMIT_PERIOD);
        vm.expectRevert(
            abi.encodeWithSelector(
                IJuryArbiter.JuryNotResolvable.selector, id, commitDeadline + REVEAL_PERIOD, uint64(block.timestamp)
            )
        );
        jury.resolve(id);
        vm.warp(commitDeadline);
        jury.resolve(id);
        assertEq(jury.getDispute(id).ruling, 0, "no votes, no decision");
    }

    function test_resolve_revertsTwice() public {
        _stakeVerifiers(1);
        uint256 id = _open(0);
        jury.resolve(id);
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryAlreadyResolved.selector, id));
        jury.resolve(id);
    }

    function test_resolve_revertsOnUnknownDispute() public {
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryUnknownDispute.selector, 3));
        jury.resolve(3);
    }

    function test_resolve_revertsAfterMarketTimeout() public {
        _stakeVerifiers(5);
        uint256 id = _open(2);
        vm.warp(block.timestamp + DISPUTE_TIMEOUT);
        market.timeoutDispute(1);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketDisputeNotOpen.selector, 1, IMarket.DisputeStatus.TimedOut)
        );
        jury.resolve(id);
    }

    // ------------------------------------------------------------------ rewards and views

    function test_withdrawReward_revertsWithoutReward() public {
        vm.prank(verifiers[3]);
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryNoReward.selector, verifiers[3]));
        jury.withdrawReward();
    }

    function test_views_revertOnUnknownDispute() public {
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryUnknownDispute.selector, 1));
        jury.getDispute(1);
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryUnknownDispute.selector, 1));
        jury.jurorsOf(1);
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryUnknownDispute.selector, 1));
        jury.disputeStatus(1);
        vm.expectRevert(abi.encodeWithSelector(IJuryArbiter.JuryUnknownDispute.selector, 1));
        jury.currentRuling(1);
    }

    function test_fuzz_votes_rulingIsMajorityOfReveals(uint8 a, uint8 b, uint8 c) public {
        _stakeVerifiers(5);
        uint256 id = _open(3);
        uint8[] memory votes = new uint8[](3);
        votes[0] = a % 3;
        votes[1] = b % 3;
        votes[2] = c % 3;
        _juryVotes(id, votes);
        vm.warp(block.timestamp + REVEAL_PERIOD);
        jury.resolve(id);
        uint256 ones;
        uint256 twos;
        for (uint256 i; i < 3; ++i) {
            if (votes[i] == 1) ++ones;
            if (votes[i] == 2) ++twos;
        }
        uint256 expected = twos > ones ? 2 : ones > twos ? 1 : 0;
        assertEq(jury.getDispute(id).ruling, expected, "majority of revealed votes");
        address[] memory js = jury.jurorsOf(id);
        uint256 paid;
        for (uint256 i; i < 3; ++i) {
            uint256 r = jury.rewardOf(js[i]);
            if (r != 0) assertEq(votes[i], expected, "only majority voters are paid");
            paid += r;
        }
        assertEq(paid, token.balanceOf(address(jury)), "every received token is allocated");
    }
}
