"""Blob store routes: PUT (streamed, hash-checked upload), GET / HEAD (streamed, ETag = hash)."""
from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from starlette.requests import ClientDisconnect

from coordinator import crud
from coordinator.api.deps import BlobHashPath, BlobUploader, ContextDep
from coordinator.blobs import normalize_digest
from coordinator.errors import BadRequestError, NotFoundError
from protocol.wire import BlobReceipt, ErrorBody

router = APIRouter(prefix="/blobs", tags=["blobs"])
ERRORS = {s: {"model": ErrorBody} for s in (400, 401, 403, 413, 422, 429)}


@router.put("/{sha256}", response_model=BlobReceipt, responses={201: {"model": BlobReceipt}, **ERRORS},
            openapi_extra={"requestBody": {"required": True,
                                           "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                               "format": "binary"}}}}})
async def put_blob(sha256: BlobHashPath, request: Request, response: Response, ctx: ContextDep,
                   uploader: BlobUploader) -> BlobReceipt:
    """Upload a blob under its SHA-256. Streams to disk while hashing; 422 when the bytes hash
    differently, 413 over the size limit, 400 when fewer bytes arrive than Content-Length.
    Re-uploading a stored blob answers 200 with `created: false`."""
    digest = normalize_digest(sha256)
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise BadRequestError(f"Content-Length must be a decimal byte count, got {declared[:40]!r}")
    try:
        size, created = await ctx.blobs.put_stream(digest, request.stream(),
                                                   declared_length=int(declared) if declared is not None else None)
    except ClientDisconnect:  # nobody is left to answer; nothing was stored
        return Response(status_code=400)  # type: ignore[return-value]
    with ctx.transaction() as tx:
        crud.record_blob(tx.session, sha256=digest, size=size, uploader=uploader, now=ctx.now())
    response.status_code = 201 if created else 200
    return BlobReceipt(sha256=digest, size=size, created=created)


GET_RESPONSES: dict[int | str, dict] = {200: {"content": {"application/octet-stream": {}}}, 404: {"model": ErrorBody}}


@router.get("/{sha256}", response_class=FileResponse, responses=GET_RESPONSES)
def get_blob(sha256: BlobHashPath, request: Request, ctx: ContextDep) -> Response:
    """Stream a blob (Range requests allowed); `ETag` is its quoted SHA-256, `If-None-Match` answers 304."""
    return _serve(sha256, request, ctx)


@router.head("/{sha256}", response_class=FileResponse, responses=GET_RESPONSES)
def head_blob(sha256: BlobHashPath, request: Request, ctx: ContextDep) -> Response:
    """Size (Content-Length) and ETag of a blob without its bytes."""
    return _serve(sha256, request, ctx)


def _serve(sha256: str, request: Request, ctx: ContextDep) -> Response:
    digest = normalize_digest(sha256)
    path = ctx.blobs.path(digest)
    if not path.is_file():
        raise NotFoundError(f"blob {digest} is not stored here")
    etag = f'"{digest}"'
    if request.headers.get("if-none-match") in (etag, digest):
        return Response(status_code=304, headers={"ETag": etag})
    return FileResponse(path, media_type="application/octet-stream",
                        headers={"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"})
