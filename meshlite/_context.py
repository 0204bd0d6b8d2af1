"""The per-call context: what a policy may know about the call it is handling.

One :class:`CallContext` is made per logical call at the pipeline's entry and is
handed down the handler chain. It is also the current context (a
:class:`contextvars.ContextVar`) while the call runs, so code inside the call can
read its deadline with :func:`remaining` and nested pipelines inherit it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Literal, TypeVar

from ._clock import SYSTEM_CLOCK, Clock

__all__ = ["TIMER_SLACK", "CallContext", "current_context", "operation_of", "remaining", "run_as"]

_T = TypeVar("_T")

_INHERITED = 1e-3
"""A deadline within this many seconds of the caller's is the caller's: a ``Timeout``
capped by its caller's time sets the same instant, read from the clock again."""

TIMER_SLACK = 0.002
"""Seconds before a deadline at which a loop timer set for it may already fire:
uvloop's clock (uvicorn's loop when installed) counts whole milliseconds, and it
rounds a timer's delay to them. A wire timeout set to the time a request had left
fires up to that much early (measured: with 1 ms left)."""


class CallContext:
    """State of one logical call, shared by every policy of the pipeline.

    Attributes:
        service: The service the call is for, or ``None`` outside a mesh.
        operation: The operation name (the function's qualified name by default).
        fn: The callable at the bottom of the chain; ``args`` and ``kwargs`` its arguments.
        attempt: The current attempt, starting at 1 (0 before the first attempt).
        deadline: The instant, on ``clock``, by which the call must finish, or ``None``.
        clock: The clock ``deadline`` is measured on.
        caller_deadline: The deadline the call inherited from the call it runs in
            (an inbound request's budget, an outer pipeline's ``Timeout``), on
            ``caller_clock``, or ``None``: a call cut there ran out of its caller's
            time, not of a ``Timeout`` of its own.
        caller_clock: The clock ``caller_deadline`` is measured on.
        backend: The backend chosen for the current attempt (set by routing).
        span: The OpenTelemetry span of the call when a ``Trace`` policy runs.
        request: The HTTP request of an HTTP call (``ml.RingHash(header=...)`` reads
            its headers), else ``None``.
        tried: Backends of this call's earlier attempts (routing avoids them), or
            ``None`` before a second attempt; hedges share one list.
        no_resend: Set by the HTTP layer once a request that must not be sent twice
            may have reached a backend: a later attempt is refused.
        last_error: The error of the last failed attempt, or ``None``.
        refused_result: Set by ``ml.Retry`` when it returns a result its ``on_result``
            refused (it gave up retrying): ``ml.Cache`` does not keep that result.
        hedge: ``0`` for the primary attempt, ``n`` for the n-th hedge (``ml.Hedge``).
        extras: A free-form dict for extensions, created on first use.
    """

    __slots__ = (
        "args",
        "attempt",
        "backend",
        "caller_clock",
        "caller_deadline",
        "clock",
        "deadline",
        "extras",
        "fn",
        "hedge",
        "kwargs",
        "last_error",
        "no_resend",
        "operation",
        "refused_result",
        "request",
        "service",
        "span",
        "tried",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        operation: str,
        service: str | None = None,
        parent: CallContext | None = None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.operation = operation
        self.service = service
        self.attempt = 0
        self.backend: Any = None
        self.span: Any = None
        self.request: Any = None
        self.tried: list[Any] | None = None
        self.no_resend = False
        self.refused_result = False
        self.last_error: BaseException | None = None
        self.hedge = 0
        self.extras: dict[str, Any] | None = None
        # caller_deadline and caller_clock start as deadline and clock: each pair is
        # set at once, not read back (every call runs this).
        if parent is None:
            self.deadline: float | None = None
            self.caller_deadline: float | None = None
            self.clock: Clock = SYSTEM_CLOCK
            self.caller_clock: Clock = SYSTEM_CLOCK
        else:
            # A nested call never gets more time than its caller has left.
            self.deadline = self.caller_deadline = parent.deadline
            self.clock = self.caller_clock = parent.clock
            if service is None:
                self.service = parent.service

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or ``None`` without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self.clock.monotonic())

    def out_of_time(self, slack: float = 0.0) -> Literal["own", "caller"] | None:
        """Whose deadline has passed: ``"own"`` when a deadline of the call's own
        pipeline did (a ``Timeout`` of the service's: the service was too slow),
        ``"caller"`` when the one it inherited from its caller did (an inbound
        request's budget, which a client chooses, or an outer pipeline's
        ``Timeout``: it says nothing about the service), ``None`` while more than
        ``slack`` seconds are left (:data:`TIMER_SLACK` for an error a loop timer set
        for the deadline raised: it may fire that early). The one decision breakers,
        routing and the HTTP wire share."""
        deadline = self.deadline
        if deadline is None or deadline - self.clock.monotonic() > slack:
            return None
        caller = self.caller_deadline
        if caller is not None and self.caller_clock is self.clock and \
                deadline >= caller - _INHERITED:
            return "caller"
        return "own"

    def tighten_deadline(self, seconds: float, clock: Clock) -> None:
        """Make the deadline ``seconds`` from now on ``clock``, unless one is sooner.

        Callers save ``deadline`` and ``clock`` first and restore both afterwards.
        """
        now = clock.monotonic()
        candidate = now + seconds
        if self.deadline is not None:
            # Express the existing deadline on the new clock before comparing.
            left = self.deadline - self.clock.monotonic()
            candidate = min(candidate, now + max(0.0, left))
        self.deadline = candidate
        self.clock = clock

    def copy(self) -> CallContext:
        """A shallow copy: the same field values (one ``tried`` list and one ``extras``
        dict), for a part of the call that runs apart from it (a hedge, a call a
        pessimistic ``Timeout`` may abandon) and must keep its own deadline and
        attempt fields when the caller moves on."""
        twin = CallContext.__new__(CallContext)
        for name in CallContext.__slots__:
            setattr(twin, name, getattr(self, name))
        return twin

    def __repr__(self) -> str:
        return (
            f"CallContext(service={self.service!r}, operation={self.operation!r}, "
            f"attempt={self.attempt}, remaining={self.remaining()!r})"
        )


