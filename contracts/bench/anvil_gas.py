"""Cross-check of the forge gas figures against real transaction receipts on anvil.

    .venv/bin/python contracts/bench/anvil_gas.py

Deploys TestToken, Market and JuryArbiter from protocol/artifacts on a throwaway anvil,
commits rounds of 10 and 10,000 units and claims two leaves of a 1,000-leaf round (proof
depth 10, fresh worker addresses), and prints each receipt's gasUsed. Prints figures only;
the bars are asserted by contracts/test/Gas.t.sol.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from web3 import Web3  # noqa: E402

from protocol.hashing import keccak256  # noqa: E402
from protocol.merkle import MerkleTree, round_leaf  # noqa: E402

UNIT = 10**5  # reward per unit, token base units
DAY = 86_400


def main() -> None:
    anvil = subprocess.Popen([str(ROOT / ".bin/anvil"), "--host", "127.0.0.1", "--port", "0"],
                             stdout=subprocess.PIPE, text=True)
    try:
        port = None
        for line in anvil.stdout:  # type: ignore[union-attr]
            m = re.search(r"Listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}"))
        deployer, coordinator = w3.eth.accounts[0], w3.eth.accounts[1]

        def deploy(name: str, *args: object):
            art = json.loads((ROOT / "protocol/artifacts" / f"{name}.json").read_text())
            c = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
            r = w3.eth.wait_for_transaction_receipt(c.constructor(*args).transact({"from": deployer}))
            return w3.eth.contract(address=r.contractAddress, abi=art["abi"])

        def send(fn, sender: str = deployer) -> int:
            r = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))
            assert r.status == 1
            return int(r.gasUsed)

        token = deploy("TestToken", "Crowdtrain Test", "CTT", 6)
        market = deploy("Market", token.address, (100, 100, 10, 5000, 1000, 7 * DAY, 3 * DAY))
        jury = deploy("JuryArbiter", market.address, (3, 3600, 3600))
        send(market.functions.setArbiter(jury.address))
        send(token.functions.mint(deployer, 10**15))
        send(token.functions.approve(market.address, 2**256 - 1))
        deadline = w3.eth.get_block("latest")["timestamp"] + 10 * DAY
        for _ in range(3):  # jobs 1..3, budgets large enough that no commit empties the escrow
            send(market.functions.postJob(b"\x01" * 32, 10**10, UNIT, 20_000, coordinator, 3600, deadline))

        n = 1000
        workers = [Account.create().address for _ in range(n)]
        results = [keccak256(k.to_bytes(32, "big")) for k in range(n)]
        tree = MerkleTree.build([round_leaf(job_id=1, round=0, unit=k, worker=workers[k], amount=UNIT,
                                            result_hash=results[k]) for k in range(n)])
        print(f"commitRound gasUsed, 10 units:      {send(market.functions.commitRound(2, 0, tree.root, 10 * UNIT, 10), coordinator)}")
        print(f"commitRound gasUsed, 10,000 units:  {send(market.functions.commitRound(3, 0, tree.root, 10_000 * UNIT, 10_000), coordinator)}")
        print(f"commitRound gasUsed, 1,000 units:   {send(market.functions.commitRound(1, 0, tree.root, n * UNIT, n), coordinator)}")
        w3.provider.make_request("evm_increaseTime", [3601])
        w3.provider.make_request("evm_mine", [])
        send(market.functions.finalizeRound(1, 0))
        for k in (513, 700):
            proof = tree.proof(k)
            gas = send(market.functions.claim(1, 0, k, workers[k], UNIT, results[k], proof))
            print(f"claim gasUsed, unit {k}, proof depth {len(proof)}, worker holding no tokens: {gas}")
    finally:
        anvil.terminate()
        anvil.wait()


if __name__ == "__main__":
    main()
