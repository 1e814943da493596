"""The worker loop: claim a unit lease, fetch inputs, train, upload, sign, submit, repeat.

One unit at a time:
1. claim: the first job (settings.jobs, else every active job) with a free unit grants a
   lease; none free -> wait min(Retry-After, poll interval);
2. inputs through the local cache (worker/inputs.py), the job skipped with a message when
   the pre-flight estimate says it does not fit this machine;
3. `set_determinism(spec.seed, spec.threads, device)`, then training's `run_unit` (or, with
   the hidden `fault`, training.adversary's dishonest unit) while a background thread
   heartbeats the lease;
4. upload the trace, the snapshots S_0, S_k, ..., S_H and the output blob (skipping blobs
   the coordinator already has), sign the EIP-712 WorkResult with the worker's key, submit.

Stopping: `StopSignal.request()` once finishes the current unit and exits; twice stops
training at the next step and releases the lease so another worker gets the unit at
once. A lease the coordinator no longer recognises (heartbeat 404/410) stops training too.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

from eth_account.signers.local import LocalAccount

from protocol.api_client import (ApiConflict, ApiError, ApiForbidden, ApiGone, ApiNotFound, ApiServiceUnavailable,
                                 CoordinatorApi)
from protocol.blobcache import CacheError
from protocol.eip712 import WorkResult, sign_work_result, work_result_digest
from protocol.hashing import sha256, to_hex
from protocol.spec import JobSpec
from protocol.wire import LeaseGrant, ResultSubmission
from training import TrainingError
from training.adversary import Fault, run_dishonest_unit
from training.determinism import set_determinism
from training.step import Trainer
from training.unit import UnitResult, run_unit
from worker import InputError, WorkerError
from worker.heartbeat import Heartbeat
from worker.inputs import InputStore
from worker.preflight import dataset_size, estimate, fmt_bytes
from worker.settings import WorkerSettings

Status = Literal["accepted", "rejected", "lease_lost", "released", "failed"]
FAILURE_BACKOFF_S = 60.0  # a unit that failed for its inputs: skip its job this long before claiming again


class Reporter(Protocol):
    """What the loop tells its user (the CLI draws a rich progress bar; tests collect)."""

    def info(self, msg: str) -> None: ...
    def warn(self, msg: str) -> None: ...
    def unit_started(self, grant: LeaseGrant, spec: JobSpec) -> None: ...
    def step(self, done: int, total: int, loss: float) -> None: ...
    def phase(self, text: str) -> None: ...
    def unit_finished(self, outcome: "UnitOutcome") -> None: ...


class NullReporter:
    def info(self, msg: str) -> None: ...
    def warn(self, msg: str) -> None: ...
    def unit_started(self, grant: LeaseGrant, spec: JobSpec) -> None: ...
    def step(self, done: int, total: int, loss: float) -> None: ...
    def phase(self, text: str) -> None: ...
    def unit_finished(self, outcome: "UnitOutcome") -> None: ...


@dataclass(frozen=True)
class UnitOutcome:
    job_id: int
    round: int
    unit: int
    unit_id: int
    lease_id: str
    status: Status
    reason: str
    result_hash: str | None = None
    losses: tuple[float, ...] = ()
    timing: dict[str, float] = field(default_factory=dict)   # seconds: train, record, upload, submit, total


class StopSignal:
    """First request: finish the current unit, then stop. Second: stop now, release the lease."""

    def __init__(self) -> None:
        self.after_unit = threading.Event()
        self.now = threading.Event()

    def request(self) -> None:
        (self.now if self.after_unit.is_set() else self.after_unit).set()


class _Interrupted(Exception):
    def __init__(self, why: Status, reason: str) -> None:
        super().__init__(reason)
        self.why, self.reason = why, reason


class WorkerAgent:
    def __init__(self, *, settings: WorkerSettings, account: LocalAccount, chain_id: int, market_address: str,
                 api: CoordinatorApi, inputs: InputStore, reporter: Reporter | None = None,
                 fault: Fault | None = None, step_delay_s: float = 0.0) -> None:
        self.settings, self.account, self.api, self.inputs = settings, account, api, inputs
        self.chain_id, self.market_address = chain_id, market_address
        self.reporter: Reporter = reporter or NullReporter()
        self.fault, self.step_delay_s = fault, step_delay_s
        self.outcomes: list[UnitOutcome] = []
        self._unfit: dict[int, str] = {}
        self._fit: set[int] = set()
        self._said: dict[int, object] = {}
        self._backoff: dict[int, float] = {}  # job id -> monotonic time before which it is skipped
        self._trainer: tuple[str, Trainer] | None = None
        self._last: UnitResult | None = None  # donor for the REPLAY_OLD_PROOF fault

    # -- loop ----------------------------------------------------------------------------
    def run(self, stop: StopSignal) -> list[UnitOutcome]:
        """Work until `stop` is requested or `settings.max_units` units were submitted."""
        submitted = 0
        while not stop.after_unit.is_set():
            grant, wait = self.claim_next()
            if grant is None:
                stop.after_unit.wait(min(wait, self.settings.poll_interval_s))
                continue
            outcome = self.work(grant, stop)
            self.outcomes.append(outcome)
            self.reporter.unit_finished(outcome)
            if outcome.status in ("accepted", "rejected"):
                submitted += 1
            if self.settings.max_units is not None and submitted >= self.settings.max_units:
                break
            if self.settings.cache_max_bytes is not None:
                self.inputs.cache.prune(self.settings.cache_max_bytes)
        return self.outcomes

    def _candidate_jobs(self) -> list[int]:
        if self.settings.jobs:
            return list(self.settings.jobs)
        return [j.job_id for j in self.api.list_jobs() if j.status == "active"]

    def claim_next(self) -> tuple[LeaseGrant | None, float]:
        """A lease from the first job with a free unit, or (None, seconds to wait)."""
        wait = self.settings.poll_interval_s
        for job_id in self._candidate_jobs():
            if job_id in self._unfit or self._backoff.get(job_id, 0.0) > time.monotonic():
                continue
            try:
                grant, retry = self.api.claim(job_id)
            except (ApiConflict, ApiNotFound) as e:  # job complete / between rounds / unknown
                if self._said.get(job_id) != e.detail:  # say each state once, not every poll
                    self._said[job_id] = e.detail
                    self.reporter.info(f"job {job_id}: {e.detail}")
                continue
            self._said.pop(job_id, None)
            if grant is not None:
                return grant, 0.0
            wait = min(wait, retry) if retry > 0 else wait
        return None, wait

    # -- one unit ------------------------------------------------------------------------
    def _fits(self, job_id: int, spec: JobSpec, device: str) -> bool:
        import psutil

        if job_id in self._fit:
            return True
        manifest_size = dataset_size(_json(self.inputs.cache.read(spec.dataset)))
        est = estimate(spec, dataset_bytes=manifest_size, device=device)
        free = psutil.virtual_memory().available * self.settings.memory_fraction
        if est.host_bytes > free:
            self._unfit[job_id] = (f"needs ~{fmt_bytes(est.host_bytes)} of memory, {fmt_bytes(int(free))} usable")
            self.reporter.warn(f"skipping job {job_id}: {self._unfit[job_id]} (see `crowdtrain worker check`)")
            return False
        self._fit.add(job_id)
        return True

    def _device(self, spec: JobSpec) -> str:
        dev = spec.device if self.settings.device == "auto" else self.settings.device
        if dev != spec.device and spec.verification.mode == "exact":
            self.reporter.warn(f"training on {dev} a job whose spec says {spec.device} in exact mode: verifiers "
                               "replaying on the spec's device may not reproduce it bit for bit")
        return dev

    def work(self, grant: LeaseGrant, stop: StopSignal) -> UnitOutcome:
        """Train and submit one leased unit; never raises for a lost lease or a refusal."""
        t0 = time.perf_counter()
        base = dict(job_id=grant.job_id, round=grant.round, unit=grant.unit, unit_id=grant.unit_id,
                    lease_id=grant.lease_id)
        interval = self.settings.heartbeat_interval_s or max(0.2, grant.ttl_s / 3)
        hb = Heartbeat(self.api, grant.lease_id, interval_s=interval, warn=self.reporter.warn)
        try:
            with hb:
                spec = self.inputs.spec(grant.job_id, grant.spec_hash)
                device = self._device(spec)
                self.reporter.phase("fetching inputs")
                if not self._fits(grant.job_id, spec, device):  # before loading the dataset: it may be large
                    self._release(grant)
                    return UnitOutcome(**base, status="released", reason=self._unfit[grant.job_id])
                dataset = self.inputs.dataset(spec)
                g = self.inputs.global_checkpoint(spec, grant.inputs.checkpoint)
                slot = self.inputs.slot_state(grant.inputs.slot_state)
                self.reporter.unit_started(grant, spec)
                res = self._train(spec, dataset, grant, g, slot, device, hb, stop)
                t_train = time.perf_counter()
                self._check(hb, stop)
                self.reporter.phase("uploading")
                body = self._upload_and_sign(grant, res)
                t_up = time.perf_counter()
                receipt = self._submit(grant, body, hb, stop)
            self._last = res
            result_hash = to_hex(work_result_digest(_work_result(grant, res), chain_id=self.chain_id,
                                                    verifying_contract=self.market_address))
            timing = {**res.timing, "upload": t_up - t_train, "submit": time.perf_counter() - t_up,
                      "total": time.perf_counter() - t0}
            return UnitOutcome(**base, status=receipt.verdict, reason=receipt.reason, result_hash=result_hash,
                               losses=tuple(res.losses), timing=timing)
        except _Interrupted as e:
            if e.why == "released":
                self._release(grant)
            return UnitOutcome(**base, status=e.why, reason=e.reason)
        except (ApiGone, ApiNotFound, ApiForbidden, ApiConflict) as e:
            if e.path.startswith(("/leases/", "/units/")):  # the lease or the unit is no longer this worker's
                return UnitOutcome(**base, status="lease_lost", reason=str(e.detail))
            self._release(grant)  # e.g. a blob missing from the store, or an upload refused
            self._backoff[grant.job_id] = time.monotonic() + FAILURE_BACKOFF_S
            return UnitOutcome(**base, status="failed", reason=str(e))
        except (InputError, ApiError, CacheError, TrainingError) as e:
            self._release(grant)
            self._backoff[grant.job_id] = time.monotonic() + FAILURE_BACKOFF_S  # do not hammer a broken job
            return UnitOutcome(**base, status="failed", reason=str(e))

    def _check(self, hb: Heartbeat, stop: StopSignal) -> None:
        if hb.lost.is_set():
            raise _Interrupted("lease_lost", f"lease lost: {hb.reason}")
        if stop.now.is_set():
            raise _Interrupted("released", "stopped by the user; lease released")

    def _train(self, spec: JobSpec, dataset, grant: LeaseGrant, g: bytes, slot: bytes | None, device: str,
               hb: Heartbeat, stop: StopSignal) -> UnitResult:
        set_determinism(spec.seed, spec.threads, device)

        def progress(done: int, total: int, loss: float) -> None:
            self.reporter.step(done, total, loss)
            if self.step_delay_s:
                time.sleep(self.step_delay_s)
            self._check(hb, stop)

        if self.fault is not None:
            donor = self._last if self.fault is Fault.REPLAY_OLD_PROOF else None
            if self.fault is Fault.REPLAY_OLD_PROOF and donor is None:
                self.reporter.warn("REPLAY_OLD_PROOF has no earlier result yet: training this unit honestly")
            else:
                return run_dishonest_unit(self.fault, spec, dataset, grant.round, grant.unit, g, slot, donor=donor,
                                          seed=grant.unit_id)
        key = f"{to_hex(spec.spec_hash())}/{device}"
        if self._trainer is None or self._trainer[0] != key:
            self._trainer = (key, Trainer(spec, device=device))
        return run_unit(spec, dataset, grant.round, grant.unit, g, slot, progress=progress,
                        trainer=self._trainer[1])

    def _upload_and_sign(self, grant: LeaseGrant, res: UnitResult) -> ResultSubmission:
        trace = res.trace_json()
        blobs = [trace, *(res.snapshots[s] for s in sorted(res.snapshots)), res.output_blob]
        for data in blobs:
            digest = to_hex(sha256(data))
            if not self.api.has_blob(digest):
                self.api.put_blob(data, digest=digest)
        sig = sign_work_result(self.account, _work_result(grant, res), chain_id=self.chain_id,
                               verifying_contract=self.market_address)
        return ResultSubmission(lease_id=grant.lease_id, input_hash=to_hex(res.input_hash),
                                output_hash=to_hex(res.output_hash), trace_root=to_hex(res.trace_root),
                                trace_blob=to_hex(sha256(trace)),
                                snapshot_blobs=[to_hex(sha256(res.snapshots[s])) for s in sorted(res.snapshots)],
                                signature="0x" + sig.hex())

    def _submit(self, grant: LeaseGrant, body: ResultSubmission, hb: Heartbeat, stop: StopSignal):
        """Submit; while the coordinator cannot judge results yet (503), retry as long as the lease lives."""
        self.reporter.phase("submitting")
        delay = 1.0
        while True:
            hb.pause()  # the lease is `submitting` at the coordinator while the result is judged
            try:
                return self.api.submit(grant.unit_id, body)
            except ApiServiceUnavailable as e:
                self.reporter.warn(f"coordinator cannot take the result yet ({e.detail}); retrying in {delay:.0f} s")
            hb.resume()
            self._check(hb, stop)
            stop.now.wait(delay)
            self._check(hb, stop)
            delay = min(delay * 2, 30.0)

    def _release(self, grant: LeaseGrant) -> None:
        try:
            self.api.release(grant.lease_id)
        except ApiError as e:  # expired meanwhile: the sweeper re-queues it anyway
            self.reporter.warn(f"could not release lease {grant.lease_id}: {e}")


def _work_result(grant: LeaseGrant, res: UnitResult) -> WorkResult:
    return WorkResult(job_id=grant.job_id, round=grant.round, unit=grant.unit, input_hash=res.input_hash,
                      output_hash=res.output_hash, trace_root=res.trace_root)


def _json(data: bytes) -> dict:
    import json

    try:
        obj = json.loads(data)
    except ValueError as e:
        raise InputError(f"dataset manifest is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InputError("dataset manifest is not a JSON object")
    return obj


__all__ = ["WorkerAgent", "StopSignal", "UnitOutcome", "Reporter", "NullReporter", "WorkerError"]
