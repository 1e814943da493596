"""The training step every role runs: forward, cross-entropy, global-norm clip, AdamW.

AdamW is written out (not `torch.optim.AdamW`) so its state is exactly the tensors named in
the canonical state (exp_avg, exp_avg_sq, an integer step) and its arithmetic never
changes with torch's foreach/fused dispatch. Weight decay applies to parameters with
ndim >= 2 (matrices and embeddings), not to biases or LayerNorm gains (nanoGPT).

Learning-rate schedule: inner step i of unit (r, k) is global inner step t = r*H + i of
T = R*H. constant: lr. cosine: linear warm-up lr*(t+1)/W for t < W, then
lr*(m + (1-m)*0.5*(1+cos(pi*(t-W)/(T-W)))) with m = min_lr_ratio.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Mapping

import torch
import torch.nn.functional as F

from protocol.spec import JobSpec
from training.determinism import resolve_device
from training.models import build_model
from training import StateError
from training.state import (EXP_AVG, EXP_AVG_SQ, PARAM, STEP, raw_bytes, check_names, digest_parts, header_table,
                            sorted_names, to_blob)


def lr_at(spec: JobSpec, round: int, step: int) -> float:
    """Inner learning rate for unit step `step` of round `round` (float64 Python arithmetic)."""
    o = spec.inner_optimizer
    t, total = round * spec.inner_steps + step, spec.rounds * spec.inner_steps
    if o.schedule == "constant":
        return o.lr
    w = o.warmup_steps
    if t < w:
        return o.lr * (t + 1) / w
    span = max(total - w, 1)
    frac = min((t - w) / span, 1.0)
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


class Trainer:
    """Model parameters + AdamW state on the job's device, and the one training step.

    Parameters, exp_avg and exp_avg_sq each live in one flat fp32 buffer, tensors laid out
    in sorted-name order (module parameters are views into it). The optimizer then runs
    as a handful of vector ops, and the state digest hashes three large buffers (the
    canonical byte order of state.py puts data sections in exactly this order).
    `precision` / `device` overrides exist for calibration (another device) and the
    adversary tests (another precision); honest roles pass nothing and get the spec's.
    """

    def __init__(self, spec: JobSpec, *, device: str | None = None, precision: str | None = None) -> None:
        self.spec = spec
        self.device = resolve_device(device or spec.device)
        self.precision = precision or spec.precision
        self.model = build_model(spec)
        named = dict(self.model.named_parameters())
        self.names = sorted_names(named)
        sizes = [named[n].numel() for n in self.names]
        total = sum(sizes)
        self.p_flat = torch.zeros(total, dtype=torch.float32, device=self.device)
        self.m_flat = torch.zeros_like(self.p_flat)
        self.v_flat = torch.zeros_like(self.p_flat)
        self.params: dict[str, torch.Tensor] = {}
        self.exp_avg: dict[str, torch.Tensor] = {}
        self.exp_avg_sq: dict[str, torch.Tensor] = {}
        decay = torch.zeros(total, dtype=torch.float32)
        off = 0
        for n, size in zip(self.names, sizes):
            p, shape = named[n], named[n].shape
            p.data = self.p_flat[off:off + size].view(shape)
            self.params[n] = p
            self.exp_avg[n] = self.m_flat[off:off + size].view(shape)
            self.exp_avg_sq[n] = self.v_flat[off:off + size].view(shape)
            if p.dim() >= 2:
                decay[off:off + size] = 1.0
            off += size
        self.model.to(self.device)  # moves the non-persistent buffers (attention mask)
        self.decay_mask = decay.to(self.device)
        self.step_count = 0
        o = spec.inner_optimizer
        self.beta1, self.beta2 = o.betas
        entries = ([(EXP_AVG + n, torch.float32, tuple(named[n].shape)) for n in self.names]
                   + [(EXP_AVG_SQ + n, torch.float32, tuple(named[n].shape)) for n in self.names]
                   + [(STEP, torch.int64, ())]
                   + [(PARAM + n, torch.float32, tuple(named[n].shape)) for n in self.names])
        self._header = header_table(entries)

    # ---- state -----------------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        """Live views of the full training state under canonical names (no copies)."""
        out: dict[str, torch.Tensor] = {}
        for n in self.names:
            out[PARAM + n] = self.params[n].data
            out[EXP_AVG + n] = self.exp_avg[n]
            out[EXP_AVG_SQ + n] = self.exp_avg_sq[n]
        out[STEP] = torch.tensor(self.step_count, dtype=torch.int64)
        return out

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy a full state (param/*, adam.*) in; raises StateError if it does not fit."""
        check_names(state, {n: t for n, t in self.state().items()}, "training state")
        with torch.no_grad():
            for n in self.names:
                self.params[n].copy_(state[PARAM + n])
                self.exp_avg[n].copy_(state[EXP_AVG + n])
                self.exp_avg_sq[n].copy_(state[EXP_AVG_SQ + n])
        step = int(state[STEP].item())
        if step < 0:
            raise StateError(f"adam.step is {step}; it must be >= 0")
        self.step_count = step

    def digest(self) -> bytes:
        """state_digest(self.state()), computed from the flat buffers (same bytes, faster)."""
        bufs = [self.m_flat, self.v_flat, torch.tensor(self.step_count, dtype=torch.int64), self.p_flat]
        return digest_parts([self._header, *(raw_bytes(b) for b in bufs)])

    def snapshot(self) -> bytes:
        """The full state as a `crowdtrain/state` safetensors blob (a copy)."""
        return to_blob(self.state(), "crowdtrain/state")

    # ---- the step --------------------------------------------------------------------
    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean next-byte cross-entropy (nats/token) of uint8 tokens (B, T+1)."""
        tok = tokens.to(self.device, non_blocking=True).long()
        x, y = tok[:, :-1], tok[:, 1:]
        if self.precision == "bf16":
            ctx = torch.autocast(self.device.type, dtype=torch.bfloat16)
        else:
            ctx = nullcontext()
        with ctx:
            logits = self.model(x)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))

    def step(self, tokens: torch.Tensor, lr: float) -> float:
        """One inner step on uint8 tokens (B, T+1) at learning rate `lr`.

        Returns the step's loss (the float32 value as a Python float; a device sync point).
        """
        loss = self.loss(tokens)
        grads = torch.autograd.grad(loss, [self.params[n] for n in self.names])
        with torch.no_grad():
            g = torch.cat([x.reshape(-1) for x in grads])
            clip = self.spec.inner_optimizer.grad_clip
            if clip > 0:
                coef = torch.clamp(clip / (torch.linalg.vector_norm(g) + 1e-6), max=1.0)
                g.mul_(coef)
            self.step_count += 1
            bc1 = 1 - self.beta1 ** self.step_count
            bc2_sqrt = math.sqrt(1 - self.beta2 ** self.step_count)
            eps, wd = self.spec.inner_optimizer.eps, self.spec.inner_optimizer.weight_decay
            if wd:
                self.p_flat.mul_(1 - (lr * wd) * self.decay_mask)
            self.m_flat.lerp_(g, 1 - self.beta1)
            self.v_flat.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (self.v_flat.sqrt() / bc2_sqrt).add_(eps)
            self.p_flat.addcdiv_(self.m_flat, denom, value=-lr / bc1)
        return float(loss.item())

    @torch.no_grad()
    def evaluate(self, batches: list[torch.Tensor]) -> float:
        """Mean loss over `batches` (no state change)."""
        return sum(float(self.loss(b).item()) for b in batches) / max(len(batches), 1)
