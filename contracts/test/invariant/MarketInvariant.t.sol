// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Market} from "../../src/Market.sol";
import {JuryArbiter} from "../../src/JuryArbiter.sol";
import {TestToken} from "../../src/TestToken.sol";
import {IMarket} from "../../src/interfaces/IMarket.sol";
import {IJuryArbiter} from "../../src/interfaces/IJuryArbiter.sol";
import {Test} from "../utils/Test.sol";
import {MarketHandler} from "./MarketHandler.sol";

/// @notice Money invariants of the market under random action sequences (see MarketHandler):
/// conservation, no double pay, bounded slashes, and an owner can always take back every unit
/// of budget that is not committed to a round.
contract MarketInvariantTest is Test {
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    error ProbeRefund(uint256 refund);

    TestToken internal token;
    Market internal market;
    JuryArbiter internal jury;
    MarketHandler internal handler;

    function setUp() public {
        vm.warp(1_700_000_000);
        token = new TestToken("Crowdtrain Test", "CTT", 6);
        market = new Market(
            IERC20(address(token)),
            IMarket.MarketParams({
                minWorkerStake: 100e6,
                minVerifierStake: 50e6,
                challengeBond: 10e6,
                slashBps: 5000,
                jurorShareBps: 2000,
                unbondingPeriod: 3 days,
                disputeTimeout: 2 days
            })
        );
        jury = new JuryArbiter(market, IJuryArbiter.JuryParams(3, 6 hours, 6 hours));
        market.setArbiter(jury);
        handler = new MarketHandler(token, market, jury);
        // start with staked workers and a jury pool so sequences reach disputes and slashes
        for (uint256 i; i < 3; ++i) {
            handler.stake(i, false, 150e6);
        }
        for (uint256 i; i < 6; ++i) {
            handler.stake(i, true, 60e6);
        }
    }

    function targetContracts() public view returns (address[] memory t) {
        t = new address[](1);
        t[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory t) {
        bytes4[] memory s = new bytes4[](16);
        s[0] = MarketHandler.warp.selector;
        s[1] = MarketHandler.stake.selector;
        s[2] = MarketHandler.requestUnstake.selector;
        s[3] = MarketHandler.withdrawStake.selector;
        s[4] = MarketHandler.withdrawPayout.selector;
        s[5] = MarketHandler.withdrawJurorReward.selector;
        s[6] = MarketHandler.postJob.selector;
        s[7] = MarketHandler.topUp.selector;
        s[8] = MarketHandler.completeJob.selector;
        s[9] = MarketHandler.closeJob.selector;
        s[10] = MarketHandler.commitRound.selector;
        s[11] = MarketHandler.finalizeRound.selector;
        s[12] = MarketHandler.claim.selector;
        s[13] = MarketHandler.challenge.selector;
        s[14] = MarketHandler.juryRules.selector;
        s[15] = MarketHandler.timeoutDispute.selector;
        t = new FuzzSelector[](1);
        t[0] = FuzzSelector(address(handler), s);
    }

    /// @notice The handler reaches every money path (claims, disputes, rulings, slashes), so the
    /// invariants below are exercised on them and not only on stakes and escrows.
    function test_handler_sequenceReachesEveryPath() public {
        handler.postJob(0, 30 * 3e6, 11); // bound() maps 11 to 12 units
        for (uint256 i; i < 3; ++i) {
            handler.commitRound(i, 3, 100 + i); // bound() maps 3 to 4 units
            handler.challenge(i, i, i, i + 1);
            handler.juryRules(0, 8); // seed 8: the three jurors vote 2, 2, 2
            handler.claim(i, i + 1);
            handler.claim(i, i + 1); // the same leaf again: must not pay
        }
        assertGt(handler.ghostClaimCount(), 0, "claims");
        assertGt(handler.disputeCount(), 0, "disputes");
        assertGt(handler.ghostRulings(), 0, "rulings");
        assertGt(handler.ghostSlashes(), 0, "slashes");
        invariant_conservation();
        invariant_flows();
        invariant_noLeafPaidTwice();
        invariant_slashWithinStake();
        invariant_ownerRecoversUncommittedBudget();
        invariant_openDisputeCounts();
        invariant_juryHoldsExactlyRewards();
    }

    // ------------------------------------------------------------------ sums over the views

    function _sumEscrow() internal view returns (uint256 sum) {
        for (uint256 i; i < handler.jobCount(); ++i) {
            sum += market.getJob(handler.jobIds(i)).escrow;
        }
    }

    function _sumPending() internal view returns (uint256 sum) {
        for (uint256 i; i < handler.roundCount(); ++i) {
            (uint256 jobId, uint256 round,) = handler.roundAt(i);
            sum += market.getRound(jobId, round).pending;
        }
    }

    function _sumStakesAndPayouts() internal view returns (uint256 sum) {
        address[] memory a = handler.actors();
        for (uint256 i; i < a.length; ++i) {
            for (uint8 role = 1; role <= 2; ++role) {
                IMarket.StakeView memory s = market.getStake(a[i], role);
                sum += s.active + s.unbonding;
            }
            sum += market.payoutOf(a[i]);
        }
    }

    function _sumOpenBonds() internal view returns (uint256 sum) {
        for (uint256 i = 1; i <= market.disputeCount(); ++i) {
            IMarket.DisputeView memory d = market.getDispute(i);
            if (d.status == IMarket.DisputeStatus.Open) sum += d.bond;
        }
    }

    // ------------------------------------------------------------------ invariants

    /// @notice balance == escrows + pending round payouts + stakes (active + unbonding) + open bonds + payouts.
    function invariant_conservation() public view {
        uint256 buckets = _sumEscrow() + _sumPending() + _sumStakesAndPayouts() + _sumOpenBonds();
        assertEq(token.balanceOf(address(market)), buckets, "market balance == sum of buckets");
    }

    /// @notice Every token in the market came in through a tracked action and not yet out.
    function invariant_flows() public view {
        assertEq(token.balanceOf(address(market)), handler.ghostIn() - handler.ghostOut(), "balance == in - out");
    }

    function invariant_noLeafPaidTwice() public view {
        assertTrue(!handler.ghostDoublePay(), "a leaf was paid twice or before finalization");
        for (uint256 i; i < handler.roundCount(); ++i) {
            (uint256 jobId, uint256 round, bytes32[] memory leaves) = handler.roundAt(i);
            IMarket.RoundView memory r = market.getRound(jobId, round);
            assertLe(r.pending, r.total, "pending <= total");
            for (uint256 k; k < leaves.length; ++k) {
                assertLe(handler.ghostClaims(leaves[k]), 1, "claims per leaf");
                bool claimed = market.isLeafClaimed(leaves[k]);
                assertEq(claimed, handler.ghostClaims(leaves[k]) == 1, "claimed flag matches payments");
            }
        }
    }

    function invariant_slashWithinStake() public view {
        assertTrue(!handler.ghostOverSlash(), "a slash was not exactly slashBps of the stake");
    }

    /// @notice escrow == funded - committed + returned - refunded, and closing pays exactly that.
    function invariant_ownerRecoversUncommittedBudget() public {
        uint256 t = block.timestamp;
        for (uint256 i; i < handler.jobCount(); ++i) {
            uint256 jobId = handler.jobIds(i);
            uint256 escrow = market.getJob(jobId).escrow;
            uint256 expected = handler.ghostFunded(jobId) - handler.ghostCommitted(jobId) + handler.ghostReturned(jobId)
                - handler.ghostRefunded(jobId);
            assertEq(escrow, expected, "escrow bookkeeping");
            try this.probeClose(jobId) {
                fail("probe must revert");
            } catch (bytes memory data) {
                if (bytes4(data) != ProbeRefund.selector) fail("closeJob reverted for the owner");
                uint256 refund = abi.decode(_tail(data), (uint256));
                assertEq(refund, escrow, "owner gets every uncommitted unit back");
            }
        }
        vm.warp(t); // cheatcode time is not rolled back with the probe
    }

    function invariant_openDisputeCounts() public view {
        uint256 open;
        for (uint256 i = 1; i <= market.disputeCount(); ++i) {
            if (market.getDispute(i).status == IMarket.DisputeStatus.Open) ++open;
        }
        uint256 perRound;
        for (uint256 i; i < handler.roundCount(); ++i) {
            (uint256 jobId, uint256 round,) = handler.roundAt(i);
            perRound += market.getRound(jobId, round).openDisputes;
        }
        assertEq(perRound, open, "round open-dispute counts");
        uint256 perAccount;
        address[] memory a = handler.actors();
        for (uint256 i; i < a.length; ++i) {
            perAccount += market.openDisputesOf(a[i]);
        }
        assertEq(perAccount, 2 * open, "each open dispute holds two parties");
    }

    function invariant_juryHoldsExactlyRewards() public view {
        uint256 sum;
        for (uint256 i; i < 6; ++i) {
            sum += jury.rewardOf(handler.verifiers(i));
        }
        assertEq(token.balanceOf(address(jury)), sum, "arbiter balance == unclaimed juror rewards");
    }

    /// @dev Close `jobId` as its owner after its deadline, then revert with the refund so no state persists.
    function probeClose(uint256 jobId) external {
        IMarket.JobView memory j = market.getJob(jobId);
        if (block.timestamp < j.deadline) vm.warp(j.deadline);
        uint256 before = token.balanceOf(j.owner);
        vm.prank(j.owner);
        market.closeJob(jobId);
        revert ProbeRefund(token.balanceOf(j.owner) - before);
    }

    function _tail(bytes memory data) internal pure returns (bytes memory out) {
        out = new bytes(data.length - 4);
        for (uint256 i; i < out.length; ++i) {
            out[i] = data[i + 4];
        }
    }
}
