"""Bad input everywhere: each case is a 4xx whose message says what was wrong, and the
database, the scheduling state in Redis and the blob store are unchanged afterwards."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from protocol.auth import HEADER_EXPIRY, HEADER_NONCE, HEADER_SIGNATURE, make_auth_headers
from tests.coordinator.helpers import Env, make_accounts, sha, spec_of


@dataclass
class Setup:
    """What every case starts from: job 7 registered, accounts[0] holds a lease with its
    result's blobs uploaded, accounts[1] holds another lease."""

    env: Env
    grant: dict[str, Any]
    other: dict[str, Any]
    body: dict[str, Any]


@pytest.fixture
def setup(env: Env) -> Setup:
    spec = env.register(7)
    k0, k1 = env.accounts[:2]
    grant = env.claim(k0).json()
    other = env.claim(k1).json()
    res = env.result_for(grant, k0, spec)
    return Setup(env, grant, other, res.body)


def _wrong_blob_hash(s: Setup) -> Any:
    data = b"some bytes"
    return s.env.put_blob(s.env.accounts[0], data, digest=sha(b"other bytes"))


def _bad_auth_signature(s: Setup) -> Any:
    e = s.env
    h = make_auth_headers(e.accounts[0], method="POST", path="/jobs/7/claim", chain_id=e.gateway.chain_id)
    sig = bytearray.fromhex(h[HEADER_SIGNATURE][2:])
    sig[10] ^= 0xFF
    h[HEADER_SIGNATURE] = "0x" + sig.hex()
    return e.client.post("/jobs/7/claim", headers=h)


def _signed_for_other_path(s: Setup) -> Any:
    return s.env.call(s.env.accounts[0], "POST", "/jobs/7/claim", sign_path="/jobs/8/claim")


def _tampered_body(s: Setup) -> Any:
    body = dict(s.body, trace_root="0x" + "00" * 32)
    return s.env.call(s.env.accounts[0], "POST", f"/units/{s.grant['unit_id']}/result", body,
                      sign_body=json.dumps(s.body).encode())


def _wrong_chain_id(s: Setup) -> Any:
    h = make_auth_headers(s.env.accounts[0], method="POST", path="/jobs/7/claim", chain_id=1)
    return s.env.client.post("/jobs/7/claim", headers=h)


def _replayed_nonce(s: Setup) -> Any:
    e = s.env
    heartbeat = f"/leases/{s.grant['lease_id']}/heartbeat"
    h = make_auth_headers(e.accounts[0], method="POST", path=heartbeat, chain_id=e.gateway.chain_id)
    assert e.client.post(heartbeat, headers=h).status_code == 200
    s.before = e.state()  # type: ignore[attr-defined]  # the heartbeat legitimately moved the expiry
    return e.client.post(heartbeat, headers=h)


def _expired_auth(s: Setup) -> Any:
    h = make_auth_headers(s.env.accounts[0], method="POST", path="/jobs/7/claim", chain_id=s.env.gateway.chain_id,
                          now=time.time() - 120)
    return s.env.client.post("/jobs/7/claim", headers=h)


def _auth_too_far_ahead(s: Setup) -> Any:
    h = make_auth_headers(s.env.accounts[0], method="POST", path="/jobs/7/claim", chain_id=s.env.gateway.chain_id,
                          ttl_s=10 * 86_400)
    return s.env.client.post("/jobs/7/claim", headers=h)


def _missing_auth(s: Setup) -> Any:
    return s.env.client.post("/jobs/7/claim")


def _malformed_auth_headers(s: Setup) -> Any:
    h = make_auth_headers(s.env.accounts[0], method="POST", path="/jobs/7/claim", chain_id=s.env.gateway.chain_id)
    h[HEADER_NONCE] = "0xnothex"
    h[HEADER_EXPIRY] = "soon"
    return s.env.client.post("/jobs/7/claim", headers=h)


def _unstaked_claim(s: Setup) -> Any:
    return s.env.claim(s.env.accounts[3])


def _unstaked_upload(s: Setup) -> Any:
    return s.env.put_blob(s.env.accounts[3], b"data from nobody")


def _oversized_upload_declared(s: Setup) -> Any:
    return s.env.put_blob(s.env.accounts[0], b"x" * (s.env.settings.max_blob_bytes + 1))


