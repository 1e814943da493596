// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {TestToken} from "../src/TestToken.sol";
import {Test} from "./utils/Test.sol";

/// @notice The local-chain token: anyone mints, decimals as configured.
contract TestTokenTest is Test {
    function test_mint_byAnyone() public {
        TestToken t = new TestToken("Crowdtrain Test", "CTT", 18);
        vm.prank(address(0x1234));
        t.mint(address(0xBEEF), 5e18);
        assertEq(t.balanceOf(address(0xBEEF)), 5e18, "minted");
        assertEq(t.totalSupply(), 5e18, "supply");
    }

    function test_decimals_asConfigured() public {
        assertEq(new TestToken("A", "A", 6).decimals(), 6, "six");
        assertEq(new TestToken("B", "B", 18).decimals(), 18, "eighteen");
        assertEq(new TestToken("C", "C", 0).decimals(), 0, "zero");
    }

    function test_fuzz_mint_addsToBalance(address to, uint128 a, uint128 b) public {
        vm.assume(to != address(0));
        TestToken t = new TestToken("Crowdtrain Test", "CTT", 18);
        t.mint(to, a);
        t.mint(to, b);
        assertEq(t.balanceOf(to), uint256(a) + b, "balance");
    }
}
