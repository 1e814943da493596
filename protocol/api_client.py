"""HTTP client of the coordinator API, shared by the worker, the verifier and the owner's commands.

    api = CoordinatorApi("http://127.0.0.1:8000", signer, chain_id=31337)
    grant = api.claim(job_id)                     # LeaseGrant | None (nothing free now)
    api.heartbeat(grant.lease_id); api.put_blob(data); api.submit(unit_id, submission)

Bodies are the pydantic models of `protocol/wire.py`; state-changing requests carry the
EIP-712 `CoordinatorAuth` headers of `protocol/auth.py`, signed afresh (new nonce) on every
attempt. Torch-free.

Retries: only a connection failure, HTTP 502/504, and 429 (after its Retry-After) are
retried, until `retry_deadline_s` seconds after the first attempt; then
`ApiUnavailable`. Every other answer >= 400 raises the `ApiRequestError` subclass for its
status, carrying the coordinator's own `detail` (which says what to do).

Blob downloads stream into a file while hashing and raise `BlobIntegrityError` when the
bytes do not hash to the address asked for: a coordinator cannot hand out altered blobs.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, TypeVar

import httpx
from eth_account.signers.local import LocalAccount

from protocol import ProtocolError
from protocol.auth import make_auth_headers
from protocol.hashing import from_hex
from protocol.wire import (BlobReceipt, CoordinatorInfo, HealthView, JobView, LeaseGrant, LeaseStatus, ResultReceipt,
                           ResultSubmission, ResultView, RoundSettlement, RoundView, UnitInputs, UnitView)

T = TypeVar("T")
CHUNK = 1 << 20  # bytes per read/write while streaming blobs


class ApiError(ProtocolError):
    """Base of every error raised by the coordinator API client."""


class ApiUnavailable(ApiError, ConnectionError):
    """The coordinator did not answer (refused, timed out, 502/504) before the retry deadline."""


class BlobIntegrityError(ApiError, ValueError):
    """Downloaded bytes do not hash to the requested content address."""


class ApiRequestError(ApiError, RuntimeError):
    """The coordinator answered an error status. `status` and `detail` are its answer."""

    def __init__(self, method: str, path: str, status: int, detail: Any) -> None:
        self.method, self.path, self.status, self.detail = method, path, status, detail
        text = detail if isinstance(detail, str) else json.dumps(detail)[:500]
        super().__init__(f"{method} {path} -> HTTP {status}: {text}")


class ApiInvalid(ApiRequestError, ValueError):
    """400 / 413 / 422: the request's content was refused."""


class ApiUnauthorized(ApiRequestError, PermissionError):
    """401: auth missing, expired, replayed or signed for another chain id."""


class ApiForbidden(ApiRequestError, PermissionError):
    """403: authenticated but not allowed (unstaked, not the lease holder, not the job owner)."""


class ApiNotFound(ApiRequestError, LookupError):
    """404: no such job, round, unit, lease, result or blob."""


class ApiConflict(ApiRequestError):
    """409: the request contradicts the current state (unit already accepted, job not active)."""


class ApiGone(ApiRequestError):
    """410: the lease expired and its unit went back to the queue."""


class ApiRateLimited(ApiRequestError):
    """429 after the retry deadline."""


class ApiServiceUnavailable(ApiRequestError):
    """503: a dependency of the coordinator (chain RPC, result verifier) is not available."""


_BY_STATUS: dict[int, type[ApiRequestError]] = {400: ApiInvalid, 413: ApiInvalid, 422: ApiInvalid,
                                                401: ApiUnauthorized, 403: ApiForbidden, 404: ApiNotFound,
                                                409: ApiConflict, 410: ApiGone, 429: ApiRateLimited,
                                                503: ApiServiceUnavailable}
