"""Job spec: the TOML a model owner writes, validated into a frozen pydantic model.

The spec fixes everything that determines the bytes of a training run: model
architecture, dataset (by the SHA-256 of its packed manifest), inner/outer optimizers,
DiLoCo shape (H inner steps per unit, K units per round, R rounds), batch shape, seed,
precision, thread count, verification parameters and payment. Its canonical JSON
(docs/protocol.md, "Job spec canonical encoding") hashes to the `specHash` posted on
chain, so two parties holding the same spec hash train and replay the same thing.

Units: learning rates are per-step multipliers; `reward_per_unit` is in the payment
token's smallest unit (an int; JSON carries it as a decimal string so JavaScript readers
never round it); step counts are optimizer steps. Unknown keys are rejected everywhere.
Torch-free on purpose: the coordinator's API and the chain tooling load specs too.
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from protocol import ProtocolError
from protocol.hashing import sha256

__all__ = [
    "SpecError",
    "GPTModel",
    "MLPModel",
    "InnerOptimizer",
    "OuterOptimizer",
    "Tolerance",
    "Verification",
    "Payment",
    "JobSpec",
    "parse_spec",
    "load_spec",
    "spec_from_dict",
    "spec_from_json",
]


class SpecError(ProtocolError, ValueError):
    """A job spec failed to parse or validate; the message lists each bad field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


Hash32 = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$", description="0x + 64 hex digits")]
# Token amounts can exceed both TOML's int64 and JavaScript's 2^53: accept int or a decimal
# string, hold an int, write a decimal string into the canonical JSON.
TokenAmount = Annotated[int, Field(ge=0), PlainSerializer(lambda v: str(v), return_type=str, when_used="json")]


class GPTModel(_Frozen):
    """nanoGPT-style decoder over bytes (vocab 256), pre-LayerNorm, tied embeddings."""

    kind: Literal["gpt"] = "gpt"
    n_layer: int = Field(2, ge=1, le=96)
    n_embd: int = Field(128, ge=8, le=16384)
    n_head: int = Field(4, ge=1, le=256)
    block_size: int = Field(64, ge=2, le=65536, description="maximum context length in tokens")
    vocab_size: Literal[256] = 256
    dropout: Literal[0.0] = Field(0.0, description="must be 0: dropout RNG would have to be part of the state")

    @model_validator(mode="after")
    def _heads_divide(self) -> "GPTModel":
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class MLPModel(_Frozen):
    """MLP that predicts the next byte from the previous `context` bytes (fast tests, demos)."""

    kind: Literal["mlp"] = "mlp"
    context: int = Field(8, ge=1, le=1024, description="bytes of left context per prediction")
    n_embd: int = Field(16, ge=1, le=4096, description="byte embedding width")
    hidden: int = Field(128, ge=1, le=65536)
    n_layer: int = Field(2, ge=1, le=32, description="hidden layers")
    vocab_size: Literal[256] = 256


ModelSpec = Annotated[Union[GPTModel, MLPModel], Field(discriminator="kind")]


class InnerOptimizer(_Frozen):
    """AdamW run by the worker inside a unit. The schedule runs over the whole job:
    unit (r, k) step i uses the lr of global inner step t = r*H + i out of R*H."""

    kind: Literal["adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0, le=10)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0, le=1)
    weight_decay: float = Field(0.1, ge=0, le=10)
    grad_clip: float = Field(1.0, ge=0, description="max global grad L2 norm; 0 disables clipping")
    schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(0, ge=0, description="linear warm-up, in global inner steps")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor as a fraction of lr")

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"betas must each be in [0, 1), got {list(v)}")
        return v


