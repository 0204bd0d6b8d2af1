"""A mesh's own service name: given, else the telemetry's, else ``OTEL_SERVICE_NAME``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from .._validate import fail
from ._headers import valid_caller

__all__ = ["check_name", "default_name"]


def check_name(name: object) -> str | None:
    """``name`` when it is None or a valid service name, else a ConfigError."""
    if name is None:
        return None
    if not isinstance(name, str) or valid_caller(name) is None:
        fail("Mesh", "name", name,
             "None or a service name of letters, digits, '.', '_' or '-' (1-128 characters)")
    return name


def default_name() -> str | None:
    """The service name telemetry was configured with, else ``OTEL_SERVICE_NAME``."""
    global _configure, _memo
    configure = _configure
    if configure is None:  # looked up until imported, never imported here
        configure = _configure = sys.modules.get("meshlite.telemetry._configure")
    active = None if configure is None else configure._active
    raw = _raw_name()
    # Every routed HTTP attempt of a mesh without a name asks (its caller header):
    # the answer is remembered for the configuration and variable it came from (one
    # tuple, replaced whole: a thread never reads one state's name with another's).
    seen_active, seen_raw, seen_name = _memo
    if seen_active is active and seen_raw is raw:
        return seen_name
    name = _name_of(active, raw)
    _memo = (active, raw, name)
    return name


def _name_of(active: Any, raw: Any) -> str | None:
    if active is not None:
        name: str = active.service_name
        if name and name != "unknown_service":
            return valid_caller(name)
    env = raw if _RAW is None or raw is None else _environ.decodevalue(raw)
    return valid_caller(env) if env else None


# os.environ keeps its items in a dict (`_data`, kept current by os.environ's own
# setters), read directly where CPython has it: os.environ.get("X") raises and
# catches a KeyError inside when X is unset (2.5 us). A changed variable is a new
# object there, so identity tells when the remembered name is stale.
_environ: Any = os.environ
_RAW, _KEY = getattr(_environ, "_data", None), getattr(_environ, "encodekey", str)(
    "OTEL_SERVICE_NAME")
# The raw variable, read with one call (a partial of a dict's get runs no bytecode).
_raw_name: Callable[[], Any] = (partial(_RAW.get, _KEY) if _RAW is not None
                                else lambda: os.environ.get("OTEL_SERVICE_NAME"))


_configure: Any = None  # meshlite.telemetry._configure, once imported
_memo: tuple[Any, Any, str | None] = (object(), object(), None)
"""(telemetry configuration, raw ``OTEL_SERVICE_NAME``, the name they give)."""
