"""The model owner's side: post a job (chain + coordinator), read its status, download, close.

Used by `crowdtrain job ...` (crowdtrain/commands/job.py). Amounts are token base units;
times unix seconds. Chain reads go through protocol.chain, coordinator reads through
protocol.api_client; nothing here trusts the coordinator for money: spend, refunds and
disputes are read from the Market.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from protocol.agentkit import AgentSettings, connect_api, connect_chain, transact_due
from protocol.api_client import ApiError, ApiNotFound, CoordinatorApi, sha256_file
from protocol.chain.client import ChainClient, TxResult
from protocol.chain.keys import Signer
from protocol.chain.types import DisputeStatus, JobStatus, RoundStatus
from protocol.hashing import sha256, to_hex
from protocol.spec import JobSpec

Log = Callable[[str], None]


class OwnerError(Exception):
    """Base of the owner's errors: the spec, dataset or job state does not allow the action."""


class DatasetMismatchError(OwnerError, ValueError):
    """The dataset packs to another hash than the spec's `dataset`."""


class OwnerSettings(AgentSettings):
    model_config = SettingsConfigDict(env_prefix="CROWDTRAIN_OWNER_", extra="forbid", frozen=True)

    data_dir: Path = Field(Path("var/owner"), description="packed datasets and downloads")
    challenge_window_s: int = Field(3600, ge=1, description="seconds verifiers may challenge a committed round "
                                    "(at most the Market's unbonding period)")
    deadline_s: int = Field(7 * 86_400, ge=60, description="seconds from posting until the job may be closed anyway")
    coordinator_address: str | None = Field(None, description="address that commits rounds; default GET /info")


# ---- post ------------------------------------------------------------------------------
def resolve_dataset(spec: JobSpec, *, dataset_dir: Path | None, pack: Sequence[Path], stdlib: bool,
                    work_dir: Path, log: Log = lambda _m: None) -> Path:
    """A packed dataset directory whose manifest hashes to `spec.dataset`.

    --dataset DIR is used as is; --pack / --stdlib pack into <work_dir>/datasets/; with none
    given, a previous pack under <work_dir>/datasets/<hash> is reused, else the standard
    library is packed (the default dataset) and used if it matches.
    """
    from training.data import pack_paths, pack_stdlib

    want = spec.dataset
    cached = work_dir / "datasets" / want[2:]
    if dataset_dir is None and not pack and not stdlib and (cached / "manifest.json").is_file():
        dataset_dir = cached
    if dataset_dir is not None:
        if not (dataset_dir / "manifest.json").is_file():
            raise OwnerError(f"{dataset_dir} has no manifest.json: pack it with `crowdtrain dataset pack`")
        got = to_hex(sha256((dataset_dir / "manifest.json").read_bytes()))
        if got != want:
            raise DatasetMismatchError(f"dataset {dataset_dir} has hash {got} but the spec names {want}: put {got} "
                                       "in the spec's `dataset`, or pass the dataset the spec was written for")
        return dataset_dir
    (work_dir / "datasets").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="pack-", dir=work_dir / "datasets"))
    log(f"packing {'the standard library' if stdlib or not pack else ', '.join(map(str, pack))} ...")
    got = to_hex(pack_paths(list(pack), tmp) if pack else pack_stdlib(tmp))
    if got != want:
        raise DatasetMismatchError(f"the packed dataset ({tmp}) has hash {got} but the spec names {want}: put {got} "
                                   "in the spec's `dataset` to train on it")
    if cached.exists():
        import shutil

        shutil.rmtree(tmp)
        return cached
    tmp.rename(cached)
    return cached


@dataclass
class PostedJob:
    job_id: int
    tx: TxResult
    budget: int
    uploads: list[tuple[str, str, int]]  # (what, sha256, bytes)
    decimals: int = 18
    symbol: str = ""


