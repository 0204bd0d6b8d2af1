"""The body of a response being recorded: streamed through to the client as it
arrives, and kept (up to the recorder's ``max_body``) for the cassette; and the
body of a replayed response that did not end normally.

Used by :class:`~meshlite.testing._record_http.RecordingTransport` only (it imports
httpx, as that module does).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, cast

import httpx

from .._errors import CassetteError
from ._cassette import encode_body

if TYPE_CHECKING:
    from ._record import Recorder

__all__ = ["ATeed", "Capture", "Ending", "Teed", "cut_short", "listed", "pairs", "refusal"]


def listed(value: str | list[str]) -> list[str]:
    """A header's stored value(s) as a list (a repeated header is stored as one)."""
    return value if isinstance(value, list) else [value]


def pairs(headers: dict[str, str | list[str]]) -> list[tuple[bytes, bytes]]:
    """Stored headers as the (name, value) pairs of a response, in UTF-8: a value
    httpx decoded from non-ASCII bytes (latin-1 or UTF-8) reads the same again, where
    httpx would encode a ``str`` value as ASCII and refuse it."""
    return [(k.encode(), v.encode()) for k, values in headers.items() for v in listed(values)]


class Capture:
    """One exchange being recorded while its body streams to the client.

    Chunks are kept until the body ends, then the exchange is recorded whole. A body
    growing past the recorder's ``max_body`` is dropped and recorded as refused (the
    client reading it gets a :class:`CassetteError` at that point; replaying it raises
    one too), so memory stays bounded by the cap. A body that fails midway is
    recorded up to the failure, with the error (replay serves the part, then raises
    it). When the client closes the body early, what it read is recorded, marked as
    cut: the rest is not read, as it may never end (a server-sent event stream).
    """

    __slots__ = ("_chunks", "_entry", "_limit", "_recorder", "_size", "data", "done")

    def __init__(self, recorder: Recorder, entry: dict[str, Any],
                 data: dict[str, Any]) -> None:
        self._recorder, self._entry, self.data = recorder, entry, data
        self._limit = recorder.max_body
        self._chunks: list[bytes] = []
        self._size = 0
        self.done = False

    def response(self, stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> httpx.Response:
        """The response the client gets: stored status and headers, ``stream`` as body."""
        return httpx.Response(self.data["status"], headers=pairs(self.data["headers"]),
                              stream=stream)

    def keep(self, chunk: bytes) -> bool:
        """Keep ``chunk`` for the cassette; False once the body is past the cap."""
        self._size += len(chunk)
        if self._limit is not None and self._size > self._limit:
            self._chunks.clear()
            self.data["body_refused"] = self._limit
            self._add(response=self.data)
            return False
        self._chunks.append(chunk)
        return True

    def finish(self) -> None:
        """The body ended: record the exchange."""
        if self.done:
            return
        self.data["body"] = encode_body(b"".join(self._chunks))
        self._chunks.clear()
        self._add(response=self.data)

    def fail(self, error: Exception) -> None:
        """Reading the body failed: record the part before it, and the error."""
        if not self.done:  # (once recorded, ``data`` is the cassette's: left alone)
            self.data["body_error"] = self._recorder._error(error)
            self.finish()

    def cut(self) -> None:
        """The client closed the body early: record what it read, marked as cut."""
        if not self.done:
            self.data["body_cut"] = True
            self.finish()

    def refused(self) -> CassetteError:
        """The error of a body past the cap."""
        return CassetteError(refusal(self._entry["request"], self._limit, "while recording"))

    def _add(self, **outcome: Any) -> None:
        if not self.done:
            self.done = True
            self._recorder._add({**self._entry, **outcome})


def cut_short(request: dict[str, Any], size: int) -> str:
    """The message of a replayed body read past where its recording was cut."""
    return (f"the response body of {request['method']} {request['url']} was cut after "
            f"{size} bytes when it was recorded (the client closed it early), so the "
            "cassette has no more of it; read no further, or record it again reading "
            "to the end")


def refusal(request: dict[str, Any], limit: int | None, when: str) -> str:
    """The message of a response body refused for passing ``max_body``."""
    return (f"the response body of {request['method']} {request['url']} passed "
            f"max_body={limit} bytes {when}, so it is not in the cassette (a cassette "
            "holds whole bodies, in memory and in its JSON); record a smaller response, "
            "or pass a larger Recorder(max_body=...) (None: no cap) and record again")


class Teed(httpx.SyncByteStream):
    """A sync response body: chunks reach the client as they arrive and the cassette."""

    def __init__(self, capture: Capture, inner: httpx.Response) -> None:
        self._capture, self._inner = capture, inner
        # decoded: what the cassette stores (httpx writes it as a generator)
        self._chunks = cast(Generator[bytes, None, None], inner.iter_bytes())

    def __iter__(self) -> Iterator[bytes]:
        capture = self._capture
        try:
            for chunk in self._chunks:
                if not capture.keep(chunk):
                    raise capture.refused()
                yield chunk
        except CassetteError:
            raise
        except Exception as error:
            capture.fail(error)
            raise
        capture.finish()

    def close(self) -> None:
        self._capture.cut()  # unless it ended: closed early, the rest (maybe endless) unread
        try:
            self._chunks.close()
        finally:
            self._inner.close()


class ATeed(httpx.AsyncByteStream):
    """The async twin of :class:`Teed`."""

    def __init__(self, capture: Capture, inner: httpx.Response) -> None:
        self._capture, self._inner = capture, inner
        self._chunks = cast(AsyncGenerator[bytes, None], inner.aiter_bytes())

    async def __aiter__(self) -> AsyncIterator[bytes]:
        capture = self._capture
        try:
            async for chunk in self._chunks:
                if not capture.keep(chunk):
                    raise capture.refused()
                yield chunk
        except CassetteError:
            raise
        except Exception as error:
            capture.fail(error)
            raise
        capture.finish()

    async def aclose(self) -> None:
        self._capture.cut()  # as Teed.close: the rest is not read
        try:
            await self._chunks.aclose()
        finally:
            await self._inner.aclose()


class Ending(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A replayed body that did not end normally when recorded: ``body``, then the
    error ``end()`` makes (the recorded failure, or the cut) if the client reads on."""

    def __init__(self, body: bytes, end: Callable[[], Exception]) -> None:
        self._body, self._end = body, end

    def __iter__(self) -> Iterator[bytes]:
        if self._body:
            yield self._body
        raise self._end()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._body:
            yield self._body
        raise self._end()
