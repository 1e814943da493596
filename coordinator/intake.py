"""Result intake: the seam through which a submitted unit is judged.

`Intake.verify(submission) -> Verdict` runs after the API has checked everything it can
by itself (lease held, blobs stored, signature recovers to the caller). Implementations:

- `StructuralIntake`: what can be checked without replaying training: the trace blob is a
  `crowdtrain-trace/1` document for this round/unit/input hash with H leaves whose Merkle
  root is the signed `traceRoot`; there are H/k + 1 snapshots (`snapshot_blobs[j]` holds
  S_{j*k}) and they and the output blob are safetensors of the right `format`. A result
  that fails any of these is rejected with the reason. It does not prove the work was done.
- `TrainingIntake` (coordinator/training_intake.py): the structural checks, then the
  training engine's checks in a process pool: replay of sampled segments
  (`training.replay.verify_unit`) or the upload check (`check_upload`).
- `NotConfiguredIntake`: refuses with a clear error (HTTP 503) so nothing is accepted
  unverified by accident; the default where torch is not installed.

`default_intake(settings)` builds the TrainingIntake; StructuralIntake alone is only ever
injected explicitly (tests, bench).
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from coordinator.errors import UnavailableError
from protocol.spec import JobSpec

if TYPE_CHECKING:
    from coordinator.compute import ComputePool
    from coordinator.core.config import Settings


class IntakeNotConfiguredError(UnavailableError):
    """No verifier is wired in, so results cannot be judged."""


@dataclass(frozen=True, kw_only=True)
class UnitSubmission:
    """A result whose lease, blobs and signature the API already checked. Digests are 0x-hex."""

    spec: JobSpec
    job_id: int
    round: int
    unit: int
    worker: str
    checkpoint: str | None  # G_r blob; None = initialise from the spec seed
    slot_state: str | None  # slot k's optimizer state blob; None = fresh
    input_hash: str
    output_hash: str
    trace_root: str
    trace_blob: str
    snapshot_blobs: tuple[str, ...]
    blob_path: Callable[[str], Path]


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str
    evidence: bytes | None = None  # stored as a blob when given (e.g. the first diverging step)


class Intake(Protocol):
    def verify(self, submission: UnitSubmission) -> Verdict: ...


class NotConfiguredIntake:
    def verify(self, submission: UnitSubmission) -> Verdict:
        raise IntakeNotConfiguredError(
            "this coordinator has no result verifier (the training engine needs torch, which is not "
            "installed here), so results cannot be judged; nothing was recorded, keep the blobs and retry later")


MAX_TRACE_BYTES = 256 << 20  # a trace leaf is ~250 bytes of JSON; H <= 1e6


def _safetensors_format(path: Path) -> str | None:
    """The `format` metadata of a safetensors file, reading only its header; None if malformed."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                return None
            n = struct.unpack("<Q", head)[0]
            if n > 100 << 20:
                return None
            meta = json.loads(f.read(n)).get("__metadata__") or {}
        fmt = meta.get("format")
        return fmt if isinstance(fmt, str) else None
    except (OSError, ValueError, AttributeError):
        return None


class StructuralIntake:
    """Checks structure and hashes only (see module docstring); never replays training."""

    def verify(self, s: UnitSubmission) -> Verdict:
        from training.trace import Trace, TraceError  # torch-free module

        path = s.blob_path(s.trace_blob)
        if path.stat().st_size > MAX_TRACE_BYTES:
            return Verdict(False, f"trace blob is larger than {MAX_TRACE_BYTES} bytes")
        try:
            trace = Trace.from_json(path.read_bytes())
        except (TraceError, UnicodeDecodeError) as e:
            return Verdict(False, f"trace blob {s.trace_blob} is not a valid trace: {e}")
        if (trace.round, trace.unit) != (s.round, s.unit):
            return Verdict(False, f"trace is for round {trace.round} unit {trace.unit}, not round {s.round} unit {s.unit}")
        if "0x" + trace.input_hash.hex() != s.input_hash:
            return Verdict(False, f"trace input hash 0x{trace.input_hash.hex()} differs from the signed input_hash {s.input_hash}")
        H = s.spec.inner_steps
        if len(trace.leaves) != H:
            return Verdict(False, f"trace has {len(trace.leaves)} leaves, the job's inner_steps is {H}")
        root = "0x" + trace.root.hex()
        if root != s.trace_root:
            return Verdict(False, f"trace leaves hash to root {root}, the signed traceRoot is {s.trace_root}")
        want = H // s.spec.verification.snapshot_interval + 1
        if len(s.snapshot_blobs) != want:
            return Verdict(False, f"{len(s.snapshot_blobs)} snapshots submitted, the job needs {want} "
                                  f"(S_0, S_k, ..., S_H with k = {s.spec.verification.snapshot_interval})")
        for j, h in enumerate(s.snapshot_blobs):
            fmt = _safetensors_format(s.blob_path(h))
            if fmt != "crowdtrain/state":
                return Verdict(False, f"snapshot {j} ({h}) is not a crowdtrain/state safetensors blob (format {fmt!r})")
        fmt = _safetensors_format(s.blob_path(s.output_hash))
        if fmt != "crowdtrain/output":
            return Verdict(False, f"output blob {s.output_hash} is not a crowdtrain/output safetensors blob (format {fmt!r})")
        return Verdict(True, "structure and hashes verified (trace root, snapshot count and formats); no replay")


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def default_intake(settings: "Settings", pool: "ComputePool | None" = None) -> Intake:
    """TrainingIntake in `settings.intake` mode; NotConfiguredIntake where torch is absent."""
    if not torch_available():
        return NotConfiguredIntake()
    from coordinator.training_intake import TrainingIntake

    return TrainingIntake(mode=settings.intake, datasets_dir=settings.resolved_datasets_dir,
                          processes=settings.verify_processes, timeout_s=0.9 * settings.verify_timeout_s, pool=pool)
