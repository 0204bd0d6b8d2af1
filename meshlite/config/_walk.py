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
on each instance (``_fieldset``); what converting to each type takes is worked out
once per type (``_shapes``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

from .._validate import shown
from ._fieldset import record_set
from ._placement import misplaced
from ._problems import Path, Problems
from ._shapes import Shape, constraint, exact, shape_of

__all__ = ["FAILED", "convert_struct", "convert_value", "read_bool"]

S = TypeVar("S", bound=msgspec.Struct)

FAILED: Any = object()
"""What a conversion returns after recording its problems."""

_DURATION = re.compile(r"\s*(?:\d+(?:\.\d*)?|\.\d+)\s*(?:ms|s|sec|secs|seconds?|m|min|"
                       r"minutes?|h|hours?)\s*", re.I)
"""A number with a unit: a duration written as other tools write one (``5s``)."""

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
        self.shape = shape_of(tp)


@functools.cache
def _fields(cls: type[msgspec.Struct]) -> tuple[_Field, ...]:
    hooks: Mapping[str, Callable[[Any], Any]] = getattr(cls, "_field_hooks", {})
    return tuple(_Field(f.name, f.type, f.required, hooks.get(f.name))
                 for f in msgspec.structs.fields(cls))


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
                         + ", ".join(valid) + misplaced(cls, str(key)))
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
    return record_set(cls(**values), values)


def convert_value(tp: Any, value: Any, path: Path, problems: Problems) -> Any:
    """``value`` as the type ``tp`` (lax), or :data:`FAILED` with its problems recorded."""
    return _checked(shape_of(tp), value, path, problems)


def _convert(shape: Shape, value: Any, path: Path, problems: Problems) -> Any:
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
        if tp is not str and isinstance(value, str) and _DURATION.fullmatch(value):
            problems.add(path, f"must be {shape.text}, {_got(value)}; {_unit(path)}")
            return FAILED
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


def _unit(path: Path) -> str:
    """How the number at ``path`` is written when it is a duration: the schema takes
    a bare number, in milliseconds for an option named ``..._ms``, else seconds. (The
    examples are fixed, not the value converted: the value may be a secret.)"""
    if path and str(path[-1]).endswith("_ms"):
        return "write a duration in milliseconds as a bare number (30 for 30ms, 1000 for 1s)"
    return "write a duration in seconds as a bare number (5 for 5s, 0.5 for 500ms, 60 for 1m)"


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


def _list(shape: Shape, value: Any, path: Path, problems: Problems) -> Any:
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


def _dict(shape: Shape, value: Any, path: Path, problems: Problems) -> Any:
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


def _union(shape: Shape, value: Any, path: Path, problems: Problems) -> Any:
    members: tuple[Shape, ...] = shape.args
    if value is None and shape.nullable:
        return None
    if len(members) == 1:
        return _checked(members[0], value, path, problems)
    # The member the value already is (smart: 5 stays an int for ``int | float``),
    # else the first that converts it.
    ordered = sorted(members, key=lambda m: not exact(m, value))
    for member in ordered:
        quiet = _Quiet(problems)
        converted = _checked(member, value, path, quiet)
        if converted is not FAILED:
            return converted
        if exact(member, value):  # the right shape, wrong inside: say why
            for where, message in quiet.found:
                problems.add(where, message)
            return FAILED
    hint = ""
    if isinstance(value, str) and _DURATION.fullmatch(value) and any(
            m.kind == "scalar" and m.base in (int, float) for m in members):
        hint = f"; {_unit(path)}"
    problems.add(path, f"must be {shape.text}, {_got(value)}{hint}")
    return FAILED


def _checked(shape: Shape, value: Any, path: Path, problems: Problems) -> Any:
    converted = _convert(shape, value, path, problems)
    if converted is FAILED or not shape.metas:
        return converted
    for meta in shape.metas:
        message = constraint(meta, converted)
        if message is not None:
            problems.add(path, f"{message}, {_got(converted)}")
            return FAILED
    return converted
