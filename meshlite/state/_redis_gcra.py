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

Round trips are saved two ways, both local to a process:

- *Negative caching*: a refusal says when the next slot frees (``wait``); until
  then the process refuses calls of that key with the remaining wait, without
  asking Redis (Redis would refuse them too: other processes can only push the
  slot later; a slot given back early is the one case where Redis would have
  admitted sooner).
- *Leasing* (``RedisStore(rate_lease=k)``, k > 1): when a quota has a token free
  *now*, one script takes ``k`` slots (the TAT moves on ``k`` intervals, so the
  long-run rate is kept); the process spends the extra ones locally, one per
  call, within ``k * interval`` seconds (else they lapse unused). Over any window
  the calls admitted by all processes exceed the GCRA bound by at most the leased
  tokens outstanding: ``k - 1`` per process and key. A forked child starts with
  no lease (the parent's tokens stay the parent's).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._fork import after_fork_in_child
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
local lease = tonumber(ARGV[4] or '1')
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tau - now
if wait < 0 then wait = 0 end
if limit < 0 or wait <= limit then
  local n = 1
  if wait == 0 and lease > 1 then n = lease end
  local new = tat + n * interval
  redis.call('SET', KEYS[1], string.format('%d', new), 'PX',
             math.floor((new - now) / 1000) + 1)
  return {wait, new, n}
end
return {wait, 0, 0}
""")

RELEASE = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], string.format('%d', tonumber(ARGV[1]) - tonumber(ARGV[2])),
             'KEEPTTL')
end
return 0
""")


_MAX_LOCAL_KEYS = 4096
"""Keys whose refusal or lease a process remembers before it forgets the lapsed ones
(and, if more than half are live, all but the newest half)."""

_V = TypeVar("_V")


def _trimmed(table: dict[str, _V], live: Callable[[_V], bool]) -> dict[str, _V]:
    """``table`` without its lapsed entries, and at most half full: if more than
    half are still live (many keys refused or leased at once, such as one quota per
    client address under attack), only the newest half is kept. Forgetting one
    costs a round trip, not a wrong decision; keeping all made every refusal copy
    the whole table, and the table grow without bound."""
    kept = [(k, v) for k, v in list(table.items()) if live(v)]  # a snapshot: threads add
    return dict(kept[-(_MAX_LOCAL_KEYS // 2):])


class RedisGcra:
    """The shared GCRA state of one rate limit: a TAT per key, in Redis.

    ``reserve`` returns ``(wait_seconds, token)``; the token (the TAT the
    reservation left behind) lets ``release`` give the slot back only if nobody
    reserved after it.
    """

    __slots__ = ("__weakref__", "_interval", "_key", "_lease", "_lease_s", "_leases",
                 "_lock", "_refused", "_store", "_tau")

    def __init__(self, store: RedisStore, key: str, interval: float, tau: float) -> None:
        self._store = store
        self._key = key
        self._interval = math.ceil(interval * 1e6 - 1e-6)  # rounded up, float noise aside
        self._tau = math.ceil(tau * 1e6 - 1e-6) if tau > 0 else 0
        # tau is (burst - 1) * interval: keep it a whole number of (rounded) intervals.
        if interval > 0 and tau > 0:
            self._tau = round(tau / interval) * self._interval
        self._lease = store.rate_lease
        self._lease_s = self._lease * interval
        self._refused: dict[str, float] = {}  # key -> monotonic instant its slot frees
        self._leases: dict[str, list[float]] = {}  # key -> [tokens left, lapses at]
        self._lock = threading.Lock()
        if self._lease > 1:
            after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: the parent's leased tokens are the parent's (spending
        them in every child would admit each one once per process)."""
        self._leases = {}
        self._lock = threading.Lock()

    def _local(self, key: str, limit: float) -> tuple[float, Any] | None:
        """A decision without Redis, from a lease or a remembered refusal; else ``None``.

        A lease's tokens come first: they are this process's, reserved in Redis, and a
        refusal another of its calls met meanwhile (Redis had no token left to give)
        does not take them back; refusing there would leave them to lapse unused."""
        if self._lease > 1:
            with self._lock:
                lease = self._leases.get(key)
                if lease is not None and lease[0] >= 1 and time.monotonic() < lease[1]:
                    lease[0] -= 1
                    return 0.0, 0
        refused = self._refused.get(key)
        if refused is not None:
            wait = refused - time.monotonic()
            if wait > limit:
                return wait, 0
            self._refused.pop(key, None)
        return None

    def _args(self, key: str, limit: float) -> tuple[Any, ...]:
        return (f"{self._key}:{key}" if key else self._key, self._interval, self._tau,
                -1 if limit == math.inf else int(limit * 1e6), self._lease)

    def _learn(self, key: str, limit: float, reply: list[Any]) -> tuple[float, Any]:
        wait, token, taken = reply[0] / 1e6, reply[1], int(reply[2])
        now = time.monotonic()
        if not taken:
            if len(self._refused) >= _MAX_LOCAL_KEYS:
                self._refused = _trimmed(self._refused, lambda v: v > now)
            self._refused[key] = now + wait
        elif taken > 1:
            with self._lock:
                if len(self._leases) >= _MAX_LOCAL_KEYS:
                    self._leases = _trimmed(self._leases, lambda v: v[1] > now)
                self._leases[key] = [taken - 1, now + self._lease_s]
        return wait, token

    def reserve(self, key: str, limit: float) -> tuple[float, Any]:
        """See :class:`~meshlite.state.SharedGcra`."""
        local = self._local(key, limit)
        if local is not None:
            return local
        return self._learn(key, limit, self._store.eval(RESERVE, 1, *self._args(key, limit)))

    async def areserve(self, key: str, limit: float) -> tuple[float, Any]:
        """See :class:`~meshlite.state.SharedGcra`."""
        local = self._local(key, limit)
        if local is not None:
            return local
        return self._learn(key, limit,
                           await self._store.aeval(RESERVE, 1, *self._args(key, limit)))

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
