"""FaultInjection: make a share of calls slow or failing, on purpose (chaos testing)."""

from __future__ import annotations

import copy
import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from .._clock import Clock
from .._context import CallContext
from .._events import Event
from .._policy import AsyncHandler, Handler, Policy
from .._validate import (
    clock_option,
    fail,
    non_negative,
    not_coroutine,
    optional_random,
)
from ._answers import injected_answer

__all__ = [
    "DEFAULT_FAULT_ERROR",
    "FaultInjected",
    "FaultInjection",
    "FaultInjectionOptions",
]

DEFAULT_FAULT_ERROR: type[BaseException] = ConnectionError
"""Raised when no ``error``, ``latency`` or ``result`` is given: it looks like the
network failure a real outage produces, so the policies above react as they would."""

_MISSING: Any = object()
_NOTE = "injected by meshlite FaultInjection"

ErrorSpec: TypeAlias = BaseException | type[BaseException] | Callable[[], BaseException]
"""What ``error=`` accepts: an exception instance, an exception class, or a factory."""

LatencySpec: TypeAlias = float | Callable[[], float]
"""What ``latency=`` accepts: seconds, or a function returning seconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultInjectionOptions:
    """Validated options of :class:`FaultInjection`."""

    rate: float
    error: ErrorSpec | None = None
    latency: LatencySpec | None = None
    result: Any = _MISSING
    enabled: bool | Callable[[], bool] = True

    def __post_init__(self) -> None:
        owner = "FaultInjection"
        rate = non_negative(owner, "rate", self.rate)
        if rate > 1:
            fail(owner, "rate", self.rate, "in [0, 1]")
        object.__setattr__(self, "rate", rate)
        error = self.error
        if error is not None and not isinstance(error, BaseException) and (
            not callable(error)
            or (isinstance(error, type) and not issubclass(error, BaseException))
        ):
            fail(owner, "error", error,
                 "an exception instance, an exception class, or a function returning one")
        if isinstance(error, type):
            _check_class(owner, error)
        if error is not None and self.result is not _MISSING:
            fail(owner, "result", self.result,
                 "left out when error= is given (a fault either raises or answers)")
        if self.latency is not None and not callable(self.latency):
            object.__setattr__(self, "latency", non_negative(owner, "latency", self.latency))
        if not isinstance(self.enabled, bool) and not callable(self.enabled):
            fail(owner, "enabled", self.enabled, "a bool or a function returning one")
        not_coroutine(owner, "enabled", self.enabled)
        not_coroutine(owner, "error", error)
        not_coroutine(owner, "latency", self.latency)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultInjected(Event):
    """A fault was injected into a call.

    ``fault`` is ``"error"``, ``"result"`` or ``"latency"`` (a delay, then the real
    call); ``latency`` is the delay added, in seconds (0.0 for none).
    """

    fault: str
    latency: float = 0.0
    error: BaseException | None = None


def _instantiate(exc_type: type[BaseException]) -> BaseException:
    """``exc_type()``, or ``exc_type(message)`` when its constructor needs a message
    (``httpx.ConnectError``, meshlite's own errors)."""
    try:
        return exc_type()
    except TypeError:
        return exc_type(_NOTE)


def _check_class(owner: str, error: type[BaseException]) -> None:
    """Refuse, at construction, an error class that cannot be made for each fault."""
    try:
        _instantiate(error)
    except Exception as problem:
        fail(owner, "error", error,
             f"an exception class that can be made with no arguments or with a message "
             f"(making it raised {problem!r}); pass an instance, or a function returning one")


def _drawn(seconds: Any) -> float:
    """What a ``latency=`` function returned, as the seconds to wait: a negative draw
    (a normal distribution's tail) waits nothing.

    Raises:
        ConfigError: it is no finite number (an endless or NaN wait, a string).
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (
            -math.inf < seconds < math.inf):
        fail("FaultInjection", "latency", seconds,
             "a function returning a finite number of seconds")
    return max(0.0, float(seconds))


def _error_factory(error: ErrorSpec | None, has_result: bool, has_latency: bool,
                   ) -> Callable[[], BaseException] | None:
    """A function making the error to raise for each fault, or ``None`` for none."""
    if error is None:
        if has_result or has_latency:
            return None
        error = DEFAULT_FAULT_ERROR
    if isinstance(error, type) and issubclass(error, BaseException):
        exc_type: type[BaseException] = error

        def make_from_type() -> BaseException:
            made = _instantiate(exc_type)
            made.add_note(_NOTE)
            return made

        return make_from_type
    if isinstance(error, BaseException):
        template = error

        def make_from_instance() -> BaseException:
            # A fresh copy per fault: raising one instance again and again would
            # stack up its traceback, and policies above (Retry, Hedge) add notes.
            try:
                made = copy.copy(template)
            except Exception:
                return template.with_traceback(None)
            made.__notes__ = [*getattr(template, "__notes__", ()), _NOTE]
            return made

        return make_from_instance
    factory = error

    def make_from_factory() -> BaseException:
        made = factory()
        if not isinstance(made, BaseException):
            raise TypeError(
                f"FaultInjection: error={factory!r} must return an exception, got {made!r}")
        return made

    return make_from_factory


class FaultInjection(Policy):
    """Inject faults into a share of calls: added latency, an error, or a fixed result.

    With probability ``rate`` per call (drawn from ``random``), the call first
    waits ``latency`` seconds (on ``clock``), then raises ``error`` or answers
    ``result`` without running; with only ``latency`` given it then runs as usual.
    With none of the three, the fault raises :data:`DEFAULT_FAULT_ERROR`. Put it
    innermost, where real faults come from, so every policy above reacts to it.

    Args:
        rate: The probability, in [0, 1], that a call gets the fault.
        error: An exception instance (copied for each fault), an exception class
            (instantiated with no arguments) or a function returning an exception.
        latency: Seconds to add, or a function returning them (a distribution).
        result: The answer returned instead of calling.
        enabled: ``False`` turns the policy off at build time, at no cost per
            call; a function is asked on every call (a kill switch, a flag).
        clock: Sleeps the latency (default: the system clock).
        random: The random source (default: the ``random`` module's).

    Raises:
        ConfigError: a bad option, or both ``error`` and ``result``.
    """

    kind = "fault_injection"

    def __init__(
        self,
        rate: float,
        error: ErrorSpec | None = None,
        latency: LatencySpec | None = None,
        result: Any = _MISSING,
        enabled: bool | Callable[[], bool] = True,
        *,
        clock: Clock | None = None,
        random: _random.Random | None = None,
    ) -> None:
        super().__init__()
        self.options = FaultInjectionOptions(
            rate=rate, error=error, latency=latency, result=result, enabled=enabled)
        self.clock: Clock = clock_option("FaultInjection", clock)
        random = optional_random("FaultInjection", random)
        self.random = random

    def _off(self) -> bool:
        """Whether no call can get a fault, so wrapping should cost nothing."""
        return self.options.enabled is False or self.options.rate == 0.0

    def _hit(self) -> Callable[[], bool]:
        """The per-call decision: is this call faulted?"""
        rate, enabled = self.options.rate, self.options.enabled
        draw = (self.random or _random).random
        if enabled is True:
            return lambda: draw() < rate
        switch: Callable[[], bool] = enabled  # type: ignore[assignment]
        return lambda: bool(switch()) and draw() < rate

    def _fault(self) -> Callable[[CallContext], tuple[float, BaseException | None]]:
        """``fault(ctx) -> (seconds to add, error to raise or None)`` for a faulted call."""
        o = self.options
        answers = o.result is not _MISSING
        latency = o.latency
        make_error = _error_factory(o.error, answers, latency is not None)
        kind_of_fault = ("error" if make_error is not None
                         else "result" if answers else "latency")
        hooks, emit, kind = self.hooks, self._emit, self.kind

        def fault(ctx: CallContext) -> tuple[float, BaseException | None]:
            seconds = 0.0
            if latency is not None:
                seconds = _drawn(latency()) if callable(latency) else latency
            error = None if make_error is None else make_error()
            if hooks.active:
                emit(FaultInjected(policy=kind, service=ctx.service, operation=ctx.operation,
                                   fault=kind_of_fault, latency=seconds, error=error))
            return seconds, error

        return fault

    def wrap(self, call_next: Handler) -> Handler:
        if self._off():
            return call_next
        hit, fault, sleep = self._hit(), self._fault(), self.clock.sleep
        result, answers = self.options.result, self.options.result is not _MISSING

        def handle(ctx: CallContext) -> Any:
            if not hit():
                return call_next(ctx)
            seconds, error = fault(ctx)
            if seconds:
                left = None if ctx.deadline is None else ctx.remaining()
                if left is not None and seconds >= left:
                    # As a slow backend's answer through the sync wire is cut at the
                    # call's deadline (an async call's latency is cancelled there): just
                    # past it, as a timer fires, so the deadline is seen to have passed.
                    sleep(max(left, 0.0) + _PAST)
                    raise _cut(seconds, left)
                sleep(seconds)
            if error is not None:
                try:
                    raise error
                finally:  # this frame is in its traceback: no reference cycle
                    del error
            if answers:
                return result if ctx.request is None else injected_answer(ctx, result, _NOTE)
            return call_next(ctx)

        return handle

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        if self._off():
            return call_next
        hit, fault, asleep = self._hit(), self._fault(), self.clock.asleep
        result, answers = self.options.result, self.options.result is not _MISSING

        async def inject(ctx: CallContext) -> Any:
            seconds, error = fault(ctx)
            if seconds:
                await asleep(seconds)
            if error is not None:
                try:
                    raise error
                finally:  # this frame is in its traceback: no reference cycle
                    del error
            if answers:
                return result if ctx.request is None else injected_answer(ctx, result, _NOTE)
            return await call_next(ctx)

        def handle(ctx: CallContext) -> Any:
            # A plain function returning the awaitable: a call without a fault
            # costs no coroutine frame of this policy's own.
            return inject(ctx) if hit() else call_next(ctx)

        return handle

    def __repr__(self) -> str:
        o = self.options
        parts = [f"rate={o.rate!r}"]
        parts += [f"{name}={value!r}" for name, value in
                  (("error", o.error), ("latency", o.latency)) if value is not None]
        if o.result is not _MISSING:
            parts.append(f"result={o.result!r}")
        if o.enabled is not True:
            parts.append(f"enabled={o.enabled!r}")
        return f"FaultInjection({', '.join(parts)})"


_PAST = 1e-6
"""Seconds past the deadline injected latency ends at, when the deadline cuts it."""


def _cut(seconds: float, left: float) -> TimeoutError:
    """The error of injected latency that outlasts the call's time left: a timeout, as
    a blocking wait bounded by the deadline raises (``ml.Timeout`` turns it into
    ``TimeoutExceeded``)."""
    error = TimeoutError(f"injected latency of {seconds:g} s outlasted the {max(left, 0.0):g} "
                         "s the call had left")
    error.add_note(_NOTE)
    return error
