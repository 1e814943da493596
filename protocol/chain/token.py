"""ERC-20 payment token facade (`TestToken` on local chains, any ERC-20 elsewhere).

Amounts are in the token's smallest unit (TestToken has 18 decimals: 1 token = 10**18).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from protocol.chain.contract import BoundContract

if TYPE_CHECKING:
    from protocol.chain.client import ChainClient, TxResult


class TokenApi(BoundContract):
    def __init__(self, client: "ChainClient", address: str, *, artifact: str = "TestToken") -> None:
        super().__init__(client, artifact, address)

    def balance_of(self, account: str) -> int:
        return int(self.call("balanceOf", account))

    def allowance(self, owner: str, spender: str) -> int:
        return int(self.call("allowance", owner, spender))

    def total_supply(self) -> int:
        return int(self.call("totalSupply"))

    def decimals(self) -> int:
        return int(self.call("decimals"))

    def symbol(self) -> str:
        return str(self.call("symbol"))

    def approve(self, spender: str, amount: int) -> "TxResult":
        return self.transact("approve", spender, amount)

    def transfer(self, to: str, amount: int) -> "TxResult":
        return self.transact("transfer", to, amount)

    def mint(self, to: str, amount: int) -> "TxResult":
        """TestToken only: create `amount` tokens for `to` (see the contract for who may mint)."""
        return self.transact("mint", to, amount)

    def ensure_allowance(self, spender: str, amount: int) -> "TxResult | None":
        """Approve `spender` for `amount` unless the current allowance already covers it."""
        if self.allowance(self.client.address, spender) >= amount:
            return None
        return self.approve(spender, amount)
