"""Converting plain data (a parsed config) to the msgspec schema, every problem at once.

``msgspec.convert`` stops at the first error; a config must report all of them,
each under its path. So the schema is walked here: each field of a
:class:`msgspec.Struct` is converted on its own (leaves with
``msgspec.convert(value, type, strict=False)``: lax, ``"5"`` from an environment
override reads as 5), nested Structs, lists and dicts are walked into, and each
failure is recorded under its path while the rest goes on. A value in error is left
out (its field keeps its default); a Struct missing a required option is left out
of its parent.

A Struct of the schema may declare, as class attributes, a ``_before(data)``
function (a shorthand: ``timeout: 2.0`` is ``{seconds: 2.0}``) and a
``_field_hooks`` mapping of field name to a function applied to that field's raw
value first (``retry: false`` is no retry). Which fields the file set is recorded
on each instance (:func:`fields_set`): an option left out keeps the constructor's
default, while one written as ``null`` is passed as None.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import msgspec

from .._validate import shown
from ._problems import Path, Problems

__all__ = [
    "FAILED",
    "convert_struct",
    "convert_value",
    "field_names",
    "fields_set",
    "read_bool",
    "to_data",
    "with_fields",
]

S = TypeVar("S", bound=msgspec.Struct)

FAILED: Any = object()
"""What a conversion returns after recording its problems."""

_SET = "_meshlite_fields_set"
_TRUE = frozenset({"true", "on", "yes", "y", "t", "1"})
_FALSE = frozenset({"false", "off", "no", "n", "f", "0"})


class _Field:
    __slots__ = ("hook", "name", "required", "shape", "type")

    def __init__(self, name: str, tp: Any, required: bool,
                 hook: Callable[[Any], Any] | None) -> None:
        self.name = name
        self.type = tp
        self.required = required
        self.hook = hook
        self.shape = _shape(tp)


@functools.cache
def _fields(cls: type[msgspec.Struct]) -> tuple[_Field, ...]:
    hooks: Mapping[str, Callable[[Any], Any]] = getattr(cls, "_field_hooks", {})
    return tuple(_Field(f.name, f.type, f.required, hooks.get(f.name))
                 for f in msgspec.structs.fields(cls))


def field_names(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    """The option names of a schema Struct, in declaration order."""
    return tuple(cls.__struct_fields__)


def fields_set(obj: msgspec.Struct) -> frozenset[str]:
    """The options the file set in ``obj`` (for a Struct made in code: those whose
    value is not the default)."""
    recorded: frozenset[str] | None = getattr(obj, "__dict__", {}).get(_SET)
    if recorded is not None:
        return recorded
    names = set()
    for f in msgspec.structs.fields(type(obj)):
        value = getattr(obj, f.name)
        default = f.default_factory() if f.default_factory is not msgspec.NODEFAULT \
            else f.default
        if f.required or value != default:
            names.add(f.name)
    return frozenset(names)


def _record(obj: S, names: Iterable[str]) -> S:
    instance_dict = getattr(obj, "__dict__", None)
    if instance_dict is not None:  # Structs declared with dict=True (every Section)
        instance_dict[_SET] = frozenset(names)
    return obj


def with_fields(obj: S, **changes: Any) -> S:
    """A copy of ``obj`` with ``changes`` (which count as set)."""
    return _record(msgspec.structs.replace(obj, **changes), fields_set(obj) | set(changes))


def to_data(value: Any, *, exclude_unset: bool = True) -> Any:
    """``value`` (a Struct, or lists and dicts of them) as plain data; with
    ``exclude_unset`` only the options the file set."""
    if isinstance(value, msgspec.Struct):
        names = fields_set(value) if exclude_unset else value.__struct_fields__
        return {name: to_data(getattr(value, name), exclude_unset=exclude_unset)
                for name in value.__struct_fields__ if name in names}
    if isinstance(value, dict):
        return {k: to_data(v, exclude_unset=exclude_unset) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_data(v, exclude_unset=exclude_unset) for v in value]
    return value


def _got(value: Any) -> str:
    if value is None or isinstance(value, str | int | float | bool):
        return f"got {shown(value)}"
    if isinstance(value, Mapping):
        return "got a mapping"
    if isinstance(value, list | tuple):
        return "got a list"
    return f"got a {type(value).__name__}"


def convert_struct(cls: type[S], data: Any, path: Path, problems: Problems) -> S | Any:
    """``data`` as ``cls``; :data:`FAILED` when it cannot be made (problems recorded)."""
    before: Callable[[Any], Any] | None = getattr(cls, "_before", None)
    if before is not None:
        data = before(data)
    fields = _fields(cls)
    if not isinstance(data, Mapping):
        names = ", ".join(f.name for f in fields)
        problems.add(path, f"must be a valid dictionary (options: {names}), {_got(data)}")
        return FAILED
    known = {f.name for f in fields}
    for key in data:
        if key not in known:
            valid = (*(f.name for f in fields), *getattr(cls, "_other_keys", ()))
            problems.add((*path, str(key)), "unknown option; valid options: "
                                            + ", ".join(valid))
    values: dict[str, Any] = {}
    complete = True
    for f in fields:
        if f.name not in data:
            if f.required:
                problems.add((*path, f.name), "required option is missing")
                complete = False
            continue
        raw = data[f.name]
        if f.hook is not None:
            raw = f.hook(raw)
        value = _checked(f.shape, raw, (*path, f.name), problems)
        if value is FAILED:
            complete = complete and not f.required
        else:
            values[f.name] = value
    if not complete:
        return FAILED
    return _record(cls(**values), values)


def convert_value(tp: Any, value: Any, path: Path, problems: Problems) -> Any:
    """``value`` as the type ``tp`` (lax), or :data:`FAILED` with its problems recorded."""
    return _checked(_shape(tp), value, path, problems)


def _unwrap(tp: Any) -> tuple[Any, tuple[msgspec.Meta, ...]]:
    if typing.get_origin(tp) is typing.Annotated:
        args = typing.get_args(tp)
        return args[0], tuple(a for a in args[1:] if isinstance(a, msgspec.Meta))
    return tp, ()


def _constraint(meta: msgspec.Meta, value: Any) -> str | None:
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


class _Shape:
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
def _shape(tp: Any) -> _Shape:
    base, metas = _unwrap(tp)
    origin = typing.get_origin(base)
    args = typing.get_args(base)
    if base is Any:
        return _Shape("any", base, metas=metas)
    if origin in (typing.Union, types.UnionType):
        members = tuple(m for m in args if m is not type(None))
        shapes = tuple(_shape(m) for m in members)
        text = " or ".join(sh.text for sh in shapes)
        return _Shape("union", base, shapes, metas, len(members) < len(args), text)
    if origin is Literal:
        return _Shape("literal", base, args, metas,
                      text="one of " + ", ".join(repr(v) for v in args))
    if origin in (list, Sequence, tuple) or base in (list, tuple):
        return _Shape("list", list, (args[0] if args else Any,), metas, text=_NAMES[list])
    if origin in (dict, Mapping) or base is dict:
        key, item = (args[0], args[1]) if len(args) == 2 else (Any, Any)
        return _Shape("dict", dict, (key, item), metas, text=_NAMES[dict])
    if isinstance(base, type) and issubclass(base, msgspec.Struct):
        return _Shape("struct", base, metas=metas, text=_NAMES[dict])
    if base is bool:
        return _Shape("bool", bool, metas=metas, text=_NAMES[bool])
    if base in (int, float, str):
        return _Shape("scalar", base, metas=metas, text=_NAMES[base])
    if origin is None and isinstance(base, type):  # any other class: an instance of it
        return _Shape("class", base, metas=metas, text=f"a {base.__name__}")
    return _Shape("any", base, metas=metas)  # a form not checked (Iterable[...]...)


def _convert(shape: _Shape, value: Any, path: Path, problems: Problems) -> Any:
    kind = shape.kind
    if kind == "any":
        return value
    if kind == "union":
        return _union(shape, value, path, problems)
    if kind == "struct":
        return convert_struct(shape.base, value, path, problems)
    if kind == "scalar":
        tp = shape.base
        if type(value) is tp:
            return value
        try:
            return msgspec.convert(value, tp, strict=False)
        except msgspec.ValidationError:
            pass
    elif kind == "bool":
        found = read_bool(value)
        if found is not None:
            return found
        problems.add(path, f"must be a valid boolean (true or false), {_got(value)}")
        return FAILED
    elif kind == "list":
        return _list(shape, value, path, problems)
    elif kind == "dict":
        return _dict(shape, value, path, problems)
    elif kind == "literal":
        if value in shape.args and any(type(value) is type(a) for a in shape.args):
            return value
    elif isinstance(value, shape.base):  # "class"
        return value
    problems.add(path, f"must be {shape.text}, {_got(value)}")
    return FAILED


def read_bool(value: Any) -> bool | None:
    """``value`` read as a boolean as the schema reads one (``"on"``, ``"false"``,
    1...), or None when it is not one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def _list(shape: _Shape, value: Any, path: Path, problems: Problems) -> Any:
    if not isinstance(value, list | tuple):
        problems.add(path, f"must be a valid list, {_got(value)}")
        return FAILED
    item = shape.args[0]
    out = []
    for i, v in enumerate(value):
        converted = convert_value(item, v, (*path, i), problems)
        if converted is not FAILED:
            out.append(converted)
    return out


