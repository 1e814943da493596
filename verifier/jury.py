"""Jury duty: when drawn for a dispute, replay the disputed step and vote by commit-reveal.

1. `JurorsDrawn(disputeId, jurors, commitDeadline, revealDeadline)` names this account:
   read the challenge's evidence from the market's `ChallengeEvidence` event (same
   transaction), fetch the worker's trace and snapshots (their hashes are bound by the
   signed trace root on chain) and the round's input, and rule with training's juror
   check (`training.jury.judge`): 2 = challenger right, 1 = worker right. A step i = H-1 is
   also checked as an `output` fault. Data that cannot be obtained or does not match the
   signed root means no vote (an abstention costs nothing; a tie rules 0).
2. Commit keccak256(abi.encode(disputeId, juror, choice, salt)) with a fresh random salt,
   the salt written to the state file *before* the transaction is sent.
3. Reveal once every juror committed or the commit deadline passed, before the reveal
   deadline; then (keeper) `resolve` once resolvable and withdraw rewards and payouts.
Times are the chain's (unix seconds); a call made a little early reverts and is retried.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from protocol.agentkit import transact_due
from protocol.api_client import ApiError, ApiServiceUnavailable, ApiUnavailable
from protocol.chain import ChainError, ContractRevert, RpcUnavailable
from protocol.chain.client import ChainClient, DecodedEvent
from protocol.chain.jury import new_salt
from protocol.hashing import to_hex
from training import TrainingError
from training.determinism import set_determinism
from training.evidence import Claim, Evidence
from training.jury import CHALLENGER_RIGHT, WORKER_RIGHT, judge
from verifier import AuditInputError
from verifier.inputs import Fetcher
from verifier.settings import VerifierSettings
from verifier.state import VerifierState

Say = Callable[[str], None]
# outages, not verdicts: judging is retried on the next pass instead of abstaining
TRANSIENT = (ApiUnavailable, ApiServiceUnavailable, RpcUnavailable)


class JuryDuty:
    def __init__(self, settings: VerifierSettings, chain: ChainClient, fetcher: Fetcher, state: VerifierState,
                 say: Say = lambda _m: None) -> None:
        self.settings, self.chain, self.fetcher, self.state, self.say = settings, chain, fetcher, state, say
        self.me = chain.address

    def now(self) -> int:
        return max(self.chain.timestamp(), int(time.time()))

    # -- drawn ---------------------------------------------------------------------------
    def on_drawn(self, ev: DecodedEvent) -> None:
        """Handle a JurorsDrawn event: decide and commit if this account was drawn."""
        arb_id = int(ev.args["disputeId"])
        if self.me not in [str(j) for j in ev.args["jurors"]] or self.state.vote(arb_id) is not None:
            return
        record: dict[str, Any] = {"commit_deadline": int(ev.args["commitDeadline"]),
                                  "reveal_deadline": int(ev.args["revealDeadline"]), "drawn_tx": ev.tx_hash}
        if self.chain.jury.get_dispute(arb_id)["resolved"] or self.now() >= record["commit_deadline"]:
            record["closed"] = "drawn, but the commit phase was over when this verifier read the event"
            self.state.votes[str(arb_id)] = record
            self.state.save()
            return
        try:
            choice, reason, where = self.decide(arb_id, ev.tx_hash)
        except TRANSIENT:
            raise  # the event is read again on the next pass
        except (AuditInputError, ApiError, TrainingError, ChainError) as e:
            choice, reason, where = None, f"could not judge: {e}", ""
        record.update(choice=choice, reason=reason, where=where)
        if choice is None:
            record["closed"] = "abstained"
            self.state.votes[str(arb_id)] = record
            self.state.save()
            self.say(f"jury {arb_id}: abstaining ({reason})")
            return
        record["salt"] = "0x" + new_salt().hex()
        self.state.votes[str(arb_id)] = record
        self.state.save()  # the salt is on disk before the commitment is on chain
        self.commit(arb_id)

    def decide(self, arb_id: int, tx_hash: str) -> tuple[int | None, str, str]:
        """(choice, reason, 'job/round/unit step i') for arbiter dispute `arb_id`."""
        market_id = self.chain.market.dispute_id_of(arb_id)
        cev = self._challenge_evidence(market_id, tx_hash)
        leaf = cev["leaf"]
        job_id, round, unit, step = int(leaf["jobId"]), int(leaf["round"]), int(leaf["unit"]), int(cev["step"])
        where = f"job {job_id} round {round} unit {unit} step {step}"
        settled = self.fetcher.api.settlement(job_id, round)
        sl = next((x for x in settled.leaves if x.unit == unit), None)
        if sl is None or sl.result_hash != to_hex(bytes(leaf["resultHash"])):
            return None, f"the coordinator has no result for the disputed leaf ({where})", where
        root = bytes(self.chain.market.get_round(job_id, round)["root"])
        cu = self.fetcher.committed_unit(job_id, round, root, sl)
        data = self.fetcher.unit_data(cu)
        claim = Claim(round, unit, bytes(cev["inputHash"]), bytes(cev["outputHash"]), bytes(cev["traceRoot"]))
        if data.trace.root != claim.trace_root:
            return None, "the worker's trace does not hash to the signed trace root", where
        spec = data.spec
        H, k = spec.inner_steps, spec.verification.snapshot_interval
        anchor = (step // k) * k
        device = spec.device if self.settings.device == "auto" else self.settings.device
        set_determinism(spec.seed, spec.threads, device)
        kinds = ["step", "output"] if step == H - 1 else ["step"]
        reasons = []
        for kind in kinds:
            ev = Evidence.build(kind, claim, data.trace, step, anchor, reason="")  # type: ignore[arg-type]
            nxt = data.snapshots(step + 1) if (step + 1) % k == 0 else None
            r = judge(spec, data.dataset, ev, global_ckpt=data.global_ckpt, slot_state=data.slot_state,
                      anchor_snapshot=data.snapshots(anchor) if anchor else None, output_blob=data.output_blob,
                      final_snapshot=data.snapshots(H), next_snapshot=nxt, device=device)
            reasons.append(r.reason)
            if r.ruling == CHALLENGER_RIGHT:
                return CHALLENGER_RIGHT, r.reason, where
        return WORKER_RIGHT, "; ".join(reasons), where

    def _challenge_evidence(self, market_id: int, tx_hash: str) -> dict[str, Any]:
        rc = self.chain.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        for e in self.chain.decode_logs(rc["logs"]):
            if e.name == "ChallengeEvidence" and int(e.args["disputeId"]) == market_id:
                return e.args["evidence"]
        for e in self.chain.market.events("ChallengeEvidence"):  # not in that transaction: scan
            if int(e.args["disputeId"]) == market_id:
                return e.args["evidence"]
        raise AuditInputError(f"no ChallengeEvidence event for market dispute {market_id}")

    # -- commit / reveal / resolve -----------------------------------------------------------
    def commit(self, arb_id: int) -> None:
        v = self.state.votes[str(arb_id)]
        try:
            tx = self.chain.jury.commit_vote(arb_id, int(v["choice"]), bytes.fromhex(v["salt"][2:]))
        except ContractRevert as e:
            if e.error_name in ("JuryCommitClosed", "JuryAlreadyCommitted", "JuryNotJuror"):
                v["closed" if e.error_name != "JuryAlreadyCommitted" else "commit_note"] = str(e)
                self.state.save()
            self.say(f"jury {arb_id}: commit refused: {e}")
            return
        v["commit_tx"] = tx.tx_hash
        self.state.save()
        self.say(f"jury {arb_id} ({v.get('where')}): committed vote {v['choice']} "
                 f"({'challenger' if v['choice'] == CHALLENGER_RIGHT else 'worker'} right: {v['reason']}) in tx "
                 f"{tx.tx_hash}")

    def tick(self) -> None:
        """Commit what was decided but not sent, reveal what can be revealed, resolve (keeper)."""
        now = None
        for arb_id, v in self.state.open_votes():
            d = self.chain.jury.get_dispute(arb_id)
            if d["resolved"]:
                v["closed"] = f"resolved with ruling {d['ruling']} before this vote was revealed"
                self.state.save()
                continue
            if not v.get("commit_tx") and not v.get("commit_note"):
                self.commit(arb_id)
                continue
            now = now or self.now()
            early = now < int(d["commitDeadline"]) and int(d["commits"]) < int(d["numJurors"])
            if early:
                continue
            if now >= int(d["revealDeadline"]):
                v["closed"] = "reveal deadline passed before the vote was revealed"
                self.state.save()
                continue
            try:
                tx = transact_due(self.chain.jury, "revealVote", arb_id, int(v["choice"]),
                                  bytes.fromhex(v["salt"][2:]))
            except ContractRevert as e:
                if e.error_name in ("JuryAlreadyRevealed", "JuryRevealClosed", "JuryCommitmentMismatch",
                                    "JuryNotCommitted"):
                    v["closed"] = str(e)
                    self.state.save()
                self.say(f"jury {arb_id}: reveal refused: {e}")
                continue
            v["revealed_tx"] = tx.tx_hash
            self.state.save()
            self.say(f"jury {arb_id}: revealed vote {v['choice']} in tx {tx.tx_hash}")
        if self.settings.keeper:
            self.resolve_ready()

    def resolve_ready(self) -> None:
        """`resolve` every unresolved dispute this account voted in or opened, once allowed."""
        mine = {int(k) for k in self.state.votes}
        mine |= {int(a["dispute_arbiter"]) for a in self.state.audits.values() if a.get("dispute_arbiter")}
        now = None
        for arb_id in sorted(mine):
            d = self.chain.jury.get_dispute(arb_id)
            if d["resolved"]:
                continue
            now = now or self.now()
            ready = (now >= int(d["revealDeadline"]) or int(d["reveals"]) == int(d["numJurors"])
                     or (now >= int(d["commitDeadline"]) and int(d["commits"]) == 0))
            if not ready:
                continue
            try:
                tx = transact_due(self.chain.jury, "resolve", arb_id)
            except ChainError as e:  # another juror's resolve may have been mined first
                if not self.chain.jury.get_dispute(arb_id)["resolved"]:
                    self.say(f"jury {arb_id}: resolve refused: {e}")
                continue
            r = tx.event("JuryResolved").args
            self.say(f"jury {arb_id}: resolved with ruling {r['ruling']} ({r['votesWorker']} worker / "
                     f"{r['votesChallenger']} challenger votes) in tx {tx.tx_hash}")
