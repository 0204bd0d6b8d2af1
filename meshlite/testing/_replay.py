"""Replay: serve the calls and HTTP exchanges of a cassette a :class:`Recorder`
saved, offline and without calling the real function (:func:`replay`)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from .._arguments import explained
from .._extras import requires_extra
from .._validate import fail
from ._cassette import Cassette, decode_error, decode_value, describe, encode_body, encode_value
from ._record import call_key, http_key, is_async, name_of, redact_url

if TYPE_CHECKING:
    from ._record_http import ReplayTransport

__all__ = ["Replayer", "replay"]

P = ParamSpec("P")
T = TypeVar("T")


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

    def call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """The recorded outcome of ``name(*args, **kwargs)``: its result, or its error raised.

        Raises:
            CassetteMiss: no unused recording of this call.
        """
        a, k = encode_value(args), encode_value(kwargs)
        asked = describe({"kind": "call", "name": name, "args": a, "kwargs": k})
        entry = self.cassette.take(call_key(name, a, k), asked, self._key_of,
                                   repeat=self.repeat)
        if "error" in entry:
            raise decode_error(entry["error"])
        return decode_value(entry.get("result"), f"the result of {asked}")

    def wrap(self, fn: Callable[P, T], *, name: str | None = None) -> Callable[P, T]:
        """A stand-in for ``fn`` that answers from the cassette and never calls ``fn``.

        It is async when ``fn`` is, and matches calls by ``name`` (default the
        ``module.qualname`` of ``fn``, as :meth:`Recorder.wrap` recorded them).
        """
        label = name or name_of(fn)
        if is_async(fn):

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

    def take_http(self, method: str, url: str, body: bytes) -> dict[str, Any]:
        """The next recording of this request (URL already as the transport sees it)."""
        url = redact_url(url, self.cassette.redacted_params)
        stored = encode_body(body)
        asked = describe({"kind": "http",
                          "request": {"method": method, "url": url, "body": stored}})
        key = http_key(method, url, stored if self.match_body else None)
        return self.cassette.take(key, asked, self._key_of, repeat=self.repeat)

    def _key_of(self, entry: dict[str, Any]) -> str:
        if entry.get("kind") == "http":
            request = entry["request"]
            body = request.get("body") if self.match_body else None
            return http_key(request["method"], request["url"], body)
        return call_key(entry.get("name", ""), entry.get("args"), entry.get("kwargs"))

    def __repr__(self) -> str:
        return f"Replayer({str(self.cassette.path)!r})"


def replay(path: str | os.PathLike[str], *, repeat: bool = False,
           match_body: bool = True) -> Replayer:
    """Load a cassette to serve its calls (:meth:`Replayer.wrap`) and HTTP exchanges
    (:meth:`Replayer.transport`) without the network.

    Calls match by name and arguments; requests by method, URL and body.
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
