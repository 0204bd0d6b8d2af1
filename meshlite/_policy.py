"""The one contract every policy implements.

A policy turns the next handler of the chain into its own handler, once, when a
pipeline is compiled: ``wrap(call_next) -> handler`` for sync calls and
``awrap(call_next) -> handler`` for async ones. A handler takes the per-call
:class:`~meshlite.CallContext` and returns the call's result (an awaitable for
async handlers). Nothing is looked up per call: a policy reads its options into
closure variables when it wraps.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, ParamSpec, TypeVar

from ._arguments import Explained
from ._context import CallContext
from ._events import Event, EventHooks, Hook

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = ["AsyncHandler", "Handler", "Policy"]

P = ParamSpec("P")
T = TypeVar("T")

Handler = Callable[[CallContext], Any]
"""A sync handler: runs the rest of the chain for a call and returns its result."""

AsyncHandler = Callable[[CallContext], Awaitable[Any]]
"""An async handler: returns an awaitable of the call's result."""


class Policy(Explained, abc.ABC):
    """Base of all policies (and of :class:`~meshlite.Pipeline`).

    Subclasses set ``kind`` and implement :meth:`wrap` and :meth:`awrap`. A policy
    is also a decorator: ``@ml.Retry(attempts=3)`` is a one-policy pipeline.
    """

    kind: ClassVar[str] = "policy"

    def __init__(self) -> None:
        self.hooks = EventHooks()
        self._solo: Pipeline | None = None

    @abc.abstractmethod
    def wrap(self, call_next: Handler) -> Handler:
        """Return the sync handler that applies this policy around ``call_next``.

        Raises:
            ConfigError: the policy cannot run synchronously (hedging, for one).
        """

    @abc.abstractmethod
    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        """Return the async handler that applies this policy around ``call_next``."""

    def add_hook(self, hook: Hook) -> Callable[[], None]:
        """Subscribe ``hook`` to this policy's events; returns the unsubscribe function."""
        return self.hooks.add(hook)

    def walk(self) -> Iterator[Policy]:
        """This policy and, for composites, every policy inside, outermost first."""
        yield self

    def _emit(self, event: Event) -> None:
        self.hooks.emit(event)

    def _as_pipeline(self) -> Pipeline:
        if self._solo is None:
            from ._pipeline import Pipeline

            self._solo = Pipeline(self)
        return self._solo

    # One signature for both kinds: an async function is a Callable[P, Coroutine[...]]
    # and stays one. (Overloads for the two made a sync function returning Any match
    # the async one, so its signature came out erased.)
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate ``fn`` so every call runs through this policy.

        A sync function stays sync and an async one stays async.
        """
        return self._as_pipeline()(fn)
