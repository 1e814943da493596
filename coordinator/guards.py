"""Redis-backed request guards shared by every coordinator process: one-time nonces and
per-account rate limits. Both are single atomic Redis commands, so several processes
sharing one Redis enforce them together.
"""
from __future__ import annotations

import math

import redis


class NonceStore:
    """Each (account, nonce) is accepted once. A nonce is remembered until its auth expiry
    (at least 1 s), after which the expiry check alone refuses the replay."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r = client
        self._prefix = prefix

    def consume(self, *, account: str, nonce: bytes, expiry: int, now: float) -> bool:
        """True the first time; False when this nonce was already used by this account."""
        ttl = max(1, math.ceil(expiry - now) + 1)
        key = f"{self._prefix}:nonce:{account.lower()}:{nonce.hex()}"
        return bool(self._r.set(key, b"1", nx=True, ex=ttl))


class RateLimiter:
    """Fixed-window counter: at most `limit` requests per account per `window_s` seconds.
    Windows are aligned to multiples of `window_s` on the Redis server's clock."""

    # INCR and set the expiry on the first hit, in one round trip; returns {count, ms left}.
    _LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""

    def __init__(self, client: redis.Redis, prefix: str, *, limit: int, window_s: int) -> None:
        self._r = client
        self._prefix = prefix
        self.limit = limit
        self.window_s = window_s
        self._script = client.register_script(self._LUA)

    def hit(self, *, account: str, now: float) -> float | None:
        """Count one request; None when allowed, else seconds until the window resets."""
        window = int(now // self.window_s)
        key = f"{self._prefix}:rl:{account.lower()}:{window}"
        left_ms = int((window + 1) * self.window_s * 1000 - now * 1000) + 1
        count, pttl = self._script(keys=[key], args=[max(1, left_ms)])
        if int(count) > self.limit:
            return max(0.001, int(pttl) / 1000.0)
        return None
