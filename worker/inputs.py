"""A unit's inputs, fetched through the local blob cache and checked against their hashes.

- spec: the job's spec blob (address from `GET /jobs/<id>`), accepted only if it hashes
  (canonical JSON, SHA-256) to the lease's `spec_hash`, which is the on-chain specHash;
- dataset: the manifest blob at the spec's `dataset` hash and every shard it names, each
  hash-checked, loaded once per job and kept in memory;
- G_r: the round's checkpoint blob, or for round 0 (`checkpoint = null`) G_0 built from the
  spec's seed (a pure function of the spec, so every party builds the same bytes);
- slot state: slot k's optimizer state blob, or None (fresh optimizer).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from protocol.api_client import ApiNotFound, CoordinatorApi
from protocol.blobcache import BlobCache, CacheError
from protocol.hashing import to_hex
from protocol.spec import JobSpec, SpecError, spec_from_json
from training.data import Dataset, load_dataset
from training.outer import initial_global_blob
from worker import InputError


@dataclass
class InputStore:
    api: CoordinatorApi
    cache: BlobCache
    _specs: dict[int, JobSpec] = field(default_factory=dict)
    _datasets: dict[str, Dataset] = field(default_factory=dict)
    _g0: dict[str, bytes] = field(default_factory=dict)

    def spec(self, job_id: int, spec_hash: str | None = None) -> JobSpec:
        """The job's spec; raises InputError if it does not hash to `spec_hash` (the lease's)."""
        spec = self._specs.get(job_id)
        if spec is None:
            job = self.api.get_job(job_id)
            if job.spec_blob is None:
                raise InputError(f"job {job_id} is {job.status} without its spec at the coordinator ({job.hold_reason})")
            try:
                spec = spec_from_json(self.cache.read(job.spec_blob))
            except (SpecError, CacheError) as e:
                raise InputError(f"job {job_id}'s spec blob {job.spec_blob} is unusable: {e}") from None
            if to_hex(spec.spec_hash()) != job.spec_hash:
                raise InputError(f"job {job_id}'s spec blob hashes to {to_hex(spec.spec_hash())}, the job's spec hash "
                                 f"is {job.spec_hash}: the coordinator serves the wrong spec; not training it")
            self._specs[job_id] = spec
        if spec_hash is not None and to_hex(spec.spec_hash()) != spec_hash.lower():
            raise InputError(f"lease names spec {spec_hash} but job {job_id}'s spec is {to_hex(spec.spec_hash())}")
        return spec

    def dataset(self, spec: JobSpec) -> Dataset:
        ds = self._datasets.get(spec.dataset)
        if ds is None:
            try:
                path = self.cache.dataset_dir(spec.dataset)
            except ApiNotFound as e:
                raise InputError(f"the job's dataset {spec.dataset} is not in the coordinator's blob store ({e}); "
                                 "the model owner must upload it (`crowdtrain job post` does)") from None
            ds = load_dataset(path, spec.dataset)
            self._datasets = {spec.dataset: ds}  # keep one dataset in memory: they can be large
        return ds

    def global_checkpoint(self, spec: JobSpec, digest: str | None) -> bytes:
        """G_r's blob bytes; `None` = round 0's G_0 from the spec seed."""
        if digest is not None:
            return self.cache.read(digest)
        key = to_hex(spec.spec_hash())
        if key not in self._g0:
            self._g0 = {key: initial_global_blob(spec)}
        return self._g0[key]

    def slot_state(self, digest: str | None) -> bytes | None:
        return None if digest is None else self.cache.read(digest)
