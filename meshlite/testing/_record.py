"""Record and replay: save real calls and HTTP exchanges once, serve them offline.

``Recorder(path)`` wraps callables (:meth:`Recorder.wrap`) and httpx transports
(:meth:`Recorder.transport`) and writes what went through them to a JSON
cassette; ``replay(path)`` (``_replay``) answers the same calls from it, with no
network and without calling the real function, matching them by the keys made
here. httpx is imported only by the transports.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from .._arguments import explained
from .._callables import is_async_callable
from .._extras import requires_extra
from .._validate import at_least, fail
from ._cassette import Cassette, encode_error, encode_value
from ._record_redact import (
    DEFAULT_REDACTED_HEADERS,
    DEFAULT_REDACTED_PARAMS,
    REDACTED,
    redact_call,
    redact_text,
    redact_url,
    signature_of,
)

if TYPE_CHECKING:
    import httpx

    from ._record_http import RecordingTransport

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_REDACTED_HEADERS",
    "DEFAULT_REDACTED_PARAMS",
    "REDACTED",
    "Recorder",
    "call_key",
    "http_key",
    "name_of",
    "redact_url",
]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MAX_BODY = 10 * 1024 * 1024
"""The largest HTTP response body (decoded, in bytes) a :class:`Recorder` records: 10 MiB."""


def call_key(name: str, args: Any, kwargs: Any) -> str:
    """What a call is matched by at replay: its name and encoded arguments."""
    return json.dumps(["call", name, args, kwargs], sort_keys=True)


def http_key(method: str, url: str, body: Any) -> str:
    """What a request is matched by at replay: method, (redacted) URL and body.

    The query's parameters are matched in any order (``?b=1&a=2`` is ``?a=2&b=1``,
    as a dict of params built in another order sends it); the values of one
    repeated parameter keep their order."""
    return json.dumps(["http", method.upper(), _query_sorted(url), body], sort_keys=True)


def _query_sorted(url: str) -> str:
    """``url`` with its query's fields sorted by name (stable, nothing re-encoded)."""
    parts = urlsplit(url)
    if "&" not in parts.query:
        return url
    fields = sorted(parts.query.split("&"), key=lambda field: field.partition("=")[0])
    return urlunsplit(parts._replace(query="&".join(fields)))


