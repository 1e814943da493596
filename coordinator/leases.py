"""Unit leases in Redis: atomic Lua scripts, safe with many coordinator processes.

Keys (P = settings.redis_prefix; one Redis, not Redis Cluster: scripts touch keys they
compute):
  P:q:<job>            ZSET  unit ids waiting for a worker (score = unit id: FIFO)
  P:l:<lease>          HASH  unit, job, worker, exp (ms, Redis clock), state active|submitting
  P:ul:<unit>          STR   the unit's one live lease
  P:exp:<job>          ZSET  lease ids by expiry (ms)
  P:wl:<job>:<worker>  STR   the worker's active lease in this job (one at a time)
  P:done:<job>         SET   units accepted or cancelled: never queued again
  P:seeded:<job>:<r>   STR   set once round r's units were queued

Invariant: a unit has at most one live lease. Every script runs atomically on the Redis
server and uses the server's clock (`TIME`), so processes on different hosts agree on
expiry. A lease expires `ttl` after its grant or last heartbeat; expired leases are reaped
(their units re-queued) by the next claim, heartbeat or sweep that looks at that job.
Submitting moves a lease to `submitting` with a `verify_timeout` expiry: the unit cannot
be claimed while its result is verified, and returns to the queue if the verifying
process dies. Each script answers a flat array `{status, ...}` decoded below.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import redis

_COMMON = """
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Remove lease `lid` (all its keys); requeue its unit when asked and the unit is not done.
local function drop(lid, job, requeue)
  local l = P .. ':l:' .. lid
  local unit = redis.call('HGET', l, 'unit')
  redis.call('ZREM', P .. ':exp:' .. job, lid)
  if not unit then return false end
  local worker = redis.call('HGET', l, 'worker')
  if redis.call('GET', P .. ':ul:' .. unit) == lid then
    redis.call('DEL', P .. ':ul:' .. unit)
    if requeue and redis.call('SISMEMBER', P .. ':done:' .. job, unit) == 0 then
      redis.call('ZADD', P .. ':q:' .. job, tonumber(unit), unit)
    end
  end
  local wl = P .. ':wl:' .. job .. ':' .. worker
  if redis.call('GET', wl) == lid then redis.call('DEL', wl) end
  redis.call('DEL', l)
  return unit