def post_job(settings: OwnerSettings, signer: Signer, spec: JobSpec, dataset_dir: Path, *,
             log: Log = lambda _m: None) -> PostedJob:
    """Escrow and post on chain, upload inputs as the job's owner, register with the coordinator."""
    from training.outer import initial_global_blob

    chain = connect_chain(settings, signer)
    api = connect_api(settings, signer, chain=chain)
    try:
        coordinator = settings.coordinator_address or api.info().coordinator_address
        if not coordinator:
            raise OwnerError(f"coordinator {settings.coordinator_url} does not say which address commits its rounds; "
                             "pass --coordinator-address")
        market, token = chain.market, chain.token
        budget = spec.budget
        balance = token.balance_of(signer.address)
        if balance < budget:
            raise OwnerError(f"the job's budget is {budget} base units (K*R*reward_per_unit) but {signer.address} "
                             f"holds {balance}: fund the account first")
        now = chain.timestamp()
        log(f"escrowing {budget} base units for {spec.max_units} units; coordinator {coordinator}")
        job_id, tx = market.post_job(spec_hash=spec.spec_hash(), budget=budget,
                                     reward_per_unit=spec.payment.reward_per_unit, max_units=spec.max_units,
                                     coordinator=coordinator, challenge_window=settings.challenge_window_s,
                                     deadline=now + settings.deadline_s)
        log(f"job {job_id} posted in tx {tx.tx_hash}")
        uploads = _upload_inputs(api, job_id, spec, dataset_dir, initial_global_blob(spec), log)
        api.register_job(job_id, spec.model_dump(mode="json"))
        log(f"registered job {job_id} with {settings.coordinator_url}")
        return PostedJob(job_id, tx, budget, uploads, token.decimals(), token.symbol())
    finally:
        api.close()


def _upload_inputs(api: CoordinatorApi, job_id: int, spec: JobSpec, dataset_dir: Path, g0: bytes,
                   log: Log) -> list[tuple[str, str, int]]:
    """Dataset manifest + shards, the spec and G_0 under PUT /blobs/jobs/<job>/<sha256> (owner-signed)."""
    manifest = json.loads((dataset_dir / "manifest.json").read_bytes())
    files = [("manifest", dataset_dir / "manifest.json")]
    files += [(f"shard {sh['file']}", dataset_dir / sh["file"]) for split in ("train", "val")
              for sh in manifest.get(split, [])]
    out = []
    items: list[tuple[str, Path | bytes]] = [*files, ("spec", spec.canonical_bytes()), ("initial checkpoint G_0", g0)]
    for what, data in items:
        digest = sha256_file(data) if isinstance(data, Path) else to_hex(sha256(data))
        r = api.put_blob(data, digest=digest, path=f"/blobs/jobs/{job_id}/{digest}")
        out.append((what, r.sha256, r.size))
    log(f"uploaded {len(out)} blobs ({sum(s for _, _, s in out):,} bytes): dataset manifest + "
        f"{len(files) - 1} shard(s), spec, G_0")
    return out


# ---- status ----------------------------------------------------------------------------
@dataclass
class RoundRow:
    round: int
    status: str
    units: int
    accepted: int
    loss_first: float | None
    loss_last: float | None
    root: str | None
    commit_tx: str | None
    chain_status: str


@dataclass
class DisputeRow:
    dispute_id: int
    round: int
    unit: int
    worker: str
    challenger: str
    status: str
    ruling: str


@dataclass
class JobStatusView:
    job_id: int
    owner: str
    coordinator_status: str
    chain_status: str
    budget: int
    escrow: int
    committed: int
    claimed: int
    units_committed: int
    max_units: int
    rounds: list[RoundRow] = field(default_factory=list)
    disputes: list[DisputeRow] = field(default_factory=list)
    decimals: int = 18
    symbol: str = ""


