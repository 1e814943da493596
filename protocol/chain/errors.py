"""Typed chain errors: every Solidity custom error becomes a Python exception class.

Hierarchy (all inherit `ProtocolError` through `ChainError`):
- `RpcUnavailable` (also `ConnectionError`): the RPC endpoint did not answer.
- `TransactionReverted` (also `RuntimeError`): a call or transaction reverted.
  - `ContractRevert`: revert data decoded against the known ABIs. One subclass per custom
    error name found in protocol/artifacts (e.g. `MarketInsufficientStake`), created on
    first use, plus OpenZeppelin's ERC-6093 / SafeERC20 errors, `Error(string)` (class
    `RevertString`) and `Panic(uint256)` (class `Panic`). `UnknownRevert` when the selector
    matches nothing (stale ABIs). `.args_dict` holds the decoded arguments by name.
- `DeploymentError` (also `ValueError`): no deployment for a chain, or a malformed file.
- `KeyLoadError` (also `ValueError`): a private key could not be loaded.

    try: client.market.claim(...)
    except errors.error_class("MarketAlreadyClaimed") as e: print(e.args_dict)
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from protocol import ProtocolError


class ChainError(ProtocolError):
    """Base of every error raised by protocol.chain."""


class RpcUnavailable(ChainError, ConnectionError):
    """The JSON-RPC endpoint could not be reached (refused, timed out, DNS)."""


class DeploymentError(ChainError, ValueError):
    """No deployment record for this chain, or a malformed one."""


class KeyLoadError(ChainError, ValueError):
    """A private key could not be loaded from a keystore file or the environment."""


class TransactionReverted(ChainError, RuntimeError):
    """A call, gas estimation or mined transaction reverted. `tx_hash` is set once mined."""

    def __init__(self, message: str, *, data: bytes = b"", tx_hash: str | None = None) -> None:
        super().__init__(message)
        self.data = data
        self.tx_hash = tx_hash


class ContractRevert(TransactionReverted):
    """A revert whose data decoded to a known error. Subclasses are named after the error."""

    error_name: str = ""
    signature: str = ""

    def __init__(self, args_dict: Mapping[str, Any], *, data: bytes = b"", tx_hash: str | None = None,
                 hint: str | None = None) -> None:
        self.args_dict = dict(args_dict)
        self.hint = hint if hint is not None else hint_for(self.error_name)
        args_text = ", ".join(f"{k}={_fmt(v)}" for k, v in self.args_dict.items())
        msg = f"{self.error_name}({args_text})"
        if self.hint:
            msg += f": {self.hint}"
        super().__init__(msg, data=data, tx_hash=tx_hash)


class UnknownRevert(ContractRevert):
    """Revert data whose selector matches no known ABI error."""

    error_name = "UnknownRevert"


class RevertString(ContractRevert):
    """`require(cond, "reason")` / `revert("reason")`: `Error(string)`."""

    error_name = "Error"
    signature = "Error(string)"


class Panic(ContractRevert):
    """`Panic(uint256)`: assert failure, arithmetic overflow, division by zero, ..."""

    error_name = "Panic"
    signature = "Panic(uint256)"


PANIC_CODES = {
    0x01: "assert failed", 0x11: "arithmetic overflow or underflow", 0x12: "division or modulo by zero",
    0x21: "invalid enum value", 0x22: "bad storage byte array", 0x31: "pop on empty array",
    0x32: "array index out of bounds", 0x41: "out of memory", 0x51: "call to an uninitialised function",
}

# What to do, by exact error name (Market, JuryArbiter, OpenZeppelin); `hint_for` falls back
# to a fragment match so an error added later still gets a reasonable line.
HINTS: dict[str, str] = {
    "ERC20InsufficientAllowance": "approve the Market to spend enough of the token first (token.approve)",
    "ERC20InsufficientBalance": "the sender does not hold enough tokens; fund it (on a local chain: token.mint)",
    "MarketInsufficientStake": "stake is below the minimum for this action; stake more (market.stake) and retry",
    "MarketUnstakeTooLarge": "you can only unstake up to your active stake (market.get_stake)",
    "MarketNothingUnbonding": "nothing is unbonding for this role; call requestUnstake first",
    "MarketStakeLocked": "the unbonding period has not ended; withdraw after unlockAt",
    "MarketAccountInDispute": "the account is party to an open dispute; withdraw after it is ruled",
    "MarketInvalidChallengeWindow": "the challenge window must be > 0 and <= the market's unbonding period",
    "MarketDeadlineInPast": "pick a deadline in the future (unix seconds)",
    "MarketUnknownJob": "no job with this id; check the job id (market.job_count)",
    "MarketNotJobOwner": "only the job's owner may do this; sign with the owner's key",
    "MarketNotCoordinator": "only the job's coordinator may do this; sign with the coordinator's key",
    "MarketJobNotOpen": "the job is completed or closed; no more rounds or top-ups",
    "MarketJobNotClosable": "the job can be closed after its deadline or once the coordinator completed it",
    "MarketJobExpired": "the job's deadline has passed; no more rounds can be committed",
    "MarketRoundAlreadyCommitted": "this round id already has a root; commit the next round id",
    "MarketRoundTotalTooHigh": "the round total exceeds numUnits * rewardPerUnit",
    "MarketTooManyUnits": "the job's maxUnits would be exceeded",
    "MarketInsufficientEscrow": "the job's escrow cannot cover this round; top up the job (market.top_up)",
    "MarketUnknownRound": "this round was never committed for the job",
    "MarketRoundNotFinalized": "claims open once the round is finalized: call finalizeRound after the challenge window",
    "MarketRoundAlreadyFinalized": "the round is already finalized; go ahead and claim",
    "MarketChallengeWindowOpen": "the challenge window is still open; wait until challengeEnd (advance time on a local chain)",
    "MarketChallengeWindowClosed": "the round's challenge window has passed; it can no longer be challenged",
    "MarketRoundHasOpenDisputes": "an open dispute blocks finalization; wait until the jury rules (or timeoutDispute)",
    "MarketInvalidProof": "the Merkle proof does not match the committed root; rebuild it with protocol.merkle",
    "MarketLeafNotClaimable": "the leaf was already claimed, is under dispute, or was revoked (status in the error)",
    "MarketRoundOverpaid": "the leaves' amounts exceed the round's committed total (the coordinator committed a bad root)",
    "MarketArbiterNotSet": "the market has no arbiter yet; the deployer must call setArbiter",
    "MarketArbiterAlreadySet": "the arbiter can only be set once",
    "MarketSelfChallenge": "a worker cannot challenge its own result",
    "MarketLeafNotChallengeable": "this leaf is already disputed, upheld, revoked or claimed",
    "MarketResultHashMismatch": "the WorkResult fields do not hash to the committed resultHash",
    "MarketInvalidSignature": "the WorkResult signature does not recover to the leaf's worker",
    "MarketInvalidTraceStep": "the trace leaves' steps must be step-1 and step",
    "MarketInvalidTraceProof": "a trace leaf's proof does not match the signed trace root",
    "MarketNotArbiter": "only the arbiter contract may rule",
    "MarketDisputeNotOpen": "the dispute is already ruled or timed out",
    "MarketDisputeNotTimedOut": "the dispute timeout has not passed; wait until timeoutAt",
    "MarketNoPayout": "nothing credited to this account to withdraw",
    "JuryNotJuror": "this account was not drawn as a juror for this dispute (jury.jurors_of)",
    "JuryCommitClosed": "the commit phase is over; votes can no longer be committed",
    "JuryAlreadyCommitted": "this juror already committed a vote",
    "JuryRevealNotOpen": "reveals open at the commit deadline (or once every juror committed)",
    "JuryRevealClosed": "the reveal phase is over",
    "JuryNotCommitted": "reveal needs a prior commit from this juror",
    "JuryAlreadyRevealed": "this vote was already revealed",
    "JuryInvalidChoice": "vote 1 (worker was right) or 2 (challenger was right)",
    "JuryCommitmentMismatch": "choice and salt do not match the commitment; reveal with the same salt you committed",
    "JuryNotResolvable": "the dispute can be resolved after the reveal deadline (or once every juror revealed)",
    "JuryAlreadyResolved": "the dispute was already resolved",
    "JuryNoReward": "no juror reward to withdraw",
    "JuryUnknownDispute": "no arbiter dispute with this id (use DisputeView.arbiterDisputeId, not the market's id)",
    "JuryZeroCommitment": "commit keccak256(abi.encode(disputeId, juror, choice, salt)) (jury.vote_commitment)",
    "JuryInvalidParams": "fix the jury parameter named in the error",
    "MarketInvalidParams": "fix the market parameter named in the error",
    "MarketInvalidRole": "role is 1 (worker) or 2 (verifier)",
    "MarketZeroAmount": "the amount must be > 0",
    "MarketZeroBudget": "a job needs a budget > 0",
    "MarketZeroRewardPerUnit": "a job needs rewardPerUnit > 0",
    "MarketZeroMaxUnits": "a job needs maxUnits > 0",
    "MarketZeroRoot": "the round root must not be zero; build it with protocol.merkle",
    "MarketZeroUnits": "a round commits at least one unit",
    "MarketZeroAddress": "an address argument is zero; pass a real address",
    "MarketAmountTooLarge": "the amount exceeds what the market stores (max in the error)",
    "MarketUnknownDispute": "no market dispute for this arbiter dispute id",
    "OwnableUnauthorizedAccount": "only the contract owner (the deployer) may do this",
    "SafeERC20FailedOperation": "the token refused a transfer; is it a standard ERC-20?",
    "ECDSAInvalidSignature": "the signature is not a valid secp256k1 signature",
    "ECDSAInvalidSignatureLength": "a signature is 65 bytes r ++ s ++ v",
    "ECDSAInvalidSignatureS": "the signature's s is in the upper half; sign with eth-account (low s)",
}
_FRAGMENT_HINTS: tuple[tuple[str, str], ...] = (
    ("insufficientstake", HINTS["MarketInsufficientStake"]),
    ("windowclosed", "the window for this action has passed"),
    ("windowopen", "the window is still open; wait until it ends"),
    ("notcoordinator", HINTS["MarketNotCoordinator"]),
    ("invalidproof", HINTS["MarketInvalidProof"]),
    ("alreadyclaimed", "this was already paid out; nothing to claim"),
)


def hint_for(error_name: str) -> str:
    if error_name in HINTS:
        return HINTS[error_name]
    low = error_name.lower()
    for frag, hint in _FRAGMENT_HINTS:
        if frag in low:
            return hint
    return ""


def _fmt(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    if isinstance(v, str) and len(v) == 42 and v.startswith("0x"):
        return to_checksum_address(v)
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def _abi_type(inp: Mapping[str, Any]) -> str:
    t = inp["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in inp.get("components", [])) + ")" + t[5:]
    return t


_classes: dict[str, type[ContractRevert]] = {"Error": RevertString, "Panic": Panic, "UnknownRevert": UnknownRevert}


def error_class(name: str) -> type[ContractRevert]:
    """The exception class for custom error `name` (created on first use; stable identity)."""
    cls = _classes.get(name)
    if cls is None:
        cls = type(name, (ContractRevert,), {"error_name": name, "__module__": __name__,
                                            "__doc__": f"Solidity custom error `{name}`."})
        _classes[name] = cls
    return cls


# OpenZeppelin errors raised by the token (bubbled through SafeERC20) that a Market ABI
# does not list; always decodable.
OZ_ERRORS = (
    "ERC20InsufficientBalance(address sender,uint256 balance,uint256 needed)",
    "ERC20InsufficientAllowance(address spender,uint256 allowance,uint256 needed)",
    "ERC20InvalidSender(address sender)", "ERC20InvalidReceiver(address receiver)",
    "ERC20InvalidApprover(address approver)", "ERC20InvalidSpender(address spender)",
    "SafeERC20FailedOperation(address token)", "OwnableUnauthorizedAccount(address account)",
    "ECDSAInvalidSignature()", "ECDSAInvalidSignatureLength(uint256 length)", "ECDSAInvalidSignatureS(bytes32 s)",
    "ReentrancyGuardReentrantCall()", "AccessControlUnauthorizedAccount(address account,bytes32 neededRole)",
)


class ErrorRegistry:
    """selector -> (name, arg names, arg types), built from ABIs; decodes revert data."""

    def __init__(self, abis: Iterable[list[dict[str, Any]]] = ()) -> None:
        self._by_selector: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for sig in OZ_ERRORS:
            name, rest = sig.split("(", 1)
            params = [p for p in rest[:-1].split(",") if p]
            self._add(name, [p.split()[1] for p in params], [p.split()[0] for p in params])
        self._add("Error", ["reason"], ["string"])
        self._add("Panic", ["code"], ["uint256"])
        for abi in abis:
            for item in abi:
                if item.get("type") == "error":
                    inputs = item.get("inputs", [])
                    self._add(item["name"], [i.get("name") or f"arg{n}" for n, i in enumerate(inputs)],
                              [_abi_type(i) for i in inputs])

    def _add(self, name: str, names: list[str], types: list[str]) -> None:
        sel = function_signature_to_4byte_selector(f"{name}({','.join(types)})")
        self._by_selector[sel] = (name, names, types)

    def names(self) -> list[str]:
        return sorted({v[0] for v in self._by_selector.values()})

    def decode(self, data: bytes, *, tx_hash: str | None = None) -> TransactionReverted:
        """Exception for raw revert data (empty data -> plain TransactionReverted)."""
        if len(data) < 4:
            return TransactionReverted(
                "transaction reverted without a reason (out of gas, a failed low-level call, or "
                "a contract without this function)", data=data, tx_hash=tx_hash)
        entry = self._by_selector.get(data[:4])
        if entry is None:
            return UnknownRevert({"selector": data[:4], "data": data[4:]}, data=data, tx_hash=tx_hash,
                                 hint="no known ABI has this error; rebuild protocol/artifacts (make artifacts)")
        name, names, types = entry
        try:
            values = abi_decode(types, data[4:])
        except DecodingError as e:
            return UnknownRevert({"selector": data[:4], "data": data[4:]}, data=data, tx_hash=tx_hash,
                                 hint=f"error {name} did not decode ({e}); ABIs may be stale")
        args = {n: to_checksum_address(v) if t == "address" else v for n, t, v in zip(names, types, values)}
        if name == "Panic":
            return Panic(args, data=data, tx_hash=tx_hash,
                         hint=PANIC_CODES.get(args["code"], "unknown panic code") + " (a contract bug)")
        if name == "Error":
            return RevertString(args, data=data, tx_hash=tx_hash, hint="")
        return error_class(name)(args, data=data, tx_hash=tx_hash)


def revert_data_from(exc: BaseException) -> bytes | None:
    """Raw revert bytes carried by a web3 exception (ContractLogicError/Web3RPCError), if any."""
    candidates: list[Any] = [getattr(exc, "data", None)]
    resp = getattr(exc, "rpc_response", None)
    if isinstance(resp, Mapping):
        err = resp.get("error")
        if isinstance(err, Mapping):
            candidates.append(err.get("data"))
    for c in candidates:
        if isinstance(c, Mapping):
            c = c.get("data")
        if isinstance(c, str) and c.startswith("0x"):
            try:
                return bytes.fromhex(c[2:])
            except ValueError:
                continue
        if isinstance(c, (bytes, bytearray)):
            return bytes(c)
    return None


def __getattr__(name: str) -> type[ContractRevert]:
    """`from protocol.chain.errors import MarketInsufficientStake` for any known error name."""
    if name[:1].isupper() and not name.startswith("_"):
        from protocol.chain.artifacts import all_abis

        if name in ErrorRegistry(all_abis().values()).names():
            return error_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
