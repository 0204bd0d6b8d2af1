"""A mesh's own service name: given, else the telemetry's, else ``OTEL_SERVICE_NAME``."""

from __future__ import annotations

import os
import sys
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
    configure = sys.modules.get("meshlite.telemetry._configure")  # never import it here
    active = None if configure is None else configure.current()
    if active is not None:
        name: str = active.service_name
        if name and name != "unknown_service":
            return valid_caller(name)
    env = _service_name_env()
    return valid_caller(env) if env else None


_environ: Any = os.environ
_RAW, _KEY = getattr(_environ, "_data", None), getattr(_environ, "encodekey", str)(
    "OTEL_SERVICE_NAME")


def _service_name_env() -> str | None:
    # Every routed HTTP attempt of a mesh without a name reads this (its caller
    # header). os.environ.get("X") raises and catches a KeyError inside when X is
    # unset: 2.5 us, a tenth of what the mesh adds to a request. os.environ keeps its
    # items in a dict (`_data`, kept current by os.environ's own setters), read here
    # directly where CPython has it.
    if _RAW is None:
        return os.environ.get("OTEL_SERVICE_NAME")
    raw = _RAW.get(_KEY)
    return None if raw is None else _environ.decodevalue(raw)
