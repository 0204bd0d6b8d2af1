"""What calling an object runs: the function behind a ``functools.partial`` or behind
an object whose class defines ``__call__``, and whether that is a coroutine function.

``inspect.iscoroutinefunction`` answers False for an object with an ``async def
__call__`` (a client object called directly) and for a partial of one, whose calls
make coroutines all the same; code that picks a sync or an async path by it would
take the sync one and hand the coroutine back unrun.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

__all__ = ["call_target", "is_async_callable"]


def call_target(fn: Any) -> Any:
    """The function whose body runs when ``fn`` is called: ``fn`` itself for a function,
    method or class, the wrapped callable for a ``functools.partial``, and the class's
    ``__call__`` for another callable object."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if (inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn)
            or isinstance(fn, type) or not callable(fn)):
        return fn
    return type(fn).__call__


def is_async_callable(fn: Any) -> bool:
    """Whether calling ``fn`` makes a coroutine: a coroutine function, an object whose
    class has an ``async def __call__``, or a ``functools.partial`` of either."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call_target(fn))
