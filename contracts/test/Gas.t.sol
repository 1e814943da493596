// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Vm} from "./utils/Vm.sol";
import {Merkle} from "./utils/Merkle.sol";
import {MarketFixture} from "./utils/MarketFixture.sol";

/// @notice The gas bars of the market: a worker's claim with a 1,000-leaf proof <= 100,000 gas,
/// and commitRound <= 150,000 gas at a cost that does not depend on the number of units.
/// @dev Figures are whole-transaction estimates: 21,000 + calldata (4 gas per zero byte, 16 per
/// non-zero byte, as in Cancun) + the call's execution gas (`vm.lastCallGas`) measured with the
/// contracts' storage and accounts cold (`vm.cool`), i.e. as a transaction of its own would pay.
/// Run `forge test --match-contract GasTest -vv` to print them.
contract GasTest is MarketFixture {
    uint256 internal constant CLAIM_BAR = 100_000;
    uint256 internal constant COMMIT_BAR = 150_000;

    function _txGas(bytes memory callData) internal view returns (uint256 total) {
        Vm.Gas memory g = vm.lastCallGas();
        total = 21_000 + g.gasTotalUsed;
        for (uint256 i; i < callData.length; ++i) {
            total += callData[i] == 0 ? 4 : 16;
        }
    }

    function _cool() internal {
        vm.cool(address(market));
        vm.cool(address(token));
    }

    function test_gas_claimWith1000LeafProof() public {
        uint256 n = 1000;
        vm.pauseGasMetering();
        uint256 jobId = _postJob(n * REWARD, n);
        bytes32[] memory leaves = new bytes32[](n);
        for (uint256 k; k < n; ++k) {
            leaves[k] = keccak256(
                bytes.concat(keccak256(abi.encode(jobId, 0, k, _workerOf(k), REWARD, keccak256(abi.encode(k)))))
            );
        }
        bytes32 root = Merkle.root(leaves);
        vm.prank(coordinator);
        market.commitRound(jobId, 0, root, n * REWARD, n);
        vm.warp(block.timestamp + WINDOW);
        market.finalizeRound(jobId, 0);
        uint256 worst;
        // units 513 and 700: first claims of two workers holding no tokens yet (balance 0 -> non-zero,
        // the expensive case), proofs of the full depth 10
        uint256[2] memory units = [uint256(513), 700];
        vm.resumeGasMetering();
        for (uint256 i; i < units.length; ++i) {
            uint256 k = units[i];
            bytes32[] memory proof = Merkle.proof(leaves, k);
            assertEq(proof.length, 10, "proof depth");
            assertEq(token.balanceOf(_workerOf(k)), 0, "worker holds no tokens yet");
            bytes memory cd =
                abi.encodeCall(market.claim, (jobId, 0, k, _workerOf(k), REWARD, keccak256(abi.encode(k)), proof));
            _cool();
            market.claim(jobId, 0, k, _workerOf(k), REWARD, keccak256(abi.encode(k)), proof);
            uint256 g = _txGas(cd);
            if (g > worst) worst = g;
        }
        emit log_named_uint("claim tx gas (1,000-leaf tree, depth-10 proof, worker holding no tokens)", worst);
        // a later claim of a worker who already holds tokens (recipient balance non-zero -> non-zero)
        bytes32[] memory p516 = Merkle.proof(leaves, 516);
        bytes memory cd516 =
            abi.encodeCall(market.claim, (jobId, 0, 516, _workerOf(516), REWARD, keccak256(abi.encode(516)), p516));
        _cool();
        market.claim(jobId, 0, 516, _workerOf(516), REWARD, keccak256(abi.encode(uint256(516))), p516);
        uint256 warm = _txGas(cd516);
        emit log_named_uint("claim tx gas (same, worker already holding tokens)", warm);
        assertLe(warm, worst, "a funded recipient is cheaper");
        assertLe(worst, CLAIM_BAR, "claim gas bar");
        assertEq(token.balanceOf(_workerOf(513)), 2 * REWARD, "units 513 and 516 paid to the same worker");
    }

    function _commitGas(uint256 numUnits) internal returns (uint256 execGas, uint256 txGas) {
        vm.pauseGasMetering();
        _fund(owner, 20_000 * REWARD);
        vm.prank(owner);
        uint256 jobId = market.postJob(
            keccak256("spec"), 20_000 * REWARD, REWARD, 20_000, coordinator, WINDOW, uint64(block.timestamp + 30 days)
        );
        vm.resumeGasMetering();
        bytes32 root = keccak256(abi.encode("root", numUnits));
        bytes memory cd = abi.encodeCall(market.commitRound, (jobId, 0, root, numUnits * REWARD, numUnits));
        _cool();
        vm.prank(coordinator);
        market.commitRound(jobId, 0, root, numUnits * REWARD, numUnits);
        execGas = vm.lastCallGas().gasTotalUsed;
        txGas = _txGas(cd);
    }

    function test_gas_commitRoundCostIndependentOfUnits() public {
        (uint256 exec10, uint256 tx10) = _commitGas(10);
        (uint256 exec10k, uint256 tx10k) = _commitGas(10_000);
        emit log_named_uint("commitRound tx gas, 10 units", tx10);
        emit log_named_uint("commitRound tx gas, 10,000 units", tx10k);
        assertEq(exec10, exec10k, "execution gas does not depend on numUnits");
        // calldata differs only by the extra non-zero bytes of the larger numbers (16 gas each)
        assertLe(tx10k - tx10, 64, "calldata difference");
        assertLe(tx10k, COMMIT_BAR, "commit gas bar");
    }
}
