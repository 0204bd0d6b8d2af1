"""The httpx clients of ``mesh.http()`` and ``mesh.http_sync()``: httpx's own, with
the same API and behaviour, doing less work a request where a mesh client can."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
from httpx._client import ClientState

from .._memo import remember
from .._printable import printable
from ._sync_body import Body

__all__ = ["AsyncClient", "Client"]

_MERGED = 512
"""Distinct URL strings whose merge with the base URL a client remembers."""

_BUILT = 512
"""(host, with a body) pairs whose built request headers a client remembers."""

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
"""Methods to which httpx adds ``Content-Length: 0`` when they carry no body."""

_DEFAULT: Any = httpx.USE_CLIENT_DEFAULT

_log = logging.getLogger("httpx")  # httpx's own logger, for its one line a request

_REASON_SHOWN = 100
"""Characters of a response's reason phrase its log line shows."""


class _Cookies(httpx.Cookies):
    """httpx's cookie jar, which skips parsing a response's headers into an
    ``email.message`` (the standard library's cookie jar needs one) when the
    response sets no cookie: about 20 us a request otherwise."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Load the cookies the response's ``Set-Cookie`` headers set, if any."""
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


class _MergeCache:
    """What a mesh client does faster than httpx's own, with the same behaviour.

    httpx parses every URL twice to merge it with ``base_url`` (about half of
    httpx's own client cost a request, docs/design.md); a mesh client sends the same
    few relative URLs over and over, so it keeps the merged ``httpx.URL`` (immutable)
    per URL string, and forgets them all when ``base_url`` changes or the cache
    fills. Its cookie jar is a :class:`_Cookies`.

    A request built from a URL string alone (``client.get("/users/1")``: no body,
    parameters, headers, cookies or timeout of its own, and none of the client's
    parameters or cookies set) gets a copy of the headers httpx built for the
    first such request to the same host, with or without a body-less
    ``Content-Length: 0``, while the client's headers are unchanged: httpx
    otherwise copies and normalises them three times a request.
    """

    _merged: dict[str, httpx.URL]
    _merged_base: httpx.URL | None = None
    _cookies: httpx.Cookies
    _headers: httpx.Headers
    _params: httpx.QueryParams

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cookies = _Cookies(self._cookies)
        # (host, with body) -> (the client's headers then, the request's headers)
        self._built: dict[tuple[bytes, bool], tuple[list[tuple[bytes, bytes]],
                                                     httpx.Headers]] = {}

    def build_request(self, method: str, url: httpx.URL | str, *, content: Any = None,
                      data: Any = None, files: Any = None, json: Any = None,
                      params: Any = None, headers: Any = None, cookies: Any = None,
                      timeout: Any = _DEFAULT, extensions: Any = None) -> httpx.Request:
        """Build a request as httpx's ``build_request`` does (same arguments, same
        request), the headers copied when only a URL string is given."""
        if (type(url) is not str or content is not None or data is not None
                or files is not None or json is not None or params is not None
                or headers is not None or cookies is not None or extensions is not None
                or timeout is not _DEFAULT or self._params or self._cookies):
            return super().build_request(  # type: ignore[misc,no-any-return]
                method, url, content=content, data=data, files=files, json=json,
                params=params, headers=headers, cookies=cookies, timeout=timeout,
                extensions=extensions)
        merged = self._merge_url(url)
        method = method.upper()
        key = (merged.netloc, method in _WITH_BODY)
        current = self._headers.raw
        built = self._built.get(key)
        if built is None or built[0] != current:
            first = super().build_request(method, merged)  # type: ignore[misc]
            # a copy of first's headers: a hook may edit first's
            remember(self._built, key, (current, httpx.Headers(first.headers)), _BUILT)
            return first  # type: ignore[no-any-return]
        request = httpx.Request(method, merged, headers=built[1], stream=httpx.ByteStream(b""),
                                extensions={"timeout": self.timeout.as_dict()})  # type: ignore[attr-defined]
        request._content = b""  # as httpx's read() of the empty body would (1 us less)
        return request

    @property
    def cookies(self) -> httpx.Cookies:
        """Cookie values to include when sending requests (as httpx's)."""
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._cookies = _Cookies(cookies)

    def _merge_url(self, url: httpx.URL | str) -> httpx.URL:
        base = self.base_url  # type: ignore[attr-defined]
        if type(url) is not str:
            return super()._merge_url(url)  # type: ignore[misc,no-any-return]
        if base is not self._merged_base:
            self._merged, self._merged_base = {}, base
        merged = self._merged.get(url)
        if merged is None:
            merged = remember(self._merged, url, super()._merge_url(url), _MERGED)  # type: ignore[misc]
        return merged


