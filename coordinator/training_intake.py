"""`TrainingIntake`: judges results with the training engine's own checks, in a pool of
spawned processes, so the API process never imports torch and a verification's pinned
thread count (`set_determinism`) cannot leak into other requests.

Modes (settings.intake):
- `replay` (default): `training.replay.verify_unit`: commitment, the signed inputHash
  against S_0 built from G_r and the slot state, m segments sampled with randomness drawn
  now (after the worker signed) and replayed from their snapshots, and the output blob.
  Needs the job's dataset: a packed directory `<datasets_dir>/<0x dataset hash>/`, which is
  built (hard links) from the blob store when the owner uploaded the manifest (blob = the
  spec's `dataset` hash) and its shards, or put there by `crowdtrain dataset pack`.
- `upload_check`: `training.replay.check_upload` (commitment plus every snapshot's digest)
  and the inputHash check; no replay, no dataset. Cheaper; leaves replay to verifiers.
Both start with the StructuralIntake checks in the calling process (cheap, torch-free).
A verification that cannot run (dataset missing, CUDA job on a CPU host, pool crashed,
timeout) raises UnavailableError: the API answers 503 and the lease stays the worker's.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from coordinator.compute import ComputePool
from coordinator.compute import ComputeUnavailable as VerificationUnavailable
from coordinator.datasets import materialize
from coordinator.intake import StructuralIntake, UnitSubmission, Verdict

IntakeMode = Literal["replay", "upload_check"]


class TrainingIntake(StructuralIntake):
    def __init__(self, *, mode: IntakeMode = "replay", datasets_dir: Path, processes: int = 1,
                 timeout_s: float = 600.0, pool: ComputePool | None = None) -> None:
        self.mode = mode
        self.datasets_dir = Path(datasets_dir)
        self.timeout_s = timeout_s
        self.pool = pool or ComputePool(processes)

    def close(self) -> None:
        self.pool.close()

    def verify(self, s: UnitSubmission) -> Verdict:
        pre = super().verify(s)
        if not pre.accepted:
            return pre
        args = {
            "mode": self.mode, "spec": s.spec.canonical_bytes(), "round": s.round, "unit": s.unit,
            "input_hash": s.input_hash, "output_hash": s.output_hash, "trace_root": s.trace_root,
            "trace": str(s.blob_path(s.trace_blob)), "output": str(s.blob_path(s.output_hash)),
            "snapshots": [str(s.blob_path(h)) for h in s.snapshot_blobs],
            "checkpoint": str(s.blob_path(s.checkpoint)) if s.checkpoint else None,
            "slot_state": str(s.blob_path(s.slot_state)) if s.slot_state else None,
            "dataset_dir": str(self._dataset_dir(s)) if self.mode == "replay" else "",
        }
        accepted, reason, evidence = self.pool.run(judge, args, timeout_s=self.timeout_s, what="verification")
        return Verdict(accepted, reason, evidence)


    def _dataset_dir(self, s: UnitSubmission) -> Path:
        """`<datasets_dir>/<hash>`, materialised from the blob store when absent and the
        manifest blob is stored. Raises UnavailableError naming what is missing."""
        return materialize(s.blob_path, self.datasets_dir, s.spec.dataset)


# ---- runs in the spawned child ---------------------------------------------------------------
_CACHE: dict[Any, Any] = {}


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def judge(args: dict[str, Any]) -> tuple[bool, str, bytes | None]:
    """(accepted, reason, evidence JSON) for one submission; see TrainingIntake."""
    from protocol.hashing import from_hex
    from protocol.spec import spec_from_json
    from training import DatasetError, TrainingError
    from training.determinism import set_determinism
    from training.evidence import Claim
    from training.outer import initial_global_blob
    from training.replay import check_upload, verify_unit
    from training.trace import Trace
    from training.unit import expected_input_hash

    spec = spec_from_json(args["spec"])
    try:
        set_determinism(spec.seed, spec.threads, spec.device)
    except RuntimeError as e:
        raise VerificationUnavailable(f"this coordinator cannot replay the job: {e}") from None
    trace = Trace.from_json(_read(args["trace"]))  # StructuralIntake already parsed it
    claim = Claim(args["round"], args["unit"], from_hex(args["input_hash"]), from_hex(args["output_hash"]),
                  from_hex(args["trace_root"]))
    k = spec.verification.snapshot_interval
    paths = args["snapshots"]

    def snapshot(step: int) -> bytes | None:
        j, rem = divmod(step, k)
        return _read(paths[j]) if rem == 0 and 0 <= j < len(paths) else None

    output = _read(args["output"])
    if args["checkpoint"]:
        g = _read(args["checkpoint"])
    else:  # round 0: G_0 = init_params(spec), the same on every machine
        key = ("g0", args["spec"])
        g = _CACHE.get(key) or _CACHE.setdefault(key, initial_global_blob(spec))
    slot = _read(args["slot_state"]) if args["slot_state"] else None
    try:
        if args["mode"] == "upload_check":
            problems = check_upload(spec, claim, trace, snapshot, output)
            if not problems and expected_input_hash(spec, g, slot) != claim.input_hash:
                problems.append("signed inputHash is not the digest of the round's input S_0 (G_r + slot state)")
            if problems:
                return False, "; ".join(problems), None
            return True, "upload check passed: commitment, every snapshot digest, input hash (no replay)", None
        key = ("ds", args["dataset_dir"])
        if key not in _CACHE:
            from training.data import load_dataset

            if not os.path.isfile(os.path.join(args["dataset_dir"], "manifest.json")):
                raise VerificationUnavailable(
                    f"dataset {spec.dataset} is not at {args['dataset_dir']}; pack it there (`crowdtrain dataset pack "
                    f"... --out {args['dataset_dir']}`) or set CROWDTRAIN_COORD_INTAKE=upload_check")
            try:
                _CACHE[key] = load_dataset(args["dataset_dir"], expected_hash=spec.dataset)
            except DatasetError as e:
                raise VerificationUnavailable(f"dataset {spec.dataset} at {args['dataset_dir']} is unusable: {e}") from None
        v = verify_unit(spec, _CACHE[key], claim, trace, snapshot, output, g, slot, sample_seed=os.urandom(32))
    except TrainingError as e:  # a blob the worker uploaded does not fit the job's model
        return False, f"result does not fit the job: {e}", None
    if v.accepted:
        return True, (f"replayed segments {list(v.sampled)} (k = {k}) in {v.seconds:.2f} s: every step matches "
                      "its leaf; output checked"), None
    return False, "; ".join(v.reasons), v.evidence.to_json() if v.evidence else None
