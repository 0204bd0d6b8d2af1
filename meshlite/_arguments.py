"""Constructors that say which arguments they take.

Python's own error for a misspelt keyword names it and nothing else
(``Retry.__init__() got an unexpected keyword argument 'atempts'``). A class made
:func:`explained` answers wrong arguments with a ``TypeError`` that also lists the
arguments it takes and the one most likely meant::

    Retry() got an unexpected keyword argument 'atempts' (did you mean 'attempts'?);
    Retry takes: attempts, backoff, on, on_result, ...

Only a call that fails is looked at (the signature is bound again to tell a wrong
argument from a ``TypeError`` raised inside the constructor, which passes through
unchanged); a call that succeeds pays one more frame, at construction only. Every
class deriving from :class:`Explained` is explained (policies, balancers, health
checks: users' own subclasses included), and the other public classes users build by
hand are decorated where they are defined.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Explained", "explained", "wrong_arguments"]

C = TypeVar("C", bound=type)


def explained(cls: C) -> C:
    """Make ``cls``'s own ``__init__`` answer wrong arguments with the arguments it
    takes (see the module). Returns ``cls``; a class without an ``__init__`` of its
    own, or one already explained, is returned as it is."""
    init = cls.__dict__.get("__init__")
    if init is None or getattr(init, "_explained", False):
        return cls

    owner = cls.__name__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except TypeError as error:
            # (the class of self when it inherits this constructor as it is)
            name = type(self).__name__ if type(self).__init__ is __init__ else owner
            message = wrong_arguments(init, name, (self, *args), kwargs)
            if message is None:  # raised inside the constructor: not ours to explain
                raise
            raise TypeError(message) from error

    __init__._explained = True  # type: ignore[attr-defined]
    type.__setattr__(cls, "__init__", __init__)
    return cls


class Explained:
    """A base whose every subclass (and itself) is :func:`explained`."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        explained(cls)


def wrong_arguments(function: Callable[..., Any], owner: str, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> str | None:
    """What is wrong with calling ``function`` (``owner``'s constructor, ``self``
    first in ``args``) with these arguments, said with the arguments it takes; None
    when they bind."""
    try:
        signature = inspect.signature(function)
        signature.bind(*args, **kwargs)
    except TypeError as error:
        reason = str(error)
    except ValueError:  # no signature to read (a builtin)
        return None
    else:
        return None
    parameters = list(signature.parameters.values())[1:]  # (self)
    names = [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    unknown = [key for key in kwargs if key not in signature.parameters]
    if unknown:
        reason = f"got an unexpected keyword argument {unknown[0]!r}"
        close = difflib.get_close_matches(unknown[0], names, n=1)
        if close:
            reason += f" (did you mean {close[0]!r}?)"
    takes = ", ".join(f"*{p.name}" if p.kind is p.VAR_POSITIONAL else
                      f"**{p.name}" if p.kind is p.VAR_KEYWORD else p.name
                      for p in parameters) or "no arguments"
    return f"{owner}() {reason}; {owner} takes: {takes}"
