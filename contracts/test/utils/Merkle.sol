// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @notice In-memory Merkle trees shaped as docs/protocol.md says (and protocol/merkle.py builds):
/// leaves in order, adjacent pairs hashed sorted (OpenZeppelin commutative keccak), an odd last
/// node moves up unchanged; proofs list siblings from the leaf level up.
library Merkle {
    function hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    function root(bytes32[] memory leaves) internal pure returns (bytes32) {
        require(leaves.length != 0, "Merkle: no leaves");
        bytes32[] memory level = _copy(leaves);
        uint256 n = level.length;
        while (n > 1) n = _up(level, n);
        return level[0];
    }

    function proof(bytes32[] memory leaves, uint256 index) internal pure returns (bytes32[] memory out) {
        require(index < leaves.length, "Merkle: index out of range");
        bytes32[] memory level = _copy(leaves);
        bytes32[] memory buf = new bytes32[](256);
        uint256 len;
        uint256 n = level.length;
        while (n > 1) {
            uint256 sib = index ^ 1;
            if (sib < n) buf[len++] = level[sib];
            index >>= 1;
            n = _up(level, n);
        }
        out = new bytes32[](len);
        for (uint256 i; i < len; ++i) {
            out[i] = buf[i];
        }
    }

    /// @dev Replace the first ceil(n/2) entries with the next level; returns its size.
    function _up(bytes32[] memory level, uint256 n) private pure returns (uint256) {
        uint256 half = n / 2;
        for (uint256 i; i < half; ++i) {
            level[i] = hashPair(level[2 * i], level[2 * i + 1]);
        }
        if (n % 2 == 1) level[half] = level[n - 1];
        return half + n % 2;
    }

    function _copy(bytes32[] memory a) private pure returns (bytes32[] memory b) {
        b = new bytes32[](a.length);
        for (uint256 i; i < a.length; ++i) {
            b[i] = a[i];
        }
    }
}
