"""What the mesh changes of aiohttp's own objects, where aiohttp has no public switch:
a session's own resend and client instrumentation, its routing of a request given
middlewares of its own, the bodies still being read when the mesh closes, a failed
answer's body read once and put back, and a redirect's
``Location`` under a backend's path prefix. Each reads or writes attributes private
to aiohttp; they are all here, so what a new aiohttp release changes of them is
found in one module."""

from __future__ import annotations

import asyncio
import sys
import types
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .._memo import remember
from ._aio_total import Totals
from ._dead_loop import end_transport
from ._outgoing import KeptBody, relocated
from ._per_loop import LoopEnd, close_at_loop_end

__all__ = ["close_at_its_loop_end", "close_session", "closed_by_mesh", "cut_by_close",
           "end_bodies", "end_dead_session", "loop_end", "read_capped", "relocate",
           "remembering_urls", "routing_every_request", "timing_totals",
           "without_client_instrumentation", "without_resend"]


def end_bodies(session: aiohttp.ClientSession) -> None:
    """Fail each body still being read on ``session``'s connections: aiohttp closes a
    connection without telling its reader, which would then wait forever (or raise a
    bare ``RuntimeError``); the reader gets ``aiohttp.ClientConnectionError``
    instead (``httpx.ReadError`` through ``mesh.http()``)."""
    for protocol in list(getattr(session.connector, "_acquired", ())):
        body = getattr(protocol, "_payload", None)
        if body is not None and not body.is_eof():
            body.set_exception(aiohttp.ClientConnectionError(
                "connection closed: the mesh was closed"))


def _set(session: aiohttp.ClientSession, name: str, value: Any) -> None:
    # Past the session's own __setattr__: in debug mode (python -X dev,
    # PYTHONASYNCIODEBUG) aiohttp warns at each attribute it does not know, a
    # DeprecationWarning that fails a test suite run with -W error.
    object.__setattr__(session, name, value)


def without_resend(session: aiohttp.ClientSession) -> None:
    """Stop ``session`` resending an idempotent request itself after a reset or a
    disconnect (aiohttp does, once, around its whole middleware chain): the mesh's
    pipeline is the one place that retries, so each attempt is sent once and a
    ``mesh.aiohttp()`` session's middlewares see each request once. The attribute is
    the one aiohttp's own test client turns off; it has no public switch."""
    _set(session, "_retry_connection", False)


def routing_every_request(session: aiohttp.ClientSession, route: Any,
                          totals: Totals | None) -> None:
    """Keep the mesh's ``route`` middleware on a request given its own ``middlewares=``:
    aiohttp lets those replace the session's, the mesh's route with them, and the
    request would go unrouted to the service's name as a host name (a DNS lookup of
    ``users``). The request's middlewares replace the session's others, as aiohttp
    says, and the route stays innermost, as it is for the session's. A session with
    a total (``totals``, :func:`timing_totals`) has its ``_request`` replaced
    already, and that one does it; otherwise the session's ``_request`` (no public
    switch) becomes a method of the session that calls aiohttp's own with the
    request's ``middlewares`` extended when given: a plain function handing on
    aiohttp's coroutine, not a coroutine of its own."""
    if totals is not None:
        return
    request = type(session)._request

    def routed(self: aiohttp.ClientSession, method: str, str_or_url: Any, **kwargs: Any
               ) -> Any:
        given = kwargs.get("middlewares")
        if given is not None:
            kwargs["middlewares"] = (*given, route)
        return request(self, method, str_or_url, **kwargs)

    _set(session, "_request", types.MethodType(routed, session))


def remembering_urls(session: aiohttp.ClientSession, most: int) -> None:
    """Let ``session`` remember the URLs it made of the relative ones it was given (at
    most ``most``: :func:`~meshlite._memo.remember`): a service is called on a few paths
    again and again, and aiohttp joins each to the base URL anew, a fresh ``yarl.URL``
    whose parts the request then works out again. The URL is the one aiohttp would
    make (the same call makes it the first time); only a ``str`` is remembered."""
    build = session._build_url
    urls: dict[str, URL] = {}

    def remembered(str_or_url: Any) -> URL:
        if type(str_or_url) is not str:
            return build(str_or_url)
        url = urls.get(str_or_url)
        if url is None:
            url = remember(urls, str_or_url, build(str_or_url), most)
        return url

    _set(session, "_build_url", remembered)


def timing_totals(session: aiohttp.ClientSession, route: Any) -> Totals | None:
    """Hold ``session``'s requests to its ``timeout.total`` with one loop timer
    (:class:`~meshlite._http._aio_total.Totals`) instead of aiohttp's timer per
    request; returns the ``Totals``, or None when the session has no total (``route``:
    the mesh's routing middleware, see :func:`routing_every_request`). The
    session's ``_request`` (no public switch) becomes the ``Totals``' one, and its
    ``close`` disarms the timer first; ``session.timeout`` still reads as given."""
    given = session.timeout
    if given.total is None or given.total <= 0:
        return None
    totals = Totals(session._request, session._loop, given, route)
    _set(session, "_request", totals.request)
    close = session.close

    async def closing() -> None:  # (aiohttp's __aexit__ calls self.close() too)
        totals.disarm()
        await close()

    _set(session, "close", closing)
    return totals


