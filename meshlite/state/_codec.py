"""Codecs: how cached values become bytes in a shared store.

JSON is the default: safe to decode whatever a store holds, readable with
``redis-cli``, and the same in every language. A value comes back as JSON gives
it (tuples as lists); a dict with keys other than strings is refused, since JSON
would give them back as strings (``{1: "a"}`` read as ``{"1": "a"}``, on which
``[1]`` fails). msgpack is the compact alternative
when installed. pickle runs code when it decodes, so anyone who can write to the
store could run code in every process reading it: it is used only when asked for
by name (``codec="pickle"``).

Entries written with another codec than JSON carry its name in their key
(:func:`codec_tag`), so that processes with different codecs (a deploy changing
it, one process at a time) never read each other's entries: a byte string one
codec wrote may decode without error under another, to another value (the JSON
``5`` is the msgpack ``53``), and processes overwriting each other's entries
would miss on every call until the last one was replaced.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from .._validate import fail

__all__ = ["Codec", "JsonCodec", "codec_tag", "resolve_codec"]


class Codec(Protocol):
    """Turns a value into bytes and back. ``dumps`` raises for a value it cannot
    encode (``TypeError`` or ``ValueError`` by convention; whatever it raises, the
    value is returned to the caller and not cached)."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonCodec:
    """UTF-8 JSON, compact, with ``NaN`` and infinities refused (not valid JSON)."""

    __slots__ = ()

    def dumps(self, value: Any) -> bytes:
        _string_keys(value)
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)

    def __repr__(self) -> str:
        return "JsonCodec()"


def _string_keys(value: Any) -> None:
    """Raises:
        TypeError: a dict in ``value`` has a key that is not a string (JSON would
            turn it into one: the value read back would not be the one stored).
    """
    todo, seen = [value], set()
    while todo:
        item = todo.pop()
        if isinstance(item, dict | list | tuple):
            # Each container once: a value holding itself would be walked forever
            # (json.dumps then refuses it as circular); one met twice is checked.
            if id(item) in seen:
                continue
            seen.add(id(item))
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    raise TypeError(
                        f"a dict key {key!r} ({type(key).__name__}) would come back as the "
                        f"string {json.dumps(str(key))} from JSON; use string keys, or "
                        "codec='msgpack'")
            todo.extend(item.values())
        elif isinstance(item, list | tuple):
            todo.extend(item)


class _ModuleCodec:
    """A module with ``dumps``/``loads`` functions (msgpack, pickle)."""

    __slots__ = ("_dumps", "_loads", "name")

    def __init__(self, name: str, module: Any) -> None:
        self.name = name
        self._dumps = module.dumps
        self._loads = module.loads

    def dumps(self, value: Any) -> bytes:
        data: bytes = self._dumps(value)
        return data

    def loads(self, data: bytes) -> Any:
        return self._loads(data)

    def __repr__(self) -> str:
        return f"codec {self.name!r}"


def resolve_codec(codec: object) -> Codec:
    """``"json"``, ``"msgpack"``, ``"pickle"`` or an object with ``dumps``/``loads``.

    Raises:
        ConfigError: an unknown name, msgpack asked for but not installed, or an
            object without ``dumps`` and ``loads``.
    """
    if codec == "json":
        return JsonCodec()
    if codec == "msgpack":
        try:
            import msgpack  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            fail("RedisStore", "codec", codec,
                 "'json', or 'msgpack' once it is installed (pip install msgpack)")
        return _ModuleCodec("msgpack", msgpack)
    if codec == "pickle":
        import pickle

        return _ModuleCodec("pickle", pickle)
    if isinstance(codec, str) or not (callable(getattr(codec, "dumps", None))
                                      and callable(getattr(codec, "loads", None))):
        fail("RedisStore", "codec", codec,
             "'json', 'msgpack', 'pickle' (opt-in: it runs code when decoding) or an "
             "object with dumps(value) -> bytes and loads(bytes) -> value")
    return codec  # type: ignore[return-value]


def codec_tag(codec: Codec) -> str:
    """What an entry's key says of the codec that wrote it: ``""`` for JSON (the
    default, whose keys stay as they always were), else the codec's name and a
    ``~``: ``"pickle~"``, ``"msgpack~"``, for an object of your own its ``name``
    attribute if it is a string, else its class's ``module.qualname`` (a module
    given as the codec: the module's name). No function's ``module.qualname`` holds
    a ``~``, so a tagged key never reads as another function's."""
    if isinstance(codec, JsonCodec):
        return ""
    name = getattr(codec, "name", None)
    if not isinstance(name, str) or not name:
        kind = type(codec)
        name = (getattr(codec, "__name__", "") if kind.__name__ == "module"
                else f"{kind.__module__}.{kind.__qualname__}")
    return f"{name}~"
