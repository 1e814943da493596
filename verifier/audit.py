"""Auditing committed rounds: replay sampled segments of each unit, challenge provable faults.

For every leaf of a committed round (checked against the on-chain root, verifier/inputs.py):
1. draw the sampling seed with `os.urandom(32)` *now*, after the commitment is on chain, so
   no worker could have known which segments get replayed when it signed;
2. `training.replay.verify_unit` replays the sampled segments (all of them with
   `audit_segments = 0`), the input hash and the output;
3. on a fault with evidence, turn it into the Market's `Evidence` (round leaf + proof, the
   signed WorkResult fields and the worker's signature, the disputed step's trace leaves
   with their proofs against the signed trace root) and `challenge` it while the round's
   challenge window is open. A leaf someone else already challenged is not challenged twice.
Each finding is written to the state file, so a restart never audits a unit twice.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from protocol.api_client import ApiError
from protocol.chain import ChainError, ContractRevert, Role
from protocol.chain.client import ChainClient
from protocol.chain.types import Evidence as ChainEvidence
from protocol.chain.types import TraceLeaf as ChainTraceLeaf
from protocol.hashing import to_hex
from training import TrainingError
from training.determinism import set_determinism
from training.evidence import Evidence
from training.replay import sample_segments, verify_unit
from training.trace import TraceLeaf
from verifier import AuditInputError
from verifier.inputs import CommittedUnit, Fetcher
from verifier.settings import VerifierSettings
from verifier.state import VerifierState

Say = Callable[[str], None]


@dataclass(frozen=True)
class AuditOutcome:
    job_id: int
    round: int
    unit: int
    worker: str
    verdict: str                   # ok | fault | unprovable | error | late
    detail: str
    segments: tuple[int, ...] = ()
    dispute_id: int | None = None          # the market's dispute id
    arbiter_dispute_id: int | None = None  # the JuryArbiter's id for it
    tx: str | None = None
    seconds: float = 0.0


def chain_trace_leaf(lf: TraceLeaf) -> ChainTraceLeaf:
    return ChainTraceLeaf(step=lf.step, batch_digest=lf.batch_digest, state_digest=lf.state_digest,
                          loss_bits=lf.loss_bits)


def chain_evidence(cu: CommittedUnit, ev: Evidence) -> ChainEvidence:
    """The Market's Evidence struct for training evidence `ev` against committed unit `cu`."""
    return ChainEvidence(leaf=cu.leaf, leaf_proof=list(cu.proof), result=cu.work_result(), signature=cu.signature,
                         step=ev.step, cur=chain_trace_leaf(ev.leaf), cur_proof=list(ev.proof),
                         prev=chain_trace_leaf(ev.prev_leaf) if ev.prev_leaf is not None else None,
                         prev_proof=list(ev.prev_proof))


