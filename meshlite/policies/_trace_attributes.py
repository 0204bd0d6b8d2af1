"""What Trace puts on its spans: attribute values checked, arguments formatted
within a bound, the per-call attributes built once per (service, operation), and a
failure or a cancellation recorded on the span."""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

from opentelemetry.trace import Span, Status, StatusCode

from .._context import CallContext
from .._errors import CircuitOpenError, RejectedError, TimeoutExceeded
from .._memo import remember
from .._semconv import error_type
from .._validate import fail

__all__ = [
    "DEFAULT_RECORD_ARGS",
    "MAX_ARGS_REPR",
    "AttributeValue",
    "attribute",
    "call_attributes",
    "format_args",
    "record_cancel",
    "record_failure",
]

DEFAULT_RECORD_ARGS = False
"""Arguments are not recorded by default: they may hold personal data or secrets."""

MAX_ARGS_REPR = 256
"""Length cap of the ``meshlite.args`` attribute."""

AttributeValue: TypeAlias = (
    str | bool | int | float
    | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
)
"""What OpenTelemetry accepts as an attribute value."""

_SCALARS = (str, bool, int, float)
_PLAIN = frozenset({int, float, bool, type(None)})
_MAX_CACHED = 1024  # (service, operation) pairs whose attributes are kept at once

_args_repr = reprlib.Repr()
# reprlib bounds the work on big containers; the final text is capped again below.
_args_repr.maxstring = _args_repr.maxother = MAX_ARGS_REPR
_args_repr.maxlevel = 3


def attribute(key: object, value: object) -> AttributeValue:
    """``value`` checked as an OpenTelemetry attribute value (lists become tuples)."""
    if not isinstance(key, str) or not key:
        fail("Trace", "attributes", key, "a mapping whose keys are non-empty strings")
    if key.startswith("meshlite."):
        fail("Trace", f"attributes[{key!r}]", key, "outside the 'meshlite.' namespace, "
             "which meshlite reserves for its own attributes")
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list | tuple) and value:
        # One element type per sequence, and bool is not an int here (as in OpenTelemetry).
        first = type(value[0])
        if first in _SCALARS and all(type(v) is first for v in value):
            return tuple(value)
    return fail("Trace", f"attributes[{key!r}]", value,
         "a str, bool, int or float, or a non-empty list of one of those types")


def record_failure(span: Span, error: Exception) -> None:
    if not span.is_recording():
        return
    attributes: dict[str, AttributeValue] = {"error.type": error_type(error)}
    if isinstance(error, RejectedError):
        if error.policy is not None:
            attributes["meshlite.rejected_by"] = error.policy
        if isinstance(error, CircuitOpenError):
            attributes["meshlite.circuit.state"] = "open"
    elif isinstance(error, TimeoutExceeded):
        attributes["meshlite.timeout"] = True
    span.set_attributes(attributes)
    span.record_exception(error, escaped=True)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def record_cancel(span: Span) -> None:
    if span.is_recording():
        span.set_attribute("error.type", "cancelled")
        span.set_status(Status(StatusCode.ERROR, "cancelled"))


def short_repr(value: Any) -> str:
    # Plain repr for small scalars (reprlib's type dispatch costs more than the repr).
    if type(value) in _PLAIN or (type(value) is str and len(value) < MAX_ARGS_REPR):
        return repr(value)
    return _args_repr.repr(value)


def format_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    try:
        parts = [short_repr(a) for a in args]
        parts.extend(f"{k}={short_repr(v)}" for k, v in kwargs.items())
    except Exception:  # a broken __repr__ must not break the call
        return "<unrepresentable>"
    text = ", ".join(parts)
    return text if len(text) <= MAX_ARGS_REPR else text[: MAX_ARGS_REPR - 1] + "…"


def call_attributes(
    constant: Mapping[str, AttributeValue], record_args: bool
) -> Callable[[CallContext], Mapping[str, AttributeValue]]:
    """Per-call span attributes, built once per (service, operation) and reused: the
    SDK copies them into the span, so one dict can serve every call."""
    cache: dict[tuple[str | None, str], dict[str, AttributeValue]] = {}

    def build(service: str | None, operation: str) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {"meshlite.operation": operation}
        if service is not None:
            attributes["meshlite.service"] = service
        attributes.update(constant)
        return remember(cache, (service, operation), attributes, _MAX_CACHED)

    def attributes_for(ctx: CallContext) -> Mapping[str, AttributeValue]:
        key = (ctx.service, ctx.operation)
        attributes = cache.get(key) or build(*key)
        if record_args:
            return {**attributes, "meshlite.args": format_args(ctx.args, ctx.kwargs)}
        return attributes

    return attributes_for