def _round_losses(api: CoordinatorApi, job_id: int, round: int) -> tuple[float | None, float | None]:
    """Mean over the round's accepted units of the first and last step's training loss."""
    from training.trace import Trace

    firsts, lasts = [], []
    for u in api.units(job_id, round):
        if u.status != "accepted":
            continue
        for res in api.results(u.unit_id):
            if res.verdict == "accepted":
                tr = Trace.from_json(api.get_blob(res.trace_blob))
                firsts.append(tr.leaves[0].loss)
                lasts.append(tr.leaves[-1].loss)
    if not lasts:
        return None, None
    return sum(firsts) / len(firsts), sum(lasts) / len(lasts)


def job_status(settings: OwnerSettings, job_id: int) -> JobStatusView:
    chain = connect_chain(settings, None)
    api = connect_api(settings, None, chain=chain)
    try:
        try:
            job = api.get_job(job_id)
        except ApiNotFound:
            raise OwnerError(f"job {job_id} is not registered with {settings.coordinator_url}") from None
        m = chain.market
        cj = m.get_job(job_id)
        events = m.events(None)
        posted = next((e for e in events if e.name == "JobPosted" and e.args["jobId"] == job_id), None)
        budget = int(posted.args["budget"]) if posted else 0
        topups = sum(int(e.args["amount"]) for e in events if e.name == "JobToppedUp" and e.args["jobId"] == job_id)
        claimed = sum(int(e.args["amount"]) for e in events if e.name == "Claimed" and e.args["jobId"] == job_id)
        committed = sum(int(e.args["total"]) for e in events if e.name == "RoundCommitted" and e.args["jobId"] == job_id)
        view = JobStatusView(job_id, job.owner, job.status, JobStatus(int(cj["status"])).name.lower(), budget + topups,
                             int(cj["escrow"]), committed, claimed, int(cj["unitsCommitted"]), int(cj["maxUnits"]),
                             decimals=chain.token.decimals(), symbol=chain.token.symbol())
        for r in api.rounds(job_id):
            first, last = _round_losses(api, job_id, r.round)
            rv = m.get_round(job_id, r.round)
            cs = RoundStatus(int(rv["status"])).name.lower()
            if cs == "committed" and int(rv["openDisputes"]):
                cs += f" ({rv['openDisputes']} open dispute(s))"
            view.rounds.append(RoundRow(r.round, r.status, r.units, r.accepted, first, last, r.committed_root,
                                        r.commit_tx, cs))
        for e in events:
            if e.name == "DisputeOpened" and e.args["jobId"] == job_id:
                d = m.get_dispute(int(e.args["disputeId"]))
                unit = _disputed_unit(events, int(e.args["disputeId"]))
                ruling = {0: "no decision", 1: "worker right", 2: "challenger right"}[int(d["ruling"])]
                st = DisputeStatus(int(d["status"]))
                view.disputes.append(DisputeRow(int(e.args["disputeId"]), int(d["round"]), unit, d["worker"],
                                                d["challenger"], st.name.lower(),
                                                ruling if st in (DisputeStatus.RULED, DisputeStatus.TIMED_OUT) else "-"))
        return view
    finally:
        api.close()


def _disputed_unit(events: list, dispute_id: int) -> int:
    ev = next((e for e in events if e.name == "ChallengeEvidence" and e.args["disputeId"] == dispute_id), None)
    return int(ev.args["evidence"]["leaf"]["unit"]) if ev else -1


