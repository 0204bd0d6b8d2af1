"""What a :class:`FakeBackend` does with each request: one immutable, validated record."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import ConfigError
from .._validate import fail, non_negative

__all__ = ["Behaviour", "encode_body", "updated"]

_OWNER = "FakeBackend"


@dataclass(frozen=True, slots=True, kw_only=True)
class Behaviour:
    """The behaviour of a fake backend; see :meth:`FakeBackend.set` for each field."""

    latency: float | Callable[[], float] = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    retry_after: str | None = None
    hang: bool = False
    reset: bool = False
    down: bool = False
    health_status: int = 200
    status: int = 200
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()

    def delay(self) -> float:
        """Seconds to wait before answering (a callable latency is drawn afresh)."""
        latency = self.latency
        value = latency() if callable(latency) else latency
        return max(0.0, float(value))


FIELDS = tuple(f.name for f in dataclasses.fields(Behaviour))


def _latency(value: Any) -> float | Callable[[], float]:
    return value if callable(value) else non_negative(_OWNER, "latency", value)


def _rate(value: Any) -> float:
    rate = non_negative(_OWNER, "error_rate", value)
    if rate > 1.0:
        fail(_OWNER, "error_rate", value, "in [0, 1]")
    return rate


def _status(name: str) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        # A 1xx is informational, never the answer: a client would wait for another.
        if isinstance(value, bool) or not isinstance(value, int) or not 200 <= value <= 599:
            fail(_OWNER, name, value, "an HTTP status code (an int in 200..599)")
        return value

    return check


def _flag(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            fail(_OWNER, name, value, "True or False")
        return value

    return check


# RFC 9110 5.6.2: a field name is a token; a value is visible latin-1 text, spaces and
# tabs (no CR, LF or NUL, which would end the header or inject another).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def _retry_after(value: Any) -> str | None:
    if isinstance(value, str) and not _FIELD_VALUE.fullmatch(value):
        fail(_OWNER, "retry_after", value,
             "seconds >= 0, or a header value (latin-1 text without CR or LF)")
    if value is None or isinstance(value, str):
        return value
    seconds = non_negative(_OWNER, "retry_after", value)
    return str(int(seconds)) if seconds.is_integer() else str(seconds)


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        fail(_OWNER, "headers", value, "a mapping of str to str")
    for name, text in value.items():
        if not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(text):
            fail(_OWNER, "headers", {name: text}, "HTTP header names (tokens) and values "
                 "(latin-1 text without CR or LF)")
    return tuple((k.lower(), v) for k, v in value.items())


def _body(value: Any) -> Any:
    if value is None or callable(value) or isinstance(value, bytes | str):
        return value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        fail(_OWNER, "body", value, "bytes, str, a JSON-serialisable value or a callable")
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "latency": _latency,
    "error_rate": _rate,
    "error_status": _status("error_status"),
    "retry_after": _retry_after,
    "hang": _flag("hang"),
    "reset": _flag("reset"),
    "down": _flag("down"),
    "health_status": _status("health_status"),
    "status": _status("status"),
    "body": _body,
    "headers": _headers,
}


def updated(current: Behaviour, changes: Mapping[str, Any]) -> Behaviour:
    """``current`` with ``changes`` applied, each one validated.

    Raises:
        ConfigError: an unknown behaviour name or an invalid value.
    """
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise ConfigError(
            f"FakeBackend: unknown behaviour {', '.join(unknown)}; "
            f"valid names are {', '.join(FIELDS)}",
            policy=_OWNER,
        )
    return dataclasses.replace(current, **{k: _CHECKS[k](v) for k, v in changes.items()})


def encode_body(value: Any) -> bytes:
    """Bytes are sent as they are, text as UTF-8, anything else as JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value).encode("utf-8")
