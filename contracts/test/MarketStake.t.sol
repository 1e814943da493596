// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IMarket} from "../src/interfaces/IMarket.sol";
import {MarketFixture} from "./utils/MarketFixture.sol";

/// @notice stake / requestUnstake / withdrawStake / withdrawPayout and the verifier pool.
contract MarketStakeTest is MarketFixture {
    address internal alice = address(0xA1);

    function test_stake_creditsActiveAndPullsTokens() public {
        _fund(alice, 150 * ONE);
        vm.prank(alice);
        market.stake(WORKER, 120 * ONE);
        IMarket.StakeView memory s = market.getStake(alice, WORKER);
        assertEq(s.active, 120 * ONE, "active");
        assertEq(s.unbonding, 0, "unbonding");
        assertEq(token.balanceOf(address(market)), 120 * ONE, "market balance");
        assertEq(token.balanceOf(alice), 30 * ONE, "alice balance");
    }

    function test_stake_revertsOnInvalidRole() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidRole.selector, uint8(3)));
        market.stake(3, 1);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidRole.selector, uint8(0)));
        market.stake(0, 1);
    }

    function test_stake_revertsOnZeroAmount() public {
        vm.expectRevert(IMarket.MarketZeroAmount.selector);
        market.stake(WORKER, 0);
    }

    function test_stake_revertsWithoutAllowance() public {
        token.mint(alice, 10);
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, 10)
        );
        market.stake(WORKER, 10);
    }

    function test_stake_verifierJoinsPoolAtMinimum() public {
        _stake(alice, VERIFIER, MIN_VERIFIER - 1);
        assertEq(market.isEligibleVerifier(alice), false, "below minimum");
        _stake(alice, VERIFIER, 1);
        assertEq(market.isEligibleVerifier(alice), true, "at minimum");
        assertEq(market.verifierCount(), 1, "pool size");
        assertEq(market.verifierAt(0), alice, "pool member");
    }

    function test_stake_workerRoleNeverJoinsVerifierPool() public {
        _stake(alice, WORKER, 10 * MIN_VERIFIER);
        assertEq(market.isEligibleVerifier(alice), false, "worker stake is not verifier stake");
    }

    function test_requestUnstake_movesToUnbonding() public {
        _stake(alice, WORKER, 100 * ONE);
        vm.prank(alice);
        market.requestUnstake(WORKER, 40 * ONE);
        IMarket.StakeView memory s = market.getStake(alice, WORKER);
        assertEq(s.active, 60 * ONE, "active");
        assertEq(s.unbonding, 40 * ONE, "unbonding");
        assertEq(s.unlockAt, block.timestamp + UNBONDING, "unlockAt");
    }

    function test_requestUnstake_restartsUnlockForAllUnbonding() public {
        _stake(alice, WORKER, 100 * ONE);
        vm.prank(alice);
        market.requestUnstake(WORKER, 10 * ONE);
        vm.warp(block.timestamp + 1 days);
        vm.prank(alice);
        market.requestUnstake(WORKER, 10 * ONE);
        IMarket.StakeView memory s = market.getStake(alice, WORKER);
        assertEq(s.unbonding, 20 * ONE, "unbonding");
        assertEq(s.unlockAt, block.timestamp + UNBONDING, "unlockAt restarted");
    }

    function test_requestUnstake_revertsAboveActive() public {
        _stake(alice, WORKER, 10);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketUnstakeTooLarge.selector, alice, WORKER, 10, 11));
        market.requestUnstake(WORKER, 11);
    }

    function test_requestUnstake_revertsOnZeroAmount() public {
        vm.expectRevert(IMarket.MarketZeroAmount.selector);
        market.requestUnstake(WORKER, 0);
    }

    function test_requestUnstake_revertsOnInvalidRole() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidRole.selector, uint8(9)));
        market.requestUnstake(9, 1);
    }

    function test_requestUnstake_verifierLeavesPoolBelowMinimum() public {
        _stake(alice, VERIFIER, MIN_VERIFIER);
        vm.prank(alice);
        market.requestUnstake(VERIFIER, 1);
        assertEq(market.isEligibleVerifier(alice), false, "left the pool");
        assertEq(market.verifierCount(), 0, "pool empty");
    }

    function test_withdrawStake_paysAfterUnbonding() public {
        _stake(alice, WORKER, 100 * ONE);
        vm.prank(alice);
        market.requestUnstake(WORKER, 100 * ONE);
        vm.warp(block.timestamp + UNBONDING);
        vm.prank(alice);
        market.withdrawStake(WORKER);
        assertEq(token.balanceOf(alice), 100 * ONE, "paid out");
        IMarket.StakeView memory s = market.getStake(alice, WORKER);
        assertEq(s.unbonding, 0, "unbonding cleared");
        assertEq(s.unlockAt, 0, "unlock cleared");
    }

    function test_withdrawStake_revertsBeforeUnlock() public {
        _stake(alice, WORKER, 100 * ONE);
        vm.prank(alice);
        market.requestUnstake(WORKER, 1);
        uint64 unlockAt = uint64(block.timestamp + UNBONDING);
        vm.warp(unlockAt - 1);
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(IMarket.MarketStakeLocked.selector, alice, WORKER, unlockAt, uint64(unlockAt - 1))
        );
        market.withdrawStake(WORKER);
    }

    function test_withdrawStake_revertsWhenNothingUnbonding() public {
        _stake(alice, WORKER, 100 * ONE);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketNothingUnbonding.selector, alice, WORKER));
        market.withdrawStake(WORKER);
    }

    function test_withdrawStake_revertsOnInvalidRole() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidRole.selector, uint8(0)));
        market.withdrawStake(0);
    }

    function test_withdrawStake_revertsWhilePartyToOpenDispute() public {
        _stakeAll();
        uint256 jobId = _postJob(100 * REWARD, 100);
        _commitRound(jobId, 0, 4);
        address worker = _workerOf(1);
        vm.prank(worker);
        market.requestUnstake(WORKER, MIN_WORKER);
        _challenge(verifiers[0], _evidence(jobId, 0, 4, 1, 2));
        vm.warp(block.timestamp + UNBONDING);
        vm.prank(worker);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketAccountInDispute.selector, worker, 1));
        market.withdrawStake(WORKER);
        // the challenger's verifier stake is held the same way
        vm.prank(verifiers[0]);
        market.requestUnstake(VERIFIER, MIN_VERIFIER);
        vm.warp(block.timestamp + UNBONDING);
        vm.prank(verifiers[0]);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketAccountInDispute.selector, verifiers[0], 1));
        market.withdrawStake(VERIFIER);
    }

    function test_minStake_perRole() public view {
        assertEq(market.minStake(WORKER), MIN_WORKER, "worker");
        assertEq(market.minStake(VERIFIER), MIN_VERIFIER, "verifier");
    }

    function test_minStake_revertsOnInvalidRole() public {
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketInvalidRole.selector, uint8(7)));
        market.minStake(7);
    }

    function test_withdrawPayout_revertsWhenNothingCredited() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IMarket.MarketNoPayout.selector, alice));
        market.withdrawPayout();
    }

    function test_fuzz_stakeUnstakeWithdraw_conservesTokens(uint256 a, uint256 b, uint256 wait) public {
        a = bound(a, 1, 1e30);
        b = bound(b, 1, a);
        wait = bound(wait, 0, 2 * UNBONDING);
        _stake(alice, VERIFIER, a);
        vm.prank(alice);
        market.requestUnstake(VERIFIER, b);
        assertEq(market.isEligibleVerifier(alice), a - b >= MIN_VERIFIER, "pool membership follows active stake");
        vm.warp(block.timestamp + wait);
        vm.prank(alice);
        if (wait < UNBONDING) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IMarket.MarketStakeLocked.selector,
                    alice,
                    VERIFIER,
                    uint64(block.timestamp - wait + UNBONDING),
                    uint64(block.timestamp)
                )
            );
            market.withdrawStake(VERIFIER);
        } else {
            market.withdrawStake(VERIFIER);
            assertEq(token.balanceOf(alice), b, "withdrawn");
        }
        IMarket.StakeView memory s = market.getStake(alice, VERIFIER);
        assertEq(token.balanceOf(address(market)), s.active + s.unbonding, "market holds exactly the stake");
    }
}