def name_of(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of ``fn``: the name its calls are recorded under."""
    target = getattr(fn, "__func__", fn)
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{getattr(target, '__module__', None) or '?'}.{qualname}"


def _names(field: str, value: object) -> frozenset[str]:
    """``value`` as a set of names: a collection of strings, never one string (whose
    characters would be taken for one-letter names, leaving the real one unredacted)."""
    if (isinstance(value, str | bytes) or not isinstance(value, Collection)
            or not all(isinstance(name, str) for name in value)):
        fail("Recorder", field, value, 'a collection of names, e.g. ["authorization"]')
    return frozenset(name.lower() for name in value)


@explained
class Recorder:
    """Records calls and HTTP exchanges into a cassette file.

    Use as ``with Recorder(path) as rec:`` (saved on exit, even when the block
    raises) or call :meth:`save`. An existing cassette at ``path`` is replaced.

    Args:
        path: The cassette file (parent directories are created).
        redact_headers: Headers whose name holds one of these words (any case) are
            stored as ``"REDACTED"``.
        redact_params: Query parameters and keyword arguments whose name holds one
            of these words (any case) are stored as ``"REDACTED"``, in URLs, in URLs
            inside error messages and string arguments, and in call arguments. A URL's
            ``user:password@`` is always redacted. Bodies and results are recorded
            as they are: record no real credentials in them.
        max_body: The largest response body (decoded bytes) recorded; a longer one
            is refused with a :class:`CassetteError` once it passes the cap, so a
            recorded download never sits whole in memory beyond it. ``None``: no cap.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        redact_headers: Collection[str] = DEFAULT_REDACTED_HEADERS,
        redact_params: Collection[str] = DEFAULT_REDACTED_PARAMS,
        max_body: int | None = DEFAULT_MAX_BODY,
    ) -> None:
        self.path = Path(path)
        self.max_body = None if max_body is None else at_least("Recorder", "max_body",
                                                               max_body, 1)
        self.redact_headers = _names("redact_headers", redact_headers)
        self.redact_params = _names("redact_params", redact_params)
        self.interactions: list[dict[str, Any]] = []
        """What was recorded so far, oldest first (as it will be saved)."""
        self._lock = threading.Lock()

    def wrap(self, fn: Callable[P, T], *, name: str | None = None) -> Callable[P, T]:
        """A wrapper that calls ``fn`` and records its arguments and result or error.

        A coroutine function (or an object with an ``async def __call__``) gets an
        async wrapper. Arguments are stored as JSON
        (their ``repr`` when JSON cannot hold them), secrets redacted (an argument
        named like one, URLs' passwords and secret parameters); results should be
        JSON-friendly to be replayable. ``KeyboardInterrupt`` and cancellation are not recorded.

        Args:
            fn: The function to record.
            name: The name calls are matched by at replay (default
                ``module.qualname`` of ``fn``).
        """
        label, signature = name or name_of(fn), signature_of(fn)
        if is_async_callable(fn):
            afn = cast(Callable[..., Any], fn)

            @functools.wraps(fn)
            async def arecorded(*args: Any, **kwargs: Any) -> Any:
                try:
                    result = await afn(*args, **kwargs)
                except Exception as error:
                    self._add_call(label, signature, args, kwargs, error=error)
                    raise
                self._add_call(label, signature, args, kwargs, result=result)
                return result

            return cast(Callable[P, T], arecorded)

        @functools.wraps(fn)
        def recorded(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                result = fn(*args, **kwargs)
            except Exception as error:
                self._add_call(label, signature, args, kwargs, error=error)
                raise
            self._add_call(label, signature, args, kwargs, result=result)
            return result

        return recorded

    def transport(
        self, inner: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None
    ) -> RecordingTransport:
        """An httpx transport (sync and async) that records every exchange through it.

        Response bodies stream through to the client as they arrive; an exchange is
        recorded once its body has been read to the end, has failed (what came before
        the error is kept), or was closed early (what the client read is kept, marked
        as cut; the rest is not read, so leaving an endless stream returns at once).
        A body longer than ``max_body`` is refused.

        Args:
            inner: The transport that really sends; default a new
                ``httpx.HTTPTransport()`` / ``httpx.AsyncHTTPTransport()``.
        """
        with requires_extra("Recorder.transport()", "http"):
            from ._record_http import RecordingTransport

        return RecordingTransport(self, inner)

    def save(self) -> Path:
        """Write the cassette now; returns its path."""
        with self._lock:
            interactions = list(self.interactions)
        return Cassette.save(self.path, interactions, self.redact_params)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.save()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.save()

    def __repr__(self) -> str:
        return f"Recorder({str(self.path)!r}, recorded={len(self.interactions)})"

    def _add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.interactions.append(entry)

    def _error(self, error: BaseException) -> dict[str, Any]:
        """``error`` as a cassette holds it: URLs in its message and arguments redacted."""
        return encode_error(error, lambda text: redact_text(text, self.redact_params))

    def _add_call(self, name: str, signature: inspect.Signature | None,
                  args: tuple[Any, ...], kwargs: dict[str, Any], *,
                  result: Any = None, error: BaseException | None = None) -> None:
        stored_args, stored_kwargs = redact_call(encode_value(args), encode_value(kwargs),
                                                 self.redact_params, signature)
        entry: dict[str, Any] = {"kind": "call", "name": name, "args": stored_args,
                                 "kwargs": stored_kwargs}
        if error is None:
            entry["result"] = encode_value(result)  # results are kept as returned
        else:
            entry["error"] = self._error(error)
        self._add(entry)