def operation_of(fn: Callable[..., Any]) -> str:
    """The operation name of calls to ``fn``: its qualified name, else its name,
    else its type's name."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__


_current: ContextVar[CallContext | None] = ContextVar("meshlite_call", default=None)

# Its methods, bound once for the modules that enter a call: on a name bound by an
# import, CPython (3.11 on) compiles ``_current.set(ctx)`` as an attribute load,
# which makes a bound method object per call, and then a call of it.
_get_current, _set_current, _reset_current = _current.get, _current.set, _current.reset


def current_context() -> CallContext | None:
    """The context of the innermost meshlite call running here, or ``None``."""
    return _current.get()


def remaining() -> float | None:
    """Seconds left before the current call's deadline, or ``None`` when it has none.

    Code running inside a pipeline with a :class:`meshlite.Timeout` (or inside a
    mesh call with a deadline) uses this to bound its own I/O; meshlite's HTTP
    transport turns it into request timeouts.
    """
    ctx = _current.get()
    if ctx is None:
        return None
    return ctx.remaining()


async def run_as(call: Callable[[CallContext], Awaitable[_T]], ctx: CallContext) -> _T:
    """``await call(ctx)`` with ``ctx`` as the current call context, in a task of its
    own (a hedge, a call a pessimistic ``Timeout`` may abandon, a background cache
    refresh): the task runs in its own copy of the contextvars, so ``ml.remaining()``
    and nested pipelines inside see ``ctx``, and nothing needs resetting."""
    _current.set(ctx)
    return await call(ctx)