def without_client_instrumentation(session: aiohttp.ClientSession) -> None:
    # opentelemetry-instrumentation-aiohttp-client adds a trace config to every new
    # session, whose CLIENT span would start before the mesh's middleware and wrap the
    # whole logical call (retries included) above the mesh's own CLIENT span per
    # attempt. The mesh's session opts out through the instrumentation's public call;
    # the instrumentation is used only when the application already imported it.
    module = sys.modules.get("opentelemetry.instrumentation.aiohttp_client")
    if module is not None:
        module.AioHttpClientInstrumentor.uninstrument_session(session)


async def read_capped(response: aiohttp.ClientResponse) -> None:
    """Read ``response``'s body, at most :data:`MAX_FAILURE_BODY` bytes, and put it
    back in ``response.content``, from its start: the caller reads it as from a plain
    session's response, through ``read()``, ``text()``, ``json()`` or ``content``
    (iterated, ``read(n)``...)."""
    given = response.content
    kept = KeptBody()
    while chunk := await given.read(kept.room):
        if kept.full(chunk):
            break
    raw = kept.raw()
    # A reader of the bytes kept, already at its end: it never asks the connection
    # for more (a limit above their size: it never pauses the connection's reading).
    again = aiohttp.StreamReader(given._protocol, max(given._low_water, len(raw)),
                                 loop=asyncio.get_running_loop())
    if raw:
        again.feed_data(raw)
    again.feed_eof()
    response.content = again
    # A body cut short leaves with its connection, never to be read on.
    if kept.room <= 0 and response.connection is not None:
        response.connection.close()  # not response.close(): read() would then refuse


def relocate(response: aiohttp.ClientResponse, prefix: str) -> None:
    """Move a redirect's ``Location`` under the backend's path ``prefix`` into the
    service's URLs (:func:`~meshlite._http._outgoing.relocated`), in place: the
    headers aiohttp follows the redirect by and the caller reads."""
    moved = relocated(list(response.raw_headers), prefix)
    if moved is not None:
        response._raw_headers = tuple(moved)
        response._headers = CIMultiDictProxy(CIMultiDict(
            (k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
            for k, v in moved))
        for cached in ("headers", "raw_headers"):  # aiohttp's reify keeps them once read
            response._cache.pop(cached, None)


_CLOSED_BY_MESH = "_meshlite_closed_by_mesh"


async def close_session(session: aiohttp.ClientSession) -> None:
    """Close ``session`` on its own loop; bodies still being read end with an error.
    A session closed already: nothing (at once). The session is marked as closed by
    the mesh (:func:`closed_by_mesh`)."""
    if session.closed:
        return
    _set(session, _CLOSED_BY_MESH, True)
    end_bodies(session)
    await session.close()


def closed_by_mesh(session: aiohttp.ClientSession) -> bool:
    """Whether the mesh closed ``session`` (its close, or its loop's end), rather than
    its user."""
    return bool(getattr(session, _CLOSED_BY_MESH, False))


def cut_by_close(session: aiohttp.ClientSession, error: BaseException) -> bool:
    """Whether ``error``, raised by a request on ``session`` waiting for its answer, is
    the mesh closing the session's connections under it (aiohttp then says
    ``Server disconnected``, which no server did), not a failure to connect."""
    return (isinstance(error, aiohttp.ClientConnectionError)
            and not isinstance(error, aiohttp.ClientConnectorError)
            and closed_by_mesh(session))


_LOOP_END = "_meshlite_loop_end"


def close_at_its_loop_end(session: aiohttp.ClientSession) -> None:
    """Close ``session`` (made on the running loop) on its loop as the loop ends, if
    it is still open then (:func:`~meshlite._http._per_loop.close_at_loop_end`); its
    part in the loop's end is kept on it (:func:`loop_end`)."""
    end = close_at_loop_end(session._loop, session, close_session)
    if end is not None:
        _set(session, _LOOP_END, end)


def loop_end(session: aiohttp.ClientSession) -> LoopEnd | None:
    """``session``'s part in its loop's end (:func:`close_at_its_loop_end`), if any."""
    end: LoopEnd | None = getattr(session, _LOOP_END, None)
    return end


def end_dead_session(session: aiohttp.ClientSession) -> None:
    """End ``session``, whose event loop has closed: close its sockets at once, as
    aiohttp skips the connections of a closed loop (see
    :mod:`meshlite._http._dead_loop`)."""
    connector = session.connector
    if connector is None:  # closed already
        return
    session.detach()  # closed, without aiohttp's close, which would need the loop
    protocols = [p for conns in connector._conns.values() for p, _ in conns]
    protocols += connector._acquired
    connector._close()
    for protocol in protocols:
        end_transport(protocol.transport)
