"""EIP-712 `WorkResult` typed data (docs/protocol.md, "EIP-712").

The worker signs the digest of a `WorkResult`; the round leaf's `resultHash` *is* that
digest, and the market re-derives it during a challenge and recovers the signer. So the
domain and the type string here must match `Market`'s `EIP712("Crowdtrain", "1")`
byte for byte; the committed vectors (protocol/vectors/eip712.json) are checked by the
forge tests to keep both sides honest.

Signatures are 65 bytes `r ++ s ++ v` with `v` in {27, 28} and low `s` (eth-keys always
produces canonical low-s signatures, which OpenZeppelin's ECDSA requires).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address

from protocol import ProtocolError
from protocol.hashing import keccak256

DOMAIN_NAME = "Crowdtrain"
DOMAIN_VERSION = "1"
WORK_RESULT_TYPE = (
    "WorkResult(uint256 jobId,uint256 round,uint256 unit,bytes32 inputHash,bytes32 outputHash,bytes32 traceRoot)"
)
WORK_RESULT_TYPEHASH = keccak256(WORK_RESULT_TYPE.encode())

_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "WorkResult": [
        {"name": "jobId", "type": "uint256"},
        {"name": "round", "type": "uint256"},
        {"name": "unit", "type": "uint256"},
        {"name": "inputHash", "type": "bytes32"},
        {"name": "outputHash", "type": "bytes32"},
        {"name": "traceRoot", "type": "bytes32"},
    ],
}

_UINT256_MAX = 2**256 - 1


class Eip712Error(ProtocolError, ValueError):
    """A WorkResult field, domain value or signature was malformed."""


@dataclass(frozen=True, kw_only=True)
class WorkResult:
    """What a worker signs for one work unit.

    `input_hash`: digest of the unit's starting state S_0; `output_hash`: SHA-256 of the
    unit's output blob; `trace_root`: root of the trace tree. All three are 32 bytes.
    """

    job_id: int
    round: int
    unit: int
    input_hash: bytes
    output_hash: bytes
    trace_root: bytes

    def __post_init__(self) -> None:
        for name in ("job_id", "round", "unit"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _UINT256_MAX:
                raise Eip712Error(f"WorkResult.{name} must be an integer in [0, 2^256), got {v!r}")
        for name in ("input_hash", "output_hash", "trace_root"):
            v = getattr(self, name)
            if not isinstance(v, (bytes, bytearray)) or len(v) != 32:
                raise Eip712Error(f"WorkResult.{name} must be 32 bytes, got {v!r:.80}")

    def message(self) -> dict[str, Any]:
        """The typed-data `message` object (field names as in the Solidity struct)."""
        return {
            "jobId": self.job_id,
            "round": self.round,
            "unit": self.unit,
            "inputHash": bytes(self.input_hash),
            "outputHash": bytes(self.output_hash),
            "traceRoot": bytes(self.trace_root),
        }


def domain(chain_id: int, verifying_contract: str) -> dict[str, Any]:
    """The EIP-712 domain of a Market deployment."""
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id <= 0:
        raise Eip712Error(f"chain_id must be a positive integer, got {chain_id!r}")
    if not is_address(verifying_contract):
        raise Eip712Error(f"verifying_contract must be a 20-byte hex address, got {verifying_contract!r}")
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(verifying_contract),
    }


def _signable(result: WorkResult, chain_id: int, verifying_contract: str) -> SignableMessage:
    return encode_typed_data(
        full_message={
            "types": _TYPES,
            "primaryType": "WorkResult",
            "domain": domain(chain_id, verifying_contract),
            "message": result.message(),
        }
    )


def domain_separator(chain_id: int, verifying_contract: str) -> bytes:
    """`_domainSeparatorV4()` of the Market (32 bytes)."""
    return bytes(_signable(WorkResult(job_id=0, round=0, unit=0, input_hash=b"\0" * 32,
                                      output_hash=b"\0" * 32, trace_root=b"\0" * 32),
                           chain_id, verifying_contract).header)


def work_result_digest(result: WorkResult, *, chain_id: int, verifying_contract: str) -> bytes:
    """keccak256("\\x19\\x01" ++ domainSeparator ++ hashStruct(result)): the round leaf's resultHash."""
    sm = _signable(result, chain_id, verifying_contract)
    return keccak256(b"\x19" + sm.version + sm.header + sm.body)


def sign_work_result(
    key: str | bytes | LocalAccount, result: WorkResult, *, chain_id: int, verifying_contract: str
) -> bytes:
    """Sign with a private key (hex str / 32 bytes) or a LocalAccount; returns 65 bytes r ++ s ++ v."""
    account = key if isinstance(key, LocalAccount) else Account.from_key(key)
    signed = account.sign_message(_signable(result, chain_id, verifying_contract))
    sig = bytes(signed.signature)
    if len(sig) != 65:  # pragma: no cover - eth-account always returns 65 bytes
        raise Eip712Error(f"expected a 65-byte signature, got {len(sig)}")
    return sig


def recover_work_result_signer(
    result: WorkResult, signature: bytes, *, chain_id: int, verifying_contract: str
) -> str:
    """Checksummed address that produced `signature` over `result` (raises on a malformed signature)."""
    if len(signature) != 65:
        raise Eip712Error(f"a signature is 65 bytes (r ++ s ++ v), got {len(signature)}")
    try:
        return Account.recover_message(_signable(result, chain_id, verifying_contract), signature=signature)
    except Exception as e:  # eth-keys raises BadSignature / ValidationError for junk
        raise Eip712Error(f"cannot recover a signer from this signature: {e}") from e
