"""Pre-flight: will this machine and account run a job's units? (`crowdtrain worker check`)

The estimate is arithmetic on the spec, never an allocation (a 10B-parameter spec must not
be built to be measured). With P parameters (fp32, 4 bytes each), state = params + AdamW
exp_avg + exp_avg_sq = 12P bytes, and for one unit:

  device memory   12P state + ~12P step temporaries (grads, their flat copy, the AdamW
                  denominator) + activations of one batch (GPT: per layer
                  B*T*d*(34 + 5*heads*T/d)*2 bytes, fp32 being twice Korthikanti et al.'s
                  16-bit count; logits 3*B*T*256*4) + 10% allocator slack
  host memory     on top (CPU training: the device is the host): the dataset held in memory,
                  the (H/k + 1) snapshots a unit keeps until upload (12P each), the output
                  blob (12P), S_0 and the input blobs (~24P)
  disk            the cached dataset and input blobs, plus one unit's uploads (snapshots,
                  output, trace at ~300 bytes per step)

Each check is a `Check` (name, ok, detail); `ok=None` means a warning that does not fail.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from protocol.spec import GPTModel, JobSpec, MLPModel

GiB = 1 << 30
TRACE_BYTES_PER_STEP = 300


def param_count(spec: JobSpec) -> int:
    """Exact parameter count of training.models for `spec.model` (checked against it in tests)."""
    m = spec.model
    if isinstance(m, GPTModel):
        d, V = m.n_embd, m.vocab_size
        per_layer = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)
        return V * d + m.block_size * d + m.n_layer * per_layer + 2 * d  # lm_head tied to wte
    assert isinstance(m, MLPModel)
    dims = [m.context * m.n_embd] + [m.hidden] * m.n_layer
    hidden = sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    return m.vocab_size * m.n_embd + hidden + dims[-1] * m.vocab_size + m.vocab_size


def activation_bytes(spec: JobSpec) -> int:
    B, T = spec.batch_size, spec.seq_len
    logits = 3 * B * T * 256 * 4
    m = spec.model
    if isinstance(m, GPTModel):
        d, h = m.n_embd, m.n_head
        per_layer = int(B * T * d * (34 + 5 * h * T / d) * 2)
        return m.n_layer * per_layer + logits + B * T * d * 4 * 4
    assert isinstance(m, MLPModel)
    per_pos = m.context * m.n_embd * 2 + m.hidden * m.n_layer * 3
    return B * T * per_pos * 4 * 2 + logits


@dataclass(frozen=True)
class Estimate:
    """Bytes needed by one unit of a job (see the module docstring for the model)."""

    params: int
    state_bytes: int          # one full training state (params + AdamW moments)
    device_bytes: int         # on the training device
    host_bytes: int           # RAM beyond the device's own memory (all of it when training on CPU)
    disk_bytes: int
    snapshots: int            # H/k + 1
    dataset_bytes: int


def estimate(spec: JobSpec, *, dataset_bytes: int, device: str) -> Estimate:
    P = param_count(spec)
    state = 12 * P
    dev = int((state + 12 * P + activation_bytes(spec)) * 1.1)
    snaps = spec.inner_steps // spec.verification.snapshot_interval + 1
    host = dataset_bytes + snaps * state + state + 2 * state
    if device == "cpu":
        host += dev
    disk = dataset_bytes + 3 * state + snaps * state + state + TRACE_BYTES_PER_STEP * spec.inner_steps
    return Estimate(P, state, dev, host, disk, snaps, dataset_bytes)


def dataset_size(manifest: dict) -> int:
    """Tokens (= bytes) of a packed dataset from its manifest."""
    return sum(int(sh.get("tokens", 0)) for split in ("train", "val") for sh in manifest.get(split, []))


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None          # None: a warning, does not fail the pre-flight
    detail: str


def fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} B"


def hardware_checks(spec: JobSpec, est: Estimate, *, device: str, data_dir: Path,
                    memory_fraction: float = 0.9) -> list[Check]:
    """Device present, memory and disk against `est`, thread count. Imports torch lazily."""
    import psutil
    import torch

    checks: list[Check] = []
    host_free = psutil.virtual_memory().available
    if device == "cuda":
        if not torch.cuda.is_available():
            return [Check("device", False, "the job trains on CUDA but torch sees no CUDA device "
                                           f"(torch {torch.__version__}); install a CUDA build or use a CUDA machine")]
        free, total = torch.cuda.mem_get_info()
        name = torch.cuda.get_device_name()
        checks.append(Check("device", True, f"cuda: {name}, {fmt_bytes(total)} total"))
        checks.append(Check("GPU memory", est.device_bytes <= free * memory_fraction,
                            f"needs ~{fmt_bytes(est.device_bytes)}, {fmt_bytes(free)} free"
                            + ("" if est.device_bytes <= free * memory_fraction else
                               ": pick a job with a smaller model or batch, or free GPU memory")))
    else:
        checks.append(Check("device", True, f"cpu: {os.cpu_count()} cores, torch {torch.__version__}"))
    ok = est.host_bytes <= host_free * memory_fraction
    checks.append(Check("host memory", ok, f"needs ~{fmt_bytes(est.host_bytes)}, {fmt_bytes(host_free)} available"
                        + ("" if ok else ": close other programs or pick a smaller job")))
    data_dir.mkdir(parents=True, exist_ok=True)
    disk_free = shutil.disk_usage(data_dir).free
    ok = est.disk_bytes <= disk_free
    checks.append(Check("disk", ok, f"needs ~{fmt_bytes(est.disk_bytes)} under {data_dir}, {fmt_bytes(disk_free)} free"
                        + ("" if ok else ": free disk space or set --data-dir elsewhere")))
    cores = os.cpu_count() or 1
    if spec.threads > cores:
        checks.append(Check("threads", None, f"the spec pins {spec.threads} torch threads, this machine has "
                                             f"{cores} cores: units will run slower than planned"))
    else:
        checks.append(Check("threads", True, f"{spec.threads} pinned torch thread(s), {cores} cores"))
    return checks


def chain_checks(chain: object, address: str | None) -> list[Check]:
    """Market deployed, worker stake >= the minimum, gas money. `chain` is a bound ChainClient."""
    from protocol.chain import ChainError, Role
    from protocol.chain.client import ChainClient

    assert isinstance(chain, ChainClient)
    checks = [Check("chain", True, f"{chain.rpc_url}: chain {chain.chain_id}, block {chain.block_number()}")]
    try:
        m = chain.market
        need = m.min_stake(Role.WORKER)
    except ChainError as e:
        return checks + [Check("market", False, f"cannot read the Market ({e}); check --deployment / --market-address")]
    checks.append(Check("market", True, f"Market {m.address}, minimum worker stake {need} base units"))
    if address is None:
        return checks + [Check("stake", None, "no key given: stake not checked (pass --keystore or set "
                                              "$CROWDTRAIN_PRIVATE_KEY)")]
    st = m.get_stake(address, Role.WORKER)
    active = int(st["active"])
    ok = active >= max(need, 1)
    checks.append(Check("stake", ok, f"{address} has {active} active (+{int(st['unbonding'])} unbonding), needs "
                                     f"{max(need, 1)}" + ("" if ok else ": run `crowdtrain worker stake`")))
    eth = chain.eth_balance(address)
    checks.append(Check("gas", eth > 0 or None, f"{eth / 1e18:.6f} ETH for transaction fees"
                        + ("" if eth > 0 else ": claims and stake changes need some ETH")))
    return checks


def api_checks(api: object, chain_id: int | None) -> list[Check]:
    from protocol.api_client import ApiError, CoordinatorApi

    assert isinstance(api, CoordinatorApi)
    try:
        h = api.health()
    except ApiError as e:
        return [Check("coordinator", False, str(e))]
    same = chain_id is None or h.chain_id == chain_id
    return [Check("coordinator", same, f"{api.base_url}: {h.status}, chain {h.chain_id}"
                  + ("" if same else f" but the RPC is chain {chain_id}: point both at the same chain"))]