def _dict(shape: _Shape, value: Any, path: Path, problems: Problems) -> Any:
    if not isinstance(value, Mapping):
        problems.add(path, f"must be a valid dictionary, {_got(value)}")
        return FAILED
    key_type, item = shape.args
    out = {}
    for k, v in value.items():
        key = convert_value(key_type, k, (*path, str(k)), problems)
        converted = convert_value(item, v, (*path, str(k)), problems)
        if key is not FAILED and converted is not FAILED:
            out[key] = converted
    return out


class _Quiet(Problems):
    """Problems of one union member, kept apart until the member is chosen."""

    def __init__(self, parent: Problems) -> None:
        super().__init__(parent.source, parent.secrets, parent.origins)
        self.found: list[tuple[Path, str]] = []

    def add(self, path: Path, message: str) -> None:
        self.found.append((path, message))


def _exact(shape: _Shape, value: Any) -> bool:
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


def _union(shape: _Shape, value: Any, path: Path, problems: Problems) -> Any:
    members: tuple[_Shape, ...] = shape.args
    if value is None and shape.nullable:
        return None
    if len(members) == 1:
        return _checked(members[0], value, path, problems)
    # The member the value already is (smart: 5 stays an int for ``int | float``),
    # else the first that converts it.
    ordered = sorted(members, key=lambda m: not _exact(m, value))
    for member in ordered:
        quiet = _Quiet(problems)
        converted = _checked(member, value, path, quiet)
        if converted is not FAILED:
            return converted
        if _exact(member, value):  # the right shape, wrong inside: say why
            for where, message in quiet.found:
                problems.add(where, message)
            return FAILED
    problems.add(path, f"must be {shape.text}, {_got(value)}")
    return FAILED


def _checked(shape: _Shape, value: Any, path: Path, problems: Problems) -> Any:
    converted = _convert(shape, value, path, problems)
    if converted is FAILED or not shape.metas:
        return converted
    for meta in shape.metas:
        message = _constraint(meta, converted)
        if message is not None:
            problems.add(path, f"{message}, {_got(converted)}")
            return FAILED
    return converted
