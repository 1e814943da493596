"""Python side of the contracts: JSON-RPC client, typed reverts, ABIs, keys, deployments.

    from protocol.chain import ChainClient, Role
    c = ChainClient(rpc_url, signer)          # c.token / c.market / c.jury once a deployment is bound

See client.py (transactions), errors.py (typed reverts), keys.py (keystores, env keys),
deployment.py (deploy/deployments/<chainId>.json), market.py / jury.py / token.py.
"""
from protocol.chain.client import ChainClient, DecodedEvent, TxResult
from protocol.chain.deployment import ContractRecord, Deployment
from protocol.chain.errors import (
    ChainError,
    ContractRevert,
    DeploymentError,
    KeyLoadError,
    RpcUnavailable,
    TransactionReverted,
    error_class,
)
from protocol.chain.types import (
    DisputeStatus,
    Evidence,
    JobStatus,
    LeafStatus,
    Role,
    RoundLeaf,
    RoundStatus,
    Ruling,
    TraceLeaf,
)

__all__ = [
    "ChainClient", "DecodedEvent", "TxResult", "ContractRecord", "Deployment", "ChainError", "ContractRevert",
    "DeploymentError", "KeyLoadError", "RpcUnavailable", "TransactionReverted", "error_class", "DisputeStatus",
    "Evidence", "JobStatus", "LeafStatus", "Role", "RoundLeaf", "RoundStatus", "Ruling", "TraceLeaf",
]
