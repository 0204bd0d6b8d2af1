"""The sync wire: an ``httpx`` transport that sends over urllib3.

httpx's sync stack (httpcore + h11) costs about twice urllib3's CPU a request
(docs/benchmarks.md, "Data plane"). :class:`Urllib3Transport` keeps httpx's API
above and one urllib3 ``PoolManager`` below (a connection pool per host, thread
safe). urllib3's errors become the httpx exceptions httpcore raises for the same
failure in ``_sync_body``, once, with the response body that meets them too.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import urllib3
from urllib3 import HTTPHeaderDict
from urllib3 import exceptions as _u3

from .._clock import SYSTEM_CLOCK, Clock, bounded
from .._inbound._headers import CALLER_HEADER, DEADLINE_HEADER
from .._memo import remember
from ._outgoing import UNSENT
from ._sync_body import NOT_SENT, Body, cut_off
from ._urllib3_parts import DeadlineTimeout, Target, cut, in_use, pool_classes

__all__ = ["Urllib3Transport", "urllib3_options", "wire_headers"]

_HTTPCORE_ONLY = ("http2", "proxy", "uds", "socket_options", "retries", "local_address")
"""Transport options this wire does not honour: a service setting one keeps httpcore."""


_NO_RETRIES = urllib3.Retry(total=False, redirect=False)
"""One shared, immutable retry setting: the mesh's pipeline retries, urllib3 never
(``retries=False`` would build a new ``Retry`` per request)."""


def urllib3_options(options: dict[str, Any]) -> bool:
    """Whether a service's ``http_pool`` options can all be honoured by this wire."""
    return not any(options.get(name) for name in _HTTPCORE_ONLY)


_HEADER_SETS = 64
"""Distinct sets of request headers a transport keeps converted."""

_TIMEOUTS = 64
"""Distinct (connect, read) timeouts a transport keeps as ``urllib3.Timeout``."""

_POOLS = 64
"""Hosts whose pool the urllib3 manager keeps (and the transport finds directly)."""

_DEFAULTS = ("User-Agent", "Accept-Encoding")
"""Headers urllib3 (``User-Agent: python-urllib3/...``) and http.client
(``Accept-Encoding: identity``) add to a request without them."""

_MESH_SET = frozenset({"host", "traceparent", "tracestate", DEADLINE_HEADER, CALLER_HEADER})
"""Headers a routed attempt sets itself: keyed in lower case, as it sets them."""


Headers = dict[str, str] | HTTPHeaderDict
"""Request headers as the sync wire sends them (see :func:`wire_headers`)."""


def wire_headers(request: httpx.Request) -> Headers:
    """``request``'s headers as urllib3 sends them, names as the request spelled
    them except those the mesh sets (:data:`_MESH_SET`, in lower case, so setting
    one replaces it): a plain dict, or, when a name repeats, an ``HTTPHeaderDict``,
    which sends each value on its own line as httpx does (joined with ", ", a
    value holding a comma, or a Cookie, would change meaning), all spelled as the
    first. urllib3 iterates an ``HTTPHeaderDict`` in Python, about 50 calls a
    request; a dict costs none. A ``User-Agent`` or ``Accept-Encoding`` the request
    does not carry (the client's headers dropped it) is not sent either, where
    urllib3 and http.client would add their own."""
    headers: dict[str, str] = {}
    for key, value in request.headers.raw:
        name = key.decode("latin-1")
        if (lower := name.lower()) in _MESH_SET:
            name = lower
        if name in headers:  # (spelled otherwise, it is another key: its own line)
            return _unadded(_repeated(request), request)
        headers[name] = value.decode("latin-1")
    return _unadded(headers, request)


def _repeated(request: httpx.Request) -> HTTPHeaderDict:
    headers = HTTPHeaderDict()
    for key, value in request.headers.raw:
        name = key.decode("latin-1")
        headers.add(name.lower() if name.lower() in _MESH_SET else name,
                    value.decode("latin-1"))
    return headers


def _unadded(headers: Headers, request: httpx.Request) -> Headers:
    """``headers``, telling urllib3 not to add the defaults httpx does not send."""
    for name in _DEFAULTS:
        if name not in request.headers:
            headers[name] = UNSENT
    return headers


