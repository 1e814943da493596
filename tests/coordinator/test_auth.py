"""protocol/auth.py: the CoordinatorAuth EIP-712 message, checked against a hand-built
digest (plain abi.encode + keccak, as a Solidity or JavaScript client would compute it)
and a golden vector."""
from __future__ import annotations

import pytest
from eth_abi import encode
from eth_account import Account

from protocol.auth import (
    AUTH_TYPE,
    HEADER_ACCOUNT,
    HEADER_EXPIRY,
    HEADER_NONCE,
    AuthError,
    AuthMessage,
    auth_digest,
    make_auth_headers,
    parse_auth_headers,
    recover_auth_signer,
    sign_auth,
)
from protocol.hashing import keccak256, sha256

KEY = "0x" + "01" * 32
MSG = AuthMessage(account=Account.from_key(KEY).address, action="POST /jobs/7/claim", body_hash=bytes(32),
                  nonce=bytes(range(32)), expiry=1_700_000_000)


def manual_digest(msg: AuthMessage, chain_id: int) -> bytes:
    dom_type = keccak256(b"EIP712Domain(string name,string version,uint256 chainId)")
    ds = keccak256(encode(["bytes32", "bytes32", "bytes32", "uint256"],
                          [dom_type, keccak256(b"Crowdtrain Coordinator"), keccak256(b"1"), chain_id]))
    sh = keccak256(encode(["bytes32", "address", "bytes32", "bytes32", "bytes32", "uint64"],
                          [keccak256(AUTH_TYPE.encode()), msg.account, keccak256(msg.action.encode()), msg.body_hash,
                           msg.nonce, msg.expiry]))
    return keccak256(b"\x19\x01" + ds + sh)


def test_digest_matches_hand_built_encoding_and_golden_vector() -> None:
    assert auth_digest(MSG, chain_id=31337) == manual_digest(MSG, 31337)
    assert auth_digest(MSG, chain_id=1) == manual_digest(MSG, 1) != auth_digest(MSG, chain_id=31337)
    # golden: changing the type string, domain or encoding must be a deliberate protocol change
    assert MSG.account == "0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1"
    assert auth_digest(MSG, chain_id=31337).hex() == "be78cef4885709830808450ba9cc5658fa0cd98352d7d433d22ef13e690229ce"


def test_sign_recover_roundtrip_and_every_field_is_bound() -> None:
    sig = sign_auth(KEY, MSG, chain_id=31337)
    assert len(sig) == 65 and recover_auth_signer(MSG, sig, chain_id=31337) == MSG.account
    variants = [
        AuthMessage(**{**MSG.__dict__, "action": "POST /jobs/8/claim"}),
        AuthMessage(**{**MSG.__dict__, "body_hash": sha256(b"x")}),
        AuthMessage(**{**MSG.__dict__, "nonce": bytes(32)}),
        AuthMessage(**{**MSG.__dict__, "expiry": MSG.expiry + 1}),
    ]
    for v in variants:
        assert recover_auth_signer(v, sig, chain_id=31337) != MSG.account
    assert recover_auth_signer(MSG, sig, chain_id=1) != MSG.account


def test_headers_roundtrip() -> None:
    h = make_auth_headers(KEY, method="post", path="/units/3/result", body=b'{"a":1}', chain_id=5, now=1000)
    assert h[HEADER_ACCOUNT] == MSG.account and h[HEADER_EXPIRY] == "1060" and len(h[HEADER_NONCE]) == 66
    msg, sig = parse_auth_headers(h, method="POST", path="/units/3/result", body_hash=sha256(b'{"a":1}'))
    assert msg.action == "POST /units/3/result" and recover_auth_signer(msg, sig, chain_id=5) == MSG.account


@pytest.mark.parametrize("mutate, needle", [
    (lambda h: h.pop(HEADER_NONCE), "missing auth header"),
    (lambda h: h.update({HEADER_NONCE: "0x12"}), "32 bytes"),
    (lambda h: h.update({HEADER_EXPIRY: "-5"}), "unix seconds"),
    (lambda h: h.update({HEADER_ACCOUNT: "0xnope"}), "20-byte hex address"),
])
def test_malformed_headers_raise_auth_error(mutate, needle: str) -> None:  # type: ignore[no-untyped-def]
    h = make_auth_headers(KEY, method="POST", path="/x", chain_id=5)
    mutate(h)
    with pytest.raises(AuthError, match=needle):
        parse_auth_headers(h, method="POST", path="/x", body_hash=sha256(b""))


def test_auth_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        AuthMessage(account=MSG.account, action="", body_hash=bytes(32), nonce=bytes(32), expiry=1)
