"""CircuitBreaker: stop calling a service that keeps failing, then probe it carefully."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..._clock import Clock
from ..._context import CallContext
from ..._errors import CircuitOpenError
from ..._events import (
    CallRejected,
    CircuitClosed,
    CircuitHalfOpened,
    CircuitOpened,
    CircuitStateChanged,
)
from ..._policy import AsyncHandler, Handler, Policy
from ..._predicates import ErrorFilter, error_predicate
from ..._statelog import announce
from ..._validate import clock_option
from ...state._base import SharedCircuit, Store
from ...state._circuit_local import LocalCircuitState
from ...state._circuit_records import CLOSED, HALF_OPEN, OPEN, Admission, Transition
from ._controls import BreakerControls
from ._handlers import async_handler, says_nothing, sync_handler
from ._options import (
    DEFAULT_FAILURE_ON,
    DEFAULT_FAILURE_RATE,
    DEFAULT_HALF_OPEN_CALLS,
    DEFAULT_MIN_CALLS,
    DEFAULT_OPEN_SECONDS,
    DEFAULT_SLOW_CALL_RATE,
    DEFAULT_WINDOW,
    DEFAULT_WINDOW_TYPE,
    CircuitBreakerOptions,
)
from ._shared import shared_async_handler, shared_sync_handler

__all__ = ["CircuitBreaker"]

_EVENTS: dict[str, type[CircuitStateChanged]] = {
    OPEN: CircuitOpened, HALF_OPEN: CircuitHalfOpened, CLOSED: CircuitClosed,
}


class CircuitBreaker(BreakerControls, Policy):
    """Reject calls to a service while too many of its recent calls fail or are slow.

    Closed, the breaker records each call's outcome in a sliding window and opens
    once the window holds at least ``min_calls`` calls and the failure rate (or
    the slow-call rate) reaches its threshold. Open, it rejects every call with
    :class:`~meshlite.CircuitOpenError` for ``open_seconds``. Then it is half-open:
    exactly ``half_open_calls`` trial calls are admitted (others are rejected);
    once all of them have completed it opens again if their failure (or slow)
    rate reaches the threshold, else it closes with an empty window.

    Args:
        failure_rate: Failure share in (0, 1] that opens the circuit.
        window: The last ``window`` calls (``window_type="count"``, an int >= 1)
            or seconds (``"time"``, > 0).
        window_type: ``"count"`` or ``"time"``.
        min_calls: Calls the window must hold before the circuit may open (capped
            at ``window`` for count windows).
        slow_call_seconds: A call lasting at least this long is slow; ``None``
            turns slow-call detection off.
        slow_call_rate: Slow-call share in (0, 1] that opens the circuit.
        open_seconds: How long the circuit stays open before the trial calls.
        half_open_calls: Trial calls admitted, at once, when half-open.
        failure_on: Which errors are failures: an exception type, a tuple of them
            or ``fn(error) -> bool``. Other errors count as successes (the
            service answered); meshlite rejections from inner policies
            (:class:`~meshlite.RejectedError`) and configuration mistakes
            (:class:`~meshlite.ConfigError`) count as neither.
        name: Name in messages and events; defaults to the call's service, else
            its operation. Required with ``store``: processes share a breaker by name.
        store: ``None`` for in-process state, or a shared store such as
            :class:`meshlite.state.RedisStore`: the window, the state (with its
            open time) and the half-open trial permits are then shared by every
            process using the same store and ``name``, and changed atomically
            there (two round trips per call). The in-process state is the
            ``on_error="local"`` fallback.
        clock: Time source (default: the system clock). With a store, open periods
            and time windows run on the store's clock; call durations on this one.

    Raises:
        ConfigError: an option is out of range, ``store`` is not a store, or
            ``store`` is given without ``name``.
    """

    kind = "circuit_breaker"

    def __init__(
        self,
        failure_rate: float = DEFAULT_FAILURE_RATE,
        window: int | float = DEFAULT_WINDOW,
        window_type: str = DEFAULT_WINDOW_TYPE,
        min_calls: int = DEFAULT_MIN_CALLS,
        slow_call_seconds: float | None = None,
        slow_call_rate: float = DEFAULT_SLOW_CALL_RATE,
        open_seconds: float = DEFAULT_OPEN_SECONDS,
        half_open_calls: int = DEFAULT_HALF_OPEN_CALLS,
        failure_on: ErrorFilter = DEFAULT_FAILURE_ON,
        name: str | None = None,
        store: Any = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self.options = CircuitBreakerOptions(
            failure_rate=failure_rate, window=window, window_type=window_type,
            min_calls=min_calls, slow_call_seconds=slow_call_seconds,
            slow_call_rate=slow_call_rate, open_seconds=open_seconds,
            half_open_calls=half_open_calls, failure_on=failure_on, name=name, store=store,
        )
        self._clock = clock_option("CircuitBreaker", clock)
        self._is_failure = error_predicate("CircuitBreaker", "failure_on", failure_on)
        self._core = LocalCircuitState(self.options, self._clock)
        self._label = name or "circuit_breaker"
        self._shared_store: Store | None = store
        self._shared: SharedCircuit | None = None
        if store is not None:
            assert name is not None  # the options require it
            self._shared = store.circuit(name, self.options, self._clock)

    @classmethod
    def from_pybreaker(cls, breaker: Any, *, clock: Clock | None = None,
                       **options: Any) -> CircuitBreaker:
        """Build the equivalent meshlite breaker from a ``pybreaker.CircuitBreaker``.

        ``fail_max`` consecutive failures become a count window of ``fail_max``
        calls with ``min_calls=fail_max`` and ``failure_rate=1.0``;
        ``reset_timeout`` becomes ``open_seconds``; one trial call is admitted
        when half-open; ``excluded_exceptions`` are not failures; the name is
        kept; a breaker that is open now starts open for the rest of its timeout,
        and a closed one starts with its current count of consecutive failures.

        Args:
            breaker: The pybreaker breaker; read once, never called afterwards.
            clock: Time source (default: the system clock).
            **options: Other :class:`CircuitBreaker` arguments, which override the
                derived ones: ``store=`` (with ``name=``, or pybreaker's name) for
                a breaker shared by replicas, as ``CircuitRedisStorage`` shared
                pybreaker's; an open state is then opened in the store.

        Raises:
            ConfigError: ``breaker`` is not a pybreaker breaker, or its settings
                are out of meshlite's ranges.
        """
        from ._pybreaker import adapt

        return adapt(cls, breaker, clock, options)

    # -- events and errors ---------------------------------------------------------

    def _announce(self, ctx: CallContext | None, transition: Transition | None) -> None:
        """Log and deliver the event of ``transition``, in its turn: after the events
        of the transitions before it, on this thread or on the one delivering those
        (see :mod:`meshlite._inorder`)."""
        if transition is None:
            return
        previous, state, reason, turn = transition  # rare: logged even when nobody listens
        try:
            if ctx is not None:
                self._label = self.options.name or ctx.service or ctx.operation
            common: dict[str, Any] = {
                "policy": self.kind, "name": self._label, "previous": previous,
                "state": state, "reason": reason,
                "service": None if ctx is None else ctx.service,
                "operation": None if ctx is None else ctx.operation,
            }
            if state is OPEN:
                event: CircuitStateChanged = CircuitOpened(
                    open_seconds=self.options.open_seconds, **common)
            else:
                event = _EVENTS.get(state, CircuitStateChanged)(**common)
        except BaseException:
            if turn is not None:
                turn.skip()  # the events after it must not wait for it
            raise
        if turn is None:
            announce(self.hooks, event)
        else:
            turn.take(functools.partial(announce, self.hooks, event))

    def _announce_local(self, ctx: CallContext | None, transition: Transition | None) -> None:
        """:meth:`_announce` for the in-process state of a breaker with a store (its calls
        fell back to it): the shared state notes what hooks heard, and tells them its
        own state when the store decides calls again, if it differs."""
        if transition is not None and self._shared is not None:
            told = getattr(self._shared, "told", None)  # (a store of before it had none)
            if told is not None:
                told(transition.state)
        self._announce(ctx, transition)

    def _rejection(self, ctx: CallContext, admission: Admission) -> CircuitOpenError:
        name = self._label = self.options.name or ctx.service or ctx.operation
        retry_after = admission.retry_after
        if admission.state is OPEN:
            message = (f"circuit '{name}' is open after {admission.reason}; "
                       f"retry in {retry_after or 0.0:.1f} s")
        elif admission.state is HALF_OPEN:
            message = (f"circuit '{name}' is half-open and {admission.reason}; "
                       "retry once they have finished")
        else:
            message = (f"circuit '{name}' is forced open; calls are rejected until "
                       "reset() is called")
        if self.hooks.active:
            self._emit(CallRejected(policy=self.kind, service=ctx.service,
                                    operation=ctx.operation, reason="circuit_open",
                                    retry_after=retry_after))
        return CircuitOpenError(message, service=ctx.service, policy=self.kind,
                                retry_after=retry_after)

    # -- handlers ------------------------------------------------------------------

    def _slow_paths(self, announce: Callable[[CallContext | None, Transition | None], None]
                    ) -> tuple[Callable[[CallContext], int],
                               Callable[[CallContext, int, Exception, float], None]]:
        """The admission and error paths, shared by the sync and async handlers."""
        core, rejection = self._core, self._rejection
        is_failure = self._is_failure

        def admit(ctx: CallContext) -> int:
            admission = core.acquire()
            if admission.transition is not None:
                announce(ctx, admission.transition)
            if admission.permit is None:
                raise rejection(ctx, admission)
            return admission.permit

        def failed(ctx: CallContext, permit: int, error: Exception, duration: float) -> None:
            if says_nothing(ctx, error):
                core.release(permit)
                return
            try:
                failure = is_failure(error)
            except BaseException:  # failure_on raised: the call says nothing (its
                core.release(permit)  # trial slot, if any, is free), the caller sees why
                raise
            if failure:
                transition = core.on_failure(permit, duration)
            else:
                transition = core.on_success(permit, duration)
            if transition is not None:
                announce(ctx, transition)

        return admit, failed

    def _local_announce(self) -> Callable[[CallContext | None, Transition | None], None]:
        return self._announce if self._shared is None else self._announce_local

    def wrap(self, call_next: Handler) -> Handler:
        announce = self._local_announce()
        admit, failed = self._slow_paths(announce)
        timed = self.options.slow_call_seconds is not None
        handler = sync_handler(call_next, self._core, admit, failed, announce,
                               self._clock.monotonic if timed else None)
        if self._shared is not None:
            return shared_sync_handler(self, call_next, handler)
        return handler

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        announce = self._local_announce()
        admit, failed = self._slow_paths(announce)
        timed = self.options.slow_call_seconds is not None
        handler = async_handler(call_next, self._core, admit, failed, announce,
                                self._clock.monotonic if timed else None)
        if self._shared is not None:
            return shared_async_handler(self, call_next, handler)
        return handler

    def __repr__(self) -> str:
        o = self.options
        return (f"CircuitBreaker(failure_rate={o.failure_rate!r}, window={o.window!r}, "
                f"window_type={o.window_type!r}, min_calls={o.min_calls!r}, "
                f"open_seconds={o.open_seconds!r}, half_open_calls={o.half_open_calls!r}, "
                f"state={self.state!r})")
