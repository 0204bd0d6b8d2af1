"""GCRA in Redis: one ``EVALSHA`` per decision, on Redis's own clock.

The script is the update of :class:`meshlite.state._gcra_local.LocalGcra`
run inside Redis, so the bound of the in-memory limiter (at most ``burst + rate * t
/ per`` calls over any ``t`` seconds) holds for the sum of every process. Time is
Redis's ``TIME``, read inside the script: every process decides on one clock, so
clock skew between hosts cannot admit extra calls. Only durations travel back to
the caller (how long to wait), and those need no shared clock.

Times are whole microseconds, so the state is exact integer arithmetic in Lua's
doubles (``TIME`` in microseconds is about 2**51 today, below 2**53). The interval
is rounded *up* to a microsecond: the limiter may admit a millionth fewer calls
than asked for, never more. A key expires when its TAT is in the past, since a key
with no state and a key whose TAT has passed admit alike.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ._redis import Script

if TYPE_CHECKING:
    from ._redis import RedisStore

__all__ = ["RESERVE", "RedisGcra"]

RESERVE = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tau - now
if wait < 0 then wait = 0 end
if limit < 0 or wait <= limit then
  local new = tat + interval
  redis.call('SET', KEYS[1], string.format('%d', new), 'PX',
             math.floor((new - now) / 1000) + 1)
  return {wait, new}
end
return {wait, 0}
""")

RELEASE = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], string.format('%d', tonumber(ARGV[1]) - tonumber(ARGV[2])),
             'KEEPTTL')
end
return 0
""")


class RedisGcra:
    """The shared GCRA state of one rate limit: a TAT per key, in Redis.

    ``reserve`` returns ``(wait_seconds, token)``; the token (the TAT the
    reservation left behind) lets ``release`` give the slot back only if nobody
    reserved after it.
    """

    __slots__ = ("_interval", "_key", "_store", "_tau")

    def __init__(self, store: RedisStore, key: str, interval: float, tau: float) -> None:
        self._store = store
        self._key = key
        self._interval = math.ceil(interval * 1e6 - 1e-6)  # rounded up, float noise aside
        self._tau = math.ceil(tau * 1e6 - 1e-6) if tau > 0 else 0
        # tau is (burst - 1) * interval: keep it a whole number of (rounded) intervals.
        if interval > 0 and tau > 0:
            self._tau = round(tau / interval) * self._interval

    def reserve(self, key: str, limit: float) -> tuple[float, Any]:
        """See :class:`~meshlite.state.SharedGcra`."""
        wait, token = self._store.eval(
            RESERVE, 1, f"{self._key}:{key}" if key else self._key, self._interval,
            self._tau, -1 if limit == math.inf else int(limit * 1e6))
        return wait / 1e6, token

    async def areserve(self, key: str, limit: float) -> tuple[float, Any]:
        """See :class:`~meshlite.state.SharedGcra`."""
        wait, token = await self._store.aeval(
            RESERVE, 1, f"{self._key}:{key}" if key else self._key, self._interval,
            self._tau, -1 if limit == math.inf else int(limit * 1e6))
        return wait / 1e6, token

    def release(self, key: str, token: Any) -> None:
        """See :class:`~meshlite.state.SharedGcra`."""
        if token:
            self._store.eval(RELEASE, 1, f"{self._key}:{key}" if key else self._key, token,
                             self._interval)

    async def arelease(self, key: str, token: Any) -> None:
        """See :class:`~meshlite.state.SharedGcra`."""
        if token:
            await self._store.aeval(RELEASE, 1, f"{self._key}:{key}" if key else self._key,
                                    token, self._interval)
