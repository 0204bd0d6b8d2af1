"""``Cache.warm``: computing an entry ahead of the calls that will read it, through
the miss path of the pipeline the Cache was last built into."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..._callables import is_async_callable
from ..._context import CallContext, _current
from ..._context import operation_of as _operation_of
from ..._errors import ConfigError

if TYPE_CHECKING:
    from ._options import Key
    from ._policy import Cache

__all__ = ["warm"]


def warm(cache: Cache, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Compute and store the entry of the one function ``cache`` serves for these
    arguments (see :meth:`Cache.warm`); a coroutine of it for an async function.

    Raises:
        ConfigError: the Cache serves no function yet, or several, or was never
            built into a pipeline of the function's kind.
        TypeError: the arguments are not hashable (with a store: not JSON).
    """
    fn, service = _function(cache)
    operation = _operation_of(fn)
    key = (fn, cache._argument_key(repr(operation), args, kwargs))
    ctx = CallContext(fn, args, kwargs, operation, service, _current.get())
    if is_async_callable(fn):
        return _awarm(cache, ctx, key)
    miss = cache._sync_miss
    if miss is None:
        raise ConfigError(
            f"Cache.warm: {operation!r} is sync but this Cache was never built into "
            "a sync pipeline; call the function once instead", policy=cache.kind)
    token = _current.set(ctx)
    try:
        return miss(ctx, key, True)
    finally:
        _current.reset(token)


async def _awarm(cache: Cache, ctx: CallContext, key: Key) -> Any:
    miss = cache._async_miss
    if miss is None:
        raise ConfigError(
            f"Cache.warm: {ctx.operation!r} is async but this Cache was never built "
            "into a pipeline; call the function once instead", policy=cache.kind)
    token = _current.set(ctx)
    try:
        return await miss(ctx, key, True)
    finally:
        _current.reset(token)


def _function(cache: Cache) -> tuple[Any, str | None]:
    """The one function ``cache`` serves, and its service."""
    with cache._store.lock:
        functions = list(cache._store.functions.items())
    if len(functions) == 1:
        return functions[0]
    if not functions:
        raise ConfigError(
            "Cache.warm: this Cache has served no function yet; decorate the function "
            "with it, or call the function once (a miss stores the result)",
            policy=cache.kind)
    names = ", ".join(repr(_operation_of(f)) for f, _ in functions)
    raise ConfigError(
        f"Cache.warm: this Cache serves several functions ({names}); call the one "
        "to warm with the arguments instead", policy=cache.kind)
