"""The async wire: an ``httpx`` transport that sends over aiohttp.

httpx's own async stack (httpcore + anyio + h11) costs about 1-2.5 ms of CPU a
request under concurrency; aiohttp's client (C parser, C writer) about 0.1 ms
(docs/benchmarks.md, "Data plane"). :class:`AiohttpTransport` keeps httpx's API
above (requests, responses, exceptions, streaming, decoding) and aiohttp below:
one ``aiohttp.ClientSession`` with its own connector, made on first use on the
running event loop (and again when used from another loop).

aiohttp's errors are mapped here, once, to the httpx exceptions httpcore raises for
the same failure, so callers, retry predicates, breakers and outlier detection see
what they saw before.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from yarl import URL

from ._aio_adapt import close_session, cut_by_close, end_dead_session, without_resend
from ._loop_transport import PerLoopTransport
from ._per_loop import PerLoop
from ._retire import busy

__all__ = ["AiohttpTransport", "aiohttp_options", "map_error", "wire_headers"]

SKIP_AUTO_HEADERS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})
"""Headers aiohttp would add on its own: httpx already sets what it means to send."""

_KEEPALIVE_FOREVER = 3600.0
"""aiohttp needs a number where httpx's ``keepalive_expiry=None`` means no expiry."""

_HTTPCORE_ONLY = ("http2", "proxy", "uds", "socket_options", "retries")
"""Transport options only httpcore honours: a service setting one keeps httpcore."""

_LARGE = 1024 * 1024
"""Bodies above this many bytes are handed to aiohttp as a file (as it asks)."""

_PACED = 64 * 1024
"""Bodies above this many bytes, which a backend that does not read may leave unsent,
are written in chunks of ``_CHUNK`` under httpx's write timeout (:class:`_Paced`)."""

_CHUNK = 64 * 1024

_HEAD = 100 * 1024
"""The most bytes of a response head httpx reads (httpcore's bound): aiohttp's own
defaults (8190 bytes a line, 128 headers) refused heads httpx takes."""

_TIMEOUTS = 64
"""Distinct (connect, read, pool) timeouts a transport keeps as
``aiohttp.ClientTimeout``: each deadline makes one."""

_HEAD_LIMITS: dict[str, Any] = {"max_line_size": _HEAD, "max_field_size": _HEAD}
if "max_headers" in inspect.signature(aiohttp.ClientSession).parameters:
    _HEAD_LIMITS["max_headers"] = _HEAD // 4  # at least 4 bytes a header (recent aiohttp)

_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None,
                                    sock_connect=None)


class _Request(aiohttp.ClientRequest):
    """aiohttp's request, framed as httpx framed it: a body-less request carries the
    ``Content-Length`` httpx gave it (``0`` for POST, PUT and PATCH), not aiohttp's
    ``Content-Length: 0`` on every method outside GET, HEAD, OPTIONS, CONNECT and
    TRACE (a DELETE with a length some servers and proxies refuse)."""

    def update_body_from_data(self, body: Any, _stacklevel: int = 3) -> None:
        framed = body is not None or _LENGTH in self.headers
        super().update_body_from_data(body, _stacklevel + 1)
        if not framed:
            self.headers.pop(_LENGTH, None)


_LENGTH = aiohttp.hdrs.CONTENT_LENGTH


def aiohttp_options(options: dict[str, Any]) -> bool:
    """Whether a service's ``http_pool`` options can all be honoured by this wire."""
    return not any(options.get(name) for name in _HTTPCORE_ONLY)


def map_error(error: BaseException, request: httpx.Request) -> BaseException:
    """The httpx exception for an aiohttp failure (``error`` itself when it has none)."""
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(error) or "connect timed out", request=request)
    if isinstance(error, aiohttp.ClientConnectorError):  # SSL verification failures too
        return httpx.ConnectError(str(error), request=request)
    if isinstance(error, aiohttp.SocketTimeoutError | asyncio.TimeoutError):
        return httpx.ReadTimeout(str(error) or "read timed out", request=request)
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(str(error), request=request)
    if isinstance(error, aiohttp.ClientOSError | aiohttp.ClientConnectionError):
        return httpx.ReadError(str(error), request=request)
    if isinstance(error, aiohttp.ClientResponseError):  # a malformed answer
        return httpx.RemoteProtocolError(str(error), request=request)
    return error


_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError)


