"""The agents' commands as users run them (subprocesses of the `crowdtrain` CLI): pre-flight
checks that fail then pass, staking from a keystore, reverts shown with the contract's
own error and what to do, status views; the private key never appears in any output."""
from __future__ import annotations

from protocol.chain.keys import write_keystore
from tests.agents.harness import run_cli


def test_worker_check_stake_unstake_and_readable_errors(chain, coord, deployments, tmp_path):
    acct = chain.dev_accounts[3]
    ks = write_keystore(acct.account, tmp_path / "worker.json", "pw", kdf="pbkdf2", iterations=1000)
    pw = tmp_path / "pw.txt"
    pw.write_text("pw\n")
    base = ["--rpc-url", chain.rpc_url, "--deployment", str(deployments / "31337.json")]
    key = ["--keystore", str(ks), "--password-file", str(pw)]
    outputs = []

    def cli(*args: str, ok: bool = True) -> str:
        r = run_cli(list(args), env={"CROWDTRAIN_PRIVATE_KEY": ""})
        outputs.append(r.stdout)
        assert (r.returncode == 0) == ok, r.stdout
        return r.stdout

    spec = "examples/tiny-mlp.toml"
    out = cli("worker", "check", "--spec", spec, "--coordinator-url", coord.url, *base, *key,
              "--data-dir", str(tmp_path / "w"), ok=False)
    assert "stake" in out and "FAIL" in out and "crowdtrain worker stake" in out
    assert "33,152 parameters" in out and "host memory" in out and "coordinator" in out
    out = cli("worker", "stake", *base, *key)
    assert "staked 100 CTT" in out and "Staked(" in out and "gas" in out
    out = cli("worker", "check", "--spec", spec, "--coordinator-url", coord.url, *base, *key,
              "--data-dir", str(tmp_path / "w"))
    assert "FAIL" not in out
    out = cli("worker", "stake", "99999999999", *base, *key, ok=False)
    assert "fund the account first" in out
    out = cli("worker", "unstake", *base, *key)
    assert "requested unbonding of 100 CTT" in out and "--withdraw" in out
    out = cli("worker", "unstake", "--withdraw", *base, *key, ok=False)
    assert "MarketStakeLocked(" in out and "unlockAt=" in out  # the contract's error, with its arguments
    out = cli("job", "close", "1", *base, *key, ok=False)
    assert "MarketUnknownJob(jobId=1)" in out
    key_hex = acct.private_key[2:]
    assert all(key_hex not in o and key_hex.upper() not in o for o in outputs)


def test_verifier_status_and_stake(chain, deployments, tmp_path):
    base = ["--rpc-url", chain.rpc_url, "--deployment", str(deployments / "31337.json")]
    env = {"CROWDTRAIN_PRIVATE_KEY": chain.dev_accounts[5].private_key}
    r = run_cli(["verifier", "stake", *base], env=env)
    assert r.returncode == 0 and "staked 100 CTT" in r.stdout and "eligible for juries: true" in r.stdout, r.stdout
    r = run_cli(["verifier", "status", *base, "--data-dir", str(tmp_path / "v")], env=env)
    assert r.returncode == 0, r.stdout
    assert "active stake 100 CTT" in r.stdout and "jury pool: yes" in r.stdout and "audits: none yet" in r.stdout
    assert chain.dev_accounts[5].private_key[2:] not in r.stdout
