"""The httpx clients of ``mesh.http()`` and ``mesh.http_sync()``: httpx's own, with
the same API and behaviour, doing less work a request where a mesh client can."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["AsyncClient", "Client"]

_MERGED = 512
"""Distinct URL strings whose merge with the base URL a client remembers."""

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
"""Methods to which httpx adds ``Content-Length: 0`` when they carry no body."""

_DEFAULT: Any = httpx.USE_CLIENT_DEFAULT


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
            if len(self._built) >= _MERGED:
                self._built.clear()
            self._built[key] = (current, httpx.Headers(first.headers))  # a hook may edit first's
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
            if len(self._merged) >= _MERGED:
                self._merged.clear()
            merged = self._merged[url] = super()._merge_url(url)  # type: ignore[misc]
        return merged


class AsyncClient(_MergeCache, httpx.AsyncClient):
    """The ``httpx.AsyncClient`` of ``mesh.http()``: httpx's, remembering merged URLs."""


class Client(_MergeCache, httpx.Client):
    """The ``httpx.Client`` of ``mesh.http_sync()``: httpx's, remembering merged URLs."""