def wire_headers(raw: list[tuple[bytes, bytes]], path: bytes
                 ) -> list[tuple[str, str]] | None:
    """Request headers as text aiohttp writes back to the bytes given (it encodes
    text as UTF-8: latin-1 text turned b"caf\xc3\xa9" into b"caf\xc3\x83\xc2\xa9"),
    or None for a request aiohttp would not send as httpx does, which httpcore
    sends: a header that is not UTF-8 (a latin-1 byte), which aiohttp cannot write
    as given; ``Expect`` (aiohttp holds the body back until a ``100 Continue``,
    so a server that never sends one and waits for the body waits with it; httpx
    sends the body at once); or a request target ``path`` (raw path and query)
    with an empty query, ``/x?``, which a ``yarl.URL`` cannot hold (it has no
    query then), so aiohttp would send ``/x``: another target to a server that
    tells the two apart (a signed URL, a cache key)."""
    if path.endswith(b"?") and path.index(b"?") == len(path) - 1:
        return None
    try:
        headers = [(k.decode(), v.decode()) for k, v in raw]
    except UnicodeDecodeError:
        return None
    for name, _ in raw:
        if len(name) == 6 and name.lower() == b"expect":
            return None
    return headers


_TRANSFER_ENCODING = aiohttp.hdrs.TRANSFER_ENCODING


def _check_coding(response: aiohttp.ClientResponse, request: httpx.Request) -> None:
    """Refuse a response whose ``Transfer-Encoding`` is other than ``chunked`` alone, as
    httpx does: aiohttp's parser reads ``gzip, chunked`` as chunked, and hands the
    body on still gzipped, and one that does not end in ``chunked`` up to the close.

    Raises:
        httpx.RemoteProtocolError: such an answer (its connection closed), one that has
            no body (to HEAD, a 204) too, as httpx refuses the header itself.
    """
    codings = [c.strip().lower() for value in response.headers.getall(_TRANSFER_ENCODING)
               for c in value.split(",")]
    if codings != ["chunked"]:
        response.close()
        raise httpx.RemoteProtocolError(
            "Only Transfer-Encoding: chunked is supported, got "
            f"{', '.join(response.headers.getall(_TRANSFER_ENCODING))!r}", request=request)


class _Body(httpx.AsyncByteStream):
    """A response body read from aiohttp as it arrives; closing it hands the
    connection back (or closes it when the body was not read to the end)."""

    __slots__ = ("_request", "_response")

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    return
                yield chunk
        except _FAILURES as error:
            self._response.close()
            raise map_error(error, self._request) from error

    async def aclose(self) -> None:
        self._response.release()