class AsyncClient(_MergeCache, httpx.AsyncClient):
    """The ``httpx.AsyncClient`` of ``mesh.http()``: httpx's, remembering merged URLs,
    and leaving no reference cycle between a closed response and its body stream
    (httpx's wrapper does, so each request's objects would wait for the garbage
    collector: 63 young collections in 2,000 requests, 1 without)."""

    async def _send_single_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._transport_for_url(request.url)
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise RuntimeError("Attempted to send a sync request with an AsyncClient instance.")
        start = time.perf_counter()
        try:
            response = await transport.handle_async_request(request)
        except httpx.RequestError as error:
            error.request = request  # as httpx's request_context() does
            raise
        response.request = request
        if not response.is_closed:  # (closed: never timed, by httpx's client either)
            response.stream = _ATimed(response.stream, response, start)  # type: ignore[arg-type]
        self.cookies.extract_cookies(response)
        response.default_encoding = self._default_encoding
        if _log.isEnabledFor(logging.INFO):
            _log_request(request, response)
        return response


class Client(_MergeCache, httpx.Client):
    """The ``httpx.Client`` of ``mesh.http_sync()``: httpx's, with its steps that do
    nothing for most requests skipped when they would do nothing.

    - No authentication (none set on the client, the call or the URL): httpx runs an
      authentication flow generator that hands the request on unchanged.
    - A response from meshlite's urllib3 wire: its body stream sets ``elapsed``
      itself (httpx wraps every stream for that), the cookie jar is skipped when the
      wire saw no ``Set-Cookie``, and a body sent as is
      (no ``Content-Encoding``) is read in one urllib3 read, where httpx passes each
      chunk through four generators, a decoder and a chunker.
    - A closed response keeps no reference cycle with its body stream (httpx's
      wrapper does, so each request's objects would wait for the garbage collector).
    """

    def send(self, request: httpx.Request, *, stream: bool = False, auth: Any = _DEFAULT,
             follow_redirects: Any = _DEFAULT) -> httpx.Response:
        """Send ``request`` as ``httpx.Client.send`` does."""
        if auth is not _DEFAULT or self.auth is not None or request.url.userinfo:
            response = super().send(request, stream=True, auth=auth,
                                    follow_redirects=follow_redirects)
        else:
            if self.is_closed:
                raise RuntimeError("Cannot send a request, as the client has been closed.")
            self._state = ClientState.OPENED
            if follow_redirects is _DEFAULT:
                follow_redirects = self.follow_redirects
            self._set_timeout(request)
            response = self._send_handling_redirects(
                request, follow_redirects=follow_redirects, history=[])
        if not stream:
            try:
                _read(response)
            except BaseException:
                response.close()
                raise
        return response

    def _send_single_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._transport_for_url(request.url)
        if not isinstance(request.stream, httpx.SyncByteStream):
            raise RuntimeError("Attempted to send an async request with a sync Client instance.")
        start = time.perf_counter()
        try:
            response = transport.handle_request(request)
        except httpx.RequestError as error:
            error.request = request  # as httpx's request_context() does
            raise
        response.request = request
        stream = response.stream
        if type(stream) is Body:
            stream.bind(response, start)
            if stream.sets_cookies:
                self.cookies.extract_cookies(response)
        else:
            if not response.is_closed:  # (closed: never timed, by httpx's client either)
                response.stream = _Timed(stream, response, start)  # type: ignore[arg-type]
            self.cookies.extract_cookies(response)
        response.default_encoding = self._default_encoding
        if _log.isEnabledFor(logging.INFO):
            _log_request(request, response)
        return response


class _Timed(httpx.SyncByteStream):
    """httpx's wrapper of a response stream other than a :class:`Body`: closing it
    sets the response's ``elapsed`` (and drops the response, so that the two are no
    reference cycle left for the garbage collector)."""

    __slots__ = ("_response", "_start", "_stream")

    def __init__(self, stream: httpx.SyncByteStream, response: httpx.Response,
                 start: float) -> None:
        self._stream, self._start = stream, start
        self._response: httpx.Response | None = response

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.elapsed = timedelta(seconds=time.perf_counter() - self._start)
        self._stream.close()


class _ATimed(httpx.AsyncByteStream):
    """Async twin of :class:`_Timed`."""

    __slots__ = ("_response", "_start", "_stream")

    def __init__(self, stream: httpx.AsyncByteStream, response: httpx.Response,
                 start: float) -> None:
        self._stream, self._start = stream, start
        self._response: httpx.Response | None = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.elapsed = timedelta(seconds=time.perf_counter() - self._start)
        await self._stream.aclose()


def _log_request(request: httpx.Request, response: httpx.Response) -> None:
    """httpx's INFO line for one request, its reason phrase escaped: the server wrote
    it, and httpx keeps its ASCII, terminal escapes (``\x1b``) included."""
    _log.info('HTTP Request: %s %s "%s %d %s"', request.method, request.url,
              response.http_version, response.status_code,
              printable(response.reason_phrase, _REASON_SHOWN))


def _read(response: httpx.Response) -> None:
    """``response.read()``, in one urllib3 read for a plain body from the wire."""
    stream = response.stream
    if (type(stream) is Body and stream.plain and not response.is_stream_consumed
            and not response.is_closed):
        response.is_stream_consumed = True
        content = stream.read()
        response._content = content  # what read() keeps: response.content
        response._num_bytes_downloaded = len(content)
        response.is_closed = True  # as response.close(), whose error mapping a Body
        stream.close()  # does itself
    else:
        response.read()
