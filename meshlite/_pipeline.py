"""Pipeline: policies composed once into a chain of handlers, outermost first."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar, cast

from ._callables import call_target, is_async_callable
from ._context import CallContext, _get_current, _reset_current, _set_current
from ._context import operation_of as _operation_of
from ._errors import ConfigError
from ._events import Hook
from ._policy import AsyncHandler, Decorated, Handler, Policy

__all__ = ["NOT_RUN", "Pipeline", "async_called_sync", "refuse_generator"]

P = ParamSpec("P")
T = TypeVar("T")


def _invoke(ctx: CallContext) -> Any:
    # The bottom of every chain, sync and async alike: for async calls this returns
    # the coroutine and the policy above awaits it, saving one coroutine frame.
    # Without keyword arguments (the usual case) no keyword dict is unpacked.
    kwargs = ctx.kwargs
    return ctx.fn(*ctx.args, **kwargs) if kwargs else ctx.fn(*ctx.args)


_COROUTINE = types.CoroutineType
NOT_RUN = frozenset((_COROUTINE, types.GeneratorType))
"""What a sync entry's function may return without its body having run."""


def async_called_sync(result: Any, fn: Callable[..., Any], instead: str) -> TypeError:
    """The error for a sync entry (``Pipeline.call``, ``mesh.call_sync``) given an async
    function: ``result``, its coroutine, ran through no policy (the policies saw a
    call that returned at once). The coroutine is closed, so it warns of nothing."""
    result.close()
    return TypeError(f"{_operation_of(fn)} is an async function: a sync call returned its "
                     "coroutine without running it, so no policy applied to it; use "
                     f"{instead}")


def refuse_generator(fn: Callable[..., Any]) -> None:
    """A generator's body runs while the caller iterates, after the decorated call has
    returned, so no policy could see its errors or bound its time: refuse it."""
    target = call_target(fn)  # (a partial's function, a callable object's __call__)
    if inspect.isasyncgenfunction(target):
        kind, collect = "an async generator", "[item async for item in gen(...)]"
    elif inspect.isgeneratorfunction(target):
        kind, collect = "a generator", "list(gen(...))"
    else:
        return
    raise ConfigError(
        f"{_operation_of(fn)} is {kind} function: its body runs while the caller "
        "iterates, after the call returned, so retries, timeouts and breakers would "
        f"protect nothing. Decorate a function that returns the collected items "
        f"({collect}), or the function that fetches each item, instead",
        policy="pipeline",
    )


