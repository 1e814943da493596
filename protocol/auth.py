"""Off-chain request authentication for the coordinator (docs/protocol.md, "Coordinator authentication").

Every state-changing request to the coordinator carries an EIP-712 signature over

    CoordinatorAuth(address account,string action,bytes32 bodyHash,bytes32 nonce,uint64 expiry)

in the domain {name "Crowdtrain Coordinator", version "1", chainId} (no verifying
contract: the message is never checked on chain, and leaving the Market out keeps the
domain distinct from the `WorkResult` domain, so one signature can never pass for the
other). Fields:

- `account`: the signer's address; the coordinator recovers the signer and requires equality.
- `action`: `"<METHOD> <path>"`, e.g. `"POST /jobs/7/claim"`; the path as sent, with
  `?<query>` appended when the request has a query string. Binds the signature to one endpoint.
- `bodyHash`: SHA-256 of the exact request body bytes (SHA-256 of the empty string when
  there is no body). For a blob upload this is the blob's own content address.
- `nonce`: 32 random bytes; the coordinator accepts each (account, nonce) once.
- `expiry`: unix seconds after which the request is refused; the coordinator also refuses
  expiries further ahead than its window (default 300 s) so it need only remember nonces
  that long.

The four values travel as HTTP headers (`HEADER_*` below); the body hash is recomputed by
the server, never sent. Torch-free; used by the coordinator, the worker and the verifier.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address

from protocol import ProtocolError
from protocol.hashing import keccak256, sha256

DOMAIN_NAME = "Crowdtrain Coordinator"
DOMAIN_VERSION = "1"
AUTH_TYPE = "CoordinatorAuth(address account,string action,bytes32 bodyHash,bytes32 nonce,uint64 expiry)"
AUTH_TYPEHASH = keccak256(AUTH_TYPE.encode())

HEADER_ACCOUNT = "X-Crowdtrain-Account"
HEADER_NONCE = "X-Crowdtrain-Nonce"
HEADER_EXPIRY = "X-Crowdtrain-Expiry"
HEADER_SIGNATURE = "X-Crowdtrain-Signature"
AUTH_HEADERS = (HEADER_ACCOUNT, HEADER_NONCE, HEADER_EXPIRY, HEADER_SIGNATURE)

_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
    ],
    "CoordinatorAuth": [
        {"name": "account", "type": "address"},
        {"name": "action", "type": "string"},
        {"name": "bodyHash", "type": "bytes32"},
        {"name": "nonce", "type": "bytes32"},
        {"name": "expiry", "type": "uint64"},
    ],
}
_UINT64_MAX = 2**64 - 1
_MAX_ACTION_LEN = 2048


class AuthError(ProtocolError, ValueError):
    """An auth header was missing or malformed, or a signature did not recover."""


@dataclass(frozen=True, kw_only=True)
class AuthMessage:
    """One signed request. `body_hash` and `nonce` are 32 bytes; `expiry` is unix seconds."""

    account: str
    action: str
    body_hash: bytes
    nonce: bytes
    expiry: int

    def __post_init__(self) -> None:
        if not isinstance(self.account, str) or not is_address(self.account):
            raise AuthError(f"account must be a 20-byte hex address, got {self.account!r:.80}")
        object.__setattr__(self, "account", to_checksum_address(self.account))
        if not isinstance(self.action, str) or not self.action or len(self.action) > _MAX_ACTION_LEN:
            raise AuthError(f"action must be a non-empty string of at most {_MAX_ACTION_LEN} characters")
        for name in ("body_hash", "nonce"):
            v = getattr(self, name)
            if not isinstance(v, (bytes, bytearray)) or len(v) != 32:
                raise AuthError(f"{name} must be 32 bytes, got {v!r:.80}")
        if isinstance(self.expiry, bool) or not isinstance(self.expiry, int) or not 0 <= self.expiry <= _UINT64_MAX:
            raise AuthError(f"expiry must be unix seconds in [0, 2^64), got {self.expiry!r}")

    def message(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "action": self.action,
            "bodyHash": bytes(self.body_hash),
            "nonce": bytes(self.nonce),
            "expiry": self.expiry,
        }


def auth_domain(chain_id: int) -> dict[str, Any]:
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id <= 0:
        raise AuthError(f"chain_id must be a positive integer, got {chain_id!r}")
    return {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id}


def auth_action(method: str, path: str, query: str = "") -> str:
    """`"<METHOD> <path>[?<query>]"`: what the signature is bound to."""
    return f"{method.upper()} {path}" + (f"?{query}" if query else "")


def _signable(msg: AuthMessage, chain_id: int) -> SignableMessage:
    return encode_typed_data(full_message={
        "types": _TYPES, "primaryType": "CoordinatorAuth", "domain": auth_domain(chain_id), "message": msg.message(),
    })


def auth_digest(msg: AuthMessage, *, chain_id: int) -> bytes:
    """The EIP-712 digest keccak256("\\x19\\x01" ++ domainSeparator ++ hashStruct(msg))."""
    sm = _signable(msg, chain_id)
    return keccak256(b"\x19" + sm.version + sm.header + sm.body)


def sign_auth(key: str | bytes | LocalAccount, msg: AuthMessage, *, chain_id: int) -> bytes:
    """65-byte `r ++ s ++ v` signature over `msg` with a private key or LocalAccount."""
    account = key if isinstance(key, LocalAccount) else Account.from_key(key)
    return bytes(account.sign_message(_signable(msg, chain_id)).signature)


def recover_auth_signer(msg: AuthMessage, signature: bytes, *, chain_id: int) -> str:
    """Checksummed address that signed `msg`; raises AuthError for a malformed signature."""
    if len(signature) != 65:
        raise AuthError(f"a signature is 65 bytes (r ++ s ++ v), got {len(signature)}")
    try:
        return Account.recover_message(_signable(msg, chain_id), signature=signature)
    except Exception as e:  # eth-keys raises BadSignature / ValidationError for junk
        raise AuthError(f"cannot recover a signer from this signature: {e}") from e


def make_auth_headers(
    key: str | bytes | LocalAccount,
    *,
    method: str,
    path: str,
    body: bytes = b"",
    chain_id: int,
    query: str = "",
    body_hash: bytes | None = None,
    ttl_s: int = 60,
    now: float | None = None,
    nonce: bytes | None = None,
) -> dict[str, str]:
    """Headers that authenticate one request. Pass `body_hash` instead of `body` for a
    streamed upload whose SHA-256 is already known (a blob's content address)."""
    account = key if isinstance(key, LocalAccount) else Account.from_key(key)
    msg = AuthMessage(
        account=account.address,
        action=auth_action(method, path, query),
        body_hash=body_hash if body_hash is not None else sha256(body),
        nonce=nonce if nonce is not None else os.urandom(32),
        expiry=int(now if now is not None else time.time()) + ttl_s,
    )
    sig = sign_auth(account, msg, chain_id=chain_id)
    return {
        HEADER_ACCOUNT: msg.account,
        HEADER_NONCE: "0x" + msg.nonce.hex(),
        HEADER_EXPIRY: str(msg.expiry),
        HEADER_SIGNATURE: "0x" + sig.hex(),
    }


def _hex_bytes(text: str, n: int, what: str) -> bytes:
    s = text[2:] if text[:2] in ("0x", "0X") else text
    if len(s) != 2 * n:
        raise AuthError(f"{what} must be {n} bytes ({2 * n} hex digits), got {len(s)} hex digits")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise AuthError(f"{what} is not hex: {text[:80]!r}") from None


def parse_auth_headers(
    headers: Mapping[str, str], *, method: str, path: str, query: str = "", body_hash: bytes
) -> tuple[AuthMessage, bytes]:
    """Rebuild the signed message from request headers; returns (message, signature).

    `headers` must be case-insensitive (Starlette's and httpx's are). Raises AuthError naming
    the missing or malformed header. Does not check expiry, nonce reuse or the signer.
    """
    missing = [h for h in AUTH_HEADERS if not headers.get(h)]
    if missing:
        raise AuthError(f"missing auth header(s) {', '.join(missing)}: sign the request with "
                        "protocol.auth.make_auth_headers (docs/protocol.md, 'Coordinator authentication')")
    expiry_text = headers[HEADER_EXPIRY].strip()
    if not expiry_text.isdigit() or len(expiry_text) > 20:
        raise AuthError(f"{HEADER_EXPIRY} must be unix seconds as a decimal integer, got {expiry_text[:40]!r}")
    msg = AuthMessage(
        account=headers[HEADER_ACCOUNT].strip(),
        action=auth_action(method, path, query),
        body_hash=body_hash,
        nonce=_hex_bytes(headers[HEADER_NONCE].strip(), 32, HEADER_NONCE),
        expiry=int(expiry_text),
    )
    return msg, _hex_bytes(headers[HEADER_SIGNATURE].strip(), 65, HEADER_SIGNATURE)
