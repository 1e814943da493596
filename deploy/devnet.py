"""A local chain with the market deployed and the dev accounts funded: one call, one handle.

    with start_local_market() as net:        # anvil + TestToken + Market + JuryArbiter
        owner = net.client(0)                # ChainClient signing as dev account 0
        net.rpc_url, net.deployment, net.dev_accounts

Used by `crowdtrain chain up`, `crowdtrain demo` and the tests; the end-to-end demo builds
on the same handle. The record is written to deploy/deployments/31337.json unless
`save=False` (tests write to a temporary directory instead).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from deploy.deploy import DeployConfig, deploy_all
from deploy.localchain import DevAccount, LocalChain
from protocol.chain.client import ChainClient
from protocol.chain.deployment import Deployment


@dataclass
class LocalMarket:
    chain: LocalChain
    deployment: Deployment
    config: DeployConfig

    @property
    def rpc_url(self) -> str:
        return self.chain.rpc_url

    @property
    def dev_accounts(self) -> list[DevAccount]:
        return self.chain.dev_accounts

    def client(self, who: int | DevAccount) -> ChainClient:
        """A client signing as dev account `who` (index or DevAccount), bound to this deployment."""
        acct = self.dev_accounts[who] if isinstance(who, int) else who
        return ChainClient(self.rpc_url, acct.account, deployment=self.deployment)

    def balances(self) -> list[dict[str, Any]]:
        """Per dev account: address, ether (wei) and payment-token (base units) balances."""
        c = ChainClient(self.rpc_url, deployment=self.deployment)
        tok = c.token
        return [{"index": a.index, "address": a.address, "eth": c.eth_balance(a.address),
                 "token": tok.balance_of(a.address)} for a in self.dev_accounts]

    def stop(self) -> None:
        self.chain.stop()

    def __enter__(self) -> "LocalMarket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_local_market(*, port: int = 0, accounts: int = 10, config: DeployConfig | None = None,
                       mint_amount: int | None = None, save: bool = True, save_dir: Path | None = None,
                       log: Callable[[str], None] | None = None) -> LocalMarket:
    """Start anvil, deploy with dev account 0, mint test tokens to every dev account."""
    chain = LocalChain(port=port, accounts=accounts).start()
    try:
        cfg = config or DeployConfig.local()
        client = ChainClient(chain.rpc_url, chain.dev_accounts[0].account)
        dep = deploy_all(client, cfg, mint_to=[a.address for a in chain.dev_accounts], mint_amount=mint_amount,
                         save=save, save_dir=save_dir, log=log)
    except BaseException:
        chain.stop()
        raise
    return LocalMarket(chain, dep, cfg)
