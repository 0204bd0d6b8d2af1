"""httpx's timeouts raised at a call's deadline: each also ``ml.TimeoutExceeded``.

An attempt's wire timeouts are the time its call has left; when one fires because
that time ran out (:func:`~meshlite._http._outgoing.at_deadline`), the caller gets
one of these in place of the plain httpx error: ``except httpx.ReadTimeout`` (or
``httpx.TimeoutException``) still catches it, and ``except ml.TimeoutExceeded`` tells
it from a backend that was slow within the client's own timeout::

    httpx.ReadTimeout ─┐
    ml.TimeoutExceeded ┴─ ReadTimeoutAtDeadline     (and the same for Connect, Write, Pool)
"""

from __future__ import annotations

import httpx

from .._errors import TimeoutExceeded
from ._outgoing import AT_DEADLINE

__all__ = ["ConnectTimeoutAtDeadline", "PoolTimeoutAtDeadline", "ReadTimeoutAtDeadline",
           "WriteTimeoutAtDeadline"]


class ConnectTimeoutAtDeadline(httpx.ConnectTimeout, TimeoutExceeded):
    """Connecting to a backend ran into the call's deadline."""


class ReadTimeoutAtDeadline(httpx.ReadTimeout, TimeoutExceeded):
    """Waiting for a backend's answer ran into the call's deadline."""


class WriteTimeoutAtDeadline(httpx.WriteTimeout, TimeoutExceeded):
    """Sending the request ran into the call's deadline."""


class PoolTimeoutAtDeadline(httpx.PoolTimeout, TimeoutExceeded):
    """Waiting for a free connection to the backend ran into the call's deadline."""


AT_DEADLINE.update({
    httpx.ConnectTimeout: ConnectTimeoutAtDeadline, httpx.ReadTimeout: ReadTimeoutAtDeadline,
    httpx.WriteTimeout: WriteTimeoutAtDeadline, httpx.PoolTimeout: PoolTimeoutAtDeadline})
