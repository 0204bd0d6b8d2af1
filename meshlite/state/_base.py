"""What a shared store is: the :class:`Store` protocol, the state objects it hands
to policies, its error, its events, and the one fallback rule every policy applies.

A store is a factory of *shared states*, one per policy instance: a GCRA cell set
for a rate limit, a state machine for a circuit breaker, an entry table for a
cache. Each method of a shared state is one atomic decision (one round trip to
Redis); any failure to reach the store is raised as
:class:`StoreUnavailableError`, and the policy then falls back as the store's
``on_error`` says (:func:`fall_back`). The policy's own in-memory state is the
``"local"`` fallback, so a store never has to keep a second copy of anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .._errors import StoreUnavailableError
from .._events import Event

if TYPE_CHECKING:
    from .._clock import Clock
    from .._context import CallContext
    from .._policy import Policy
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

OnError = Literal["local", "allow", "deny", "raise"]
"""What a decision does when the store cannot answer in time."""

LOCAL: OnError = "local"
ALLOW: OnError = "allow"
DENY: OnError = "deny"
RAISE: OnError = "raise"
ON_ERROR_MODES: tuple[OnError, ...] = (LOCAL, ALLOW, DENY, RAISE)

_RAISING_STEPS = ("decide", "manage")


# -- events -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreUnavailable(Event):
    """The store stopped answering; decisions fall back until it recovers.

    Emitted once per outage (``policy="store"``), to the store's hooks and the
    process-wide ones. On a Redis Cluster, ``node`` names the primary
    (``"host:port"``) that stopped answering: only the decisions on keys of its
    slots fall back, the other primaries' keys stay shared.
    """

    store: str
    error: BaseException | None = None
    node: str | None = None


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


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreFallback(Event):
    """One decision of a policy fell back because its store was unavailable.

    ``policy`` is the policy's kind; ``action`` is ``"local"``, ``"allow"``,
    ``"deny"`` or ``"raise"``; ``step`` says which store operation failed
    (``"decide"``, ``"record"``, ``"store"``, ``"manage"``, ``"read"``; ``"release"``:
    giving back a rate limit's slot, a breaker's permit or a cache's single-flight
    lock; ``"lock"``: taking a cache's single-flight lock).
    """

    store: str
    action: str
    step: str = "decide"
    error: BaseException | None = None


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


# -- the fallback rule ----------------------------------------------------------------


def fall_back(policy: Policy, store: Store, ctx: CallContext | None,
              error: StoreUnavailableError, step: str = "decide") -> OnError:
    """Apply ``store.on_error`` to a failed store operation of ``policy``.

    Counts the fallback, emits :class:`StoreFallback` to the policy's hooks, and
    returns the action for the policy to take (``"local"``, ``"allow"`` or
    ``"deny"``). Only a decision (``step="decide"``) or a management operation
    (``"manage"``: invalidate, force_open...) raises: an operation after the call ran
    (recording its outcome, storing its result) never replaces the call's result or
    error, whatever ``on_error`` says.

    Raises:
        StoreUnavailableError: ``on_error="raise"`` and a raising step, naming the
            call's service and the policy, chained to ``error``.
    """
    action = store.on_error
    store.note_fallback(policy.kind, action)
    service = None if ctx is None else ctx.service
    if policy.hooks.active:
        policy.hooks.emit(StoreFallback(
            policy=policy.kind, service=service,
            operation=None if ctx is None else ctx.operation,
            store=store.label, action=action, step=step, error=error))
    if action == RAISE and step in _RAISING_STEPS:
        raise StoreUnavailableError(
            f"{policy.kind}: {error} (on_error='raise'). Bring the store back, or "
            "choose on_error='local', 'allow' or 'deny' to fall back instead",
            service=service, policy=policy.kind) from error
    return action


def give_back(policy: Policy, store: Store, ctx: CallContext | None,
              release: Callable[[], object]) -> None:
    """Run ``release()``, a store operation after the decision (giving back a slot, a
    permit or a lock); when the store cannot answer, announce it as :func:`fall_back`
    does (``step="release"``), and never raise: the call's outcome stands."""
    try:
        release()
    except StoreUnavailableError as error:
        fall_back(policy, store, ctx, error, step="release")


async def agive_back(policy: Policy, store: Store, ctx: CallContext | None,
                     release: Callable[[], Awaitable[object]]) -> None:
    """The async twin of :func:`give_back`."""
    try:
        await release()
    except StoreUnavailableError as error:
        fall_back(policy, store, ctx, error, step="release")


def text_key(value: Hashable) -> str:
    """A store key part for a rate-limit key: strings as they are, others by ``repr``."""
    return value if isinstance(value, str) else repr(value)


def check_store(owner: str, store: object, factory: str) -> None:
    """Raise the ConfigError for a ``store=`` that is neither ``None`` nor a store."""
    if store is not None and not callable(getattr(store, factory, None)):
        from .._validate import fail

        fail(owner, "store", store,
             "None or a meshlite.state store such as meshlite.state.RedisStore")
