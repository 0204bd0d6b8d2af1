"""Codecs: how cached values become bytes in a shared store.

JSON is the default: safe to decode whatever a store holds, readable with
``redis-cli``, and the same in every language. A value comes back as JSON gives
it (tuples as lists, dict keys as strings). msgpack is the compact alternative
when installed. pickle runs code when it decodes, so anyone who can write to the
store could run code in every process reading it: it is used only when asked for
by name (``codec="pickle"``).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from .._validate import fail

__all__ = ["Codec", "JsonCodec", "resolve_codec"]


class Codec(Protocol):
    """Turns a value into bytes and back. ``dumps`` raises ``TypeError`` (or
    ``ValueError``) for a value it cannot encode."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonCodec:
    """UTF-8 JSON, compact, with ``NaN`` and infinities refused (not valid JSON)."""

    __slots__ = ()

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)

    def __repr__(self) -> str:
        return "JsonCodec()"


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
