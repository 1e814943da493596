"""The DiLoCo outer step: aggregate a round's accepted pseudo-gradients into G_{r+1}.

Deterministic on any machine (always CPU, fp32): pseudo-gradients are summed in ascending
unit order and divided by the number present (a round with missing units averages those
present), then Nesterov SGD (torch.optim.SGD semantics, dampening 0):

    delta = mean_k pgrad_k
    buf   = delta                      (first outer step: no momentum blob yet)
          = momentum * buf + delta     (afterwards)
    upd   = delta + momentum * buf     (nesterov)   |  buf   (plain momentum)
    G_{r+1} = G_r - lr * upd

The momentum buffer persists between rounds as a `crowdtrain/outer-momentum` blob
(outer.momentum/<p>). A round with no accepted unit leaves G and the buffer unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from protocol.hashing import sha256
from protocol.spec import JobSpec
from training import StateError
from training.models import init_params
from training.state import MOMENTUM, PARAM, PGRAD, Tensors, check_names, prefixed, select, to_blob
from training.unit import GLOBAL, OUTPUT, SLOT, BlobLike, as_tensors

MOMENTUM_KIND = "crowdtrain/outer-momentum"


def initial_global(spec: JobSpec) -> dict[str, torch.Tensor]:
    """G_0 (param/* tensors), a pure function of the spec."""
    return prefixed(init_params(spec), PARAM)


def initial_global_blob(spec: JobSpec) -> bytes:
    return to_blob(initial_global(spec), GLOBAL)


def slot_state_from_output(output: BlobLike) -> bytes:
    """The slot's new AdamW state (adam.*) carried in an output blob, as a `crowdtrain/slot` blob."""
    t = as_tensors(output, OUTPUT)
    return to_blob({n: v for n, v in t.items() if n.startswith("adam.")}, SLOT)


def pseudo_gradient(output: BlobLike) -> dict[str, torch.Tensor]:
    return select(as_tensors(output, OUTPUT), PGRAD)


@dataclass(frozen=True)
class OuterResult:
    global_blob: bytes        # G_{r+1}, crowdtrain/global
    momentum_blob: bytes      # outer momentum after this step
    global_hash: bytes        # SHA-256 of global_blob (its blob address)
    units: tuple[int, ...]    # unit indices aggregated, ascending


def outer_step(spec: JobSpec, global_ckpt: BlobLike, outputs: Sequence[tuple[int, BlobLike]],
               momentum: BlobLike | None = None) -> OuterResult:
    """G_{r+1} from G_r, the accepted units' output blobs (unit index, blob) and the momentum.

    Raises StateError for duplicate unit indices, pseudo-gradients that do not fit the
    model, or non-finite values (a unit that passed verification never has those).
    """
    g = as_tensors(global_ckpt, GLOBAL)
    params = select(g, PARAM)
    units = sorted(u for u, _ in outputs)
    if len(set(units)) != len(units):
        raise StateError(f"duplicate unit indices in the outer step: {units}")
    buf_in = select(as_tensors(momentum, MOMENTUM_KIND), MOMENTUM) if momentum is not None else None
    if buf_in is not None:
        check_names(buf_in, params, "outer momentum")
    if not outputs:
        mom = buf_in if buf_in is not None else {}
        return _result(g, prefixed(mom, MOMENTUM), ())
    o = spec.outer_optimizer
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for u, blob in sorted(outputs, key=lambda x: x[0]):
        pg = pseudo_gradient(blob)
        check_names(pg, params, f"pseudo-gradient of unit {u}")
        for n, t in pg.items():
            if not torch.isfinite(t).all():
                raise StateError(f"pseudo-gradient of unit {u} has non-finite values in {n!r}")
            total[n].add_(t)
    new_params, new_buf = {}, {}
    for n, p in params.items():
        delta = total[n] / len(units)
        buf = delta.clone() if buf_in is None else buf_in[n].clone().mul_(o.momentum).add_(delta)
        upd = delta + o.momentum * buf if o.nesterov else buf
        new_params[n] = p - o.lr * upd
        new_buf[n] = buf
    return _result(prefixed(new_params, PARAM), prefixed(new_buf, MOMENTUM), tuple(units))


def _result(g: Tensors, mom: Tensors, units: tuple[int, ...]) -> OuterResult:
    gb = to_blob(g, GLOBAL)
    return OuterResult(gb, to_blob(mom, MOMENTUM_KIND), sha256(gb), units)
