"""The verifier's event loop: read new Market and JuryArbiter events, serve on juries, audit
committed rounds, resolve and withdraw. One pass is `poll_once`; `run` repeats it.

Order within a pass puts deadlines first: new `JurorsDrawn` events are judged and
committed as they are read; then pending reveals and resolutions; then audits of queued
committed rounds (replay can take a while), with the jury ticked again after each round.
The event cursor, the rounds still to audit and every vote are in the state file, so a
restarted verifier carries on where it stopped (including revealing committed votes).
"""
from __future__ import annotations

import threading
from typing import Callable

from protocol.api_client import ApiConflict, ApiError, CoordinatorApi
from protocol.blobcache import BlobCache
from protocol.chain import ChainError, ContractRevert
from protocol.chain.client import ChainClient
from training import TrainingError
from verifier import AuditInputError
from verifier.audit import Auditor
from verifier.inputs import Fetcher
from verifier.jury import JuryDuty
from verifier.settings import VerifierSettings
from verifier.state import VerifierState

Say = Callable[[str], None]


class VerifierAgent:
    def __init__(self, *, settings: VerifierSettings, chain: ChainClient, api: CoordinatorApi, cache: BlobCache,
                 say: Say = lambda _m: None) -> None:
        self.settings, self.chain, self.api, self.say = settings, chain, api, say
        market = chain.deployment.address("Market") if chain.deployment else chain.market.address
        self.state = VerifierState.open(settings.data_dir, chain_id=chain.chain_id, market=market,
                                        account=chain.address)
        self.fetcher = Fetcher(api, cache, chain_id=chain.chain_id, market=market,
                               round_root=lambda job, rnd: bytes(chain.market.get_round(job, rnd)["root"]))
        self.auditor = Auditor(settings, chain, self.fetcher, self.state, say)
        self.jury = JuryDuty(settings, chain, self.fetcher, self.state, say)

    def _read_events(self) -> None:
        head = self.chain.block_number()
        if self.state.cursor >= 0:
            start = self.state.cursor + 1
        else:
            dep = self.chain.deployment
            start = self.settings.start_block if self.settings.start_block is not None else (dep.start_block if dep else 0)
        if head < start:
            return
        addrs = [self.chain.market.address, self.chain.jury.address]
        for e in self.chain.get_events(addrs, from_block=start, to_block=head):
            if e.name == "RoundCommitted" and self.settings.audit:
                job = int(e.args["jobId"])
                if not self.settings.jobs or job in self.settings.jobs:
                    self.state.queue_round(job, int(e.args["round"]))
            elif e.name == "JurorsDrawn" and self.settings.jury:
                self.state.cursor = e.block_number - 1  # a crash while judging re-reads this event
                self.state.save()
                self.jury.on_drawn(e)
        self.state.cursor = head
        self.state.save()

    def _audit_queued(self) -> None:
        for job_id, round in list(self.state.rounds):
            end = int(self.chain.market.get_round(job_id, round)["challengeEnd"])
            if self.jury.now() >= end:  # e.g. history read by a fresh verifier: a late finding pays nothing
                self.say(f"job {job_id} round {round}: challenge window closed at {end}; not audited")
                self.state.rounds.remove([job_id, round])
                self.state.save()
                continue
            try:
                self.auditor.audit_round(job_id, round)
            except ApiConflict:  # the coordinator has not recorded the commit yet: next pass
                continue
            except (ApiError, ChainError, AuditInputError, TrainingError) as e:
                end = int(self.chain.market.get_round(job_id, round)["challengeEnd"])
                if self.jury.now() < end:
                    self.say(f"audit of job {job_id} round {round} failed ({e}); retrying")
                    continue
                self.say(f"audit of job {job_id} round {round} abandoned: {e} (its challenge window has closed)")
            self.state.rounds.remove([job_id, round])
            self.state.save()
            self.jury.tick()

    def withdraw(self) -> None:
        """Pull dispute payouts from the Market and juror rewards from the JuryArbiter."""
        me = self.chain.address
        for what, amount, fn in (("dispute payout", self.chain.market.payout_of(me), self.chain.market.withdraw_payout),
                                 ("juror reward", self.chain.jury.reward_of(me), self.chain.jury.withdraw_reward)):
            if amount:
                try:
                    tx = fn()
                except ContractRevert as e:
                    self.say(f"withdrawing {what} refused: {e}")
                    continue
                self.say(f"withdrew {what} of {amount} base units in tx {tx.tx_hash}")

    def poll_once(self) -> None:
        self._read_events()
        self.jury.tick()
        if self.settings.audit:
            self._audit_queued()
        if self.settings.keeper:
            self.withdraw()

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set; RPC or coordinator outages are reported and retried."""
        while not stop.is_set():
            try:
                self.poll_once()
            except (ChainError, ApiError) as e:
                self.say(f"pass failed ({e}); retrying in {self.settings.poll_interval_s:g} s")
            stop.wait(self.settings.poll_interval_s)
