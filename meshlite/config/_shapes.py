"""What converting to one schema type takes, worked out once per type.

A type of the schema (``int``, ``Annotated[float, Meta(ge=0)]``, ``list[str]``,
``Literal["a", "b"]``, a nested Struct, a union of these) is read once into a
:class:`Shape`: its kind, its base and arguments, its constraints and the words an
error uses for it. The converter in ``_walk`` dispatches on the kind.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import msgspec

__all__ = ["Shape", "constraint", "exact", "shape_of"]


def _unwrap(tp: Any) -> tuple[Any, tuple[msgspec.Meta, ...]]:
    if typing.get_origin(tp) is typing.Annotated:
        args = typing.get_args(tp)
        return args[0], tuple(a for a in args[1:] if isinstance(a, msgspec.Meta))
    return tp, ()


def constraint(meta: msgspec.Meta, value: Any) -> str | None:
    """What ``value`` breaks of ``meta`` (bounds, lengths, pattern), or None."""
    checks: tuple[tuple[Any, Callable[[Any, Any], bool], str], ...] = (
        (meta.ge, lambda v, b: v >= b, ">="), (meta.gt, lambda v, b: v > b, ">"),
        (meta.le, lambda v, b: v <= b, "<="), (meta.lt, lambda v, b: v < b, "<"))
    for bound, ok, sign in checks:
        if bound is not None and not ok(value, bound):
            return f"must be {sign} {bound}"
    if meta.min_length is not None and len(value) < meta.min_length:
        return f"must have at least {meta.min_length} item(s)"
    if meta.max_length is not None and len(value) > meta.max_length:
        return f"must have at most {meta.max_length} item(s)"
    if meta.pattern is not None and not re.search(meta.pattern, value):
        return f"must match {meta.pattern!r}"
    return None


_NAMES: dict[Any, str] = {bool: "a valid boolean", int: "a valid integer",
                          float: "a valid number", str: "a valid string",
                          list: "a valid list", dict: "a valid dictionary"}


class Shape:
    """What converting to one type takes, worked out once per type."""

    __slots__ = ("args", "base", "kind", "metas", "nullable", "text")

    def __init__(self, kind: str, base: Any, args: tuple[Any, ...] = (),
                 metas: tuple[msgspec.Meta, ...] = (), nullable: bool = False,
                 text: str = "") -> None:
        self.kind = kind
        self.base = base
        self.args = args
        self.metas = metas
        self.nullable = nullable
        self.text = text


@functools.cache
def shape_of(tp: Any) -> Shape:
    """The :class:`Shape` of the schema type ``tp``."""
    base, metas = _unwrap(tp)
    origin = typing.get_origin(base)
    args = typing.get_args(base)
    if base is Any:
        return Shape("any", base, metas=metas)
    if origin in (typing.Union, types.UnionType):
        members = tuple(m for m in args if m is not type(None))
        shapes = tuple(shape_of(m) for m in members)
        text = " or ".join(sh.text for sh in shapes)
        return Shape("union", base, shapes, metas, len(members) < len(args), text)
    if origin is Literal:
        return Shape("literal", base, args, metas,
                      text="one of " + ", ".join(repr(v) for v in args))
    if origin in (list, Sequence, tuple) or base in (list, tuple):
        return Shape("list", list, (args[0] if args else Any,), metas, text=_NAMES[list])
    if origin in (dict, Mapping) or base is dict:
        key, item = (args[0], args[1]) if len(args) == 2 else (Any, Any)
        return Shape("dict", dict, (key, item), metas, text=_NAMES[dict])
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return Shape("struct", base, metas=metas, text=_NAMES[dict])
    if base is bool:
        return Shape("bool", bool, metas=metas, text=_NAMES[bool])
    if base in (int, float, str):
        return Shape("scalar", base, metas=metas, text=_NAMES[base])
    if origin is None and isinstance(base, type):  # any other class: an instance of it
        return Shape("class", base, metas=metas, text=f"a {base.__name__}")
    return Shape("any", base, metas=metas)  # a form not checked (Iterable[...]...)


def exact(shape: Shape, value: Any) -> bool:
    """Whether ``value`` already has the shape, without coercion."""
    kind, base = shape.kind, shape.base
    if kind == "scalar":
        if base is float:
            return isinstance(value, float | int) and not isinstance(value, bool)
        if base is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list | tuple)
    if kind in ("dict", "struct"):
        return isinstance(value, Mapping) if kind == "dict" else True
    if kind == "class":
        return isinstance(value, base)
    return kind in ("any", "literal")
