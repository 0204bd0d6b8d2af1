"""MemoryStore: the Store protocol in process memory, shared by name.

Every policy already keeps its own state in memory; a MemoryStore is for policy
*instances* of one process that must share it: two pipelines limited by one
quota, one breaker guarding a service wherever it is called from. It is also the
reference implementation of :class:`~meshlite.state.Store` (the in-memory state
machines wrapped in the store interface), and a test double for code written
against a shared store: it runs on a :class:`~meshlite.testing.FakeClock`.
It never fails, so ``on_error`` never applies.
"""

from __future__ import annotations

import math
import threading
import uuid
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from cachetools import Cache, TTLCache

from .._clock import SYSTEM_CLOCK, Clock
from .._fork import fork_safe
from .._validate import at_least
from ._base import LOCAL, OnError, SharedCache, SharedCircuit, SharedGcra

if TYPE_CHECKING:
    from ._base import CircuitConfig
    from ._circuit_records import Admission, CircuitMetrics, Transition

__all__ = ["DEFAULT_MEMORY_MAX_KEYS", "MemoryStore"]

DEFAULT_MEMORY_MAX_KEYS = 10_000
"""Rate-limit keys and cache entries kept per name before the least recently used go,
and names kept that no policy holds (see :class:`MemoryStore`)."""

FUNCTION_INDEX_MIN = 1024
"""Functions a cache namespace indexes before it first drops those without an entry;
then again each time the index doubled (see ``_MemoryCache.put``)."""


class MemoryStore:
    """Policy state shared by name between the policies of one process.

    The state of a name lives as long as a policy holds it (a named rate limit, a
    cache, a breaker: for the policy's life; a rate limit named per call: while it
    keeps the name among its recent ones), so every policy of one name always
    shares one state. Of the names no policy holds, the last ``max_keys`` asked for
    are kept and older ones forgotten: a quota forgotten starts again with a full
    burst, a cache namespace empty, a breaker closed. Operations named at run time
    thus cost a bounded amount of memory.

    Args:
        clock: The clock rate limits and cache entries age on (default: the system
            clock; breakers use their own).
        max_keys: Rate-limit keys and cache entries kept per name, and names kept
            that no policy holds (>= 1).

    Raises:
        ConfigError: ``max_keys`` is not an integer >= 1.
    """

    on_error: OnError = LOCAL
    label = "memory"
    retry_interval = 0.0

    def __init__(self, *, clock: Clock | None = None,
                 max_keys: int = DEFAULT_MEMORY_MAX_KEYS) -> None:
        self.clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self.max_keys = at_least("MemoryStore", "max_keys", max_keys, 1)
        self._lock = fork_safe(threading.Lock())
        # Every state a policy still holds (weakly, so one a policy dropped can go),
        # and the max_keys asked for last (strongly: kept for a policy that asks again).
        self._states: weakref.WeakValueDictionary[tuple[str, str], Any] = (
            weakref.WeakValueDictionary())
        self._recent: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def _shared(self, kind: str, name: str, make: Any) -> Any:
        key = (kind, name)
        with self._lock:
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = make()
            recent = self._recent
            recent[key] = state
            recent.move_to_end(key)
            if len(recent) > self.max_keys:
                recent.popitem(last=False)
            return state

    def rate_limit(self, name: str, interval: float, tau: float) -> SharedGcra:
        """The GCRA state of quota ``name`` (the first limit of a name sets its rate)."""
        state: SharedGcra = self._shared("rl", name, lambda: _MemoryGcra(
            interval, tau, self.max_keys, self.clock))
        return state

    def cache(self, namespace: str, ttl: float, stale_ttl: float) -> SharedCache:
        """The entries of ``namespace``; values are shared objects, not copies."""
        state: SharedCache = self._shared("cache", namespace, lambda: _MemoryCache(
            ttl, stale_ttl, self.max_keys, self.clock))
        return state

    def circuit(self, name: str, options: CircuitConfig, clock: Clock) -> SharedCircuit:
        """The state machine of breaker ``name`` (the first breaker of a name sets it)."""
        state: SharedCircuit = self._shared("cb", name, lambda: _MemoryCircuit(options, clock))
        return state

    def note_fallback(self, policy: str, action: str) -> None:
        """Never called: a memory store does not fail."""

    def __repr__(self) -> str:
        return f"MemoryStore(max_keys={self.max_keys!r})"


class _MemoryGcra:
    __slots__ = ("__weakref__", "_gcra", "_now")

    def __init__(self, interval: float, tau: float, max_keys: int, clock: Clock) -> None:
        from ._gcra_local import LocalGcra

        self._gcra = LocalGcra(interval, tau, max_keys)
        self._now = clock.monotonic

    def reserve(self, key: str, limit: float) -> tuple[float, Any]:
        now = self._now()
        wait = self._gcra.reserve(key, now, limit)
        return wait, now + wait

    async def areserve(self, key: str, limit: float) -> tuple[float, Any]:
        return self.reserve(key, limit)

    def release(self, key: str, token: Any) -> None:
        self._gcra.release(key, token)

    async def arelease(self, key: str, token: Any) -> None:
        self.release(key, token)


