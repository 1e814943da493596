"""Leader election for background loops (indexer, settlement) across coordinator processes.

One Redis key per loop, `<prefix>:leader:<name>`, holds the current leader's random token
with a TTL. `hold()` takes the key when it is free or renews it when this process already
holds it, in one Lua script (atomic, server clock), and says whether this process leads.
A leader that dies stops renewing and another takes over after the TTL.

This is an optimisation, not the safety net: a leader paused longer than the TTL (a long
GC, a slow RPC) may overlap with its successor for one pass. Every transition the loops
make is also a compare-and-set on a database row (coordinator/settlement.py), so an
overlap wastes a read at most, never a second transaction on chain.
"""
from __future__ import annotations

import uuid

import redis

_HOLD = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaderLock:
    """`hold()` -> True while this process leads loop `name` (TTL `ttl_s` seconds)."""

    def __init__(self, client: redis.Redis, prefix: str, name: str, *, ttl_s: float) -> None:
        self.key = f"{prefix}:leader:{name}"
        self.token = uuid.uuid4().hex
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)

    def hold(self) -> bool:
        return bool(self._hold(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        """Give up leadership now (on shutdown) so a peer takes over without waiting the TTL."""
        self._release(keys=[self.key], args=[self.token])
