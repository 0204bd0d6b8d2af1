"""Where an unknown key would be known: a key written at the wrong indentation.

``retry: {attempts: 3}`` with ``attempts`` one level too far left is an unknown option
of the service, and ``timeout:`` at the top level an unknown section; the valid
options listed then do not name the key, so the message says where it belongs.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from ._shapes import Shape, shape_of

__all__ = ["misplaced", "misplaced_service"]


def _structs(shape: Shape) -> list[type[msgspec.Struct]]:
    if shape.kind == "struct":
        return [shape.base]
    if shape.kind == "union":
        return [s for member in shape.args for s in _structs(member)]
    return []


@functools.cache
def _layout() -> tuple[Any, Any, frozenset[str], frozenset[str],
                       dict[str, tuple[str, ...]], frozenset[type[msgspec.Struct]]]:
    from ._schema import MeshConfig, ServiceSection

    service = frozenset(f.name for f in msgspec.structs.fields(ServiceSection))
    top = frozenset(f.name for f in msgspec.structs.fields(MeshConfig))
    owners: dict[str, list[str]] = {}
    sections: set[type[msgspec.Struct]] = set()
    for f in msgspec.structs.fields(ServiceSection):
        for struct in _structs(shape_of(f.type)):
            sections.add(struct)
            for option in msgspec.structs.fields(struct):
                owners.setdefault(option.name, []).append(f.name)
    return (MeshConfig, ServiceSection, service, top,
            {k: tuple(v) for k, v in owners.items()}, frozenset(sections))


def misplaced(cls: type[msgspec.Struct], key: str) -> str:
    """A hint (``"; ..."``) when ``key``, unknown in ``cls``, is an option one level
    up or down (a service's option at the top level or in one of its sections, a
    section's option in the service), else ``""``."""
    mesh, service_cls, service, top, owners, sections = _layout()
    if cls is mesh and key in service:
        return f"; {key} is an option of a service: move it into one (services.NAME.{key})"
    if cls is service_cls:
        if key in top:
            return f"; {key} is a top-level section: move it to the top level"
        if key in owners:
            names = " or ".join(owners[key])
            return f"; {key} is an option of {names}: move it into that section"
    if cls in sections and key in service:
        return f"; {key} is an option of the service: move it up a level, beside this section"
    return ""


def misplaced_service(name: str) -> str:
    """A hint when a service is named like a service's option (``balancer:`` one level
    too far left, under ``services:``), else ``""``."""
    service = _layout()[2]
    if name in service:
        return (f"; {name} is an option of a service, read here as a service's name: "
                "move it into its service (indented too little?)")
    return ""
