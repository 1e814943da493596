// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IMarket} from "../interfaces/IMarket.sol";

/// @title Leaves
/// @notice The byte-level hashes of docs/protocol.md that the chain recomputes: round leaves,
/// trace leaves (OpenZeppelin StandardMerkleTree double hash) and the EIP-712 WorkResult struct hash.
library Leaves {
    /// @notice keccak256("WorkResult(uint256 jobId,uint256 round,uint256 unit,bytes32 inputHash,bytes32 outputHash,bytes32 traceRoot)")
    bytes32 internal constant WORK_RESULT_TYPEHASH = keccak256(
        "WorkResult(uint256 jobId,uint256 round,uint256 unit,bytes32 inputHash,bytes32 outputHash,bytes32 traceRoot)"
    );

    /// @notice keccak256(keccak256(abi.encode(jobId, round, unit, worker, amount, resultHash))).
    function roundLeaf(uint256 jobId, uint256 round, uint256 unit, address worker, uint256 amount, bytes32 resultHash)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(bytes.concat(keccak256(abi.encode(jobId, round, unit, worker, amount, resultHash))));
    }

    /// @notice Round leaf hash of a calldata struct.
    function roundLeaf(IMarket.RoundLeaf calldata l) internal pure returns (bytes32) {
        return roundLeaf(l.jobId, l.round, l.unit, l.worker, l.amount, l.resultHash);
    }

    /// @notice keccak256(keccak256(abi.encode(step, batchDigest, stateDigest, uint64 lossBits))).
    function traceLeaf(IMarket.TraceLeaf calldata l) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(l.step, l.batchDigest, l.stateDigest, l.lossBits))));
    }

    /// @notice EIP-712 struct hash of WorkResult (to be wrapped with the market's domain separator).
    function workResultStructHash(
        uint256 jobId,
        uint256 round,
        uint256 unit,
        bytes32 inputHash,
        bytes32 outputHash,
        bytes32 traceRoot
    ) internal pure returns (bytes32) {
        return keccak256(abi.encode(WORK_RESULT_TYPEHASH, jobId, round, unit, inputHash, outputHash, traceRoot));
    }
}
