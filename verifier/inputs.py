"""Everything a replay of one committed unit needs, fetched and checked.

Trust model: the money is bound by the chain, the bytes by their hashes. A committed
unit is accepted for audit only when its round leaf hashes (protocol.merkle) to the leaf
the coordinator lists, the leaf's proof reaches the root *committed on chain*, and the
result's signed fields re-derive the leaf's `resultHash` (EIP-712) with a signature that
recovers to the leaf's worker. Blobs come through the hash-checked cache.

The round's input is not taken on the coordinator's word either: G_0 is built from the
spec's seed, and G_{r+1} and the slot states are recomputed with the outer step over the
output blobs of round r's committed leaves (each bound to a worker's signature), exactly
as the coordinator must have aggregated them. A coordinator serving another G_r than this
could otherwise make honest work look faulty to verifiers and jurors alike; its
`GET /units/<id>/inputs` answer is only compared (`input_note`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from protocol.api_client import CoordinatorApi
from protocol.blobcache import BlobCache
from protocol.chain.types import RoundLeaf
from protocol.eip712 import WorkResult, recover_work_result_signer, work_result_digest
from protocol.hashing import from_hex, sha256, to_hex
from protocol.merkle import verify
from protocol.spec import JobSpec, spec_from_json
from protocol.wire import ResultView, SettledLeaf
from training.data import Dataset, load_dataset
from training.evidence import Claim
from training.outer import initial_global_blob, outer_step, slot_state_from_output
from training.trace import Trace, TraceError
from verifier import AuditInputError


@dataclass(frozen=True)
class CommittedUnit:
    """One leaf of a committed round, checked against the on-chain root."""

    job_id: int
    round: int
    leaf: RoundLeaf
    proof: tuple[bytes, ...]
    result: ResultView
    unit_id: int

    @property
    def unit(self) -> int:
        return self.leaf.unit

    @property
    def signature(self) -> bytes:
        return bytes.fromhex(self.result.signature[2:])

    def work_result(self) -> WorkResult:
        r = self.result
        return WorkResult(job_id=self.job_id, round=self.round, unit=self.leaf.unit, input_hash=from_hex(r.input_hash),
                          output_hash=from_hex(r.output_hash), trace_root=from_hex(r.trace_root))

    def claim(self) -> Claim:
        r = self.result
        return Claim(self.round, self.leaf.unit, from_hex(r.input_hash), from_hex(r.output_hash), from_hex(r.trace_root))


@dataclass(frozen=True)
class RoundInputs:
    global_ckpt: bytes                 # G_r blob
    slots: dict[int, bytes]            # slot k -> its optimizer state blob entering round r (absent: fresh)
    momentum: bytes | None             # outer momentum blob entering round r (None before the first outer step)


@dataclass(frozen=True)
class UnitData:
    spec: JobSpec
    dataset: Dataset
    trace: Trace
    snapshots: Callable[[int], bytes | None]   # step s (multiple of k) -> S_s blob, None if unavailable
    output_blob: bytes
    global_ckpt: bytes
    slot_state: bytes | None


class Fetcher:
    def __init__(self, api: CoordinatorApi, cache: BlobCache, *, chain_id: int, market: str,
                 round_root: Callable[[int, int], bytes] | None = None) -> None:
        """`round_root(job, round)` reads a committed root from the chain (None: no recomputation
        of round inputs; the coordinator's are used as given)."""
        self.api, self.cache, self.chain_id, self.market = api, cache, chain_id, market
        self.round_root = round_root
        self._specs: dict[int, JobSpec] = {}
        self._datasets: dict[str, Dataset] = {}
        self._inputs: dict[tuple[int, int], RoundInputs] = {}
        self.input_note = ""

    def spec(self, job_id: int) -> JobSpec:
        if job_id not in self._specs:
            job = self.api.get_job(job_id)
            if job.spec_blob is None:
                raise AuditInputError(f"job {job_id} has no spec at the coordinator ({job.hold_reason})")
            spec = spec_from_json(self.cache.read(job.spec_blob))
            if to_hex(spec.spec_hash()) != job.spec_hash:
                raise AuditInputError(f"job {job_id}'s spec blob does not hash to its spec hash {job.spec_hash}")
            self._specs[job_id] = spec
        return self._specs[job_id]

    def dataset(self, spec: JobSpec) -> Dataset:
        if spec.dataset not in self._datasets:
            self._datasets = {spec.dataset: load_dataset(self.cache.dataset_dir(spec.dataset), spec.dataset)}
        return self._datasets[spec.dataset]

    def committed_unit(self, job_id: int, round: int, root: bytes, sl: SettledLeaf) -> CommittedUnit:
        """Check a listed leaf against the on-chain `root` and its signed result; raises AuditInputError."""
        leaf = RoundLeaf(job_id=job_id, round=round, unit=sl.unit, worker=sl.worker, amount=int(sl.amount),
                         result_hash=from_hex(sl.result_hash))
        proof = tuple(from_hex(p) for p in sl.proof)
        if to_hex(leaf.hash()) != sl.leaf or not verify(list(proof), root, leaf.hash()):
            raise AuditInputError(f"the coordinator's leaf for unit {sl.unit} of job {job_id} round {round} is not in "
                                  f"the committed root {to_hex(root)}")
        res = self.api.result(sl.result_id)
        cu = CommittedUnit(job_id, round, leaf, proof, res, sl.unit_id)
        digest = work_result_digest(cu.work_result(), chain_id=self.chain_id, verifying_contract=self.market)
        if digest != leaf.result_hash:
            raise AuditInputError(f"result {res.result_id}'s signed fields do not hash to the committed resultHash")
        signer = recover_work_result_signer(cu.work_result(), cu.signature, chain_id=self.chain_id,
                                            verifying_contract=self.market)
        if signer != leaf.worker:
            raise AuditInputError(f"result {res.result_id} is signed by {signer}, the committed leaf names {leaf.worker}")
        return cu

    def round_inputs(self, job_id: int, round: int) -> "RoundInputs":
        """G_r, slot states and the outer momentum entering round r, recomputed from G_0 and the
        committed leaves of rounds 0..r-1 (cached per job and round)."""
        key = (job_id, round)
        if key in self._inputs:
            return self._inputs[key]
        spec = self.spec(job_id)
        if round == 0:
            ri = RoundInputs(initial_global_blob(spec), {}, None)
        else:
            assert self.round_root is not None
            prev = self.round_inputs(job_id, round - 1)
            root = self.round_root(job_id, round - 1)
            outputs = []
            for sl in self.api.settlement(job_id, round - 1).leaves:
                cu = self.committed_unit(job_id, round - 1, root, sl)
                outputs.append((cu.unit, self.cache.read(cu.result.output_hash)))
            step = outer_step(spec, prev.global_ckpt, outputs, prev.momentum)
            slots = dict(prev.slots)
            slots.update({k: slot_state_from_output(out) for k, out in outputs})
            ri = RoundInputs(step.global_blob, slots, step.momentum_blob)
        self._inputs[key] = ri
        return ri

    def unit_data(self, cu: CommittedUnit) -> UnitData:
        spec = self.spec(cu.job_id)
        res = cu.result
        try:
            trace = Trace.from_json(self.cache.read(res.trace_blob))
        except TraceError as e:
            raise AuditInputError(f"result {res.result_id}'s trace is unreadable: {e}") from None
        k = spec.verification.snapshot_interval
        blobs = list(res.snapshot_blobs)

        def snapshot(s: int) -> bytes | None:
            j = s // k
            if s % k or not 0 <= j < len(blobs):
                return None
            return self.cache.read(blobs[j])

        served = self.api.unit_inputs(cu.unit_id)
        if self.round_root is None:
            g = self.cache.read(served.checkpoint) if served.checkpoint else initial_global_blob(spec)
            slot = self.cache.read(served.slot_state) if served.slot_state else None
        else:
            ri = self.round_inputs(cu.job_id, cu.round)
            g, slot = ri.global_ckpt, ri.slots.get(cu.unit)
            mine = (to_hex(sha256(g)) if cu.round else None, to_hex(sha256(slot)) if slot is not None else None)
            if (served.checkpoint, served.slot_state) != mine:
                self.input_note = (f"the coordinator serves inputs {served.checkpoint}/{served.slot_state} for unit "
                                   f"{cu.unit} of job {cu.job_id} round {cu.round}, the committed work gives "
                                   f"{mine[0]}/{mine[1]}: replaying from the latter")
        return UnitData(spec, self.dataset(spec), trace, snapshot, self.cache.read(res.output_hash), g, slot)
