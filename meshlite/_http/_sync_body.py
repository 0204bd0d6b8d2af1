"""The sync wire's response body, read from urllib3 as it arrives, and urllib3's
failures as the httpx exceptions httpcore raises for the same failure (mapped here,
once, for the request and for its body)."""

from __future__ import annotations

import http.client
import ssl
import time
import weakref
from collections.abc import Iterator
from datetime import timedelta

import httpx
import urllib3
from urllib3 import exceptions as _u3

from ._urllib3_parts import give_back

__all__ = ["NOT_SENT", "Body", "cut_off"]


def _map_error(error: Exception, request: httpx.Request) -> Exception:
    """The httpx exception for a urllib3 failure (``error`` itself when it has none)."""
    text = str(error)
    if isinstance(error, _u3.EmptyPoolError):
        # Without urllib3's head, its pool ("_Pool(host=..., port=...): "), as below.
        return httpx.PoolTimeout(text.removeprefix(f"{error.pool}: "), request=request)
    if isinstance(error, _u3.NewConnectionError):
        # Without urllib3's head, its connection object ("_Connection(host=..., port=...):
        # "): the mesh heads the message with the service and backend instead.
        return httpx.ConnectError(text.removeprefix(f"{error.conn}: "), request=request)
    if isinstance(error, _u3.SSLError):
        # A certificate the client rejects fails the handshake: nothing was sent.
        # Other TLS failures (a TLS 1.3 server refusing the client certificate
        # after the handshake) may come once the request left: a read error.
        original = error.args[0] if error.args else None
        if isinstance(original, ssl.SSLCertVerificationError | ssl.CertificateError):
            return httpx.ConnectError(text, request=request)
        return httpx.ReadError(text, request=request)
    if isinstance(error, _u3.ConnectTimeoutError):
        return httpx.ConnectTimeout(text, request=request)
    if isinstance(error, _u3.ReadTimeoutError):
        return httpx.ReadTimeout(text, request=request)
    if isinstance(error, _u3.ProtocolError):
        reason = error.args[1] if len(error.args) > 1 else None
        if isinstance(reason, TimeoutError):  # the socket timed out sending the request
            return httpx.WriteTimeout(text, request=request)
        # (closed without an answer: a ConnectionResetError to http.client, a
        # protocol error to httpx, "Server disconnected without sending a response")
        if (isinstance(reason, ConnectionResetError | BrokenPipeError)
                and not isinstance(reason, http.client.RemoteDisconnected)):
            return httpx.ReadError(text, request=request)
        return httpx.RemoteProtocolError(text, request=request)
    if isinstance(error, _u3.InvalidHeader):  # conflicting Content-Lengths...
        return httpx.RemoteProtocolError(text, request=request)
    if isinstance(error, _u3.HTTPError | OSError):
        return httpx.ReadError(text, request=request)
    return error


NOT_SENT = ("the connection pool closed (the mesh closed, or the service was removed) "
             "before the request got a connection: it was not sent")


def cut_off(error: Exception, request: httpx.Request,
             pool: urllib3.HTTPConnectionPool | None) -> Exception:
    """The httpx exception for a urllib3 failure on ``pool``: an ``httpx.ConnectError``
    when the pool closed before the request got a connection (it was not sent); an
    ``httpx.ReadError`` saying so when the pool is closed (its transport closed, when
    the mesh closed or the service was removed, and cut the connections still in
    use); else :func:`_map_error`'s."""
    if isinstance(error, _u3.ClosedPoolError):
        return httpx.ConnectError(NOT_SENT, request=request)
    if pool is not None and pool.pool is None:
        return httpx.ReadError(
            "the connection was closed with its pool (the mesh closed, or the service "
            f"was removed) while the request or its body was on it: {error}",
            request=request)
    return _map_error(error, request)


_ref = weakref.ref


class Body(httpx.SyncByteStream):
    """A response body read from urllib3 as it arrives; closing it hands the
    connection back (or closes it when the body was not read to the end).

    It also does what httpx's client wraps every response stream for (the
    ``mesh.http_sync()`` client binds it instead, one layer less a chunk): closing
    it sets the bound response's ``elapsed``. It refers to that response weakly, so
    the two make no reference cycle: each request's objects would otherwise wait for
    the garbage collector, and so would the connection of a response dropped
    unclosed, which goes back to its pool as the response goes (``__del__``)."""

    __slots__ = ("_done", "_request", "_response", "_start", "_timed", "plain", "sets_cookies")

    def __init__(self, response: urllib3.BaseHTTPResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request
        self._done = False
        self._timed: weakref.ref[httpx.Response] | None = None
        self._start = 0.0
        headers = response.headers
        self.plain = "content-encoding" not in headers
        """Whether the body is sent as is (no ``Content-Encoding`` to decode)."""
        self.sets_cookies = "set-cookie" in headers or "set-cookie2" in headers
        """Whether the response sets a cookie."""

    def bind(self, response: httpx.Response, start: float) -> None:
        """Set ``response.elapsed`` (since ``start``, a ``perf_counter``) on close."""
        self._timed, self._start = _ref(response), start

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._response.stream(65536, decode_content=False)
        except (_u3.HTTPError, OSError) as error:
            self._discard()
            raise self._failure(error) from error
        self._done = True

    def read(self) -> bytes:
        """The whole body at once (as ``b"".join(self)``, in one read)."""
        try:
            data = self._response.read(decode_content=False)
        except (_u3.HTTPError, OSError) as error:
            self._discard()
            raise self._failure(error) from error
        self._done = True
        return data

    def _failure(self, error: Exception) -> Exception:
        return cut_off(error, self._request, getattr(self._response, "_pool", None))

    def close(self) -> None:
        timed = self._timed
        if timed is not None:
            self._timed = None
            response = timed()
            if response is not None:
                response.elapsed = timedelta(seconds=time.perf_counter() - self._start)
        if self._done:
            self._response.release_conn()
        else:
            self._discard()

    def __del__(self) -> None:
        # Dropped unclosed, its connection still lent (the caller neither read the body
        # to the end nor closed the response): without this, the connection's slot in
        # the pool, which every client of the service shares, was lost for good.
        if self._response._connection is not None:  # type: ignore[attr-defined]
            give_back(self._response)

    def _discard(self) -> None:
        # Part of the body is unread: the connection is closed, not reused, and its
        # slot goes back to the pool (urllib3's close() alone keeps the slot, and a
        # pool of max_connections slots ran dry after as many early closes).
        self._response.close()
        self._response.release_conn()
