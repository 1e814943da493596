"""Plumbing shared by the agents (worker, verifier) and the model owner's commands.

- `AgentSettings`: the pydantic-settings base every role's settings extend. Precedence,
  highest first: command-line flags (init kwargs), environment (`<ENV_PREFIX><FIELD>`), a
  TOML config file (`--config FILE` or `<ENV_PREFIX>CONFIG`), defaults.
- `load_key`: the role's signing key from an eth-account keystore (password from a file,
  `$CROWDTRAIN_KEYSTORE_PASSWORD` or a prompt) or `$CROWDTRAIN_PRIVATE_KEY`; never printed.
- `connect_chain` / `connect_api`: a ChainClient bound to the market's deployment and a
  coordinator client, checked to be on the same chain.
- `fmt_amount`, `describe_tx`, `explain`: the readable outcome of a chain call or failure.
Torch-free.
"""
from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Self

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from protocol import ProtocolError
from protocol.api_client import ApiError, ApiRequestError, CoordinatorApi
from protocol.chain.client import ChainClient, TxResult
from protocol.chain.deployment import Deployment
from protocol.chain.errors import ChainError, ContractRevert
from protocol.chain.keys import Signer, load_signer

_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("crowdtrain_config_file", default=None)


class AgentConfigError(ProtocolError, ValueError):
    """Settings are inconsistent (chain ids differ, config file unreadable, ...)."""


class AgentSettings(BaseSettings):
    """Connection and key settings common to every agent. Durations are seconds."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    coordinator_url: str = Field("http://127.0.0.1:8600", description="base URL of the coordinator's HTTP API")
    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC URL of the chain holding the Market")
    deployment: Path | None = Field(None, description="deployment record JSON; default deploy/deployments/<chainId>.json")
    market_address: str | None = Field(None, description="Market address (instead of a deployment record)")
    keystore: Path | None = Field(None, description="eth-account keystore JSON; else $CROWDTRAIN_PRIVATE_KEY")
    password_file: Path | None = Field(None, description="file whose first line is the keystore password")
    data_dir: Path = Field(Path("var/agent"), description="local state: blob cache, pending votes, cursors")
    rpc_timeout_s: float = Field(10.0, gt=0)
    api_retry_deadline_s: float = Field(30.0, gt=0, description="keep retrying an unreachable coordinator this long")

    @field_validator("coordinator_url", "rpc_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {v!r}")
        return v.rstrip("/")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_FILE.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: Path | None = None, **flags: Any) -> Self:
        """Settings from flags (None = not given), environment, then the TOML `config_file`
        (default `$<ENV_PREFIX>CONFIG`)."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        if config_file is None and os.environ.get(f"{prefix}CONFIG"):
            config_file = Path(os.environ[f"{prefix}CONFIG"])
        if config_file is not None and not Path(config_file).is_file():
            raise AgentConfigError(f"config file {config_file} does not exist")
        token = _CONFIG_FILE.set(Path(config_file) if config_file else None)
        try:
            return cls(**{k: v for k, v in flags.items() if v is not None})
        finally:
            _CONFIG_FILE.reset(token)


def load_key(settings: AgentSettings, *, prompt: bool = True) -> Signer:
    """The agent's signing key (keystore file or $CROWDTRAIN_PRIVATE_KEY); raises KeyLoadError."""
    return load_signer(keystore=settings.keystore, password_file=settings.password_file, prompt=prompt)


def connect_chain(settings: AgentSettings, signer: Signer | None) -> ChainClient:
    """A client on `rpc_url` bound to the market: explicit address, record file, or
    deploy/deployments/<chainId>.json. Raises ChainError (RpcUnavailable, DeploymentError)."""
    client = ChainClient(settings.rpc_url, signer, timeout=settings.rpc_timeout_s)
    if settings.market_address:
        from protocol.chain.market import MarketApi

        m = MarketApi(client, settings.market_address)
        token = m.token_address()
        dep = Deployment.from_addresses(client.chain_id, Market=m.address, TestToken=token,
                                        JuryArbiter=m.arbiter_address())
    elif settings.deployment is not None:
        dep = Deployment.load(settings.deployment)
    else:
        dep = Deployment.for_chain(client.chain_id)
    client.use_deployment(dep)
    return client


def connect_api(settings: AgentSettings, signer: Signer | None, *, chain: ChainClient | None = None) -> CoordinatorApi:
    """A coordinator client; with `chain`, checks that the coordinator serves the same chain."""
    api = CoordinatorApi(settings.coordinator_url, signer.account if signer else None,
                         chain_id=chain.chain_id if chain else None, retry_deadline_s=settings.api_retry_deadline_s)
    if chain is not None:
        served = api.health().chain_id
        if served != chain.chain_id:
            api.close()
            raise AgentConfigError(f"coordinator {settings.coordinator_url} serves chain {served}, but "
                                   f"{settings.rpc_url} is chain {chain.chain_id}: point both at the same chain")
    return api