class Urllib3Transport(httpx.BaseTransport):
    """An ``httpx.BaseTransport`` that sends every request over urllib3.

    Args:
        ssl_context: The TLS context for ``https://`` URLs.
        limits: httpx limits: ``max_connections`` caps the connections kept per host
            (a request waits for a free one, up to the pool timeout).
    """

    def __init__(self, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        most = limits.max_connections
        self._manager = urllib3.PoolManager(
            num_pools=_POOLS, maxsize=most or 100, block=most is not None,
            ssl_context=ssl_context, retries=_NO_RETRIES,
            cert_reqs=ssl_context.verify_mode)
        # Given to https pools only: before urllib3 2.8 a plain-http pool refuses it.
        self._https: dict[str, Any] = {
            "assert_hostname": None if ssl_context.check_hostname else False}
        self._manager.pool_classes_by_scheme = pool_classes(
            ssl_context.verify_mode != ssl.CERT_NONE)
        self._timeouts: dict[tuple[float | None, ...], urllib3.Timeout] = {}
        self._headers: dict[tuple[tuple[bytes, bytes], ...], Headers] = {}
        # The manager's pool per host, found without normalising a pool key each time.
        self._pools: dict[tuple[str, str, int | None], urllib3.HTTPConnectionPool] = {}
        self._closed = False

    def _timeout(self, given: dict[str, float | None] | None) -> urllib3.Timeout:
        given = given or {}
        key = (given.get("connect"), given.get("read"))
        found = self._timeouts.get(key)
        if found is None:
            # Inline as in _aio_wire's client_timeout, for its reason (the call to
            # meshlite._memo.remember cost 7 bytecodes a mesh.http_sync() request here).
            if len(self._timeouts) >= _TIMEOUTS:
                self._timeouts.clear()
            found = self._timeouts[key] = urllib3.Timeout(connect=_bounded(key[0]),
                                                          read=_bounded(key[1]))
        return found

    def headers(self, request: httpx.Request) -> Headers:
        """:func:`wire_headers` of ``request``, a new dict (the caller adds to it),
        remembered for the last few sets of headers (most requests of a client
        carry the same)."""
        raw = tuple(request.headers.raw)
        found = self._headers.get(raw)
        if found is None:
            found = remember(self._headers, raw, wire_headers(request), _HEADER_SETS)
        return dict(found) if type(found) is dict else HTTPHeaderDict(found)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the response, its body still to be read."""
        url = request.url
        return self.send(request, url.scheme, url.host, url.port,
                         url.raw_path.decode("ascii"), wire_headers(request),
                         request.extensions.get("timeout"))

    def send(self, request: httpx.Request, scheme: str, host: str, port: int | None,
             path: str, headers: Headers, given: dict[str, float | None] | None,
             deadline: float | None = None, clock: Clock | None = None) -> httpx.Response:
        """Send ``request`` (its method and body) to ``path`` on ``scheme://host:port``
        with ``headers`` and httpx's ``timeout`` extension ``given``: the routed path,
        which builds the URL and headers itself.

        With a ``deadline`` (an instant on ``clock``), ``given`` holds all four
        timeouts, none over the time left when the attempt began (``_send``'s
        ``_clamped``): connecting and reading get at most the time left when they
        start, after the wait for a free connection (:class:`DeadlineTimeout`)."""
        stream = request.stream
        # A streamed body is framed by the headers httpx set for it, as httpx frames
        # it: Content-Length when known (a multipart upload), else Transfer-Encoding:
        # chunked. urllib3 picks the same from them; told chunked=True it would add
        # chunked framing next to a Content-Length.
        body: Any = (b"".join(stream) or None if isinstance(stream, httpx.ByteStream)
                     else stream)
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # new, or closed (evicted, cleared)
            pool = self._pool(request, key)
        timeout: urllib3.Timeout
        if deadline is None:
            timeout = self._timeout(given)
            pool_timeout: Any = _bounded((given or {}).get("pool"))  # seconds, a float
        else:
            numbers: Any = given
            timeout = pool_timeout = DeadlineTimeout(
                numbers["connect"], numbers["read"], numbers["pool"], deadline,
                clock or SYSTEM_CLOCK)
        try:
            response = pool.urlopen(
                request.method, Target(path), body=body, headers=headers, retries=_NO_RETRIES,
                redirect=False, assert_same_host=False, preload_content=False,
                decode_content=False, timeout=timeout, pool_timeout=pool_timeout)
        except (_u3.HTTPError, OSError) as error:
            raise cut_off(error, request, pool) from error
        # http.client decodes header bytes as latin-1: encoding them back so gives
        # httpx the bytes the server sent (as str, httpx encodes them as ASCII and
        # raised UnicodeEncodeError on a byte such as \xe9); it also keeps the
        # trailing whitespace httpx strips (RFC 9110 5.5)
        return httpx.Response(
            response.status, headers=[(k.encode("latin-1"), v.rstrip(" \t").encode("latin-1"))
                                      for k, v in response.headers.iteritems()],
            stream=Body(response, request),
            extensions={"http_version": b"HTTP/1.0" if response.version == 10 else b"HTTP/1.1",
                        "reason_phrase": (response.reason or "").encode("latin-1")})

    def _pool(self, request: httpx.Request, key: tuple[str, str, int | None]
              ) -> urllib3.HTTPConnectionPool:
        """The manager's pool for ``key`` (made now if new), for a transport not closed:
        a request that reaches a closed one (it got the transport just before the mesh
        closed it) would open a pool that no one closes."""
        if not self._closed:
            scheme, host, port = key
            pool = self._manager.connection_from_host(
                host, port, scheme, pool_kwargs=self._https if scheme == "https" else None)
            remember(self._pools, key, pool, _POOLS)
            if not self._closed:
                return pool
            pool.close()  # closed meanwhile, after close() took the pools it closes
        raise httpx.ConnectError(NOT_SENT, request=request)

    def _all_pools(self) -> list[urllib3.HTTPConnectionPool]:
        found = {id(p): p for p in self._pools.values()}
        pools = self._manager.pools
        keys = pools.keys()  # a copy, taken under its lock (it cannot be iterated)
        for key in keys:
            pool = pools.get(key)
            if pool is not None:
                found[id(pool)] = pool
        return list(found.values())

    def busy(self) -> bool:
        """Whether a connection is in use (a request on its way, or a response body
        still being read): closing now would cut it."""
        return any(in_use(pool) for pool in self._all_pools())

    def close(self) -> None:
        """Close every connection of this transport, cutting those in use.

        Each pool is closed here: urllib3 2's ``PoolManager.clear()`` only lets go of
        its pools, which close when garbage-collected, and a response the caller
        keeps (or one in a reference cycle, as an error's traceback makes) keeps its
        pool, and the pool its idle connections, open until then: after the mesh
        closed, or the backend was removed. A connection in use has its socket shut
        down, so a thread reading a body or waiting for an answer on it wakes with
        ``httpx.ReadError`` at once rather than at its read timeout (never, without
        one); the mesh closes a transport only once it stopped waiting for it (the
        drain, or :meth:`busy` for a removed backend)."""
        self._closed = True  # first: a request making a pool now sees it (_pool)
        ours = self._all_pools()
        self._pools.clear()
        self._headers.clear()
        # what clear() lets go of is closed, by its own class's close()
        self._manager.pools.dispose_func = _close
        self._manager.clear()
        for pool in ours:  # (one the manager evicted earlier, still kept here)
            pool.close()
        for pool in ours:  # closed first: a reader woken now finds its pool closed
            cut(pool)


def _close(pool: urllib3.HTTPConnectionPool) -> None:
    pool.close()  # (its class's: a pool of the wire's also wakes its waiters)


def _bounded(seconds: float | None) -> float | None:
    """A timeout a socket or the pool's queue takes: one of centuries the client was
    given is :data:`~meshlite._clock.MAX_WAIT`, as they refuse more with
    ``OverflowError`` (a deadline's are bounded for every wire in ``_send``)."""
    return None if seconds is None else bounded(seconds)
