"""Keys never leak; revert data decodes into typed errors; a dead RPC fails fast and clearly."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector as sel
from eth_utils import to_checksum_address

from protocol import ProtocolError
from protocol.chain import ChainClient, ChainError, ContractRevert, KeyLoadError, RpcUnavailable, error_class
from protocol.chain.errors import ErrorRegistry, Panic, RevertString, TransactionReverted, UnknownRevert
from protocol.chain.keys import PRIVATE_KEY_ENV, from_env, from_keystore, load_signer, write_keystore

KEY = "0x" + "5c" * 32


def test_signer_from_env_masks_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRIVATE_KEY_ENV, KEY[2:])  # bare hex is accepted too
    s = from_env()
    assert s.address == Account.from_key(KEY).address
    for text in (repr(s), str(s), f"{s}"):
        assert "5c5c" not in text and "hidden" in text and s.address in text


def test_bad_env_key_message_never_echoes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRIVATE_KEY_ENV, "0xdeadbeefcafe")
    with pytest.raises(KeyLoadError) as ei:
        from_env()
    assert "deadbeef" not in str(ei.value) and PRIVATE_KEY_ENV in str(ei.value)
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, ProtocolError)


def test_keystore_roundtrip_and_wrong_password(tmp_path: Path) -> None:
    acct = Account.from_key(KEY)
    path = write_keystore(acct, tmp_path / "k.json", "pw", kdf="pbkdf2", iterations=2)
    assert path.stat().st_mode & 0o777 == 0o600
    (tmp_path / "pw.txt").write_text("pw\n")
    s = load_signer(keystore=path, password_file=tmp_path / "pw.txt")
    assert s.address == acct.address and s.source == str(path)
    with pytest.raises(KeyLoadError, match="wrong password"):
        from_keystore(path, password="nope")
    with pytest.raises(KeyLoadError, match="does not exist"):
        from_keystore(tmp_path / "missing.json", password="pw")
    with pytest.raises(KeyLoadError, match="no password"):
        from_keystore(path, prompt=False)


def test_no_key_source_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRIVATE_KEY_ENV, raising=False)
    with pytest.raises(KeyLoadError, match="--keystore FILE.*CROWDTRAIN_PRIVATE_KEY"):
        load_signer()


def test_registry_decodes_custom_oz_string_and_panic() -> None:
    abi = [{"type": "error", "name": "MarketInsufficientStake", "inputs": [
        {"name": "account", "type": "address"}, {"name": "stake", "type": "uint256"},
        {"name": "needed", "type": "uint256"}]}]
    reg = ErrorRegistry([abi])
    who = "0x" + "ab" * 20
    data = sel("MarketInsufficientStake(address,uint256,uint256)") + encode(["address", "uint256", "uint256"], [who, 5, 7])
    e = reg.decode(data)
    assert type(e) is error_class("MarketInsufficientStake") and isinstance(e, ContractRevert)
    assert e.args_dict == {"account": to_checksum_address(who), "stake": 5, "needed": 7}
    assert str(e).startswith("MarketInsufficientStake(account=0x") and "stake=5, needed=7" in str(e) and "stake more" in str(e)
    assert isinstance(e, RuntimeError) and isinstance(e, ChainError)
    allowance = reg.decode(sel("ERC20InsufficientAllowance(address,uint256,uint256)") + encode(["address", "uint256", "uint256"], [who, 1, 2]))
    assert type(allowance).__name__ == "ERC20InsufficientAllowance" and "approve" in str(allowance)
    s = reg.decode(sel("Error(string)") + encode(["string"], ["nope"]))
    assert isinstance(s, RevertString) and s.args_dict == {"reason": "nope"} and str(s) == "Error(reason='nope')"
    p = reg.decode(sel("Panic(uint256)") + encode(["uint256"], [0x11]))
    assert isinstance(p, Panic) and "overflow" in str(p)
    u = reg.decode(bytes.fromhex("12345678") + b"\x00" * 32)
    assert isinstance(u, UnknownRevert) and "make artifacts" in str(u)
    empty = reg.decode(b"")
    assert type(empty) is TransactionReverted and "without a reason" in str(empty)


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    return port


def test_dead_rpc_raises_rpc_unavailable_quickly() -> None:
    url = f"http://127.0.0.1:{_dead_port()}"
    with pytest.raises(RpcUnavailable) as ei:
        ChainClient(url, connect_deadline=0.5)
    msg = str(ei.value)
    assert url in msg and "--rpc-url" in msg and "crowdtrain chain up" in msg
    assert isinstance(ei.value, ConnectionError)