class _MemoryCache:
    __slots__ = ("__weakref__", "_data", "_fns", "_fns_limit", "_lock", "_locks", "_now",
                 "_stale", "_ttl", "single_flight")

    def __init__(self, ttl: float, stale_ttl: float, max_keys: int, clock: Clock) -> None:
        self._ttl, self._stale, self._now = ttl, stale_ttl, clock.monotonic
        # Entries are (value, fresh_until, function); the TTLCache drops them
        # stale_ttl later.
        self._data: TTLCache[str, tuple[Any, float, str]] = TTLCache(
            max_keys, ttl + stale_ttl, timer=clock.monotonic)
        # The functions invalidate() looks under: every function with an entry, and
        # fewer than _fns_limit without one (see put).
        self._fns: set[str] = set()
        self._fns_limit = FUNCTION_INDEX_MIN
        self._locks: dict[str, str] = {}
        self._lock = fork_safe(threading.Lock())
        self.single_flight = None  # one process: the Cache's own single flight suffices

    def get(self, key: str) -> tuple[Any, bool] | None:
        with self._lock:
            entry = self._data.get(key)
        return None if entry is None else (entry[0], self._now() >= entry[1])

    async def aget(self, key: str) -> tuple[Any, bool] | None:
        return self.get(key)

    def put(self, key: str, function: str, value: Any) -> None:
        with self._lock:
            self._data[key] = (value, self._now() + self._ttl, function)
            fns = self._fns
            if function not in fns:
                fns.add(function)
                if len(fns) > self._fns_limit:
                    self._drop_functions()

    def _drop_functions(self) -> None:
        """Keep in the index only the functions that have an entry: functions named
        per call (and evicted since) must not pile up there, nor be walked by every
        ``invalidate()``. One pass over the entries each time the index doubled."""
        data = self._data
        with data.timer:  # one instant: no entry expires between the two steps
            data.expire()
            # Cache.__getitem__ reads an entry without marking it recently used.
            self._fns = {Cache.__getitem__(data, key)[2] for key in data}
        self._fns_limit = max(FUNCTION_INDEX_MIN, 2 * len(self._fns))

    async def aput(self, key: str, function: str, value: Any) -> None:
        self.put(key, function, value)

    def lock(self, key: str) -> str | None:
        with self._lock:
            if key in self._locks:
                return None
            token = self._locks[key] = uuid.uuid4().hex
            return token

    async def alock(self, key: str) -> str | None:
        return self.lock(key)

    def unlock(self, key: str, token: str) -> None:
        with self._lock:
            if self._locks.get(key) == token:
                del self._locks[key]

    async def aunlock(self, key: str, token: str) -> None:
        self.unlock(key, token)

    def invalidate(self, argkey: str) -> int:
        with self._lock:
            found = [k for k in (f"{fn}:{argkey}" for fn in self._fns) if k in self._data]
            for k in found:
                del self._data[k]
            return len(found)

    def clear(self) -> int:
        with self._lock:
            n = len(self._data)
            self._data.clear()
            self._fns.clear()
            return n


class _MemoryCircuit:
    __slots__ = ("__weakref__", "_core")

    def __init__(self, options: CircuitConfig, clock: Clock) -> None:
        from ._circuit_local import LocalCircuitState

        self._core = LocalCircuitState(options, clock)

    def acquire(self) -> Admission:
        from ._circuit_records import Admission

        gate = self._core.gate
        return Admission(gate) if gate is not None else self._core.acquire()

    async def aacquire(self) -> Admission:
        return self.acquire()

    def record(self, permit: int, failed: bool, slow: bool) -> Transition | None:
        duration = math.inf if slow else 0.0
        if failed:
            return self._core.on_failure(permit, duration)
        return self._core.on_success(permit, duration)

    async def arecord(self, permit: int, failed: bool, slow: bool) -> Transition | None:
        return self.record(permit, failed, slow)

    def release(self, permit: int) -> None:
        self._core.release(permit)

    async def arelease(self, permit: int) -> None:
        self.release(permit)

    def told(self, state: str) -> None:
        """Never called: a memory store does not fail."""

    def apart(self, state: str) -> Transition | None:
        """Never called: a memory store does not fail."""
        return None

    def control(self, action: str) -> Transition | None:
        transition: Transition | None = getattr(self._core, action)()
        return transition

    def start_open(self, elapsed: float, reason: str) -> None:
        self._core.start_open(elapsed, reason)

    def metrics(self) -> CircuitMetrics:
        return self._core.metrics()
