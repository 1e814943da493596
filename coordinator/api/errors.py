"""HTTP mapping of domain errors, and the request-size guard for non-upload routes.

Every domain error class maps to one status; the body is `{"detail": message}`. Anything
unexpected is a 500 whose body names the request id of the log line, never a traceback.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coordinator import CoordinatorError
from coordinator.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    UnauthenticatedError,
    UnavailableError,
)
from protocol import ProtocolError

log = logging.getLogger(__name__)

STATUS: list[tuple[type[Exception], int]] = [
    (NotFoundError, 404),
    (PayloadTooLargeError, 413),
    (BadRequestError, 400),
    (InvalidInputError, 422),
    (UnauthenticatedError, 401),
    (ForbiddenError, 403),
    (GoneError, 410),
    (ConflictError, 409),
    (RateLimitedError, 429),
    (UnavailableError, 503),
]


def _status(exc: Exception) -> int:
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code
    return 500


def install_error_handlers(app: FastAPI) -> None:
    async def coordinator_error(_request: Request, exc: Exception) -> JSONResponse:
        code = _status(exc)
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimitedError):
            headers["Retry-After"] = str(int(exc.retry_after_s) + 1)
        if code == 500:
            log.exception("unmapped coordinator error", exc_info=exc)
        return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers)

    async def protocol_error(_request: Request, exc: Exception) -> JSONResponse:
        # protocol's ValueError subclasses (bad digest, bad EIP-712 field) are the caller's input
        code = 422 if isinstance(exc, ValueError) else 500
        if code == 500:
            log.exception("protocol error", exc_info=exc)
        return JSONResponse({"detail": str(exc)}, status_code=code)

    app.add_exception_handler(CoordinatorError, coordinator_error)
    app.add_exception_handler(ProtocolError, protocol_error)


class BodySizeLimit:
    """Refuse request bodies over `limit` bytes with 413 before any route sees them, except
    on blob uploads (`PUT /blobs/...`), which the blob store limits while streaming.

    Other bodies are small JSON: the guard reads the whole body first (declared length or
    chunked), answers 413 as soon as it passes the limit, and hands the route the buffered
    body, so a chunked oversize body gets the same clear 413 as a declared one.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] == "PUT" and scope["path"].startswith("/blobs/")):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return  # nobody to answer
            body = msg.get("body", b"")
            size += len(body)
            if size > self.limit:
                await self._too_large(send)
                return
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        buffered: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> Message:
            nonlocal buffered
            if buffered is not None:
                msg, buffered = buffered, None
                return msg
            return await receive()  # after the body: wait for the disconnect as usual

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        body = (b'{"detail":"request body exceeds the limit of %d bytes for JSON requests; '
                b'upload large data as blobs (PUT /blobs/<sha256>)"}' % self.limit)
        headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
