// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Vm} from "./utils/Vm.sol";
import {Merkle} from "./utils/Merkle.sol";
import {MarketFixture} from "./utils/MarketFixture.sol";

/// @notice The gas bars of the market: a worker's claim with a 1,000-leaf proof <= 100,000 gas,
/// and commitRound <= 150,000 gas at a cost that does not depend on the number of units.
/// @dev Figures are whole-transaction estimates: 21,000 + calldata (4 gas per zero byte, 16 per
/// non-zero byte) + the call's execution gas (`vm.lastCallGas`). Everything is prepared in setUp:
/// forge starts each test with a fresh access list, so the measured call finds the market's
/// storage and the token cold, as a transaction of its own would (`vm.cool` resets storage but
/// not account warmth in forge 1.7.1, so it is not used). These estimates matched the receipts
/// of the same calls on anvil (docs/benchmarks.md "Gas"). Run
/// `forge test --match-contract GasTest -vv` to print them.
contract GasTest is MarketFixture {
    uint256 internal constant CLAIM_BAR = 100_000;
    uint256 internal constant COMMIT_BAR = 150_000;
    uint256 internal constant N = 1000;

    uint256 internal claimJob;
    bytes32[] internal proof513; // unit 513: its worker holds no tokens (balance 0 -> non-zero)
    bytes32[] internal proof516; // unit 516: its worker already holds tokens
    uint256 internal jobA;
    uint256 internal jobB;

    function _resultHash(uint256 unit) internal pure returns (bytes32) {
        return keccak256(abi.encode(unit));
    }

    function _worker(uint256 unit) internal pure returns (address) {
        return address(uint160(0x5000 + unit));
    }

    function setUp() public override {
        super.setUp();
        claimJob = _postJob(N * REWARD, N);
        bytes32[] memory leaves = new bytes32[](N);
        for (uint256 k; k < N; ++k) {
            leaves[k] =
                keccak256(bytes.concat(keccak256(abi.encode(claimJob, 0, k, _worker(k), REWARD, _resultHash(k)))));
        }
        vm.prank(coordinator);
        market.commitRound(claimJob, 0, Merkle.root(leaves), N * REWARD, N);
        vm.warp(block.timestamp + WINDOW);
        market.finalizeRound(claimJob, 0);
        proof513 = Merkle.proof(leaves, 513);
        proof516 = Merkle.proof(leaves, 516);
        token.mint(_worker(516), 1);
        _fund(owner, 40_000 * REWARD);
        vm.startPrank(owner);
        uint64 deadline = uint64(block.timestamp + 30 days);
        jobA = market.postJob(keccak256("a"), 20_000 * REWARD, REWARD, 20_000, coordinator, WINDOW, deadline);
        jobB = market.postJob(keccak256("b"), 20_000 * REWARD, REWARD, 20_000, coordinator, WINDOW, deadline);
        vm.stopPrank();
    }

    function _txGas(bytes memory callData) internal view returns (uint256 total) {
        Vm.Gas memory g = vm.lastCallGas();
        total = 21_000 + g.gasTotalUsed;
        for (uint256 i; i < callData.length; ++i) {
            total += callData[i] == 0 ? 4 : 16;
        }
    }

    function _claimGas(uint256 unit, bytes32[] memory proof) internal returns (uint256) {
        assertEq(proof.length, 10, "full-depth proof of a 1,000-leaf tree");
        bytes memory cd =
            abi.encodeCall(market.claim, (claimJob, 0, unit, _worker(unit), REWARD, _resultHash(unit), proof));
        market.claim(claimJob, 0, unit, _worker(unit), REWARD, _resultHash(unit), proof);
        return _txGas(cd);
    }

    function test_gas_claimWith1000LeafProof_workerWithoutTokens() public {
        uint256 g = _claimGas(513, proof513);
        emit log_named_uint("claim tx gas, 1,000-leaf tree, worker holding no tokens", g);
        assertLe(g, CLAIM_BAR, "claim gas bar");
        assertEq(token.balanceOf(_worker(513)), REWARD, "paid");
    }

    function test_gas_claimWith1000LeafProof_workerHoldingTokens() public {
        uint256 g = _claimGas(516, proof516);
        emit log_named_uint("claim tx gas, 1,000-leaf tree, worker already holding tokens", g);
        assertLe(g, CLAIM_BAR, "claim gas bar");
        assertEq(token.balanceOf(_worker(516)), REWARD + 1, "paid");
    }

    function _commitGas(uint256 jobId, uint256 numUnits) internal returns (uint256 execGas, uint256 txGas) {
        bytes32 root = keccak256(abi.encode("root", numUnits));
        bytes memory cd = abi.encodeCall(market.commitRound, (jobId, 0, root, numUnits * REWARD, numUnits));
        vm.prank(coordinator);
        market.commitRound(jobId, 0, root, numUnits * REWARD, numUnits);
        execGas = vm.lastCallGas().gasTotalUsed;
        txGas = _txGas(cd);
    }

    function test_gas_commitRoundCostIndependentOfUnits() public {
        (uint256 exec10, uint256 tx10) = _commitGas(jobA, 10);
        (uint256 exec10k, uint256 tx10k) = _commitGas(jobB, 10_000);
        emit log_named_uint("commitRound tx gas, 10 units", tx10);
        emit log_named_uint("commitRound tx gas, 10,000 units", tx10k);
        assertEq(exec10, exec10k, "execution gas does not depend on numUnits");
        // calldata differs only by the extra non-zero bytes of the larger numbers (16 gas each)
        assertLe(tx10k - tx10, 64, "calldata difference");
        assertLe(tx10k, COMMIT_BAR, "commit gas bar");
    }
}
