"""Deployment through the deploy module and the CLI, with keys from a keystore file and from the environment."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from typer.testing import CliRunner

from crowdtrain.cli import app
from deploy import DeployError
from deploy.deploy import DeployConfig, deploy_all
from deploy.localchain import LocalChain
from protocol.chain import ChainClient, Deployment
from protocol.chain.keys import PRIVATE_KEY_ENV, load_signer, write_keystore


def _funded_account(actors: Any) -> Any:
    """A fresh key (not a dev account) with 1 ETH for gas."""
    acct = Account.create()
    actors.deployer.send(acct.address, b"", value=10**18)
    return acct


def _check_deployment(dep: Deployment, path: Path, rpc_url: str, deployer: str) -> None:
    assert path.is_file()
    data = json.loads(path.read_text())
    assert data["chainId"] == 31337 and data["deployer"] == deployer
    assert set(data["contracts"]) == {"TestToken", "Market", "JuryArbiter"}
    assert data["params"]["market"]["minWorkerStake"] == str(100 * 10**18)
    assert Deployment.load(path) == dep
    c = ChainClient(rpc_url, deployment=Deployment.load(path))
    for rec in dep.contracts.values():
        assert len(c.w3.eth.get_code(rec.address)) > 0  # type: ignore[arg-type]
        assert c.w3.eth.get_transaction_receipt(rec.tx_hash)["blockNumber"] == rec.block_number  # type: ignore[arg-type]
    assert c.market.arbiter_address() == dep.address("JuryArbiter")
    assert c.market.token_address() == dep.address("TestToken")
    assert c.jury.market_address() == dep.address("Market")


def test_deploy_with_keystore_key(actors: Any, tmp_path: Path) -> None:
    acct = _funded_account(actors)
    ks = write_keystore(acct, tmp_path / "deployer.json", "correct horse", kdf="pbkdf2", iterations=2)
    (tmp_path / "pw").write_text("correct horse\n")
    signer = load_signer(keystore=ks, password_file=tmp_path / "pw")
    client = ChainClient(actors.net.rpc_url, signer)
    dep = deploy_all(client, DeployConfig.local(), mint_to=[acct.address], mint_amount=7, save_dir=tmp_path / "out")
    _check_deployment(dep, tmp_path / "out" / "31337.json", actors.net.rpc_url, acct.address)
    assert client.token.balance_of(acct.address) == 7


def test_cli_deploy_with_env_key(actors: Any, tmp_path: Path) -> None:
    acct = _funded_account(actors)
    key = "0x" + bytes(acct.key).hex()
    res = CliRunner().invoke(app, ["chain", "deploy", "--rpc-url", actors.net.rpc_url, "--out-dir", str(tmp_path),
                                   "--challenge-bond", "3", "--jury-size", "5"], env={PRIVATE_KEY_ENV: key})
    assert res.exit_code == 0, res.output
    assert key[2:] not in res.output and acct.address in res.output  # the key itself is never printed
    dep = Deployment.load(tmp_path / "31337.json")
    _check_deployment(dep, tmp_path / "31337.json", actors.net.rpc_url, acct.address)
    c = ChainClient(actors.net.rpc_url, deployment=dep)
    assert c.market.params()["challengeBond"] == 3 * 10**18 and c.jury.params()["jurySize"] == 5


def test_cli_deploy_without_key_or_node_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRIVATE_KEY_ENV, raising=False)
    res = CliRunner().invoke(app, ["chain", "deploy", "--rpc-url", "http://127.0.0.1:9", "--out-dir", str(tmp_path)])
    assert res.exit_code == 1 and "--keystore FILE" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["chain", "deploy", "--rpc-url", "http://127.0.0.1:9", "--connect-deadline", "0.3"],
                             env={PRIVATE_KEY_ENV: "0x" + "11" * 32})
    assert res.exit_code == 1 and "cannot reach the RPC endpoint http://127.0.0.1:9" in res.output


def test_non_local_chain_needs_a_token(tmp_path: Path) -> None:
    with LocalChain(chain_id=11155111, accounts=1) as other:  # looks like Sepolia to the deployer
        client = ChainClient(other.rpc_url, other.dev_accounts[0].account)
        with pytest.raises(DeployError, match="not a local chain: pass --token ADDRESS"):
            deploy_all(client, DeployConfig.for_chain(client.chain_id), save_dir=tmp_path)
        token = client.deploy("TestToken", "Existing", "EX", 6).contract_address
        assert token is not None
        cfg = DeployConfig.for_chain(client.chain_id, decimals=6, token=token)
        assert cfg.market.unbonding_period == 7 * 86_400  # production defaults off local chains
        dep = deploy_all(client, cfg, save_dir=tmp_path)
        assert set(dep.contracts) == {"Token", "Market", "JuryArbiter"} and dep.contracts["Token"].tx_hash is None
        assert ChainClient(other.rpc_url, deployment=Deployment.for_chain(11155111, tmp_path)).market.params()[
            "minWorkerStake"] == 100 * 10**6
