"""EIP-712 and Merkle vectors: committed files match the generator; EIP-712 matches a hand-built encoding."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from eth_abi import encode
from eth_account import Account

from protocol.eip712 import (
    WORK_RESULT_TYPEHASH,
    Eip712Error,
    WorkResult,
    domain_separator,
    recover_work_result_signer,
    sign_work_result,
    work_result_digest,
)
from protocol.hashing import from_hex, keccak256
from protocol.merkle import verify
from protocol.vectors import generate

ROOT = Path(__file__).resolve().parents[2]
CA = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def _result(**kw: object) -> WorkResult:
    base = dict(job_id=1, round=2, unit=3, input_hash=b"\x11" * 32, output_hash=b"\x22" * 32, trace_root=b"\x33" * 32)
    base.update(kw)
    return WorkResult(**base)  # type: ignore[arg-type]


def test_vectors_check_passes_on_committed_files() -> None:
    proc = subprocess.run([sys.executable, "-m", "protocol.vectors.generate", "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_vectors_check_fails_on_drift(tmp_path: Path) -> None:
    for name, text in generate.render().items():
        (tmp_path / name).write_text(text)
    assert generate.main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "merkle.json").write_text((tmp_path / "merkle.json").read_text().replace('"root"', '"r00t"', 1))
    assert generate.main(["--check", "--dir", str(tmp_path)]) == 1


def test_digest_matches_hand_built_encoding() -> None:
    r = _result()
    dt = keccak256(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    ds = keccak256(encode(["bytes32", "bytes32", "bytes32", "uint256", "address"],
                          [dt, keccak256(b"Crowdtrain"), keccak256(b"1"), 31337, CA]))
    hs = keccak256(encode(["bytes32"] + ["uint256"] * 3 + ["bytes32"] * 3,
                          [WORK_RESULT_TYPEHASH, 1, 2, 3, b"\x11" * 32, b"\x22" * 32, b"\x33" * 32]))
    assert domain_separator(31337, CA) == ds
    assert work_result_digest(r, chain_id=31337, verifying_contract=CA) == keccak256(b"\x19\x01" + ds + hs)
    # Any field change changes the digest, including the domain.
    assert work_result_digest(_result(unit=4), chain_id=31337, verifying_contract=CA) != keccak256(b"\x19\x01" + ds + hs)
    assert work_result_digest(r, chain_id=1, verifying_contract=CA) != keccak256(b"\x19\x01" + ds + hs)


def test_sign_and_recover_low_s() -> None:
    acct = Account.create()
    r = _result()
    sig = sign_work_result(acct, r, chain_id=31337, verifying_contract=CA)
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert int.from_bytes(sig[32:64], "big") <= 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
    assert recover_work_result_signer(r, sig, chain_id=31337, verifying_contract=CA) == acct.address
    assert recover_work_result_signer(_result(round=9), sig, chain_id=31337, verifying_contract=CA) != acct.address
    assert sign_work_result(acct.key, r, chain_id=31337, verifying_contract=CA) == sig


def test_malformed_inputs_raise_typed_errors() -> None:
    with pytest.raises(Eip712Error, match="input_hash must be 32 bytes"):
        _result(input_hash=b"\x00" * 31)
    with pytest.raises(Eip712Error, match="job_id"):
        _result(job_id=-1)
    with pytest.raises(ValueError, match="verifying_contract"):
        work_result_digest(_result(), chain_id=31337, verifying_contract="0x1234")
    with pytest.raises(Eip712Error, match="65 bytes"):
        recover_work_result_signer(_result(), b"\x00" * 64, chain_id=31337, verifying_contract=CA)


def test_committed_vectors_are_self_consistent() -> None:
    e = json.loads((ROOT / "protocol/vectors/eip712.json").read_text())
    for v in e["results"]:
        r = WorkResult(job_id=v["jobId"], round=v["round"], unit=v["unit"], input_hash=from_hex(v["inputHash"]),
                       output_hash=from_hex(v["outputHash"]), trace_root=from_hex(v["traceRoot"]))
        assert work_result_digest(r, chain_id=e["chainId"], verifying_contract=e["verifyingContract"]).hex() == v["digest"][2:]
        sig = bytes.fromhex(v["signature"][2:])
        assert recover_work_result_signer(r, sig, chain_id=e["chainId"], verifying_contract=e["verifyingContract"]) == v["signer"]
    m = json.loads((ROOT / "protocol/vectors/merkle.json").read_text())
    sizes = [len(t["leaves"]) for t in m["roundTrees"]]
    assert sizes == [1, 2, 3, 7] and [len(t["leaves"]) for t in m["traceTrees"]] == sizes
    assert all(int(leaf["amount"]) > 2**64 for t in m["roundTrees"] for leaf in t["leaves"])
    for t in m["roundTrees"] + m["traceTrees"]:
        for leaf, proof in zip(t["leafHashes"], t["proofs"]):
            assert verify([from_hex(p) for p in proof], from_hex(t["root"]), from_hex(leaf))
