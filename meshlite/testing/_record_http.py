"""httpx transports that record exchanges to a cassette and replay them offline.

Imported only by :meth:`Recorder.transport` and :meth:`Replayer.transport`, so
``import meshlite.testing`` never imports httpx. Each transport serves both
``httpx.Client`` and ``httpx.AsyncClient`` (as ``httpx.MockTransport`` does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from .._errors import CassetteError
from ._cassette import decode_body, decode_error, encode_body
from ._record_redact import REDACTED, named_secret, redact_url
from ._record_stream import ATeed, Capture, Ending, Teed, cut_short, listed, pairs, refusal

if TYPE_CHECKING:
    from ._record import Recorder
    from ._replay import Replayer

__all__ = ["RecordingTransport", "ReplayTransport"]

# The body is stored decoded; these would describe the wire form, not the stored one.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding",
                           "connection", "keep-alive"})


def _response(entry: dict[str, Any], request: httpx.Request) -> httpx.Response:
    """The recorded response; a body that failed or was cut while recorded ends the
    same way, after the part recorded, when the client reads it."""
    data = entry["response"]
    headers, body = pairs(data.get("headers", {})), decode_body(data["body"])
    stream: httpx.ByteStream | Ending
    if "body_error" in data:
        stream = Ending(body, lambda: _rebuilt_error(data["body_error"], request))
    elif data.get("body_cut"):
        stream = Ending(body, lambda: CassetteError(cut_short(entry["request"], len(body))))
    else:
        # A stream, not content=: httpx would add a Content-Length the recording client
        # never saw (the transport drops the wire's, see _WIRE_HEADERS), so code reading
        # one would pass at replay what failed while recording.
        stream = httpx.ByteStream(body)
    return httpx.Response(data["status"], headers=headers, stream=stream)


def _rebuilt_error(data: dict[str, Any], request: httpx.Request) -> Exception:
    error = decode_error(data)
    if isinstance(error, httpx.RequestError):
        error.request = request
    return error


class RecordingTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Sends through ``inner`` and records each exchange (secrets redacted).

    The client receives the response as it will be replayed: body decoded,
    content-encoding dropped, so recording and replaying behave the same. The body
    streams through to the client as it arrives; the exchange is recorded once the
    body has ended (see :class:`~meshlite.testing._record_stream.Capture`).
    """

    def __init__(self, recorder: Recorder,
                 inner: httpx.BaseTransport | httpx.AsyncBaseTransport | None) -> None:
        self._recorder = recorder
        self._inner = inner
        self._sync: httpx.BaseTransport | None = None
        self._async: httpx.AsyncBaseTransport | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._sync is None:
            inner = self._inner if self._inner is not None else httpx.HTTPTransport()
            if not isinstance(inner, httpx.BaseTransport):
                raise TypeError(f"{inner!r} is an async transport: use an httpx.Client")
            self._sync = inner
        request.read()
        try:
            response = self._sync.handle_request(request)
        except Exception as error:
            self._record_error(request, error)
            raise
        capture = self._capture(request, response)
        return capture.response(Teed(capture, response))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._async is None:
            inner = self._inner if self._inner is not None else httpx.AsyncHTTPTransport()
            if not isinstance(inner, httpx.AsyncBaseTransport):
                raise TypeError(f"{inner!r} is a sync transport: use an httpx.Client")
            self._async = inner
        await request.aread()
        try:
            response = await self._async.handle_async_request(request)
        except Exception as error:
            self._record_error(request, error)
            raise
        capture = self._capture(request, response)
        return capture.response(ATeed(capture, response))

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()

    def _entry(self, request: httpx.Request) -> dict[str, Any]:
        secret = self._recorder.redact_headers
        return {"kind": "http", "request": {
            "method": request.method,
            "url": redact_url(str(request.url), self._recorder.redact_params),
            "headers": {k: REDACTED if named_secret(k, secret) else v
                        for k, v in request.headers.items()},
            "body": encode_body(request.content),
        }}

    def _record_error(self, request: httpx.Request, error: Exception) -> None:
        entry = self._entry(request)
        entry["error"] = self._recorder._error(error)
        self._recorder._add(entry)

    def _capture(self, request: httpx.Request, response: httpx.Response) -> Capture:
        secret = self._recorder.redact_headers
        headers: dict[str, Any] = {}
        # A HEAD answer's Content-Length is the size of the body it has not sent:
        # information the client asked for, not a description of the stored body.
        wire = _WIRE_HEADERS - {"content-length"} if request.method == "HEAD" else _WIRE_HEADERS
        for name, value in response.headers.multi_items():
            if name in wire:
                continue
            value = REDACTED if named_secret(name, secret) else value
            seen = headers.get(name)
            # A repeated header (set-cookie) keeps every value, as a list.
            headers[name] = value if seen is None else [*listed(seen), value]
        return Capture(self._recorder, self._entry(request),
                        {"status": response.status_code, "headers": headers})


class ReplayTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Answers each request with its recording; never touches the network.

    Raises (from the client call):
        CassetteMiss: the request was not recorded, or its recordings are used up.
        CassetteError: its response body passed ``max_body`` when it was recorded;
            or (reading the body) it was read past where the recording was cut.
        Exception: the recorded error, when the request failed, or (reading the
            body, after the part recorded) when its body failed midway.
    """

    def __init__(self, replayer: Replayer) -> None:
        self._replayer = replayer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._answer(request, request.read())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self._answer(request, await request.aread())

    def _answer(self, request: httpx.Request, body: bytes) -> httpx.Response:
        entry = self._replayer.take_http(request.method, str(request.url), body,
                                         request.headers.get("content-type"))
        if "error" in entry:
            raise _rebuilt_error(entry["error"], request)
        if "body_refused" in entry["response"]:
            raise CassetteError(refusal(entry["request"], entry["response"]["body_refused"],
                                         "when it was recorded"))
        return _response(entry, request)
