"""Holding a request to its caller's deadline until its response is complete."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .._context import TIMER_SLACK, _current
from .._errors import MeshliteError, TimeoutExceeded
from ..policies._retry import is_transient
from ._body import client_left
from ._request import Inbound, Message

__all__ = ["cut_by", "run_by"]


def cut_by(error: Exception, deadline: float) -> bool:
    """Whether ``error``, escaping a request's handling, is its caller's ``deadline``
    (a ``time.monotonic()`` instant) having passed: a transport failure or a timeout
    (:func:`meshlite.is_transient`) raised once it had. A mesh call's wire times its
    attempt with a timer of its own, set to the time the request had left; under load
    it fires in the same loop turn as the middleware's, and may come first: the
    handler then gets the wire's ``httpx.ReadTimeout`` (``ConnectTimeout``...) rather
    than its cancellation, and the caller is owed the same 504. A timer may fire up
    to :data:`~meshlite._context.TIMER_SLACK` early, so that much before the deadline
    counts as at it. meshlite's own errors keep their answers, and another error (a
    programming error) stays the app's."""
    return (not isinstance(error, MeshliteError)
            and time.monotonic() >= deadline - TIMER_SLACK
            and not client_left(error) and is_transient(error))


async def run_by(app: Any, deadline: float, request: Inbound) -> None:
    """Run ``app`` on ``request`` held to the caller's ``deadline`` (a
    ``time.monotonic()`` instant) until the response is complete: what the app does
    after it (a Starlette or FastAPI background task) is not cut short, the caller
    having had its whole answer. ``request.status`` follows the response; the
    request comes last, the one argument a route's pipeline hands on (its quota key
    functions see it alone).

    Raises:
        TimeoutExceeded: the deadline passed first.
    """
    send = request.send
    limit = asyncio.timeout(deadline - time.monotonic())
    ctx = _current.get()  # the request's (or its route pipeline's) call context

    async def sending(message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            request.status = message["status"]
        await send(message)
        if kind == "http.response.body" and not message.get("more_body", False) and (
                not limit.expired()):
            # Answered: the rest is the app's own, and so is its time (the mesh
            # calls it makes have their services' own timeouts, not the caller's).
            limit.reschedule(None)
            if ctx is not None:
                ctx.deadline = None

    try:
        async with limit:
            await app(request.scope, request.receive, sending)
    except TimeoutError:
        if not limit.expired():
            raise  # (the app's own)
        raise TimeoutExceeded("the request ran out of its caller's time",
                              policy="inbound") from None
