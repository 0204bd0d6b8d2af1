"""Fallback: answer with a value (or a handler's result) when the call fails."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._callables import is_async_callable
from .._context import CallContext
from .._errors import ConfigError
from .._events import FallbackUsed
from .._policy import AsyncHandler, Handler, Policy
from .._predicates import ErrorFilter, error_predicate
from .._validate import fail, fail_choice
from ._answers import answer_request

__all__ = ["DEFAULT_FALLBACK_ON", "Fallback", "FallbackOptions"]

DEFAULT_FALLBACK_ON: tuple[type[BaseException], ...] = (Exception,)
"""Any error except cancellation and interpreter exits."""

_MISSING: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackOptions:
    """Validated options of :class:`Fallback`."""

    value: Any = _MISSING
    handler: Callable[[BaseException], Any] | None = None
    on: ErrorFilter = DEFAULT_FALLBACK_ON

    def __post_init__(self) -> None:
        if (self.value is _MISSING) == (self.handler is None):
            fail_choice("Fallback", "exactly one of value= or handler=",
                        [n for n, v in (("value", self.value is not _MISSING),
                                        ("handler", self.handler is not None)) if v])
        if self.handler is not None and not callable(self.handler):
            fail("Fallback", "handler", self.handler, "a callable taking the error")
        error_predicate("Fallback", "on", self.on)


class Fallback(Policy):
    """Return a fallback answer when the call fails with an error matching ``on``.

    Args:
        value: The answer to return on failure.
        handler: Instead of ``value``, ``handler(error)`` computes the answer; in
            async pipelines it may be a coroutine function (a sync call refuses one
            with ``ConfigError`` when it is decorated).
        on: Which errors to answer for (default: any ``Exception``; cancellation,
            ``KeyboardInterrupt`` and ``SystemExit`` always propagate).

    Raises:
        ConfigError: neither or both of ``value`` and ``handler``, or a bad ``on``.
    """

    kind = "fallback"

    def __init__(
        self,
        value: Any = _MISSING,
        *,
        handler: Callable[[BaseException], Any] | None = None,
        on: ErrorFilter = DEFAULT_FALLBACK_ON,
    ) -> None:
        super().__init__()
        self.options = FallbackOptions(value=value, handler=handler, on=on)

    def _answer(self, ctx: CallContext, error: Exception) -> Any:
        if self.hooks.active:
            self._emit(FallbackUsed(policy=self.kind, service=ctx.service,
                                    operation=ctx.operation, error=error))
        handler = self.options.handler
        return self.options.value if handler is None else handler(error)

    def _field(self) -> str:
        return "value" if self.options.handler is None else "the handler's answer"

    def wrap(self, call_next: Handler) -> Handler:
        handler = self.options.handler
        if is_async_callable(handler):
            name = getattr(handler, "__qualname__", handler)
            raise ConfigError(
                f"Fallback: handler {name!r} is a coroutine function, which a sync call "
                "cannot await; pass a sync handler, or use this Fallback on an async "
                "function", policy=self.kind)
        matches = error_predicate("Fallback", "on", self.options.on)
        answer, field = self._answer, self._field()

        def handle(ctx: CallContext) -> Any:
            try:
                return call_next(ctx)
            except Exception as error:
                if not matches(error):
                    raise
                result = answer(ctx, error)
                if handler is not None and inspect.isawaitable(result):
                    _refuse_awaitable(handler, result)
                return result if ctx.request is None else answer_request(
                    "Fallback", field, ctx, result)

        return handle

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        matches = error_predicate("Fallback", "on", self.options.on)
        answer, field = self._answer, self._field()

        async def handle(ctx: CallContext) -> Any:
            try:
                return await call_next(ctx)
            except Exception as error:
                if not matches(error):
                    raise
                result = answer(ctx, error)
                if inspect.isawaitable(result):
                    result = await result
                # An HTTP client takes a response only (its own copy of it).
                return result if ctx.request is None else answer_request(
                    "Fallback", field, ctx, result)

        return handle

    def __repr__(self) -> str:
        o = self.options
        what = f"handler={o.handler!r}" if o.handler is not None else f"value={o.value!r}"
        return f"Fallback({what})"


def _refuse_awaitable(handler: object, result: Any) -> None:
    """A sync call's handler returned something to await (a lambda returning a
    coroutine): nothing can await it here.

    Raises:
        ConfigError: always, naming the handler.
    """
    close = getattr(result, "close", None)
    if callable(close):
        close()  # a coroutine never awaited would warn when collected
    name = getattr(handler, "__qualname__", handler)
    raise ConfigError(
        f"Fallback: handler {name!r} returned {type(result).__name__} {result!r}, which a "
        "sync call cannot await; return the answer itself from a sync call, or use "
        "this Fallback on an async function", policy="fallback")
