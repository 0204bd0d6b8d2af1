"""Reading one sample back from anything with ``collect()`` (a mesh's metrics, a
``Metrics`` policy)."""

from __future__ import annotations

from typing import Any


def value(source: Any, name: str, suffix: str = "", **labels: str) -> float | None:
    """The sample ``name+suffix{labels}`` of ``source.collect()``, or None."""
    for family in source.collect():
        if family.name == name:
            for s in family.samples:
                if s.suffix == suffix and dict(s.labels) == labels:
                    return s.value
    return None
