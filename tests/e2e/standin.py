"""TEST STAND-IN for coordinator duties that the coordinator does not perform yet.

The end-to-end test needs, after each round closes: settlement (commitRound with the
coordinator's key, the root recorded in the coordinator's database), aggregation (the
DiLoCo outer step over the accepted outputs -> G_{r+1} and the slot states, then
`coordinator.jobs.open_round`, the aggregator's entry point) and, after the last round,
`completeJob`. Until the coordinator runs these itself, this thread does them from the test
process with the coordinator's own library (`build_context`, `open_round`, its blob store
and database) and the training engine's `outer_step`. Delete it when the coordinator has
its settlement and aggregation loop.
"""
from __future__ import annotations

import threading
from coordinator import crud
from coordinator.core.config import Settings
from coordinator.intake import StructuralIntake
from coordinator.jobs import load_job_spec, open_round
from coordinator.main import build_context
from protocol.chain.client import ChainClient
from protocol.chain.types import JobStatus
from tests.agents.harness import settle_round_as_coordinator
from training.outer import initial_global_blob, outer_step, slot_state_from_output


class CoordinatorDuties(threading.Thread):
    def __init__(self, settings: Settings, chain: ChainClient, *, interval_s: float = 0.3) -> None:
        super().__init__(name="coordinator-duties", daemon=True)
        self.ctx = build_context(settings, intake=StructuralIntake())
        self.chain, self.interval_s = chain, interval_s
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []
        self._momentum: dict[int, bytes | None] = {}

    def run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            try:
                self.tick()
            except BaseException as e:  # surfaced by the test
                self.errors.append(e)
                return

    def close(self) -> None:
        self.stop_event.set()
        self.join(30)
        self.ctx.redis.close()
        self.ctx.engine.dispose()

    def tick(self) -> None:
        ctx = self.ctx
        with ctx.transaction() as tx:
            jobs = [(j.id, j.status, j.current_round, j.rounds_total) for j in crud.list_jobs(tx.session, limit=1000, offset=0)]
        for job_id, status, current, total in jobs:
            with ctx.transaction() as tx:
                rounds = [(r.round, r.status, r.committed_root) for r in crud.list_rounds(tx.session, job_id=job_id)]
            for rnd, rstatus, root in rounds:
                if rstatus in ("complete", "quorum") and root is None:
                    settle_round_as_coordinator(ctx, self.chain, job_id, rnd)
                    if status == "awaiting_aggregation" and rnd == current:
                        self.aggregate(job_id, rnd)
            if status == "complete" and all(root for _, _, root in rounds) and len(rounds) == total:
                if int(self.chain.market.get_job(job_id)["status"]) == JobStatus.OPEN:
                    self.chain.market.complete_job(job_id)

    def aggregate(self, job_id: int, round: int) -> None:
        ctx = self.ctx
        with ctx.transaction() as tx:
            s = tx.session
            job = crud.get_job(s, job_id=job_id)
            rnd = crud.get_round(s, job_id=job_id, round=round)
            spec = load_job_spec(ctx, job)
            g = ctx.blobs.read_bytes(rnd.checkpoint_blob) if rnd.checkpoint_blob else initial_global_blob(spec)
            units = list(crud.list_units(s, round_id=rnd.id))
            accepted = {u.index: crud.get_result(s, result_id=u.accepted_result_id).output_hash
                        for u in units if u.status == "accepted"}
            previous_slots = {u.index: u.slot_state_blob for u in units}
        outputs = [(k, ctx.blobs.read_bytes(h)) for k, h in sorted(accepted.items())]
        step = outer_step(spec, g, outputs, self._momentum.get(job_id))
        self._momentum[job_id] = step.momentum_blob
        checkpoint = self._store(step.global_blob)
        slots: list[str | None] = []
        for k in range(spec.units_per_round):
            out = dict(outputs).get(k)
            slots.append(self._store(slot_state_from_output(out)) if out is not None else previous_slots.get(k))
        open_round(ctx, job_id=job_id, round=round + 1, checkpoint_blob=checkpoint, slot_states=slots)

    def _store(self, data: bytes) -> str:
        digest, _ = self.ctx.blobs.put_bytes(data)
        with self.ctx.transaction() as tx:
            crud.record_blob(tx.session, sha256=digest, size=len(data), uploader=None, now=self.ctx.now())
        return digest

