"""Which options a config file set, recorded on each schema Struct it made.

An option left out keeps the constructor's default, while one written as ``null`` is
passed as None; the two look alike on the Struct, so the converter records the names
it was given on the instance (:func:`record_set`) and :func:`fields_set` reads them
back. :func:`to_data` turns Structs back into plain data, by default only what was set.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec

__all__ = ["field_names", "fields_set", "record_set", "to_data", "with_fields"]

S = TypeVar("S", bound=msgspec.Struct)

_SET = "_meshlite_fields_set"


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


def record_set(obj: S, names: Iterable[str]) -> S:
    """``obj``, with ``names`` recorded as the options the file set."""
    instance_dict = getattr(obj, "__dict__", None)
    if instance_dict is not None:  # Structs declared with dict=True (every Section)
        instance_dict[_SET] = frozenset(names)
    return obj


def with_fields(obj: S, **changes: Any) -> S:
    """A copy of ``obj`` with ``changes`` (which count as set)."""
    return record_set(msgspec.structs.replace(obj, **changes), fields_set(obj) | set(changes))


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
