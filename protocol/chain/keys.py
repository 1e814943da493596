"""Loading signing keys without ever printing them.

Sources, in the order `load_signer` tries them:
1. an eth-account keystore JSON file (V3, scrypt/pbkdf2), password from a file, the
   environment variable `CROWDTRAIN_KEYSTORE_PASSWORD`, or an interactive prompt;
2. the environment variable `CROWDTRAIN_PRIVATE_KEY` (0x-prefixed or bare 64 hex digits).

The result is a `Signer`: address visible, key masked in repr/str so a traceback, a log
line or `rich` pretty-printing never shows it. `Signer.account` is the eth-account
`LocalAccount` the chain client signs with.
"""
from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from protocol.chain.errors import KeyLoadError

PRIVATE_KEY_ENV = "CROWDTRAIN_PRIVATE_KEY"
KEYSTORE_PASSWORD_ENV = "CROWDTRAIN_KEYSTORE_PASSWORD"


@dataclass(frozen=True)
class Signer:
    """A loaded key. `source` says where it came from (file path or env var name), never the key."""

    account: LocalAccount = field(repr=False)
    source: str

    @property
    def address(self) -> str:
        return self.account.address

    def __repr__(self) -> str:
        return f"Signer(address={self.address}, source={self.source!r}, key=<hidden>)"

    __str__ = __repr__


def account_from_private_key(key: str | bytes, *, source: str = "private key") -> LocalAccount:
    """LocalAccount from a hex string or 32 bytes; the error message never echoes the key."""
    try:
        if isinstance(key, str):
            key = key.strip()
            if not key.startswith(("0x", "0X")):
                key = "0x" + key
        return Account.from_key(key)
    except Exception:  # eth-keys raises several types for junk; none may carry the key out
        raise KeyLoadError(
            f"{source} is not a valid secp256k1 private key (expected 32 bytes as 64 hex digits, "
            "optionally 0x-prefixed)") from None


def from_env(var: str = PRIVATE_KEY_ENV) -> Signer:
    value = os.environ.get(var)
    if not value:
        raise KeyLoadError(f"environment variable {var} is not set; export it or pass --keystore FILE")
    return Signer(account_from_private_key(value, source=f"${var}"), source=f"${var}")


def from_keystore(path: str | Path, *, password: str | None = None, password_file: str | Path | None = None,
                  prompt: bool = True) -> Signer:
    """Decrypt a keystore file. Password: argument, file (first line), env var, then a prompt."""
    p = Path(path)
    try:
        blob = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyLoadError(f"keystore file {p} does not exist") from None
    except (OSError, ValueError) as e:
        raise KeyLoadError(f"keystore file {p} is not readable JSON ({e.__class__.__name__})") from None
    if password is None and password_file is not None:
        try:
            password = Path(password_file).read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError):
            raise KeyLoadError(f"cannot read a password from the first line of {password_file}") from None
    if password is None:
        password = os.environ.get(KEYSTORE_PASSWORD_ENV)
    if password is None:
        if not prompt:
            raise KeyLoadError(f"no password for keystore {p}: pass --password-file or set {KEYSTORE_PASSWORD_ENV}")
        password = getpass.getpass(f"password for keystore {p.name}: ")
    try:
        key = Account.decrypt(blob, password)
    except ValueError:
        raise KeyLoadError(f"wrong password for keystore {p} (or the file is corrupt)") from None
    except (KeyError, TypeError):
        raise KeyLoadError(f"{p} is not an Ethereum keystore (V3) file") from None
    return Signer(Account.from_key(key), source=str(p))


def write_keystore(account: LocalAccount, path: str | Path, password: str, *, kdf: str = "scrypt",
                   iterations: int | None = None) -> Path:
    """Encrypt `account` into a keystore file (mode 0600). `iterations` lowers scrypt's n for tests."""
    blob = Account.encrypt(account.key, password, kdf=kdf, iterations=iterations)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(blob, f)
    return p


def load_signer(*, keystore: str | Path | None = None, password_file: str | Path | None = None,
                env_var: str = PRIVATE_KEY_ENV, prompt: bool = True) -> Signer:
    """Keystore if given, else the env var; raises KeyLoadError saying which options exist."""
    if keystore is not None:
        return from_keystore(keystore, password_file=password_file, prompt=prompt)
    if os.environ.get(env_var):
        return from_env(env_var)
    raise KeyLoadError(f"no signing key: pass --keystore FILE (eth-account keystore JSON) or export {env_var}")