def _oversized_upload_streamed(s: Setup) -> Any:
    e = s.env
    data = b"y" * (e.settings.max_blob_bytes + 1)
    d = sha(data)
    h = make_auth_headers(e.accounts[0], method="PUT", path=f"/blobs/{d}", body_hash=bytes.fromhex(d[2:]),
                          chain_id=e.gateway.chain_id)

    def chunks() -> Any:  # no Content-Length: chunked transfer, the limit trips mid-stream
        for i in range(0, len(data), 65536):
            yield data[i:i + 65536]

    return e.client.put(f"/blobs/{d}", content=chunks(), headers=h)


def _truncated_upload(s: Setup) -> Any:
    e = s.env
    data = b"z" * 1000
    d = sha(data)
    h = make_auth_headers(e.accounts[0], method="PUT", path=f"/blobs/{d}", body_hash=bytes.fromhex(d[2:]),
                          chain_id=e.gateway.chain_id)
    h["Content-Length"] = "2000"
    return e.client.put(f"/blobs/{d}", content=data, headers=h)


def _malformed_spec(s: Setup) -> Any:
    spec = spec_of().model_dump(mode="json")
    del spec["inner_steps"]
    spec["batch_size"] = -1
    s.env.post_chain_job(9, spec_of())
    return s.env.call(s.env.accounts[0], "POST", "/jobs", {"job_id": 9, "spec": spec})


def _spec_hash_mismatch(s: Setup) -> Any:
    s.env.post_chain_job(9, spec_of())
    return s.env.call(s.env.accounts[0], "POST", "/jobs", {"job_id": 9, "spec": spec_of(seed=2).model_dump(mode="json")})


def _job_not_on_chain(s: Setup) -> Any:
    return s.env.call(s.env.accounts[0], "POST", "/jobs", {"job_id": 99, "spec": spec_of().model_dump(mode="json")})


def _result_for_unit_not_held(s: Setup) -> Any:
    # accounts[1] submits for accounts[0]'s unit, with accounts[0]'s lease id, signing its own WorkResult
    return s.env.submit(s.env.accounts[1], s.grant["unit_id"], s.body)


def _result_with_other_lease(s: Setup) -> Any:
    body = dict(s.body, lease_id=s.other["lease_id"])
    return s.env.submit(s.env.accounts[0], s.grant["unit_id"], body)


def _result_without_lease(s: Setup) -> Any:
    body = dict(s.body, lease_id="ab" * 16)
    return s.env.submit(s.env.accounts[0], s.grant["unit_id"], body)


def _result_missing_blob(s: Setup) -> Any:
    body = dict(s.body, trace_blob=sha(b"never uploaded"))
    return s.env.submit(s.env.accounts[0], s.grant["unit_id"], body)


def _result_signed_by_other_key(s: Setup) -> Any:
    e = s.env
    res = e.result_for(s.grant, make_accounts(6)[5], spec_of(), upload=False)
    return e.submit(e.accounts[0], s.grant["unit_id"], dict(s.body, signature=res.body["signature"]))


def _result_bad_signature_bytes(s: Setup) -> Any:
    return s.env.submit(s.env.accounts[0], s.grant["unit_id"], dict(s.body, signature="0x" + "00" * 65))


def _result_malformed_json(s: Setup) -> Any:
    return s.env.call(s.env.accounts[0], "POST", f"/units/{s.grant['unit_id']}/result",
                      content=b'{"lease_id": ', headers={"content-type": "application/json"})


def _result_extra_field(s: Setup) -> Any:
    return s.env.submit(s.env.accounts[0], s.grant["unit_id"], dict(s.body, bonus=1))


def _result_bad_hash_format(s: Setup) -> Any:
    return s.env.submit(s.env.accounts[0], s.grant["unit_id"], dict(s.body, output_hash="0x1234"))


def _json_too_large(s: Setup) -> Any:
    body = dict(s.body, snapshot_blobs=["0x" + "ab" * 32] * 2000)
    return s.env.submit(s.env.accounts[0], s.grant["unit_id"], body)


def _json_too_large_chunked(s: Setup) -> Any:
    e = s.env
    raw = json.dumps(dict(s.body, snapshot_blobs=["0x" + "ab" * 32] * 2000)).encode()
    path = f"/units/{s.grant['unit_id']}/result"
    h = make_auth_headers(e.accounts[0], method="POST", path=path, body=raw, chain_id=e.gateway.chain_id)

    def chunks() -> Any:  # no Content-Length: the limit trips while reading
        for i in range(0, len(raw), 4096):
            yield raw[i:i + 4096]

    return e.client.post(path, content=chunks(), headers={**h, "content-type": "application/json"})


