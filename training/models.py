"""Model registry: `gpt` (nanoGPT-style byte-level decoder) and `mlp` (byte-context MLP).

Both map int64 tokens (B, T) to logits (B, T, 256). Initialization draws from a CPU
`torch.Generator` seeded by the job seed, so G_0 is the same bytes on every machine and
device. Attention is written out (matmul + causal mask + softmax) rather than
`scaled_dot_product_attention`, whose fused CUDA backward kernels are not deterministic.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from protocol.spec import GPTModel, JobSpec, MLPModel


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        mask = torch.tril(torch.ones(block_size, block_size, dtype=torch.bool))
        self.register_buffer("mask", mask.view(1, 1, block_size, block_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.n_head
        q, k, v = (z.view(B, T, self.n_head, hs).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTModel) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.h = nn.ModuleList(Block(cfg.n_embd, cfg.n_head, cfg.block_size) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: one tensor, named "wte.weight"

    def init_weights(self, gen: torch.Generator) -> None:
        std_proj = 0.02 / math.sqrt(2 * self.cfg.n_layer)
        with torch.no_grad():
            for name, p in sorted(self.named_parameters()):
                if name.endswith("bias"):
                    p.zero_()
                elif ".ln_" in name or name.startswith("ln_"):
                    p.fill_(1.0)
                else:
                    std = std_proj if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight") else 0.02
                    p.copy_(torch.randn(p.shape, generator=gen) * std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class ByteMLP(nn.Module):
    """Position t sees tokens t-context+1..t (zero-padded on the left) and predicts t+1."""

    def __init__(self, cfg: MLPModel) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        dims = [cfg.context * cfg.n_embd] + [cfg.hidden] * cfg.n_layer
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], cfg.vocab_size)

    def init_weights(self, gen: torch.Generator) -> None:
        with torch.no_grad():
            for name, p in sorted(self.named_parameters()):
                if name.endswith("bias"):
                    p.zero_()
                else:
                    fan_in = p.shape[1] if p.dim() == 2 and not name.startswith("emb") else 1
                    p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        C = self.cfg.context
        e = self.emb(idx)                                # (B, T, E)
        e = F.pad(e, (0, 0, C - 1, 0))                   # (B, T+C-1, E)
        x = e.unfold(1, C, 1)                            # (B, T, E, C)
        x = x.transpose(2, 3).reshape(idx.shape[0], idx.shape[1], -1)
        for layer in self.hidden:
            x = F.gelu(layer(x))
        return self.out(x)


def build_model(spec: JobSpec) -> nn.Module:
    """An uninitialized model for `spec.model` on the CPU (use `init_params` for G_0)."""
    if isinstance(spec.model, GPTModel):
        return GPT(spec.model)
    return ByteMLP(spec.model)


def init_params(spec: JobSpec) -> dict[str, torch.Tensor]:
    """G_0: the job's initial parameters, a pure function of the spec (seed, model)."""
    model = build_model(spec)
    gen = torch.Generator(device="cpu").manual_seed(spec.seed)
    model.init_weights(gen)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def count_params(spec: JobSpec) -> int:
    return sum(p.numel() for p in build_model(spec).parameters())