# ---- download --------------------------------------------------------------------------
def rebuild_globals(api: CoordinatorApi, job_id: int, spec: JobSpec,
                    log: Log = lambda _m: None) -> tuple[bytes, list[dict]]:
    """Recompute G_1 .. G_R from G_0 and every round's accepted output blobs (DiLoCo outer step,
    training.outer: deterministic on any machine) and check each G_r against the checkpoint
    the coordinator handed to round r's workers. Returns (G_R blob, per-round records).

    The owner thereby trusts nobody's aggregation: a coordinator that served a wrong G_r
    is caught here (OwnerError), and the final model is the owner's own computation.
    """
    from training.outer import initial_global_blob, outer_step

    rounds = {r.round: r for r in api.rounds(job_id)}
    if len(rounds) < spec.rounds or any(r.status == "open" for r in rounds.values()):
        raise OwnerError(f"job {job_id} is not finished: {len(rounds)} of {spec.rounds} rounds opened, "
                         f"{sum(r.status != 'open' for r in rounds.values())} closed; try again when it is complete")
    g, momentum = initial_global_blob(spec), None
    records = []
    for r in range(spec.rounds):
        outputs = []
        for u in api.units(job_id, r):
            for res in api.results(u.unit_id):
                if res.verdict == "accepted":
                    outputs.append((u.unit, api.get_blob(res.output_hash)))
        step = outer_step(spec, g, outputs, momentum)
        g, momentum = step.global_blob, step.momentum_blob
        nxt = rounds.get(r + 1)
        if nxt is not None and nxt.checkpoint is not None and nxt.checkpoint != to_hex(step.global_hash):
            raise OwnerError(f"round {r + 1}'s checkpoint at the coordinator is {nxt.checkpoint}, but the outer step "
                             f"over round {r}'s accepted outputs gives {to_hex(step.global_hash)}: the coordinator's "
                             "aggregation does not match the accepted work")
        records.append({"round": r, "units_aggregated": list(step.units), "global_after": to_hex(step.global_hash)})
        log(f"round {r}: aggregated units {list(step.units)} -> G_{r + 1} {to_hex(step.global_hash)}")
    return g, records


def download(settings: OwnerSettings, job_id: int, out_dir: Path, *,
             log: Log = lambda _m: None) -> tuple[Path, Path]:
    """model.safetensors (G_R, recomputed and checked: `rebuild_globals`) and report.json."""
    status = job_status(settings, job_id)
    api = connect_api(settings, None)
    try:
        from protocol.spec import spec_from_json

        job = api.get_job(job_id)
        if job.spec_blob is None:
            raise OwnerError(f"job {job_id} is {job.status} without its spec at the coordinator: {job.hold_reason}")
        spec = spec_from_json(api.get_blob(job.spec_blob))
        final, records = rebuild_globals(api, job_id, spec, log)
        if job.final_model is not None and job.final_model != to_hex(sha256(final)):
            raise OwnerError(f"the coordinator's final model {job.final_model} is not the outer step over the accepted "
                             f"work ({to_hex(sha256(final))}); not trusting it")
        try:
            coordinator_report = api.get_json(f"/jobs/{job_id}/report")
        except ApiError:  # an older coordinator without reports: ours is complete without it
            coordinator_report = None
    finally:
        api.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    model = out_dir / "model.safetensors"
    tmp = model.with_suffix(".part")
    tmp.write_bytes(final)
    tmp.replace(model)
    report = out_dir / "report.json"
    report.write_text(json.dumps({"job_id": job_id, "spec_hash": job.spec_hash, "model_sha256": to_hex(sha256(final)),
                                  "written_at": time.time(), "aggregation": records, **asdict(status),
                                  "coordinator_report": coordinator_report},
                                 indent=2, default=str) + "\n")
    return model, report


# ---- close -----------------------------------------------------------------------------
def close_job(settings: OwnerSettings, signer: Signer, job_id: int) -> tuple[int, TxResult, tuple[int, str]]:
    """closeJob -> (refund in base units, tx, (decimals, symbol))."""
    chain: ChainClient = connect_chain(settings, signer)
    tx = transact_due(chain.market, "closeJob", job_id)  # after the deadline, even on a chain idle since
    refund = int(tx.event("JobClosed").args["refund"])
    return refund, tx, (chain.token.decimals(), chain.token.symbol())


__all__ = ["OwnerSettings", "OwnerError", "DatasetMismatchError", "resolve_dataset", "post_job", "job_status",
           "download", "rebuild_globals", "close_job"]