class Pipeline(Policy):
    """An ordered set of policies applied to every call, outermost first.

    The pipeline is compiled into one chain of closures for async calls when it is
    built, and one for sync calls when first needed, so a call never walks a list.
    A pipeline is itself a policy and may be nested in another.

    Args:
        *policies: The policies, outermost first.
        service: The service name recorded in each call's context and events.

    Raises:
        ConfigError: an argument is not a policy.

    Example::

        pipeline = ml.Pipeline(ml.Timeout(2.0), ml.Retry(attempts=3))

        @pipeline
        async def get_user(uid: int) -> dict: ...
    """

    kind = "pipeline"

    def __init__(self, *policies: Policy, service: str | None = None) -> None:
        super().__init__()
        for index, policy in enumerate(policies):
            if not isinstance(policy, Policy):
                raise ConfigError(
                    f"Pipeline: policies[{index}] must be a meshlite policy such as "
                    f"ml.Retry(...), got {policy!r}",
                    policy="pipeline",
                )
        if service is not None and (not isinstance(service, str) or not service):
            raise ConfigError(f"Pipeline: service must be a non-empty string or None, "
                              f"got {service!r}", policy="pipeline")
        self.policies: tuple[Policy, ...] = policies
        self.service = service
        self._sync: Handler | None = None
        self._async: AsyncHandler = self.awrap(_invoke)

    # -- the policy contract ---------------------------------------------------

    def wrap(self, call_next: Handler) -> Handler:
        for policy in reversed(self.policies):
            call_next = policy.wrap(call_next)
        return call_next

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        for policy in reversed(self.policies):
            call_next = policy.awrap(call_next)
        return call_next

    def walk(self) -> Iterator[Policy]:
        yield self
        for policy in self.policies:
            yield from policy.walk()

    def add_hook(self, hook: Hook) -> Callable[[], None]:
        """Subscribe ``hook`` to the events of every policy in this pipeline."""
        removers = [p.hooks.add(hook) for p in self.walk()]

        def remove() -> None:
            for r in removers:
                r()

        return remove

    def _as_pipeline(self) -> Pipeline:
        return self

    # -- running calls ---------------------------------------------------------

    def sync_handler(self) -> Handler:
        """The compiled sync chain (built on first use).

        Raises:
            ConfigError: a policy of the pipeline cannot run synchronously.
        """
        handler = self._sync
        if handler is None:
            handler = self._sync = self.wrap(_invoke)
        return handler

    def async_handler(self) -> AsyncHandler:
        """The compiled async chain."""
        return self._async

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` through the pipeline and return its result."""
        handler = self._sync or self.sync_handler()
        name = getattr(fn, "__qualname__", None)  # _operation_of's usual case, inlined
        ctx = CallContext(fn, args, kwargs, name if type(name) is str and name
                          else _operation_of(fn), self.service, _get_current())
        token = _set_current(ctx)
        try:
            result: T = handler(ctx)
        finally:
            _reset_current(token)
        if type(result) in NOT_RUN:
            if type(result) is _COROUTINE:
                raise async_called_sync(result, fn, "await pipeline.acall(fn, ...)")
            refuse_generator(fn)  # a generator function, refused as when decorated
        return result

    async def acall(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``fn(*args, **kwargs)`` through the pipeline and return its result."""
        name = getattr(fn, "__qualname__", None)  # _operation_of's usual case, inlined
        ctx = CallContext(fn, args, kwargs, name if type(name) is str and name
                          else _operation_of(fn), self.service, _get_current())
        token = _set_current(ctx)
        try:
            result: T = await self._async(ctx)
            return result
        except TypeError as error:  # (no cost until raised)
            refuse_generator(fn)  # an async generator function: refused as when decorated
            if "await" in str(error) and not is_async_callable(fn):
                raise TypeError(f"{_operation_of(fn)} is a sync function, which "
                                "pipeline.acall cannot await: call it with "
                                "pipeline.call(fn, ...), or make it async") from error
            raise
        finally:
            _reset_current(token)

    # One signature for both kinds: an async function is a Callable[P, Coroutine[...]]
    # and stays one. (Overloads for the two made a sync function returning Any match
    # the async one, so its signature came out erased.)
    def __call__(self, fn: Callable[P, T]) -> Decorated[P, T]:
        """Decorate ``fn``: a sync function stays sync and an async one stays async.

        Returns:
            ``fn``'s wrapper, with this pipeline as its ``.pipeline`` attribute.

        Raises:
            ConfigError: ``fn`` is sync and a policy cannot run synchronously, or
                ``fn`` is a generator or async generator function.
            TypeError: ``fn`` is not callable.
        """
        if isinstance(fn, staticmethod | classmethod):  # below another decorator
            # Decorate the function and wrap it back: a wrapper of the descriptor
            # would be bound as a method (Svc().f(1) passed self to a staticmethod).
            kind = type(fn)
            return cast("Decorated[P, T]", kind(self(fn.__func__)))
        if not callable(fn):
            raise TypeError(f"Pipeline can only decorate a callable, got {fn!r}")
        refuse_generator(fn)
        operation = _operation_of(fn)
        service = self.service
        if is_async_callable(fn):  # (an object with an async __call__ too)
            ahandler = self._async

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                ctx = CallContext(fn, args, kwargs, operation, service, _get_current())
                token = _set_current(ctx)
                try:
                    return await ahandler(ctx)
                finally:
                    _reset_current(token)

            async_wrapper.pipeline = self  # type: ignore[attr-defined]
            # fn is async here, so T is its coroutine type: the wrapper's is the same
            return cast("Decorated[P, T]", async_wrapper)

        handler = self.sync_handler()

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = CallContext(fn, args, kwargs, operation, service, _get_current())
            token = _set_current(ctx)
            try:
                result = handler(ctx)
            finally:
                _reset_current(token)
            if type(result) is _COROUTINE:  # a sync callable that returned a coroutine
                raise async_called_sync(result, fn, "an async def function that awaits it")
            return result

        sync_wrapper.pipeline = self  # type: ignore[attr-defined]
        return cast("Decorated[P, T]", sync_wrapper)

    def __repr__(self) -> str:
        inner = ", ".join(repr(p) for p in self.policies)
        return f"Pipeline({inner})"
