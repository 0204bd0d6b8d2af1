"""What a shared store is: the :class:`Store` protocol, the state objects it hands
to policies, its error and its events; the one fallback rule every policy applies is
in :mod:`._fallback`, re-exported here.

A store is a factory of *shared states*, one per policy instance: a GCRA cell set
for a rate limit, a state machine for a circuit breaker, an entry table for a
cache. Each method of a shared state is one atomic decision (one round trip to
Redis); any failure to reach the store is raised as
:class:`StoreUnavailableError`, and the policy then falls back as the store's
``on_error`` says (:func:`fall_back`). The policy's own in-memory state is the
``"local"`` fallback, so a store never has to keep a second copy of anything.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import StoreUnavailableError
from .._events import Event
from ._fallback import (
    ALLOW,
    DENY,
    LOCAL,
    ON_ERROR_MODES,
    RAISE,
    OnError,
    StoreFallback,
    agive_back,
    fall_back,
    give_back,
)

if TYPE_CHECKING:
    from .._clock import Clock
    from ._circuit_records import Admission, CircuitMetrics, Transition

__all__ = [
    "ALLOW",
    "CircuitConfig",
    "DENY",
    "LOCAL",
    "ON_ERROR_MODES",
    "RAISE",
    "OnError",
    "SharedCache",
    "SharedCircuit",
    "SharedGcra",
    "Store",
    "StoreFallback",
    "StoreRecovered",
    "StoreUnavailable",
    "StoreUnavailableError",
    "check_store",
    "agive_back",
    "fall_back",
    "give_back",
    "text_key",
]

# -- events -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreUnavailable(Event):
    """The store stopped answering; decisions fall back until it recovers.

    Emitted once per outage (``policy="store"``), to the store's hooks and the
    process-wide ones. On a Redis Cluster, ``node`` names the primary
    (``"host:port"``) that stopped answering: only the decisions on keys of its
    slots fall back, the other primaries' keys stay shared. ``reason`` says in
    words why, when ``error`` does not (a Cluster whose nodes answer but serve no
    key: ``CLUSTERDOWN``), else ``""``.
    """

    store: str
    error: BaseException | None = None
    node: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreRecovered(Event):
    """The store answers again after ``down_seconds``; decisions use it again.

    On a Redis Cluster, ``node`` is the primary whose outage ended, and ``reason``
    says how when it was not by answering again (its slots are served by another
    primary: its replica after a failover).
    """

    store: str
    down_seconds: float
    node: str | None = None
    reason: str = ""


# -- shared states --------------------------------------------------------------------


class CircuitConfig(Protocol):
    """What a circuit breaker's state machine reads of its options (the breaker's
    ``CircuitConfig`` is one): the store layer needs no policy import."""

    @property
    def window_type(self) -> str: ...
    @property
    def window(self) -> float: ...
    @property
    def effective_min_calls(self) -> int: ...
    @property
    def failure_rate(self) -> float: ...
    @property
    def slow_call_rate(self) -> float: ...
    @property
    def slow_call_seconds(self) -> float | None: ...
    @property
    def open_seconds(self) -> float: ...
    @property
    def half_open_calls(self) -> int: ...


class SharedGcra(Protocol):
    """The GCRA state of one rate limit, shared through a store.

    ``reserve`` returns ``(wait, token)``: the seconds until the call's slot (``<= 0``
    means now) and a token naming the reservation. The slot is taken only when
    ``wait <= limit`` (``limit`` may be ``inf``). ``release(key, token)`` gives a
    reserved slot back if no later call has reserved one since. Every method
    raises :class:`StoreUnavailableError` when the store cannot answer.
    """

    def reserve(self, key: str, limit: float) -> tuple[float, Any]: ...

    async def areserve(self, key: str, limit: float) -> tuple[float, Any]: ...

    def release(self, key: str, token: Any) -> None: ...

    async def arelease(self, key: str, token: Any) -> None: ...


class SharedCache(Protocol):
    """The entries of one cache namespace, shared through a store.

    ``get`` returns ``(value, stale)`` or ``None``; ``put`` stores a value for
    ``ttl + stale_ttl`` seconds; ``lock`` takes the short cross-process
    single-flight lock of a key (a token, or ``None`` when another process holds
    it); ``invalidate`` drops one argument key for every function of the
    namespace. Every method raises :class:`StoreUnavailableError` when the store
    cannot answer; ``put`` also raises ``TypeError`` when the codec cannot encode.
    """

    single_flight: float | None
    """Seconds the cross-process lock lasts, or ``None`` without one."""

    def get(self, key: str) -> tuple[Any, bool] | None: ...

    async def aget(self, key: str) -> tuple[Any, bool] | None: ...

    def put(self, key: str, function: str, value: Any) -> None: ...

    async def aput(self, key: str, function: str, value: Any) -> None: ...

    def lock(self, key: str) -> str | None: ...

    async def alock(self, key: str) -> str | None: ...

    def unlock(self, key: str, token: str) -> None: ...

    async def aunlock(self, key: str, token: str) -> None: ...

    def invalidate(self, argkey: str) -> int: ...

    def clear(self) -> int: ...


class SharedCircuit(Protocol):
    """The state machine of one circuit breaker, shared through a store.

    The same operations as the breaker's in-memory state (permits, transitions,
    manual controls, reading), each one atomic in the store, with async twins for
    the per-call ones. Every method raises :class:`StoreUnavailableError` when the
    store cannot answer.
    """

    def acquire(self) -> Admission: ...

    async def aacquire(self) -> Admission: ...

    def record(self, permit: int, failed: bool, slow: bool) -> Transition | None: ...

    async def arecord(self, permit: int, failed: bool, slow: bool) -> Transition | None: ...

    def release(self, permit: int) -> None: ...

    async def arelease(self, permit: int) -> None: ...

    def control(self, action: str) -> Transition | None: ...

    def start_open(self, elapsed: float, reason: str) -> None: ...

    def metrics(self) -> CircuitMetrics: ...

    def told(self, state: str) -> None:
        """The breaker's in-process state told hooks ``state`` (a call the store could
        not decide); the first call the store decides again tells them the shared
        state if it differs."""
        ...

    def apart(self, state: str) -> Transition | None:
        """The store did not answer a decision, which the breaker's in-process state,
        ``state``, makes instead: the change to tell hooks if they last heard another
        state (the shared one), else None."""
        ...


class Store(Protocol):
    """Where policies keep the state replicas share (see :mod:`meshlite.state`).

    Implementations: :class:`~meshlite.state.RedisStore` (shared by processes) and
    :class:`~meshlite.state.MemoryStore` (shared by the policies of one process).
    A new backend implements the three factories and the shared states they return.

    Attributes:
        on_error: What a decision does when the store cannot answer in time.
        label: How the store is named in events and messages (no secrets).
        retry_interval: Seconds after a failure before the store is tried again
            (the ``retry_after`` of a denied call).
    """

    on_error: OnError
    label: str
    retry_interval: float

    def rate_limit(self, name: str, interval: float, tau: float) -> SharedGcra:
        """The shared GCRA state of the rate limit ``name``."""
        ...

    def cache(self, namespace: str, ttl: float, stale_ttl: float) -> SharedCache:
        """The shared entries of the cache namespace ``namespace``."""
        ...

    def circuit(self, name: str, options: CircuitConfig, clock: Clock) -> SharedCircuit:
        """The shared state machine of the circuit breaker ``name`` (``clock`` is the
        breaker's: ``metrics().opened_at`` is given on it)."""
        ...

    def note_fallback(self, policy: str, action: str) -> None:
        """Count one fallback (the metric behind :class:`StoreFallback`)."""
        ...


def text_key(value: Hashable) -> str:
    """A store key part for a rate-limit key: strings as they are, others by ``repr``."""
    return value if isinstance(value, str) else repr(value)


def check_store(owner: str, store: object, factory: str) -> None:
    """Raise the ConfigError for a ``store=`` that is neither ``None`` nor a store."""
    if store is not None and not callable(getattr(store, factory, None)):
        from .._validate import fail

        fail(owner, "store", store,
             "None or a meshlite.state store such as meshlite.state.RedisStore")
