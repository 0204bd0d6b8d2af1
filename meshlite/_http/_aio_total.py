"""A ``mesh.aiohttp()`` session's total timeout, kept with one loop timer.

aiohttp holds each request to its session's ``ClientTimeout.total`` (five minutes by
default) with a timer of its own: a ``TimerHandle`` pushed on the loop's heap when
the request starts and cancelled when its connection is released, and a context
manager entered around the request and each wait for its body. That is about 390
bytecodes a request, a tenth of a bare aiohttp request's at 32 in flight
(``docs/benchmarks.md``, "The session's total timeout"). Every request of a session
shares the one total, so their deadlines come in the order the requests start:
:class:`Totals` keeps the requests in flight in one insertion-ordered dict and arms
one loop timer, for the oldest. A request then costs a dict insert and delete and a
coroutine frame.

What a request sees is aiohttp's own behaviour: the deadline is the request's start
plus ``total``, rounded up to the second when ``total`` is at least the timeout's
``ceil_threshold`` (as aiohttp's timer does); it covers the request, its redirects and
its response until the body is read or the response released; when it passes before
the response is returned, the task running the request is cancelled and the request
raises ``TimeoutError`` (a cancellation of the task's own is not turned into
one); when it passes while the body is being read, the next or current read raises
``TimeoutError``. A request given its own ``timeout=`` is timed by aiohttp,
as before.

The timer is disarmed when the session closes (:meth:`Totals.disarm`), and it holds
this object weakly: a session is never kept alive by its timer, closed or dropped
unclosed (an application that makes a session per request would otherwise keep each
one for ``total`` seconds, five minutes by default). It runs in an empty context, not
in a copy of the one the request that armed it ran in (a loop timer keeps the
context it was given: that request's call, its span, an inbound request's state).
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Callable, Coroutine
from functools import partial
from math import ceil
from typing import Any

import aiohttp

__all__ = ["Totals"]


_READING: Any = object()
"""A request's mark once its response is returned, until the response is released."""

_EXPIRED: Any = object()
"""Put in place of a request's task when the total stopped it before it returned."""


class Totals:
    """The requests of one session that run under its ``total`` timeout, oldest first.

    :meth:`request` stands in for the session's ``_request`` (aiohttp's coroutine
    behind ``get``, ``post``, ``request``...).

    Args:
        request: The session's own ``_request``.
        loop: The session's event loop.
        timeout: The session's ``ClientTimeout``, whose ``total`` is a number > 0.
        route: The mesh's routing middleware, kept innermost on a request given
            ``middlewares=`` of its own (see ``_aio_adapt.routing_every_request``).
    """

    def __init__(self, request: Callable[..., Coroutine[Any, Any, aiohttp.ClientResponse]],
                 loop: asyncio.AbstractEventLoop, timeout: aiohttp.ClientTimeout,
                 route: Any) -> None:
        self._request = request
        self._route = route
        self._loop = loop
        self._total: float = timeout.total  # type: ignore[assignment]
        self._ceil = self._total >= timeout.ceil_threshold
        # What each request is sent with: the session's timeout less its total, so
        # aiohttp arms no timer of its own.
        self._untimed = aiohttp.ClientTimeout(
            total=None, connect=timeout.connect, sock_read=timeout.sock_read,
            sock_connect=timeout.sock_connect, ceil_threshold=timeout.ceil_threshold)
        # Per request, keyed by its coroutine: [deadline, what to stop, mark]. Until
        # the response is returned that is the task running the request (_EXPIRED
        # once the total stopped it), and the mark the task's cancellation requests
        # when the request began (aiohttp's TimerContext keeps the same); then the
        # response's body reader, marked _READING. Insertion order is deadline
        # order: one total, and the loop's clock only moves forward. A released
        # request is deleted wherever it is.
        self._open: dict[Any, list[Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._self = weakref.ref(self)  # what the timer holds

    def __len__(self) -> int:
        """Requests under the total now (started, and not yet released)."""
        return len(self._open)

    async def request(self, method: str, str_or_url: Any, **kwargs: Any
                      ) -> aiohttp.ClientResponse:
        """The session's ``_request``, under the total unless given a ``timeout``."""
        if "middlewares" in kwargs:  # (rarely: a membership test costs less than a get)
            given = kwargs["middlewares"]
            if given is not None:  # they replace the session's: the route stays innermost
                kwargs["middlewares"] = (*given, self._route)
        if "timeout" in kwargs:  # the request's own: aiohttp times it
            return await self._request(method, str_or_url, **kwargs)
        kwargs["timeout"] = self._untimed
        sent = self._request(method, str_or_url, **kwargs)
        loop = self._loop
        task = asyncio.current_task(loop)
        if task is None:  # as aiohttp's own timer refuses
            sent.close()
            raise RuntimeError("Timeout context manager should be used inside a task")
        deadline = loop.time() + self._total
        if self._ceil:
            deadline = ceil(deadline)
        entry: list[Any] = [deadline, task, task.cancelling()]
        pending = self._open
        pending[sent] = entry
        if self._timer is None:
            self._timer = loop.call_at(deadline, _expire, self._self,
                                       context=contextvars.Context())
        try:
            response = await sent
        except asyncio.CancelledError:
            pending.pop(sent, None)
            # The total's own cancellation is a TimeoutError, unless the task was
            # asked to stop by someone else as well (aiohttp's TimerContext rule).
            if entry[1] is _EXPIRED and task.uncancel() <= entry[2]:
                raise TimeoutError from None
            raise
        except BaseException:
            pending.pop(sent, None)
            raise
        connection = response.connection
        if connection is None:  # read already, or nothing to read
            pending.pop(sent, None)
        else:
            entry[1], entry[2] = response.content, _READING
            # (aiohttp ignores what a release callback returns)
            connection.add_callback(partial(pending.pop, sent, None))  # type: ignore[arg-type]
        return response

    def disarm(self) -> None:
        """The session closes: cancel the timer and forget the requests (they end
        with the session's connections)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._open.clear()

    def _expire(self) -> None:
        # The timer of the oldest request: stop those due, then arm for the next. One
        # pass over a copy (taking the first entry again after each deletion would walk
        # past the slots the deletions leave: many requests due at once, say).
        self._timer = None
        now = self._loop.time()
        pending = self._open
        for sent, entry in list(pending.items()):
            if entry[0] > now:
                self._timer = self._loop.call_at(entry[0], _expire, self._self,
                                                 context=contextvars.Context())
                return
            del pending[sent]
            if entry[2] is _READING:  # its body's read fails, as under aiohttp's timer
                entry[1].set_exception(TimeoutError())
            else:  # still in the request: stop the task running it
                task, entry[1] = entry[1], _EXPIRED
                task.cancel()


def _expire(totals: weakref.ref[Totals]) -> None:
    # The timer's callback: the Totals of a session that is gone has nothing due.
    live = totals()
    if live is not None:
        live._expire()
