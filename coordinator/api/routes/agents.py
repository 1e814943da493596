"""What the agents (worker, verifier, model owner) need beyond the core routes.

- `GET /info`: chain id, Market address and the coordinator's on-chain address (the
  `coordinator` a job must name for this service to settle it), so a model owner can
  post a job without being told them out of band.
- `PUT /blobs/jobs/{job_id}/{sha256}`: the model owner of on-chain job `job_id` uploads
  the job's spec, dataset manifest and shards and initial checkpoint before registering
  it. Same streaming, hash-checked store as `PUT /blobs/{sha256}` (and, being under
  `/blobs/`, the same size limit instead of the JSON one); signed by the job's owner
  (no worker stake needed), refused for anyone else.
- `GET /jobs/{job_id}/rounds/{round}/settlement`: a committed round's leaves (accepted units
  in unit order, each paying the job's reward per unit: docs/protocol.md "Round leaf")
  with Merkle proofs, rebuilt from the accepted results and refused (409) unless they hash
  to the root committed for the round: a worker claims and a verifier challenges with them.
- `GET /units/{unit_id}/inputs`: the unit's inputs (G_r and slot k's optimizer state
  blobs), so a verifier or juror can rebuild S_0 and check the signed inputHash.
"""
from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Request, Response
from starlette.requests import ClientDisconnect

from coordinator import admission, crud
from coordinator.api.deps import BlobHashPath, ContextDep, SessionDep, _authenticate
from coordinator.blobs import normalize_digest
from coordinator.errors import BadRequestError, ConflictError, ForbiddenError, NotFoundError
from coordinator.models import Round
from coordinator.settlement import round_leaves
from protocol.hashing import from_hex, to_hex
from protocol.merkle import MerkleTree
from protocol.wire import BlobReceipt, CoordinatorInfo, ErrorBody, RoundSettlement, SettledLeaf, UnitInputs

router = APIRouter(tags=["agents"])
JobIdPath = Annotated[int, Path(ge=0, le=2**63 - 1, description="on-chain job id")]
ERRORS = {s: {"model": ErrorBody} for s in (400, 401, 403, 404, 413, 422, 429, 503)}


@router.get("/info", response_model=CoordinatorInfo)
def info(ctx: ContextDep) -> CoordinatorInfo:
    return CoordinatorInfo(chain_id=ctx.gateway.chain_id, market_address=ctx.gateway.market_address,
                           coordinator_address=ctx.coordinator_address)


@router.get("/units/{unit_id}/inputs", response_model=UnitInputs, responses={404: {"model": ErrorBody}})
def unit_inputs(unit_id: Annotated[int, Path(ge=1, le=2**63 - 1)], session: SessionDep) -> UnitInputs:
    """G_r (null = round 0: G_0 from the spec seed) and slot k's optimizer state (null = fresh)."""
    unit = crud.get_unit(session, unit_id=unit_id)
    if unit is None:
        raise NotFoundError(f"unit {unit_id} does not exist")
    rnd = session.get(Round, unit.round_id)
    return UnitInputs(checkpoint=rnd.checkpoint_blob if rnd else None, slot_state=unit.slot_state_blob)


@router.get("/jobs/{job_id}/rounds/{round}/settlement", response_model=RoundSettlement,
            responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
def settlement(job_id: JobIdPath, round: Annotated[int, Path(ge=0, le=2**31 - 1)], session: SessionDep) -> RoundSettlement:
    rnd = crud.get_round(session, job_id=job_id, round=round)
    job = crud.get_job(session, job_id=job_id)
    if rnd is None or job is None:
        raise NotFoundError(f"job {job_id} has no round {round} here")
    if rnd.committed_root is None or rnd.settle_state == "committing":  # a prepared root is not a commitment
        raise ConflictError(f"round {round} of job {job_id} is not committed on chain yet (status {rnd.status}); "
                            "its leaves become claimable after the commit and the challenge window")
    amount = int(job.reward_per_unit)
    rows = [(x.unit, x.result, x.leaf) for x in round_leaves(session, job=job, rnd=rnd)]
    if not rows:
        raise ConflictError(f"round {round} of job {job_id} is committed but no accepted unit is recorded here")
    tree = MerkleTree.build([leaf for _, _, leaf in rows])
    if to_hex(tree.root) != rnd.committed_root.lower():
        raise ConflictError(f"the accepted units of round {round} rebuild root {to_hex(tree.root)}, but "
                            f"{rnd.committed_root} was committed: this coordinator's records and the chain disagree")
    leaves = [SettledLeaf(unit=u.index, unit_id=u.id, result_id=res.id, worker=res.worker, amount=str(amount),
                          result_hash=res.result_hash, leaf=to_hex(leaf), proof=[to_hex(p) for p in tree.proof(i)])
              for i, (u, res, leaf) in enumerate(rows)]
    return RoundSettlement(job_id=job_id, round=round, root=rnd.committed_root, total=str(amount * len(rows)),
                           commit_tx=rnd.commit_tx, leaves=leaves)


def job_owner(request: Request, ctx: ContextDep, job_id: JobIdPath, sha256: BlobHashPath) -> str:
    """The signer, who must own on-chain job `job_id` (the signed body hash is the blob's address)."""
    signer = _authenticate(request, ctx, from_hex(sha256), need_stake=False)
    job = ctx.gateway.get_job(job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist on chain {ctx.gateway.chain_id}; post it first")
    if job.owner != signer:
        raise ForbiddenError(f"job {job_id} is owned by {job.owner}, not {signer}: only the owner uploads its inputs")
    return signer


@router.put("/blobs/jobs/{job_id}/{sha256}", response_model=BlobReceipt,
            responses={201: {"model": BlobReceipt}, **ERRORS},
            openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}}})
async def put_owner_blob(job_id: JobIdPath, sha256: BlobHashPath, request: Request, response: Response,
                         ctx: ContextDep, owner: Annotated[str, Depends(job_owner)]) -> BlobReceipt:
    """Upload one of job `job_id`'s inputs as its owner (201 stored, 200 already stored)."""
    digest = normalize_digest(sha256)
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise BadRequestError(f"Content-Length must be a decimal byte count, got {declared[:40]!r}")
    try:
        size, created = await ctx.blobs.put_stream(digest, request.stream(),
                                                   declared_length=int(declared) if declared is not None else None)
    except ClientDisconnect:
        return Response(status_code=400)  # type: ignore[return-value]
    with ctx.transaction() as tx:
        crud.record_blob(tx.session, sha256=digest, size=size, uploader=owner, now=ctx.now())
    if created:  # it may be what a held job was waiting for (spec, manifest, shard)
        await anyio.to_thread.run_sync(lambda: admission.admit(ctx, job_id))
    response.status_code = 201 if created else 200
    return BlobReceipt(sha256=digest, size=size, created=created)
