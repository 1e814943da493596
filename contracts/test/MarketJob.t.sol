// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Market} from "../src/Market.sol";
import {IMarket} from "../src/interfaces/IMarket.sol";
import {IArbitrator} from "../src/interfaces/IArbitrator.sol";
import {MarketFixture} from "./utils/MarketFixture.sol";

/// @notice Constructor, setArbiter, postJob / topUp / completeJob / closeJob.
contract MarketJobTest is MarketFixture {
    bytes32 internal constant SPEC = keccak256("spec");

    function _post(uint256 budget, uint256 reward, uint256 maxUnits, address coord, uint64 window, uint64 deadline)
        internal
        returns (uint256)
    {
        _fund(owner, budget);
        vm.prank(owner);
        return market.postJob(SPEC, budget, reward, maxUnits, coord, window, deadline);
    }

    function _deadline() internal view returns (uint64) {
        return uint64(block.timestamp + 10 days);
    }

    // ------------------------------------------------------------------ constructor / wiring

    function test_constructor_storesParams() public view {
        IMarket.MarketParams memory p = market.params();
        assertEq(p.minWorkerStake, MIN_WORKER, "minWorkerStake");
        assertEq(p.minVerifierStake, MIN_VERIFIER, "minVerifierStake");
        assertEq(p.challengeBond, BOND, "challengeBond");
        assertEq(p.slashBps, SLASH_BPS, "slashBps");
        assertEq(p.jurorShareBps, JUROR_BPS, "jurorShareBps");
        assertEq(p.unbondingPeriod, UNBONDING, "unbondingPeriod");
        assertEq(p.disputeTimeout, DISPUTE_TIMEOUT, "disputeTimeout");
        assertEq(address(market.token()), address(token), "token");
        assertEq(address(market.arbiter()), address(jury), "arbiter");
    }

    function test_constructor_revertsOnBadParams() public {
        IMarket.MarketParams memory p = _params();
        vm.expectRevert(IMarket.MarketZeroAddress.selector);
        new Market(IERC20(address(0)), p);
        p.minWorkerStake = 0;
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidParams.selector, "minWorkerStake must be > 0"));
        new Market(IERC20(address(token)), p);
        p = _params();
        p.minVerifierStake = 0;
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidParams.selector, "minVerifierStake must be > 0"));
        new Market(IERC20(address(token)), p);
        p = _params();
        p.challengeBond = 0;
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidParams.selector, "challengeBond must be > 0"));
        new Market(IERC20(address(token)), p);
        p = _params();
        p.slashBps = 10_001;
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidParams.selector, "slashBps must be <= 10000"));
        new Market(IERC20(address(token)), p);
        p = _params();
        p.jurorShareBps = 10_001;
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidParams.selector, "jurorShareBps must be <= 10000"));
        new Market(IERC20(address(token)), p);
        p = _params();
        p.unbondingPeriod = 0;
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidParams.selector, "unbondingPeriod must be > 0"));
        new Market(IERC20(address(token)), p);
        p = _params();
        p.disputeTimeout = 0;
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidParams.selector, "disputeTimeout must be > 0"));
        new Market(IERC20(address(token)), p);
    }

    function test_setArbiter_revertsWhenAlreadySet() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketArbiterAlreadySet.selector, address(jury)));
        market.setArbiter(IArbitrator(address(0xBEEF)));
    }

    function test_setArbiter_revertsForNonOwner() public {
        Market m = new Market(IERC20(address(token)), _params());
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, owner));
        m.setArbiter(IArbitrator(address(0xBEEF)));
    }

    function test_setArbiter_revertsOnZeroAddress() public {
        Market m = new Market(IERC20(address(token)), _params());
        vm.expectRevert(IMarket.MarketZeroAddress.selector);
        m.setArbiter(IArbitrator(address(0)));
    }

    function test_setArbiter_setsOnce() public {
        Market m = new Market(IERC20(address(token)), _params());
        assertEq(address(m.arbiter()), address(0), "unset");
        m.setArbiter(IArbitrator(address(0xBEEF)));
        assertEq(address(m.arbiter()), address(0xBEEF), "set");
    }

    // ------------------------------------------------------------------ postJob

    function test_postJob_escrowsBudget() public {
        uint64 deadline = _deadline();
        uint256 jobId = _post(1000, 7, 100, coordinator, WINDOW, deadline);
        assertEq(jobId, 1, "first job id");
        assertEq(market.jobCount(), 1, "job count");
        IMarket.JobView memory j = market.getJob(jobId);
        assertEq(j.owner, owner, "owner");
        assertEq(j.coordinator, coordinator, "coordinator");
        assertEq(j.specHash, SPEC, "spec");
        assertEq(j.rewardPerUnit, 7, "reward");
        assertEq(j.maxUnits, 100, "maxUnits");
        assertEq(j.unitsCommitted, 0, "committed");
        assertEq(j.escrow, 1000, "escrow");
        assertEq(j.challengeWindow, WINDOW, "window");
        assertEq(j.deadline, deadline, "deadline");
        assertEq(uint256(j.status), uint256(IMarket.JobStatus.Open), "status");
        assertEq(token.balanceOf(address(market)), 1000, "market balance");
        assertEq(_post(5, 1, 1, coordinator, WINDOW, deadline), 2, "second job id");
    }

    function test_postJob_revertsOnZeroBudget() public {
        vm.expectRevert(IMarket.MarketZeroBudget.selector);
        market.postJob(SPEC, 0, 1, 1, coordinator, WINDOW, _deadline());
    }

    function test_postJob_revertsOnZeroReward() public {
        vm.expectRevert(IMarket.MarketZeroRewardPerUnit.selector);
        market.postJob(SPEC, 1, 0, 1, coordinator, WINDOW, _deadline());
    }

    function test_postJob_revertsOnZeroMaxUnits() public {
        vm.expectRevert(IMarket.MarketZeroMaxUnits.selector);
        market.postJob(SPEC, 1, 1, 0, coordinator, WINDOW, _deadline());
    }

    function test_postJob_revertsOnHugeMaxUnits() public {
        uint256 tooMany = uint256(type(uint128).max) + 1;
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketAmountTooLarge.selector, tooMany, type(uint128).max));
        market.postJob(SPEC, 1, 1, tooMany, coordinator, WINDOW, _deadline());
    }

    function test_postJob_revertsOnZeroCoordinator() public {
        vm.expectRevert(IMarket.MarketZeroAddress.selector);
        market.postJob(SPEC, 1, 1, 1, address(0), WINDOW, _deadline());
    }

    function test_postJob_revertsOnZeroWindow() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidChallengeWindow.selector, uint64(0), UNBONDING));
        market.postJob(SPEC, 1, 1, 1, coordinator, 0, _deadline());
    }

    function test_postJob_revertsOnWindowLongerThanUnbonding() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidChallengeWindow.selector, UNBONDING + 1, UNBONDING));
        market.postJob(SPEC, 1, 1, 1, coordinator, UNBONDING + 1, _deadline());
    }

    function test_postJob_revertsOnPastDeadline() public {
        uint64 nowTime = uint64(block.timestamp);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketDeadlineInPast.selector, nowTime, nowTime));
        market.postJob(SPEC, 1, 1, 1, coordinator, WINDOW, nowTime);
    }

    // ------------------------------------------------------------------ topUp

    function test_topUp_addsToEscrowFromAnyone() public {
        uint256 jobId = _post(100, 1, 10, coordinator, WINDOW, _deadline());
        address friend = address(0xF1);
        _fund(friend, 50);
        vm.prank(friend);
        market.topUp(jobId, 50);
        assertEq(market.getJob(jobId).escrow, 150, "escrow");
        assertEq(token.balanceOf(address(market)), 150, "balance");
    }

    function test_topUp_revertsOnZeroAmount() public {
        uint256 jobId = _post(100, 1, 10, coordinator, WINDOW, _deadline());
        vm.expectRevert(IMarket.MarketZeroAmount.selector);
        market.topUp(jobId, 0);
    }

    function test_topUp_revertsOnUnknownJob() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketUnknownJob.selector, 99));
        market.topUp(99, 1);
    }

    function test_topUp_revertsWhenNotOpen() public {
        uint256 jobId = _post(100, 1, 10, coordinator, WINDOW, _deadline());
        vm.prank(coordinator);
        market.completeJob(jobId);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketJobNotOpen.selector, jobId, IMarket.JobStatus.Completed));
        market.topUp(jobId, 1);
    }

    // ------------------------------------------------------------------ completeJob

    function test_completeJob_byCoordinator() public {
        uint256 jobId = _post(100, 1, 10, coordinator, WINDOW, _deadline());
        vm.prank(coordinator);
        market.completeJob(jobId);
        assertEq(uint256(market.getJob(jobId).status), uint256(IMarket.JobStatus.Completed), "status");
    }

    function test_completeJob_revertsForOthers() public {
        uint256 jobId = _post(100, 1, 10, coordinator, WINDOW, _deadline());
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketNotCoordinator.selector, jobId, owner, coordinator));
        market.completeJob(jobId);
    }

    function test_completeJob_revertsTwice() public {
        uint256 jobId = _post(100, 1, 10, coordinator, WINDOW, _deadline());
        vm.startPrank(coordinator);
        market.completeJob(jobId);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketJobNotOpen.selector, jobId, IMarket.JobStatus.Completed));
        market.completeJob(jobId);
        vm.stopPrank();
    }

    function test_completeJob_revertsOnUnknownJob() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketUnknownJob.selector, 5));
        market.completeJob(5);
    }

    // ------------------------------------------------------------------ closeJob

    function test_closeJob_refundsAfterDeadline() public {
        uint64 deadline = _deadline();
        uint256 jobId = _post(100, 1, 10, coordinator, WINDOW, deadline);
        vm.warp(deadline);
        vm.prank(owner);
        market.closeJob(jobId);
        assertEq(token.balanceOf(owner), 100, "refund");
        assertEq(market.getJob(jobId).escrow, 0, "escrow");
        assertEq(uint256(market.getJob(jobId).status), uint256(IMarket.JobStatus.Closed), "status");
    }

    function test_closeJob_refundsAtOnceAfterCompletion() public {
        uint256 jobId = _post(100, 1, 10, coordinator, WINDOW, _deadline());
        vm.prank(coordinator);
        market.completeJob(jobId);
        vm.prank(owner);
        market.closeJob(jobId);
        assertEq(token.balanceOf(owner), 100, "refund");
    }

    function test_closeJob_revertsBeforeDeadline() public {
        uint64 deadline = _deadline();
        uint256 jobId = _post(100, 1, 10, coordinator, WINDOW, deadline);
        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketJobNotClosable.selector, jobId, deadline, uint64(block.timestamp))
        );
        market.closeJob(jobId);
    }

    function test_closeJob_revertsForNonOwner() public {
        uint256 jobId = _post(100, 1, 10, coordinator, WINDOW, _deadline());
        vm.prank(coordinator);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketNotJobOwner.selector, jobId, coordinator, owner));
        market.closeJob(jobId);
    }

    function test_closeJob_revertsOnUnknownJob() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketUnknownJob.selector, 3));
        market.closeJob(3);
    }

    function test_closeJob_sweepsAmountsReturnedByLostDisputes() public {
        _stakeAll();
        uint256 jobId = _postJob(4 * REWARD, 10);
        _commitRound(jobId, 0, 4); // whole budget pending
        (uint256 arbiterId) = _challenge(verifiers[0], _evidence(jobId, 0, 4, 2, 3));
        vm.prank(coordinator);
        market.completeJob(jobId);
        vm.prank(owner);
        market.closeJob(jobId);
        assertEq(token.balanceOf(owner), 0, "nothing in escrow yet");
        _juryVotes(arbiterId, _unanimous(2));
        jury.resolve(arbiterId);
        assertEq(market.getJob(jobId).escrow, REWARD, "revoked leaf back in escrow");
        vm.prank(owner);
        market.closeJob(jobId);
        assertEq(token.balanceOf(owner), REWARD, "swept");
        vm.prank(owner);
        market.closeJob(jobId); // a sweep with nothing to refund is a no-op
        assertEq(token.balanceOf(owner), REWARD, "no double refund");
    }

    function test_fuzz_postJobAndClose_refundsEverythingUncommitted(uint256 budget, uint256 topUp, uint256 units)
        public
    {
        budget = bound(budget, 1, 1e36);
        topUp = bound(topUp, 0, 1e36);
        units = bound(units, 0, 50);
        uint256 jobId = _post(budget, 1, 100, coordinator, WINDOW, _deadline());
        if (topUp != 0) {
            _fund(address(0xF2), topUp);
            vm.prank(address(0xF2));
            market.topUp(jobId, topUp);
        }
        uint256 total = units < budget + topUp ? units : budget + topUp;
        if (units != 0) {
            vm.prank(coordinator);
            market.commitRound(jobId, 0, keccak256("root"), total, units);
        }
        vm.warp(_deadline());
        vm.prank(owner);
        market.closeJob(jobId);
        assertEq(token.balanceOf(owner), budget + topUp - (units != 0 ? total : 0), "owner refund");
        assertEq(token.balanceOf(address(market)), units != 0 ? total : 0, "only the pending round stays");
    }
}