class OuterOptimizer(_Frozen):
    """SGD on pseudo-gradients applied by the coordinator per round (DiLoCo defaults)."""

    kind: Literal["sgd"] = "sgd"
    lr: float = Field(0.7, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True


class Tolerance(_Frozen):
    """Thresholds for `tolerance` mode; calibrate with `crowdtrain calibrate SPEC.toml`.

    loss_rtol: per step, |loss - committed| <= loss_rtol * max(|committed|, 1e-6).
    state_rel_l2: per tensor at a segment end, ||a - b||_2 <= state_rel_l2 * max(||b||_2, 1e-12).
    state_max_abs: per tensor at a segment end, max |a - b| <= state_max_abs.
    """

    loss_rtol: float = Field(ge=0, le=1)
    state_rel_l2: float = Field(ge=0, le=1)
    state_max_abs: float = Field(ge=0)


class Verification(_Frozen):
    snapshot_interval: int = Field(10, ge=1, description="k: a snapshot every k steps, segment length")
    segments: int = Field(2, ge=1, description="m: segments a verifier samples per unit")
    mode: Literal["exact", "tolerance"] = "exact"
    tolerance: Tolerance | None = None

    @model_validator(mode="after")
    def _tolerance_iff_mode(self) -> "Verification":
        if self.mode == "tolerance" and self.tolerance is None:
            raise ValueError("mode = 'tolerance' needs a [verification.tolerance] table "
                             "(run `crowdtrain calibrate SPEC.toml` for values)")
        if self.mode == "exact" and self.tolerance is not None:
            raise ValueError("[verification.tolerance] is only allowed with mode = 'tolerance'")
        return self


class Payment(_Frozen):
    reward_per_unit: TokenAmount = Field(description="payment token base units per accepted unit")

    @field_validator("reward_per_unit", mode="before")
    @classmethod
    def _decimal_string(cls, v: Any) -> Any:
        if isinstance(v, str):
            if not v.isdigit():
                raise ValueError(f"reward_per_unit must be a non-negative integer or decimal string, got {v!r}")
            return int(v)
        if isinstance(v, float):
            raise ValueError("reward_per_unit must be an integer number of token base units, not a float")
        return v


class JobSpec(_Frozen):
    """A whole job. `max_units` = K * R; `budget` = max_units * reward_per_unit."""

    name: str = Field("", max_length=200)
    model: ModelSpec
    dataset: Hash32 = Field(description="SHA-256 of the packed dataset's canonical manifest")
    inner_optimizer: InnerOptimizer = InnerOptimizer()
    outer_optimizer: OuterOptimizer = OuterOptimizer()
    inner_steps: int = Field(ge=1, le=1_000_000, description="H: inner steps per unit")
    units_per_round: int = Field(ge=1, le=100_000, description="K: units (slots) per round")
    rounds: int = Field(ge=1, le=1_000_000, description="R")
    batch_size: int = Field(ge=1, le=1 << 20, description="sequences per inner step")
    seq_len: int = Field(ge=1, le=1 << 20, description="tokens per sequence (targets are shifted by one)")
    seed: int = Field(ge=0, lt=1 << 63)
    precision: Literal["fp32", "bf16"] = "fp32"
    threads: int = Field(1, ge=1, le=1024, description="torch intra-op threads; pinned, part of exactness")
    device: Literal["cpu", "cuda"] = "cpu"
    verification: Verification = Verification()
    payment: Payment

    @field_validator("dataset")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()

    @model_validator(mode="after")
    def _cross_field(self) -> "JobSpec":
        problems = []
        if isinstance(self.model, GPTModel) and self.seq_len > self.model.block_size:
            problems.append(f"seq_len ({self.seq_len}) must be <= model.block_size ({self.model.block_size})")
        if self.precision == "bf16" and self.device != "cuda":
            problems.append("precision = 'bf16' (bf16 autocast) needs device = 'cuda'; use 'fp32' on CPU")
        k = self.verification.snapshot_interval
        if self.inner_steps % k:
            problems.append(f"verification.snapshot_interval ({k}) must divide inner_steps ({self.inner_steps})")
        elif self.verification.segments > self.inner_steps // k:
            problems.append(f"verification.segments ({self.verification.segments}) must be <= "
                            f"inner_steps / snapshot_interval ({self.inner_steps // k})")
        if self.inner_optimizer.warmup_steps > self.rounds * self.inner_steps:
            problems.append(f"inner_optimizer.warmup_steps ({self.inner_optimizer.warmup_steps}) exceeds "
                            f"the job's inner steps per slot R*H ({self.rounds * self.inner_steps})")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ---- derived -------------------------------------------------------------------
    @property
    def max_units(self) -> int:
        return self.units_per_round * self.rounds

    @property
    def budget(self) -> int:
        """Token base units needed to pay every unit of the job."""
        return self.max_units * self.payment.reward_per_unit

    @property
    def num_segments(self) -> int:
        return self.inner_steps // self.verification.snapshot_interval

    # ---- canonical encoding (docs/protocol.md) ---------------------------------------
    def canonical_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False).encode("utf-8")

    def spec_hash(self) -> bytes:
        """SHA-256 of `canonical_bytes()`: the on-chain `specHash` (32 bytes)."""
        return sha256(self.canonical_bytes())


def _format(err: ValidationError, source: str) -> str:
    lines = [f"invalid job spec ({source}): {err.error_count()} problem(s)"]
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling (see docs/training.md for the fields)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        got = "" if e["type"] in ("missing", "extra_forbidden") else f" (got {e.get('input')!r:.80})"
        lines.append(f"  - {loc}: {msg}{got}")
    return "\n".join(lines)


def spec_from_dict(data: dict[str, Any], source: str = "<dict>") -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(_format(e, source)) from None


def parse_spec(text: str, source: str = "<string>") -> JobSpec:
    """Parse TOML text into a validated `JobSpec`; raises `SpecError` with every bad field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"job spec {source} is not valid TOML: {e}") from None
    return spec_from_dict(data, source)


def load_spec(path: str | Path) -> JobSpec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"cannot read job spec {p}: {e.strerror}") from None
    return parse_spec(text, str(p))


def spec_from_json(data: bytes | str) -> JobSpec:
    """Inverse of `canonical_bytes()` (e.g. a spec fetched from the coordinator by hash)."""
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as e:
        raise SpecError(f"job spec JSON is malformed: {e}") from None
    if not isinstance(obj, dict):
        raise SpecError("job spec JSON must be an object")
    return spec_from_dict(obj, "<json>")
