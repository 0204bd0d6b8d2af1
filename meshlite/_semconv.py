"""OpenTelemetry semantic-convention values shared by the Trace policy, routing's
attempt spans and metrics."""

from __future__ import annotations

__all__ = ["KNOWN_METHODS", "OTHER_METHOD", "error_type"]

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
                           "TRACE", "PATCH"})
"""The HTTP methods the conventions know (RFC 9110 and PATCH): any other is
``_OTHER`` in ``http.request.method``, and a span is named ``HTTP`` rather than after
it, so that made-up methods add neither span names nor series without end."""

OTHER_METHOD = "_OTHER"
"""``http.request.method`` of a method outside :data:`KNOWN_METHODS`."""


def error_type(error: BaseException) -> str:
    """The ``error.type`` of ``error``: the HTTP status code for an HTTP status error
    (as the HTTP conventions ask), otherwise the fully qualified class name, written
    as the SDK writes ``exception.type`` (no ``builtins.`` prefix)."""
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        return str(status)
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
