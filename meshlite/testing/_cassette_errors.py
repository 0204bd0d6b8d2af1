"""Errors in a cassette: a recorded error as its class, message and simple
arguments (and a meshlite error's attributes), rebuilt at replay without importing
anything."""

from __future__ import annotations

import builtins
import math
import sys
from collections.abc import Callable
from typing import Any

from .._errors import MeshliteError, ReplayedError

__all__ = ["decode_error", "encode_error"]

_SIMPLE = (str, int, float, bool, type(None))
_ATTRIBUTES = ("service", "policy", "retry_after")  # what every MeshliteError carries


def _simple(value: object) -> bool:
    return isinstance(value, _SIMPLE) and not (isinstance(value, float)
                                               and not math.isfinite(value))


def encode_error(error: BaseException,
                 redact: Callable[[str], str] = lambda text: text) -> dict[str, Any]:
    """An error as its class (module and qualified name) and message, passed through
    ``redact``; its arguments too when they are not just the message and are all
    simple (``KeyError("user-7")``'s message is ``'user-7'``, quoted), and a
    meshlite error's ``service``, ``policy`` and ``retry_after``."""
    cls = type(error)
    message = redact(str(error))
    data: dict[str, Any] = {"module": cls.__module__, "type": cls.__qualname__,
                            "message": message}
    args = [redact(a) if isinstance(a, str) else a for a in error.args]
    if args != [message] and all(_simple(a) for a in args):
        data["args"] = args
    if isinstance(error, MeshliteError):
        kept = {name: getattr(error, name, None) for name in _ATTRIBUTES}
        kept = {k: redact(v) if isinstance(v, str) else v for k, v in kept.items()
                if v is not None and _simple(v)}
        if kept:
            data["attributes"] = kept
    return data


def decode_error(data: dict[str, Any]) -> Exception:
    """The recorded error, rebuilt as ``cls(*args)`` (or ``cls(message)``) when its
    module is loaded, a meshlite error with its recorded attributes.

    Modules are looked up in :data:`sys.modules`, never imported, so a cassette
    cannot make the test import anything; otherwise a :class:`ReplayedError`.
    """
    module, qualname, message = data["module"], data["type"], data.get("message", "")
    found: Any = builtins if module == "builtins" else sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if isinstance(found, type) and issubclass(found, Exception):
        args = data.get("args")
        for arguments in ([*args], [message]) if isinstance(args, list) else ([message],):
            try:
                error: Exception = found(*arguments)
            except Exception:  # its constructor wants something else
                continue
            if isinstance(error, MeshliteError):
                for name, value in data.get("attributes", {}).items():
                    if name in _ATTRIBUTES:
                        setattr(error, name, value)
            return error
    return ReplayedError(f"{module}.{qualname}: {message}", error_type=f"{module}.{qualname}")
