"""Generate the committed test vectors that the Solidity tests check (docs/protocol.md).

    python -m protocol.vectors.generate           # rewrite eip712.json and merkle.json
    python -m protocol.vectors.generate --check   # exit 1 if the committed files differ

Everything is deterministic: private keys and values derive from fixed labels, so the
files only change when the Python definition of a leaf, a tree or the typed data does,
which is exactly the drift CI must catch.

Formats (read by forge's `vm.parseJson`; numbers that can exceed 2^53 are decimal strings):
- merkle.json: {"round": TREE, "trace": TREE, "roundTrees": [TREE...], "traceTrees": [TREE...]}
  where TREE = {"leaves": [...], "leafHashes": [...], "root": "0x..", "proofs": [[...], ...]};
  "round"/"trace" are the 7-leaf trees, the *Trees arrays hold sizes 1, 2, 3, 7 (that order).
  Round leaf: {"jobId", "round", "unit", "worker", "amount" (decimal string), "resultHash"};
  trace leaf: {"step", "batchDigest", "stateDigest", "lossBits" (decimal string)}.
- eip712.json: {"chainId", "verifyingContract", "domainSeparator", "typeHash",
  "results": [{"jobId", "round", "unit", "inputHash", "outputHash", "traceRoot",
  "digest", "signer", "signature"}]}.
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import to_checksum_address

from protocol.eip712 import (
    WORK_RESULT_TYPEHASH,
    WorkResult,
    domain_separator,
    sign_work_result,
    work_result_digest,
)
from protocol.hashing import keccak256, to_hex
from protocol.merkle import MerkleTree, round_leaf, trace_leaf

VECTOR_DIR = Path(__file__).resolve().parent
CHAIN_ID = 31337
# Any address works: OpenZeppelin's EIP712 rebuilds the separator from address(this), so a
# forge test can vm.etch a Market (or harness) here. Derived, not a real deployment.
VERIFYING_CONTRACT = to_checksum_address(keccak256(b"crowdtrain.vectors.market")[12:])
TREE_SIZES = (1, 2, 3, 7)


def _h(label: str) -> bytes:
    return keccak256(label.encode())


def _key(i: int) -> bytes:
    """Fixed test private key number i (never used outside these vectors)."""
    return _h(f"crowdtrain.vectors.key.{i}")


def _results() -> list[WorkResult]:
    ids = [(1, 0, 0), (1, 0, 1), (7, 3, 5), (2**40 + 3, 2**20, 2**31 - 1), (42, 9, 0)]
    return [
        WorkResult(job_id=j, round=r, unit=u, input_hash=_h(f"in.{n}"),
                   output_hash=_h(f"out.{n}"), trace_root=_h(f"trace.{n}"))
        for n, (j, r, u) in enumerate(ids)
    ]


def eip712_vectors() -> dict[str, Any]:
    out = []
    for n, res in enumerate(_results()):
        key = _key(n % 3)
        sig = sign_work_result(key, res, chain_id=CHAIN_ID, verifying_contract=VERIFYING_CONTRACT)
        out.append({
            "jobId": res.job_id, "round": res.round, "unit": res.unit,
            "inputHash": to_hex(res.input_hash), "outputHash": to_hex(res.output_hash),
            "traceRoot": to_hex(res.trace_root),
            "digest": to_hex(work_result_digest(res, chain_id=CHAIN_ID, verifying_contract=VERIFYING_CONTRACT)),
            "signer": Account.from_key(key).address,
            "signature": "0x" + sig.hex(),
        })
    return {
        "chainId": CHAIN_ID,
        "verifyingContract": VERIFYING_CONTRACT,
        "domainSeparator": to_hex(domain_separator(CHAIN_ID, VERIFYING_CONTRACT)),
        "typeHash": to_hex(WORK_RESULT_TYPEHASH),
        "results": out,
    }


def _tree_json(leaves_json: list[dict[str, Any]], leaf_hashes: list[bytes]) -> dict[str, Any]:
    tree = MerkleTree.build(leaf_hashes)
    return {
        "leaves": leaves_json,
        "leafHashes": [to_hex(x) for x in leaf_hashes],
        "root": to_hex(tree.root),
        "proofs": [[to_hex(p) for p in tree.proof(i)] for i in range(len(tree))],
    }


def round_tree(size: int) -> dict[str, Any]:
    job_id, rnd = 3 + size, size - 1
    leaves, hashes = [], []
    for unit in range(size):
        worker = Account.from_key(_key(unit % 4)).address
        amount = 10**18 * (unit + 1) + 2**64 + size  # > 2^64: exercises full uint256 encoding
        result_hash = _h(f"result.{size}.{unit}")
        leaves.append({"jobId": job_id, "round": rnd, "unit": unit, "worker": worker,
                       "amount": str(amount), "resultHash": to_hex(result_hash)})
        hashes.append(round_leaf(job_id=job_id, round=rnd, unit=unit, worker=worker,
                                 amount=amount, result_hash=result_hash))
    return _tree_json(leaves, hashes)


def trace_tree(size: int) -> dict[str, Any]:
    leaves, hashes = [], []
    for step in range(size):
        loss = 5.5451774444795623 / (1 + step * 0.37)  # ~ln(256) decaying, float64 bit pattern
        loss_bits = struct.unpack(">Q", struct.pack(">d", float(struct.unpack(">f", struct.pack(">f", loss))[0])))[0]
        batch, state = _h(f"batch.{size}.{step}"), _h(f"state.{size}.{step}")
        leaves.append({"step": step, "batchDigest": to_hex(batch), "stateDigest": to_hex(state),
                       "lossBits": str(loss_bits)})
        hashes.append(trace_leaf(step=step, batch_digest=batch, state_digest=state, loss_bits=loss_bits))
    return _tree_json(leaves, hashes)


def merkle_vectors() -> dict[str, Any]:
    rounds = [round_tree(n) for n in TREE_SIZES]
    traces = [trace_tree(n) for n in TREE_SIZES]
    return {"round": rounds[-1], "trace": traces[-1], "roundTrees": rounds, "traceTrees": traces}


def render() -> dict[str, str]:
    """File name -> exact text (2-space indent, trailing newline)."""
    return {name: json.dumps(data, indent=2) + "\n"
            for name, data in (("eip712.json", eip712_vectors()), ("merkle.json", merkle_vectors()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if committed vectors differ")
    parser.add_argument("--dir", type=Path, default=VECTOR_DIR, help="where the vectors live")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.dir / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"test vectors out of date: {', '.join(stale)} in {args.dir}; "
              "run `python -m protocol.vectors.generate` and commit the result", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
