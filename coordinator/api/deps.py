"""Annotated dependencies: the service context, a DB session, Redis, and the caller.

Authentication (docs/protocol.md, "Coordinator authentication"), in this order, so that a
refused request consumes nothing: headers parse -> expiry within [now, now + window] ->
signature recovers to the claimed account -> (workers) active stake >= the Market's
minimum -> rate limit -> nonce unused (the nonce is burnt only by an otherwise valid
request). Failures are 401 (auth), 403 (unstaked), 429 (rate) with a message naming the
problem.
"""
from __future__ import annotations

from typing import Annotated, Iterator

import redis
from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy.orm import Session

from coordinator.context import Context
from protocol.auth import AuthError, parse_auth_headers, recover_auth_signer
from protocol.hashing import from_hex, sha256


async def get_context(request: Request) -> Context:
    # async on purpose: FastAPI runs sync dependencies in the thread pool, a hop this needs not
    return request.app.state.ctx  # type: ignore[no-any-return]


ContextDep = Annotated[Context, Depends(get_context)]


def get_session(ctx: ContextDep) -> Iterator[Session]:
    with ctx.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_redis(ctx: ContextDep) -> redis.Redis:
    return ctx.redis.sync


RedisDep = Annotated[redis.Redis, Depends(get_redis)]


async def body_hash(request: Request) -> bytes:
    """SHA-256 of the request body (FastAPI caches the body; the size limit middleware
    has already refused bodies over max_json_bytes)."""
    return sha256(await request.body())


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": 'CrowdtrainEIP712 realm="coordinator"'})


def _authenticate(request: Request, ctx: Context, digest: bytes, *, need_stake: bool) -> str:
    try:
        msg, sig = parse_auth_headers(request.headers, method=request.method, path=request.url.path,
                                      query=request.url.query, body_hash=digest)
    except AuthError as e:
        raise _unauthorized(str(e)) from None
    now = ctx.now()
    if msg.expiry < now:
        raise _unauthorized(f"auth expired at {msg.expiry} (now {int(now)}); sign a fresh request")
    window = ctx.settings.auth_window_s
    if msg.expiry > now + window:
        raise _unauthorized(f"auth expiry {msg.expiry} is more than {window} s ahead (now {int(now)}); "
                            f"use an expiry within {window} s")
    try:
        signer = recover_auth_signer(msg, sig, chain_id=ctx.gateway.chain_id)
    except AuthError as e:
        raise _unauthorized(f"bad signature: {e}") from None
    if signer != msg.account:
        raise _unauthorized(f"signature recovers to {signer}, not to the claimed account {msg.account}: wrong key, "
                            f"wrong chain id (this coordinator uses {ctx.gateway.chain_id}), or the signed "
                            "method/path/body differ from what was sent")
    if need_stake:
        stake, minimum = ctx.gateway.worker_stake(signer), ctx.gateway.min_worker_stake()
        if stake < max(minimum, 1):  # a zero minimum still means "some stake at risk"
            raise HTTPException(403, f"{signer} has an active worker stake of {stake}, the Market requires "
                                     f"{max(minimum, 1)}: "
                                     "stake first (`crowdtrain worker stake`)")
    retry = ctx.limiter.hit(account=signer, now=now)
    if retry is not None:
        raise HTTPException(429, f"rate limit: more than {ctx.limiter.limit} requests in {ctx.limiter.window_s} s "
                                 f"from {signer}; retry after {retry:.1f} s", headers={"Retry-After": str(int(retry) + 1)})
    if not ctx.nonces.consume(account=signer, nonce=msg.nonce, expiry=msg.expiry, now=now):
        raise _unauthorized(f"nonce 0x{msg.nonce.hex()} was already used by {signer}: this is a replayed request; "
                            "sign every request with a fresh random nonce")
    return signer


def current_account(request: Request, ctx: ContextDep, digest: Annotated[bytes, Depends(body_hash)]) -> str:
    return _authenticate(request, ctx, digest, need_stake=False)


def current_worker(request: Request, ctx: ContextDep, digest: Annotated[bytes, Depends(body_hash)]) -> str:
    return _authenticate(request, ctx, digest, need_stake=True)


BlobHashPath = Annotated[str, Path(pattern=r"^0[xX][0-9a-fA-F]{64}$", description="the blob's SHA-256, 0x-hex")]


def blob_uploader(request: Request, ctx: ContextDep, sha256: BlobHashPath) -> str:
    """A staked worker uploading a blob; the signed bodyHash is the blob's own address,
    so the signature is checked before the body is read, and the body while it streams."""
    return _authenticate(request, ctx, from_hex(sha256), need_stake=True)


CurrentAccount = Annotated[str, Depends(current_account)]
CurrentWorker = Annotated[str, Depends(current_worker)]
BlobUploader = Annotated[str, Depends(blob_uploader)]