def _heartbeat_not_holder(s: Setup) -> Any:
    return s.env.call(s.env.accounts[1], "POST", f"/leases/{s.grant['lease_id']}/heartbeat")


def _release_not_holder(s: Setup) -> Any:
    return s.env.call(s.env.accounts[1], "POST", f"/leases/{s.grant['lease_id']}/release")


def _claim_unknown_job(s: Setup) -> Any:
    return s.env.claim(s.env.accounts[2], job_id=12345)


def _claim_job_id_out_of_range(s: Setup) -> Any:
    return s.env.claim(s.env.accounts[2], job_id=2**70)


def _bad_lease_id_format(s: Setup) -> Any:
    return s.env.call(s.env.accounts[0], "POST", "/leases/NOT-A-LEASE/heartbeat")


def _result_unknown_unit(s: Setup) -> Any:
    return s.env.submit(s.env.accounts[0], 999_999, s.body)


CASES: dict[str, tuple[Callable[[Setup], Any], int, str]] = {
    "wrong_blob_hash": (_wrong_blob_hash, 422, "declared"),
    "bad_auth_signature": (_bad_auth_signature, 401, "signature"),
    "signed_for_other_path": (_signed_for_other_path, 401, "recovers to"),
    "tampered_body": (_tampered_body, 401, "recovers to"),
    "wrong_chain_id": (_wrong_chain_id, 401, "chain id"),
    "replayed_nonce": (_replayed_nonce, 401, "already used"),
    "expired_auth": (_expired_auth, 401, "expired"),
    "auth_too_far_ahead": (_auth_too_far_ahead, 401, "ahead"),
    "missing_auth": (_missing_auth, 401, "missing auth header"),
    "malformed_auth_headers": (_malformed_auth_headers, 401, "X-Crowdtrain-Expiry"),
    "unstaked_claim": (_unstaked_claim, 403, "stake"),
    "unstaked_upload": (_unstaked_upload, 403, "stake"),
    "oversized_upload_declared": (_oversized_upload_declared, 413, "limit of 1048576 bytes"),
    "oversized_upload_streamed": (_oversized_upload_streamed, 413, "limit of 1048576 bytes"),
    "truncated_upload": (_truncated_upload, 400, "truncated"),
    "malformed_spec": (_malformed_spec, 422, "inner_steps: required field is missing"),
    "spec_hash_mismatch": (_spec_hash_mismatch, 422, "on chain has specHash"),
    "job_not_on_chain": (_job_not_on_chain, 404, "does not exist on chain"),
    "result_for_unit_not_held": (_result_for_unit_not_held, 403, "is held by"),
    "result_with_other_lease": (_result_with_other_lease, 409, "is for unit"),
    "result_without_lease": (_result_without_lease, 404, "not live"),
    "result_missing_blob": (_result_missing_blob, 422, "not stored"),
    "result_signed_by_other_key": (_result_signed_by_other_key, 403, "signature recovers to"),
    "result_bad_signature_bytes": (_result_bad_signature_bytes, 422, "bad WorkResult signature"),
    "result_malformed_json": (_result_malformed_json, 422, "JSON"),
    "result_extra_field": (_result_extra_field, 422, "bonus"),
    "result_bad_hash_format": (_result_bad_hash_format, 422, "output_hash"),
    "json_too_large": (_json_too_large, 413, "exceeds the limit"),
    "json_too_large_chunked": (_json_too_large_chunked, 413, "exceeds the limit"),
    "heartbeat_not_holder": (_heartbeat_not_holder, 403, "is held by"),
    "release_not_holder": (_release_not_holder, 403, "is held by"),
    "claim_unknown_job": (_claim_unknown_job, 404, "not registered"),
    "claim_job_id_out_of_range": (_claim_job_id_out_of_range, 422, "job_id"),
    "bad_lease_id_format": (_bad_lease_id_format, 422, "lease_id"),
    "result_unknown_unit": (_result_unknown_unit, 404, "does not exist"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_clear_4xx_and_changes_nothing(setup: Setup, case: str) -> None:
    fn, status, needle = CASES[case]
    setup.before = setup.env.state()  # type: ignore[attr-defined]
    r = fn(setup)
    assert r.status_code == status, (r.status_code, r.text)
    detail = r.json()["detail"]
    text = detail if isinstance(detail, str) else json.dumps(detail)
    assert needle in text, text
    assert setup.env.state() == setup.before  # type: ignore[attr-defined]
    tmp = setup.env.settings.resolved_blob_dir / "tmp"
    assert not any(tmp.iterdir()), "an aborted upload left a temporary file"
