"""Deploy the market to any RPC URL: payment token, Market, JuryArbiter, wiring, record file.

    client = ChainClient(rpc_url, signer)
    dep = deploy_all(client, DeployConfig.for_chain(client.chain_id))   # writes deploy/deployments/<id>.json

Order: TestToken (local chains only, unless an existing token address is given), then
Market(token, MarketParams), JuryArbiter(market, JuryParams), then `Market.setArbiter`
(only the deployer may, once). On a local chain the dev accounts also get test tokens.

Defaults (amounts in whole tokens, scaled by the token's decimals; times in seconds):
| parameter          | production | local  | meaning |
|--------------------|-----------:|-------:|---------|
| min_worker_stake   | 100        | 100    | active stake a worker needs |
| min_verifier_stake | 100        | 100    | active stake to challenge or sit on a jury |
| challenge_bond     | 10         | 10     | locked per challenge; lost to worker + jurors if wrong |
| slash_bps          | 5000       | 5000   | share of a losing worker's stake slashed (1/10000) |
| juror_share_bps    | 1000       | 1000   | share of slash / bond paid to majority jurors |
| unbonding_period   | 7 days     | 1 hour | also the longest challenge window a job may use |
| dispute_timeout    | 3 days     | 15 min | unruled disputes close as ruling 0 after this |
| jury_size          | 3          | 3      | jurors drawn per dispute (fewer if fewer eligible) |
| commit_period      | 1 day      | 2 min  | jurors commit votes |
| reveal_period      | 1 day      | 2 min  | jurors reveal votes |
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from deploy import DeployError
from protocol.chain.client import ChainClient, TxResult
from protocol.chain.deployment import ContractRecord, Deployment
from protocol.chain.token import TokenApi

LOCAL_CHAIN_IDS = frozenset({31337, 1337})
DAY = 86_400


@dataclass(frozen=True, kw_only=True)
class MarketParams:
    """IMarket.MarketParams; amounts in token base units, periods in seconds."""

    min_worker_stake: int
    min_verifier_stake: int
    challenge_bond: int
    slash_bps: int = 5000
    juror_share_bps: int = 1000
    unbonding_period: int = 7 * DAY
    dispute_timeout: int = 3 * DAY

    def to_abi(self) -> dict[str, int]:
        return {"minWorkerStake": self.min_worker_stake, "minVerifierStake": self.min_verifier_stake,
                "challengeBond": self.challenge_bond, "slashBps": self.slash_bps,
                "jurorShareBps": self.juror_share_bps, "unbondingPeriod": self.unbonding_period,
                "disputeTimeout": self.dispute_timeout}


@dataclass(frozen=True, kw_only=True)
class JuryParams:
    """IJuryArbiter.JuryParams; periods in seconds."""

    jury_size: int = 3
    commit_period: int = DAY
    reveal_period: int = DAY

    def to_abi(self) -> dict[str, int]:
        return {"jurySize": self.jury_size, "commitPeriod": self.commit_period, "revealPeriod": self.reveal_period}


@dataclass(frozen=True, kw_only=True)
class DeployConfig:
    market: MarketParams
    jury: JuryParams = field(default_factory=JuryParams)
    token: str | None = None  # an existing ERC-20; None deploys TestToken (local chains only)
    allow_test_token: bool = False  # deploy TestToken on a non-local chain (a worthless testnet token)
    token_name: str = "Crowdtrain Test Token"
    token_symbol: str = "CTT"
    token_decimals: int = 18
    explorer: str | None = None  # block explorer base URL for transaction links

    @classmethod
    def production(cls, decimals: int = 18, **overrides: Any) -> "DeployConfig":
        one = 10**decimals
        cfg = cls(market=MarketParams(min_worker_stake=100 * one, min_verifier_stake=100 * one,
                                      challenge_bond=10 * one), token_decimals=decimals)
        return replace(cfg, **overrides)

    @classmethod
    def local(cls, decimals: int = 18, **overrides: Any) -> "DeployConfig":
        one = 10**decimals
        cfg = cls(market=MarketParams(min_worker_stake=100 * one, min_verifier_stake=100 * one,
                                      challenge_bond=10 * one, unbonding_period=3600, dispute_timeout=900),
                  jury=JuryParams(commit_period=120, reveal_period=120), token_decimals=decimals)
        return replace(cfg, **overrides)

    @classmethod
    def for_chain(cls, chain_id: int, **overrides: Any) -> "DeployConfig":
        return (cls.local if chain_id in LOCAL_CHAIN_IDS else cls.production)(**overrides)

    def to_json(self) -> dict[str, Any]:
        # Amounts as decimal strings: JSON readers (JS, jq) lose precision past 2^53.
        return {"market": {k: str(v) for k, v in self.market.to_abi().items()},
                "jury": {k: str(v) for k, v in self.jury.to_abi().items()},
                "token": {"symbol": self.token_symbol, "decimals": self.token_decimals}}


def _record(tx: TxResult) -> ContractRecord:
    assert tx.contract_address is not None
    return ContractRecord(tx.contract_address, tx.block_number, tx.tx_hash)


def deploy_all(client: ChainClient, config: DeployConfig, *, mint_to: Iterable[str] = (),
               mint_amount: int | None = None, save: bool = True, save_dir: Any = None,
               log: Any = None) -> Deployment:
    """Deploy token (or use config.token), Market, JuryArbiter; wire; mint; write the record.

    `mint_to` (TestToken only) get `mint_amount` base units each (default 1,000,000 tokens).
    `log` is a callable(str) for progress lines (the CLI passes console.print).
    """
    say = log or (lambda _msg: None)
    local = client.chain_id in LOCAL_CHAIN_IDS
    contracts: dict[str, ContractRecord] = {}
    if config.token is None:
        if not (local or config.allow_test_token):
            raise DeployError(
                f"chain {client.chain_id} is not a local chain: pass --token ADDRESS (the ERC-20 to pay in), or "
                "--test-token to deploy TestToken, which ANYONE can mint (testnets only)")
        tx = client.deploy("TestToken", config.token_name, config.token_symbol, config.token_decimals)
        contracts["TestToken"] = _record(tx)
        token_addr = contracts["TestToken"].address
        say(f"TestToken deployed at {token_addr}")
    else:
        token_addr = config.token
        code = client.w3.eth.get_code(token_addr)  # type: ignore[arg-type]
        if len(code) == 0:
            raise DeployError(f"no contract at token address {token_addr} on chain {client.chain_id}")
        contracts["Token"] = ContractRecord(client.w3.to_checksum_address(token_addr), 0, None)
    tx = client.deploy("Market", token_addr, config.market.to_abi())
    contracts["Market"] = _record(tx)
    say(f"Market deployed at {contracts['Market'].address}")
    tx = client.deploy("JuryArbiter", contracts["Market"].address, config.jury.to_abi())
    contracts["JuryArbiter"] = _record(tx)
    say(f"JuryArbiter deployed at {contracts['JuryArbiter'].address}")
    dep = Deployment(client.chain_id, contracts, client.address, config.to_json(), config.explorer)
    client.use_deployment(dep)
    tx = client.market.set_arbiter(contracts["JuryArbiter"].address)
    say(f"Market.setArbiter(JuryArbiter) in tx {tx.tx_hash}")
    mint_to = list(mint_to)
    if mint_to:
        if "TestToken" not in contracts:
            raise DeployError("minting needs the TestToken; an existing token cannot be minted here")
        amount = mint_amount if mint_amount is not None else 1_000_000 * 10**config.token_decimals
        token = TokenApi(client, contracts["TestToken"].address)
        for a in mint_to:
            token.mint(a, amount)
        say(f"minted {amount / 10**config.token_decimals:,.0f} {config.token_symbol} to {len(mint_to)} accounts")
    if save:
        path = dep.save(save_dir)
        say(f"wrote {path}")
    return dep
