"""Replay: serve the calls and HTTP exchanges of a cassette a :class:`Recorder`
saved, offline and without calling the real function (:func:`replay`)."""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from .._arguments import explained
from .._callables import is_async_callable
from .._extras import requires_extra
from .._validate import fail
from ._cassette import (
    Cassette,
    decode_error,
    decode_value,
    describe,
    encode_body,
    encode_value,
    matched_body,
    stored_body,
)
from ._record import call_key, http_key, name_of
from ._record_redact import redact_call, redact_url, signature_of

if TYPE_CHECKING:
    from ._record_http import ReplayTransport

__all__ = ["Replayer", "replay"]

P = ParamSpec("P")
T = TypeVar("T")


def bound_key(name: str, signature: inspect.Signature, args: Any, kwargs: Any) -> str | None:
    """What a call is matched by when its function's signature is known: its encoded
    arguments bound to the parameters, defaults applied, so ``fetch(7)``,
    ``fetch(uid=7)`` and ``fetch(7, full=False)`` (``full`` defaulting to False) are one
    call. ``None`` when they do not fit the signature (matched by :func:`call_key`)."""
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return None
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    return json.dumps(["bound", name, encode_value(dict(bound.arguments))], sort_keys=True)


@explained
class Replayer:
    """Serves the calls and HTTP exchanges of a cassette; see :func:`replay`."""

    def __init__(self, path: str | os.PathLike[str], *, repeat: bool = False,
                 match_body: bool = True) -> None:
        for field, flag in (("repeat", repeat), ("match_body", match_body)):
            if not isinstance(flag, bool):
                fail("replay", field, flag, "True or False")
        self.cassette = Cassette.load(path)
        self.repeat = repeat
        self.match_body = match_body
        # Per call name, the signature its calls are bound to (learnt by wrap()).
        self._signatures: dict[str, inspect.Signature] = {}

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """The recorded outcome of ``name(*args, **kwargs)``: its result, or its error raised.

        Raises:
            CassetteMiss: no unused recording of this call.
        """
        a, k = redact_call(encode_value(args), encode_value(kwargs),
                           self.cassette.redacted_params, self._signatures.get(name))
        asked = describe({"kind": "call", "name": name, "args": a, "kwargs": k})
        entry = self.cassette.take(self._call_key(name, a, k), asked, self._key_of,
                                   repeat=self.repeat)
        if "error" in entry:
            raise decode_error(entry["error"])
        return decode_value(entry.get("result"), f"the result of {asked}")

    def wrap(self, fn: Callable[P, T], *, name: str | None = None) -> Callable[P, T]:
        """A stand-in for ``fn`` that answers from the cassette and never calls ``fn``.

        It is async when ``fn`` is, and matches calls by ``name`` (default the
        ``module.qualname`` of ``fn``, as :meth:`Recorder.wrap` recorded them) and by
        their arguments bound to the signature of ``fn``, defaults applied: a call
        recorded as ``fetch(uid=7)`` answers ``fetch(7)``. From then on
        :meth:`call` binds the calls of ``name`` alike.
        """
        label = name or name_of(fn)
        self._learn(label, fn)
        if is_async_callable(fn):

            @functools.wraps(fn)
            async def areplayed(*args: Any, **kwargs: Any) -> Any:
                return self.call(label, *args, **kwargs)

            return cast(Callable[P, T], areplayed)

        @functools.wraps(fn)
        def replayed(*args: P.args, **kwargs: P.kwargs) -> T:
            return cast(T, self.call(label, *args, **kwargs))

        return replayed

    def transport(self) -> ReplayTransport:
        """An httpx transport (sync and async) answering recorded requests offline."""
        with requires_extra("Replayer.transport()", "http"):
            from ._record_http import ReplayTransport

        return ReplayTransport(self)

    @property
    def unplayed(self) -> list[str]:
        """The recorded interactions not replayed yet, as text."""
        return self.cassette.unplayed()

    def assert_all_played(self) -> None:
        """Fail when some recorded interaction was never replayed.

        Raises:
            AssertionError: listing what was not replayed.
        """
        left = self.unplayed
        if left:
            raise AssertionError(f"{len(left)} interaction(s) of {self.cassette.path} were "
                                 "never replayed:\n  " + "\n  ".join(left))

    def take_http(self, method: str, url: str, body: bytes,
                  content_type: str | None = None) -> dict[str, Any]:
        """The next recording of this request (URL already as the transport sees it)."""
        url = redact_url(url, self.cassette.redacted_params)  # as the recorder redacted it
        stored = encode_body(matched_body(body, content_type))
        asked = describe({"kind": "http",
                          "request": {"method": method, "url": url, "body": stored}})
        key = http_key(method, url, stored if self.match_body else None)
        return self.cassette.take(key, asked, self._key_of, repeat=self.repeat)

    def _learn(self, name: str, fn: Callable[..., Any]) -> None:
        """Bind the calls of ``name`` to the signature of ``fn`` from now on."""
        signature = signature_of(fn)
        if signature is None or self._signatures.get(name) == signature:
            return
        self._signatures[name] = signature
        self.cassette.rekey()

    def _call_key(self, name: str, args: Any, kwargs: Any) -> str:
        # Redacted on both sides alike (a recording is already, an older one maybe
        # not), so a call with another secret matches however it was passed.
        signature = self._signatures.get(name)
        args, kwargs = redact_call(args, kwargs, self.cassette.redacted_params, signature)
        key = None if signature is None else bound_key(name, signature, args, kwargs)
        return call_key(name, args, kwargs) if key is None else key

    def _key_of(self, entry: dict[str, Any]) -> str:
        if entry.get("kind") == "http":
            request = entry["request"]
            body = stored_body(request) if self.match_body else None
            url = redact_url(request["url"], self.cassette.redacted_params)
            return http_key(request["method"], url, body)
        return self._call_key(entry.get("name", ""), entry.get("args"), entry.get("kwargs"))

    def __repr__(self) -> str:
        return f"Replayer({str(self.cassette.path)!r})"


def replay(path: str | os.PathLike[str], *, repeat: bool = False,
           match_body: bool = True) -> Replayer:
    """Load a cassette to serve its calls (:meth:`Replayer.wrap`) and HTTP exchanges
    (:meth:`Replayer.transport`) without the network.

    Calls match by name and arguments (bound to the function's signature once
    :meth:`Replayer.wrap` knows it); requests by method, URL and body.
    Identical calls replay in the order they were recorded.

    Args:
        path: The cassette a :class:`Recorder` saved.
        repeat: Once the recordings of a call are used up, serve the last again
            (default: raise :class:`CassetteMiss`).
        match_body: Match requests on their body too (default True).

    Raises:
        CassetteError: the file is missing or not a cassette.
    """
    return Replayer(path, repeat=repeat, match_body=match_body)
