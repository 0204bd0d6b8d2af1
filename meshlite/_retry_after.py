"""The server's own hint of when to retry: a ``retry_after`` attribute (every meshlite
error has one) or a ``Retry-After`` header, in delay-seconds or as an HTTP-date read
against the response's ``Date`` (:func:`retry_after_of`, :func:`parse_retry_after`).
:class:`meshlite.Retry` waits at least that long, whatever its backoff says."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

__all__ = ["parse_retry_after", "retry_after_of"]


def parse_retry_after(value: str, now: Callable[[], float] = time.time,
                      date: str | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or ``None`` if invalid.

    The value is either delay-seconds (``"120"``) or an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``). An HTTP-date is an instant on the
    server's clock: given the response's ``Date`` header (``date``, the server's
    clock when it answered), the wait is the difference of the two, so a skew
    between the server's clock and this host's neither lengthens nor cuts it;
    without a valid ``Date``, it is counted from ``now()`` (this host's wall time).
    A date in the past gives 0.0.
    """
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        when = _http_date(text)
        if when is None:
            return None
        sent = None if date is None else _http_date(date)
        seconds = when - (now() if sent is None else sent)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _http_date(text: str) -> float | None:
    """The epoch seconds of an HTTP-date, or ``None`` if it is not one."""
    import email.utils  # only for HTTP-dates: it costs import time

    try:
        when = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _headers_of(outcome: object) -> Any:
    # Properties such as httpx's ``RequestError.request`` raise when unset, so any
    # error while looking is "no headers".
    try:
        headers = getattr(outcome, "headers", None)
        if headers is None:
            headers = getattr(getattr(outcome, "response", None), "headers", None)
    except Exception:
        return None
    return headers if callable(getattr(headers, "get", None)) else None


def retry_after_of(outcome: object) -> float | None:
    """The delay the server asked for, from an error or a result, or ``None``.

    A numeric ``retry_after`` attribute (every meshlite error has one) wins;
    otherwise a ``Retry-After`` header of ``outcome.headers`` (a response) or of
    ``outcome.response.headers`` (an error such as ``httpx.HTTPStatusError``).
    """
    value = getattr(outcome, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if 0 <= value < math.inf else None
    headers = _headers_of(outcome)
    if headers is None:
        return None
    try:
        raw = headers.get("Retry-After") or headers.get("retry-after")
        date = headers.get("Date") or headers.get("date")
    except Exception:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    if isinstance(date, bytes):
        date = date.decode("latin-1")
    if not isinstance(raw, str):
        return None
    return parse_retry_after(raw, date=date if isinstance(date, str) else None)