end
-- Reap up to 500 expired leases of `job`; returns {lease, unit, lease, unit, ...}.
local function reap(job, now)
  local out = {}
  for _, lid in ipairs(redis.call('ZRANGEBYSCORE', P .. ':exp:' .. job, '-inf', now, 'LIMIT', 0, 500)) do
    local unit = drop(lid, job, true)
    if unit then out[#out + 1] = lid; out[#out + 1] = unit end
  end
  return out
end
local function with_reaped(head, reaped)
  for _, v in ipairs(reaped) do head[#head + 1] = v end
  return head
end
"""

# ARGV: P, job, worker, new lease id, ttl ms, current round
_CLAIM = _COMMON + """
local job, worker, lid, ttl = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if redis.call('EXISTS', P .. ':seeded:' .. job .. ':' .. ARGV[6]) == 0 then return {'unseeded', '', '', ''} end
local now = now_ms()
local reaped = reap(job, now)
local cur = redis.call('GET', P .. ':wl:' .. job .. ':' .. worker)
if cur then
  local h = redis.call('HMGET', P .. ':l:' .. cur, 'unit', 'exp')
  if h[1] then return with_reaped({'existing', cur, h[1], h[2]}, reaped) end
end
local q = P .. ':q:' .. job
while true do
  local popped = redis.call('ZPOPMIN', q)
  if #popped == 0 then return with_reaped({'empty', '', '', ''}, reaped) end
  local unit = popped[1]
  if redis.call('SISMEMBER', P .. ':done:' .. job, unit) == 0 and redis.call('EXISTS', P .. ':ul:' .. unit) == 0 then
    local exp = now + ttl
    redis.call('SET', P .. ':ul:' .. unit, lid)
    redis.call('HSET', P .. ':l:' .. lid, 'unit', unit, 'job', job, 'worker', worker, 'exp', exp, 'state', 'active')
    redis.call('ZADD', P .. ':exp:' .. job, exp, lid)
    redis.call('SET', P .. ':wl:' .. job .. ':' .. worker, lid)
    return with_reaped({'granted', lid, unit, tostring(exp)}, reaped)
  end
end
"""

# Validate that `worker` holds live lease ARGV[2] on unit ARGV[4] in state ARGV[5].
# On an expired lease: reap it when ARGV[6] == '1' (mutating scripts), else just report.
_VALIDATE = """
local lid, worker, unit_expected, state_expected, reap_expired = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local h = redis.call('HMGET', P .. ':l:' .. lid, 'unit', 'job', 'worker', 'exp', 'state')
if not h[1] then return {'unknown', '', ''} end
if unit_expected ~= '' and h[1] ~= unit_expected then return {'wrong_unit', h[1], ''} end
if h[3] ~= worker then return {'not_holder', h[1], h[3]} end
local now = now_ms()
if tonumber(h[4]) <= now then
  if reap_expired == '1' then drop(lid, h[2], true) end
  return {'expired', h[1], h[4]}
end
if h[5] ~= state_expected then return {'state_' .. h[5], h[1], ''} end
"""

# ARGV: P, lease, worker, unit ('' = any), 'active', '1', ttl ms
_HEARTBEAT = _COMMON + _VALIDATE + """
local exp = now + tonumber(ARGV[7])
redis.call('HSET', P .. ':l:' .. lid, 'exp', exp)
redis.call('ZADD', P .. ':exp:' .. h[2], exp, lid)
return {'ok', h[1], tostring(exp)}
"""

# ARGV: P, lease, worker, unit, 'active', '0'  (read-only check before a submission)
_CHECK = _COMMON + _VALIDATE + """
return {'ok', h[1], h[4]}
"""

# ARGV: P, lease, worker, unit ('' = any), 'active', '1'
_RELEASE = _COMMON + _VALIDATE + """
drop(lid, h[2], true)
return {'ok', h[1], ''}
"""

# ARGV: P, lease, worker, unit, 'active', '1', verify timeout ms
_BEGIN_SUBMIT = _COMMON + _VALIDATE + """
local exp = now + tonumber(ARGV[7])
redis.call('HSET', P .. ':l:' .. lid, 'exp', exp, 'state', 'submitting')
redis.call('ZADD', P .. ':exp:' .. h[2], exp, lid)
local wl = P .. ':wl:' .. h[2] .. ':' .. worker
if redis.call('GET', wl) == lid then redis.call('DEL', wl) end
return {'ok', h[1], tostring(exp)}
"""

# ARGV: P, lease, accepted '1'|'0'
_FINISH_SUBMIT = _COMMON + """
local lid = ARGV[2]
local h = redis.call('HMGET', P .. ':l:' .. lid, 'unit', 'job', 'state')
if not h[1] or h[3] ~= 'submitting' then return {'lost', '', ''} end
if ARGV[3] == '1' then redis.call('SADD', P .. ':done:' .. h[2], h[1]) end
drop(lid, h[2], ARGV[3] ~= '1')
return {'ok', h[1], ''}
"""

# ARGV: P, lease, ttl ms  (verification could not run: the lease is active again, as before)
_ABORT_SUBMIT = _COMMON + """
local lid = ARGV[2]
local h = redis.call('HMGET', P .. ':l:' .. lid, 'unit', 'job', 'worker', 'state')
if not h[1] or h[4] ~= 'submitting' then return {'lost', '', ''} end
local exp = now_ms() + tonumber(ARGV[3])
redis.call('HSET', P .. ':l:' .. lid, 'exp', exp, 'state', 'active')
redis.call('ZADD', P .. ':exp:' .. h[2], exp, lid)
redis.call('SET', P .. ':wl:' .. h[2] .. ':' .. h[3], lid, 'NX')
return {'ok', h[1], tostring(exp)}
"""

# ARGV: P, job, unit...   (undo an acceptance whose database commit failed)
_UNDO_ACCEPT = _COMMON + """
local job = ARGV[2]
for i = 3, #ARGV do
  redis.call('SREM', P .. ':done:' .. job, ARGV[i])
  if redis.call('EXISTS', P .. ':ul:' .. ARGV[i]) == 0 then redis.call('ZADD', P .. ':q:' .. job, tonumber(ARGV[i]), ARGV[i]) end
end
return {'ok', '', ''}
"""

# ARGV: P, job, round, first ('1' = claim the seeded marker), unit...
_SEED = _COMMON + """
local job = ARGV[2]
if ARGV[4] == '1' and not redis.call('SET', P .. ':seeded:' .. job .. ':' .. ARGV[3], '1', 'NX') then
  return {'already', '', ''}
end
local n = 0
for i = 5, #ARGV do
  local u = ARGV[i]
  if redis.call('SISMEMBER', P .. ':done:' .. job, u) == 0 and redis.call('EXISTS', P .. ':ul:' .. u) == 0 then
    redis.call('ZADD', P .. ':q:' .. job, tonumber(u), u)
    n = n + 1
  end
end
return {'seeded', tostring(n), ''}
"""

# ARGV: P, job, unit...   (round closed at quorum: never handed out again; live leases end)
_RETIRE = _COMMON + """
local job = ARGV[2]
for i = 3, #ARGV do
  redis.call('SADD', P .. ':done:' .. job, ARGV[i])
  redis.call('ZREM', P .. ':q:' .. job, ARGV[i])
  local lid = redis.call('GET', P .. ':ul:' .. ARGV[i])
  if lid then drop(lid, job, false) end
end
return {'ok', '', ''}
"""

# ARGV: P, job
_REAP = _COMMON + """
return with_reaped({'ok', '', ''}, reap(ARGV[2], now_ms()))
"""

ClaimStatus = Literal["granted", "existing", "empty", "unseeded"]


@dataclass(frozen=True)
class ClaimOutcome:
    status: ClaimStatus
    lease_id: str | None
    unit_id: int | None
    expires_at: float | None  # unix seconds
    reaped: tuple[tuple[str, int], ...]  # (lease id, unit id) of expired leases this call re-queued


@dataclass(frozen=True)
class LeaseAnswer:
    """status: ok | unknown | wrong_unit | not_holder | expired | state_submitting | state_active | lost."""

    status: str
    unit_id: int | None
    value: str  # expiry ms for ok/expired, holder for not_holder


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class LeaseManager:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r = client
        self.prefix = prefix
        self._claim = client.register_script(_CLAIM)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._check = client.register_script(_CHECK)
        self._release = client.register_script(_RELEASE)
        self._begin = client.register_script(_BEGIN_SUBMIT)
        self._finish = client.register_script(_FINISH_SUBMIT)
        self._abort = client.register_script(_ABORT_SUBMIT)
        self._undo = client.register_script(_UNDO_ACCEPT)
        self._seed = client.register_script(_SEED)
        self._retire = client.register_script(_RETIRE)
        self._reap = client.register_script(_REAP)

    @staticmethod
    def _pairs(flat: Sequence[bytes]) -> tuple[tuple[str, int], ...]:
        items = [_s(x) for x in flat]
        return tuple((items[i], int(items[i + 1])) for i in range(0, len(items), 2))

    def claim(self, *, job_id: int, round: int, worker: str, lease_id: str, ttl_s: float) -> ClaimOutcome:
        """Grant `lease_id` on the next queued unit, or return the worker's live lease in this
        job ("existing"); "empty" when nothing is queued, "unseeded" when round `round` was
        never queued in this Redis (seed it, then claim again)."""
        r = self._claim(args=[self.prefix, job_id, worker, lease_id, int(ttl_s * 1000), round])
        status = _s(r[0])
        reaped = self._pairs(r[4:])
        if status in ("empty", "unseeded"):
            return ClaimOutcome(status, None, None, None, reaped)  # type: ignore[arg-type]
        return ClaimOutcome(status, _s(r[1]), int(r[2]), int(r[3]) / 1000.0, reaped)  # type: ignore[arg-type]

    def _answer(self, r: Sequence[bytes]) -> LeaseAnswer:
        unit = _s(r[1])
        return LeaseAnswer(_s(r[0]), int(unit) if unit else None, _s(r[2]))

    def heartbeat(self, *, lease_id: str, worker: str, ttl_s: float) -> LeaseAnswer:
        return self._answer(self._heartbeat(args=[self.prefix, lease_id, worker, "", "active", "1", int(ttl_s * 1000)]))

    def check(self, *, lease_id: str, worker: str, unit_id: int) -> LeaseAnswer:
        return self._answer(self._check(args=[self.prefix, lease_id, worker, unit_id, "active", "0"]))

    def release(self, *, lease_id: str, worker: str) -> LeaseAnswer:
        return self._answer(self._release(args=[self.prefix, lease_id, worker, "", "active", "1"]))

    def begin_submit(self, *, lease_id: str, worker: str, unit_id: int, verify_timeout_s: float) -> LeaseAnswer:
        return self._answer(self._begin(args=[self.prefix, lease_id, worker, unit_id, "active", "1",
                                              int(verify_timeout_s * 1000)]))

    def finish_submit(self, *, lease_id: str, accepted: bool) -> LeaseAnswer:
        return self._answer(self._finish(args=[self.prefix, lease_id, "1" if accepted else "0"]))

    def abort_submit(self, *, lease_id: str, ttl_s: float) -> LeaseAnswer:
        return self._answer(self._abort(args=[self.prefix, lease_id, int(ttl_s * 1000)]))

    def undo_accept(self, *, job_id: int, unit_ids: Sequence[int]) -> None:
        self._undo(args=[self.prefix, job_id, *unit_ids])

    def seed(self, *, job_id: int, round: int, unit_ids: Sequence[int], chunk: int = 5000) -> int | None:
        """Queue a round's units once (across processes); None when already seeded.
        Units accepted/cancelled or holding a live lease are skipped."""
        total = 0
        for i in range(0, max(len(unit_ids), 1), chunk):
            r = self._seed(args=[self.prefix, job_id, round, "1" if i == 0 else "0", *unit_ids[i:i + chunk]])
            if _s(r[0]) == "already":
                return None
            total += int(_s(r[1]))
        return total

    def is_seeded(self, *, job_id: int, round: int) -> bool:
        return bool(self._r.exists(f"{self.prefix}:seeded:{job_id}:{round}"))

    def retire(self, *, job_id: int, unit_ids: Sequence[int]) -> None:
        for i in range(0, len(unit_ids), 5000):
            self._retire(args=[self.prefix, job_id, *unit_ids[i:i + 5000]])

    def reap(self, *, job_id: int) -> tuple[tuple[str, int], ...]:
        return self._pairs(self._reap(args=[self.prefix, job_id])[3:])

    def queue_length(self, *, job_id: int) -> int:
        return int(self._r.zcard(f"{self.prefix}:q:{job_id}"))

    def live_lease_of(self, *, unit_id: int) -> str | None:
        v = self._r.get(f"{self.prefix}:ul:{unit_id}")
        return _s(v) if v is not None else None