class Auditor:
    def __init__(self, settings: VerifierSettings, chain: ChainClient, fetcher: Fetcher, state: VerifierState,
                 say: Say = lambda _m: None) -> None:
        self.settings, self.chain, self.fetcher, self.state, self.say = settings, chain, fetcher, state, say

    def audit_round(self, job_id: int, round: int) -> list[AuditOutcome]:
        """Audit every leaf of a committed round; raises ApiError/ChainError to retry later."""
        m = self.chain.market
        onchain = m.get_round(job_id, round)
        root = bytes(onchain["root"])
        settled = self.fetcher.api.settlement(job_id, round)
        if settled.root != to_hex(root):
            raise AuditInputError(f"coordinator lists root {settled.root} for job {job_id} round {round}, the chain "
                                  f"has {to_hex(root)}")
        out = []
        for sl in settled.leaves:
            key = self.state.unit_key(job_id, round, sl.unit)
            if key in self.state.audits:
                continue
            outcome = self._audit_leaf(job_id, round, root, sl, int(onchain["challengeEnd"]))
            self.state.audits[key] = {"worker": outcome.worker, "verdict": outcome.verdict, "detail": outcome.detail,
                                      "segments": list(outcome.segments), "dispute": outcome.dispute_id,
                                      "dispute_arbiter": outcome.arbiter_dispute_id,
                                      "tx": outcome.tx, "at": time.time()}
            self.state.save()
            if self.fetcher.input_note:
                self.say(f"warning: {self.fetcher.input_note}")
                self.fetcher.input_note = ""
            self.say(f"audit job {job_id} round {round} unit {sl.unit} ({outcome.worker}): {outcome.verdict}"
                     f" - {outcome.detail}" + (f" [dispute {outcome.dispute_id}, tx {outcome.tx}]"
                                               if outcome.dispute_id else ""))
            out.append(outcome)
        return out

    def _segments(self, seed: bytes, n: int) -> list[int] | None:
        want = self.settings.audit_segments
        if want is None:
            return None  # verify_unit samples the spec's m from `seed`
        if want == 0:
            return list(range(n))
        return sample_segments(seed, n, want)

    def _audit_leaf(self, job_id: int, round: int, root: bytes, sl, challenge_end: int) -> AuditOutcome:
        t0 = time.perf_counter()
        base = dict(job_id=job_id, round=round, unit=sl.unit, worker=sl.worker)
        try:
            cu = self.fetcher.committed_unit(job_id, round, root, sl)
            data = self.fetcher.unit_data(cu)
        except (AuditInputError, ApiError, TrainingError) as e:
            return AuditOutcome(**base, verdict="error", detail=str(e), seconds=time.perf_counter() - t0)
        spec = data.spec
        device = spec.device if self.settings.device == "auto" else self.settings.device
        set_determinism(spec.seed, spec.threads, device)
        seed = os.urandom(32)  # drawn after the round's commitment was seen on chain
        v = verify_unit(spec, data.dataset, cu.claim(), data.trace, data.snapshots, data.output_blob,
                        data.global_ckpt, data.slot_state, sample_seed=seed,
                        segments=self._segments(seed, spec.num_segments), device=device)
        took = time.perf_counter() - t0
        if v.accepted:
            return AuditOutcome(**base, verdict="ok", detail=f"{len(v.sampled)} segment(s) replayed, all match",
                                segments=tuple(v.sampled), seconds=took)
        if v.evidence is None:
            return AuditOutcome(**base, verdict="unprovable", detail="; ".join(v.reasons), segments=tuple(v.sampled),
                                seconds=took)
        return self._challenge(cu, v.evidence, challenge_end, base, tuple(v.sampled), took)

    def _now(self) -> int:
        return max(self.chain.timestamp(), int(time.time()))

    def _challenge(self, cu: CommittedUnit, ev: Evidence, challenge_end: int, base: dict, sampled: tuple[int, ...],
                   took: float) -> AuditOutcome:
        detail = f"{ev.kind} fault at step {ev.step}: {ev.reason}"
        now = self._now()
        if now >= challenge_end:
            return AuditOutcome(**base, verdict="late", detail=f"{detail}; the challenge window closed at "
                                f"{challenge_end} (now {now})", segments=sampled, seconds=took)
        m = self.chain.market
        need = m.min_stake(Role.VERIFIER)
        have = int(m.get_stake(self.chain.address, Role.VERIFIER)["active"])
        if have < need:
            return AuditOutcome(**base, verdict="fault", detail=f"{detail}; NOT challenged: active verifier stake {have} "
                                f"< {need} (`crowdtrain verifier stake`)", segments=sampled, seconds=took)
        try:
            dispute_id, tx = m.challenge(chain_evidence(cu, ev))
        except ContractRevert as e:
            if e.error_name == "MarketLeafNotChallengeable":
                return AuditOutcome(**base, verdict="fault", detail=f"{detail}; already challenged by someone else",
                                    segments=sampled, seconds=took)
            return AuditOutcome(**base, verdict="fault", detail=f"{detail}; challenge refused: {e}", segments=sampled,
                                seconds=took)
        except ChainError as e:
            return AuditOutcome(**base, verdict="fault", detail=f"{detail}; challenge failed: {e}", segments=sampled,
                                seconds=took)
        return AuditOutcome(**base, verdict="fault", detail=f"{detail}; challenged with bond "
                            f"{m.params()['challengeBond']} (gas {tx.gas_used:,})", segments=sampled,
                            dispute_id=dispute_id, arbiter_dispute_id=int(m.get_dispute(dispute_id)["arbiterDisputeId"]),
                            tx=tx.tx_hash, seconds=took)
