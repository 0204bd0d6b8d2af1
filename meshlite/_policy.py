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
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    ParamSpec,
    Protocol,
    Self,
    TypeVar,
    overload,
)

from ._arguments import Explained
from ._context import CallContext
from ._events import Event, EventHooks, Hook

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = ["AsyncHandler", "Decorated", "Handler", "Policy"]

P = ParamSpec("P")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
_Bound = ParamSpec("_Bound")
_Instance = TypeVar("_Instance")

Handler = Callable[[CallContext], Any]
"""A sync handler: runs the rest of the chain for a call and returns its result."""

AsyncHandler = Callable[[CallContext], Awaitable[Any]]
"""An async handler: returns an awaitable of the call's result."""


class Decorated(Protocol[P, T_co]):
    """A function decorated with a pipeline, as type checkers see it: the function's
    own parameters and result (a coroutine for an ``async def``), and the pipeline
    its calls run through as ``.pipeline``. A method so decorated binds as a method.

    Only a type: what decorating returns at run time is a function (made with
    ``functools.wraps``), with that ``pipeline`` attribute.
    """

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline every call of the function runs through."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T_co: ...

    # A function is a descriptor: read from an instance, a method binds its first
    # parameter. Read from the class, it is unbound.
    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None, /) -> Self: ...
    @overload
    def __get__(self: Decorated[Concatenate[_Instance, _Bound], T_co], instance: _Instance,
                owner: type[Any] | None = None, /) -> Decorated[_Bound, T_co]: ...
    def __get__(self, instance: Any, owner: type[Any] | None = None, /) -> Any: ...


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
    def __call__(self, fn: Callable[P, T]) -> Decorated[P, T]:
        """Decorate ``fn`` so every call runs through this policy.

        A sync function stays sync and an async one stays async; the one-policy
        pipeline it runs through is its ``.pipeline``.
        """
        return self._as_pipeline()(fn)