def fmt_amount(amount: int, decimals: int = 18, symbol: str = "") -> str:
    """Base units -> '1,234.5 SYM' (exact: integer arithmetic, no float rounding)."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    text = f"{sign}{whole:,}" + (f".{str(frac).rjust(decimals, '0').rstrip('0')}" if frac else "")
    return f"{text} {symbol}".rstrip()


def describe_tx(tx: TxResult, what: str) -> str:
    """'what: tx 0x.. (block N, gas G) [url]' plus one line per decoded event."""
    head = f"{what}: tx {tx.tx_hash} (block {tx.block_number}, gas {tx.gas_used:,})"
    if tx.url:
        head += f" {tx.url}"
    lines = [head]
    for e in tx.events:
        args = ", ".join(f"{k}={_short(v)}" for k, v in e.args.items())
        lines.append(f"  {e.name}({args})")
    return "\n".join(lines)


def explain(e: BaseException) -> str:
    """One readable paragraph for an error an agent command reports (no traceback)."""
    if isinstance(e, ContractRevert):
        where = f" (tx {e.tx_hash})" if e.tx_hash else ""
        return f"the contract refused{where}: {e}"
    if isinstance(e, ApiRequestError):
        return f"the coordinator refused: {e}"
    if isinstance(e, (ChainError, ApiError, ProtocolError)):
        return str(e)
    return f"{e.__class__.__name__}: {e}"


def _short(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    if isinstance(v, (list, tuple)) and len(v) > 4:
        return f"[{len(v)} items]"
    return str(v)


# ---- staking (worker and verifier share it; role 1 = worker, 2 = verifier) ---------------
def parse_amount(text: str, decimals: int) -> int:
    """'12.5' whole tokens -> base units, exactly; raises AgentConfigError for junk or too many decimals."""
    from decimal import Decimal, InvalidOperation

    try:
        d = Decimal(text.replace(",", "").replace("_", ""))
    except InvalidOperation:
        raise AgentConfigError(f"not an amount of tokens: {text!r} (write e.g. 100 or 12.5)") from None
    base = d * (10**decimals)
    if d < 0 or base != base.to_integral_value():
        raise AgentConfigError(f"{text!r} is negative or has more than {decimals} decimals")
    return int(base)


def stake_tokens(chain: ChainClient, role: int, amount_text: str | None) -> list[str]:
    """Stake `amount_text` whole tokens (default: up to the role's minimum) as `role`; readable lines."""
    m, tok = chain.market, chain.token
    dec, sym = tok.decimals(), tok.symbol()
    need = m.min_stake(role)
    active = int(m.get_stake(chain.address, role)["active"])
    amount = parse_amount(amount_text, dec) if amount_text else max(need - active, 0)
    if amount == 0:
        return [f"{chain.address} already has {fmt_amount(active, dec, sym)} active stake (minimum "
                f"{fmt_amount(need, dec, sym)}); nothing to stake"]
    bal = tok.balance_of(chain.address)
    if bal < amount:
        raise AgentConfigError(f"staking {fmt_amount(amount, dec, sym)} needs that much in {chain.address}, which holds "
                               f"{fmt_amount(bal, dec, sym)}: fund the account first")
    tx = m.stake(role, amount)
    st = m.get_stake(chain.address, role)
    ok = int(st["active"]) >= need
    return [describe_tx(tx, f"staked {fmt_amount(amount, dec, sym)}"),
            f"active stake now {fmt_amount(int(st['active']), dec, sym)} (minimum {fmt_amount(need, dec, sym)}"
            + (")" if ok else "): still below the minimum, stake more")]


def unstake_tokens(chain: ChainClient, role: int, amount_text: str | None, withdraw: bool) -> list[str]:
    """Request unbonding (default: all active stake) or, with `withdraw`, withdraw unbonded stake."""
    m, tok = chain.market, chain.token
    dec, sym = tok.decimals(), tok.symbol()
    st = m.get_stake(chain.address, role)
    if withdraw:
        tx = m.withdraw_stake(role)
        return [describe_tx(tx, f"withdrew {fmt_amount(int(st['unbonding']), dec, sym)} of unbonded stake")]
    amount = parse_amount(amount_text, dec) if amount_text else int(st["active"])
    if amount == 0:
        return ["no active stake to unbond"]
    tx = m.request_unstake(role, amount)
    st = m.get_stake(chain.address, role)
    return [describe_tx(tx, f"requested unbonding of {fmt_amount(amount, dec, sym)}"),
            f"unbonding {fmt_amount(int(st['unbonding']), dec, sym)}, withdrawable at unix time {st['unlockAt']} "
            "(still slashable until then); then run the same command with --withdraw"]


# ---- calls that become allowed at a point in time ----------------------------------------
TIME_ERRORS = frozenset({"MarketChallengeWindowOpen", "MarketJobNotClosable", "MarketDisputeNotTimedOut",
                         "JuryRevealNotOpen", "JuryNotResolvable"})


def transact_due(contract: Any, fn: str, *args: Any, gas: int = 300_000) -> TxResult:
    """Send `fn(*args)` on a BoundContract, for calls allowed only from some time on.

    Gas estimation runs against the latest block; a chain that mines only on demand (anvil,
    a quiet devnet) may not have made one since the deadline passed, so the estimate reverts
    with a "too early" error although a transaction sent now lands in a block stamped now.
    In that case (the chain's latest block is older than the wall clock) send once more
    with a fixed gas limit; a real refusal still comes back as the typed revert.
    """
    try:
        return contract.transact(fn, *args)
    except ContractRevert as e:
        import time

        if e.error_name not in TIME_ERRORS or contract.client.timestamp() >= int(time.time()):
            raise
        return contract.transact(fn, *args, gas=gas)


def short_hex(h: str | None) -> str:
    """'0x80c490a4…2d2935' for tables (`--json` outputs carry the full values); '-' for None."""
    if not h:
        return "-"
    return h if len(h) <= 20 else f"{h[:10]}…{h[-6:]}"