class _Paced:
    """A request body given to aiohttp in chunks, each to be written within ``write``
    seconds (httpx's write timeout, which aiohttp has none of: a backend that never
    read the body held the request for ever). ``timer`` (an ``asyncio.timeout`` around
    the request) is moved on as each chunk is taken, and off once the last is written;
    The timer is armed only while a chunk is being written: when it fires, a write
    stalled."""

    __slots__ = ("_data", "timer", "write")

    def __init__(self, data: bytes, write: float) -> None:
        self._data, self.write = data, write
        self.timer: asyncio.Timeout | None = None
        """Set while the request waits for its answer (None once it has one: a
        backend may answer before it has read the whole body)."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        loop, data = asyncio.get_running_loop(), self._data
        for start in range(0, len(data), _CHUNK):
            self._arm(loop.time() + self.write)
            yield data[start:start + _CHUNK]
        self._arm(None)  # written: the answer's wait is the read timeout's

    def _arm(self, when: float | None) -> None:
        timer = self.timer
        if timer is not None and not timer.expired():
            timer.reschedule(when)


def _timeout(given: dict[str, float | None] | None) -> aiohttp.ClientTimeout:
    if not given:
        return _NO_TIMEOUT
    pool, connect = given.get("pool"), given.get("connect")
    return aiohttp.ClientTimeout(
        total=None, sock_read=given.get("read"), sock_connect=connect,
        # aiohttp's connect covers waiting for a free connection and connecting
        connect=None if pool is None or connect is None else pool + connect)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` that sends every request over aiohttp.

    Args:
        ssl_context: The TLS context for ``https://`` URLs (False: no verification).
        limits: httpx limits: ``max_connections`` caps the connections open at once,
            ``keepalive_expiry`` how long an idle one is kept.
        local_address: Local IP address to connect from.
    """

    def __init__(self, ssl_context: ssl.SSLContext | bool, limits: httpx.Limits,
                 local_address: str | None = None) -> None:
        self._ssl = ssl_context
        self._limits = limits
        self._local = (local_address, 0) if local_address else None
        # One session per event loop (aiohttp's are bound to one).
        self._sessions: PerLoop[aiohttp.ClientSession] = PerLoop(
            self._new, close_session, end_dead_session)
        local = self._local[0] if self._local else None
        self._httpcore = PerLoopTransport(lambda: httpx.AsyncHTTPTransport(
            verify=ssl_context, limits=limits, local_address=local))  # streamed uploads
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    def _new(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        limits = self._limits
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0, limit_per_host=0, ssl=self._ssl,
            keepalive_timeout=(_KEEPALIVE_FOREVER if limits.keepalive_expiry is None
                               else limits.keepalive_expiry),
            local_addr=self._local, loop=loop)
        session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=SKIP_AUTO_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(loop=loop), timeout=_NO_TIMEOUT,
            trust_env=False, raise_for_status=False, request_class=_Request, **_HEAD_LIMITS)
        without_resend(session)
        return session

    def client_timeout(self, given: dict[str, float | None] | None) -> aiohttp.ClientTimeout:
        """aiohttp's timeouts for httpx's ``timeout`` request extension (cached)."""
        if not given:
            return _NO_TIMEOUT
        key = (given.get("connect"), given.get("read"), given.get("pool"))
        found = self._timeouts.get(key)
        if found is None:
            # Inline, not meshlite._memo.remember (the same policy): a deadline shorter
            # than the client's timeouts makes a new key every request, so this miss is
            # a request's path; the call cost 7 bytecodes a request there (mesh.http()
            # under Timeout(2.0), bytecodes counted as benchmarks/_bytecodes.py does).
            if len(self._timeouts) >= _TIMEOUTS:
                self._timeouts.clear()
            found = self._timeouts[key] = _timeout(given)
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the response, its body still to be read."""
        headers = (wire_headers(request.headers.raw, request.url.raw_path)
                   if isinstance(request.stream, httpx.ByteStream) else None)
        if headers is None:
            return await self.over_httpcore(request)
        return await self.send(request, URL(str(request.url), encoded=True), headers,
                               self.client_timeout(request.extensions.get("timeout")))

    async def send(self, request: httpx.Request, url: URL, headers: Any,
                   limits: aiohttp.ClientTimeout) -> httpx.Response:
        """Send ``request`` (its method and bytes body) to ``url`` with ``headers``:
        the routed path, which builds the URL and headers itself. ``limits`` are the
        request's timeouts."""
        loop = asyncio.get_running_loop()
        last = self._sessions.last
        session = last[1] if last[0] is loop else self._sessions.get(loop)
        data: Any = b"".join(request.stream) or None  # type: ignore[arg-type]
        paced = timer = None
        if data is not None and len(data) > _PACED:
            write = (request.extensions.get("timeout") or {}).get("write")
            if write is not None:
                data = paced = _Paced(data, write)
            elif len(data) > _LARGE:
                data = io.BytesIO(data)  # aiohttp writes a file-like body without blocking
        try:
            if paced is None:
                response = await session._request(
                    request.method, url, headers=headers, data=data, allow_redirects=False,
                    timeout=limits, compress=None)
            else:
                try:
                    async with asyncio.timeout(None) as timer:
                        paced.timer = timer
                        response = await session._request(
                            request.method, url, headers=headers, data=data,
                            allow_redirects=False, timeout=limits, compress=None)
                finally:
                    paced.timer = None
        except _FAILURES as error:
            if paced is not None and timer is not None and timer.expired():
                # (the timer is armed only while a part is being written)
                raise httpx.WriteTimeout(
                    f"no part of the request body could be written within {paced.write} s",
                    request=request) from error
            if cut_by_close(session, error):  # the sync wire's words for the same cut
                raise httpx.ReadError(
                    "the connection was closed with its pool (the mesh closed, or the "
                    f"service was removed) while the request was on it: {error}",
                    request=request) from error
            raise map_error(error, request) from error
        if _TRANSFER_ENCODING in response.headers:
            _check_coding(response, request)
        # aiohttp decodes the reason as UTF-8 with surrogateescape: encoding it back so
        # gives the bytes the server sent, whatever they are (latin-1 raised on "✓"
        # or a stray byte, a UnicodeEncodeError out of the caller's request).
        version = b"HTTP/1.0" if response.version == aiohttp.HttpVersion10 else b"HTTP/1.1"
        return httpx.Response(
            response.status, headers=response.raw_headers, stream=_Body(response, request),
            extensions={"http_version": version, "reason_phrase": (
                response.reason or "").encode("utf-8", "surrogateescape")})

    async def over_httpcore(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` over httpcore: a streamed upload, which httpcore frames as
        httpx always did and, unlike aiohttp's strict parser, ignores what a server
        that never read the chunked body sends after its answer; or headers aiohttp
        cannot write as given (:func:`wire_headers`). Others stay on aiohttp."""
        return await self._httpcore.handle_async_request(request)

    def busy(self) -> bool:
        """Whether a connection is in use (connecting, or a response still being
        read): closing now would cut it."""
        if any(session.connector is not None and session.connector._acquired
               for _, session in self._sessions.items()):
            return True
        return busy(self._httpcore)  # streamed uploads' httpcore pool

    async def aclose(self) -> None:
        """Close every connection of this transport (see :meth:`PerLoop.aclose`)."""
        await self._httpcore.aclose()
        await self._sessions.aclose()
