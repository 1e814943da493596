"""One determinism switch for every role (torchtitan's `set_determinism`).

Exact replay needs: the same code, the same torch build, the same thread count and
deterministic kernels. Worker, verifier, juror and coordinator all call
`set_determinism(seed, threads, device)` before touching tensors.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def set_determinism(seed: int, threads: int, device: str = "cpu") -> None:
    """Seed every RNG, pin intra-op threads, force deterministic kernels.

    `threads` is the torch intra-op thread count (results differ between thread counts on
    CPU, so it is part of the job spec). On CUDA this also sets CUBLAS_WORKSPACE_CONFIG
    (must happen before the first cuBLAS call in the process) and disables TF32 and the
    cuDNN autotuner. Calling it again with other values is allowed (calibration does).
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device = 'cuda' but torch sees no CUDA device; use device = 'cpu'")
        torch.cuda.manual_seed_all(seed)


def resolve_device(device: str) -> torch.device:
    return torch.device("cuda" if device == "cuda" else "cpu")