_RETRY_STATUS = frozenset({429, 502, 504})
_RETRY_EXC = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout,
              httpx.PoolTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def sha256_file(path: Path) -> str:
    """`0x` + SHA-256 hex of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return "0x" + h.hexdigest()


class CoordinatorApi:
    """One coordinator. `signer` may be None for read-only use (status, downloads).

    `chain_id` is the chain the auth signatures name; when None it is read from
    `GET /health` on first use. Times are seconds.
    """

    def __init__(self, base_url: str, signer: LocalAccount | None = None, *, chain_id: int | None = None,
                 timeout_s: float = 30.0, retry_deadline_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.retry_deadline_s = retry_deadline_s
        self._chain_id = chain_id
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport,
                                  headers={"User-Agent": "crowdtrain-agent/1"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "CoordinatorApi":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self.health().chain_id
        return self._chain_id

    # -- transport ---------------------------------------------------------------------
    def _headers(self, method: str, path: str, body: bytes, signed: bool, body_hash: bytes | None,
                 query: str) -> dict[str, str]:
        if not signed:
            return {}
        if self.signer is None:
            raise ApiError(f"{method} {path} must be signed, but this client has no key")
        return make_auth_headers(self.signer, method=method, path=path, body=body, body_hash=body_hash,
                                 chain_id=self.chain_id, query=query)

    def _request(self, method: str, path: str, *, body: bytes = b"", json_body: Any = None, signed: bool = False,
                 params: dict[str, Any] | None = None, content: Callable[[], Iterator[bytes]] | None = None,
                 body_hash: bytes | None = None, extra: dict[str, str] | None = None,
                 ok: tuple[int, ...] = ()) -> httpx.Response:
        """Send with retries; `content` is a factory of a fresh body stream per attempt."""
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
        query = str(httpx.QueryParams(params or {}))
        deadline = time.monotonic() + self.retry_deadline_s
        delay = 0.1
        while True:
            headers = self._headers(method, path, body, signed, body_hash, query)
            if json_body is not None:
                headers["Content-Type"] = "application/json"
            headers.update(extra or {})
            try:
                resp = self._http.request(method, path + (f"?{query}" if query else ""),
                                          content=content() if content else (body or None), headers=headers)
            except _RETRY_EXC as e:
                if time.monotonic() >= deadline:
                    raise ApiUnavailable(f"coordinator {self.base_url} did not answer {method} {path} "
                                         f"({e.__class__.__name__}) within {self.retry_deadline_s:g} s: is it "
                                         "running, and is --coordinator-url right?") from e
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if resp.status_code < 400 or resp.status_code in ok:
                return resp
            if resp.status_code in _RETRY_STATUS and time.monotonic() < deadline:
                wait = _retry_after(resp) if resp.status_code == 429 else delay
                time.sleep(min(max(wait, 0.05), max(0.05, deadline - time.monotonic())))
                delay = min(delay * 2, 2.0)
                continue
            raise _error(method, path, resp)

    def _get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._request("GET", path, params=params).json()

    # -- reads -------------------------------------------------------------------------
    def health(self) -> HealthView:
        return HealthView.model_validate(self._get_json("/health"))

    def list_jobs(self, *, limit: int = 1000) -> list[JobView]:
        return [JobView.model_validate(j) for j in self._get_json("/jobs", {"limit": limit})]

    def get_job(self, job_id: int) -> JobView:
        return JobView.model_validate(self._get_json(f"/jobs/{job_id}"))

    def rounds(self, job_id: int) -> list[RoundView]:
        return [RoundView.model_validate(r) for r in self._get_json(f"/jobs/{job_id}/rounds")]

    def units(self, job_id: int, round: int) -> list[UnitView]:
        return [UnitView.model_validate(u) for u in self._get_json(f"/jobs/{job_id}/rounds/{round}/units")]

    def unit(self, unit_id: int) -> UnitView:
        return UnitView.model_validate(self._get_json(f"/units/{unit_id}"))

    def results(self, unit_id: int) -> list[ResultView]:
        return [ResultView.model_validate(r) for r in self._get_json(f"/units/{unit_id}/results")]

    def result(self, result_id: int) -> ResultView:
        return ResultView.model_validate(self._get_json(f"/results/{result_id}"))

    def events(self, *, job_id: int | None = None, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"after_id": after_id, "limit": limit}
        if job_id is not None:
            params["job_id"] = job_id
        return list(self._get_json("/events/history", params))

    def settlement(self, job_id: int, round: int) -> RoundSettlement:
        """A committed round's leaves with proofs (409 ApiConflict until the round is committed)."""
        return RoundSettlement.model_validate(self._get_json(f"/jobs/{job_id}/rounds/{round}/settlement"))

    def unit_inputs(self, unit_id: int) -> UnitInputs:
        return UnitInputs.model_validate(self._get_json(f"/units/{unit_id}/inputs"))

    def info(self) -> CoordinatorInfo:
        return CoordinatorInfo.model_validate(self._get_json("/info"))

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """Any GET route's JSON body (routes added after this client was written)."""
        return self._get_json(path, params)

    # -- blobs -------------------------------------------------------------------------
    def has_blob(self, digest: str) -> bool:
        return self._request("HEAD", f"/blobs/{digest.lower()}", ok=(404,)).status_code == 200

    def download_blob(self, digest: str, out: BinaryIO) -> int:
        """Stream blob `digest` into `out`; returns its size in bytes. Raises BlobIntegrityError
        when the bytes hash differently (nothing useful was written: discard `out`)."""
        digest = digest.lower()
        from_hex(digest)  # validates the address before any request
        deadline = time.monotonic() + self.retry_deadline_s
        while True:
            try:
                with self._http.stream("GET", f"/blobs/{digest}") as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        raise _error("GET", f"/blobs/{digest}", resp)
                    out.seek(0)
                    out.truncate()
                    h, size = hashlib.sha256(), 0
                    for chunk in resp.iter_bytes(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                break
            except _RETRY_EXC as e:
                if time.monotonic() >= deadline:
                    raise ApiUnavailable(f"coordinator {self.base_url} did not serve blob {digest} within "
                                         f"{self.retry_deadline_s:g} s ({e.__class__.__name__})") from e
                time.sleep(0.2)
        got = "0x" + h.hexdigest()
        if got != digest:
            raise BlobIntegrityError(f"coordinator {self.base_url} served {size} bytes for blob {digest} that hash "
                                     f"to {got}: refusing them (corrupted or altered in transit)")
        return size

    def get_blob(self, digest: str) -> bytes:
        """A small blob in memory (specs, traces), hash-checked."""
        import io

        buf = io.BytesIO()
        self.download_blob(digest, buf)
        return buf.getvalue()

    def put_blob(self, data: bytes | Path, *, digest: str | None = None, path: str | None = None) -> BlobReceipt:
        """Upload bytes or a file under its SHA-256 (streamed for files). `path` overrides the
        route (`/blobs/<h>` by default); signed with the blob's address as the body hash."""
        if isinstance(data, Path):
            digest = digest or sha256_file(data)
            size = data.stat().st_size
            file_path = data

            def stream() -> Iterator[bytes]:
                with open(file_path, "rb") as f:
                    yield from iter(lambda: f.read(CHUNK), b"")
            content: Callable[[], Iterator[bytes]] | None = stream
            body = b""
        else:
            digest = digest or "0x" + hashlib.sha256(data).hexdigest()
            size, content, body = len(data), None, bytes(data)
        route = path or f"/blobs/{digest}"
        resp = self._request("PUT", route, body=body, content=content, signed=True, body_hash=from_hex(digest),
                             extra={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        return BlobReceipt.model_validate(resp.json())

    # -- signed: jobs, leases, results ----------------------------------------------------
    def register_job(self, job_id: int, spec: dict[str, Any]) -> JobView:
        return JobView.model_validate(self._request("POST", "/jobs", json_body={"job_id": job_id, "spec": spec},
                                                    signed=True).json())

    def claim(self, job_id: int) -> tuple[LeaseGrant | None, float]:
        """(grant, 0) or (None, seconds to wait) when no unit is free right now."""
        resp = self._request("POST", f"/jobs/{job_id}/claim", signed=True)
        if resp.status_code == 204:
            return None, _retry_after(resp)
        return LeaseGrant.model_validate(resp.json()), 0.0

    def heartbeat(self, lease_id: str) -> LeaseStatus:
        return LeaseStatus.model_validate(self._request("POST", f"/leases/{lease_id}/heartbeat", signed=True).json())

    def release(self, lease_id: str) -> None:
        self._request("POST", f"/leases/{lease_id}/release", signed=True)

    def submit(self, unit_id: int, body: ResultSubmission) -> ResultReceipt:
        resp = self._request("POST", f"/units/{unit_id}/result", json_body=body.model_dump(mode="json"), signed=True)
        return ResultReceipt.model_validate(resp.json())

    def post_json(self, path: str, body: Any = None) -> Any:
        """A signed POST to any route (routes added after this client was written)."""
        resp = self._request("POST", path, json_body=body, signed=True)
        return resp.json() if resp.content else None


def _retry_after(resp: httpx.Response) -> float:
    try:
        return max(0.0, float(resp.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def _error(method: str, path: str, resp: httpx.Response) -> ApiRequestError:
    try:
        detail: Any = resp.json().get("detail", resp.text)
    except (ValueError, AttributeError):
        detail = resp.text[:500] or resp.reason_phrase
    cls = _BY_STATUS.get(resp.status_code, ApiRequestError)
    return cls(method, path, resp.status_code, detail)
