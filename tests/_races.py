"""Landing a change of the mesh between two steps of another: a mapping whose next
``get`` answers, then runs what the test set before the caller goes on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["ReadThen"]


class ReadThen(dict[str, Any]):
    """A mesh's mapping (its registry, or where calls go) whose next ``get`` answers
    what it holds, then lets ``after`` run before the caller goes on: a reload
    landing between an override's read and what it does next."""

    after: Callable[[], None] | None = None

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        found = super().get(name, default)
        after, self.after = self.after, None
        if after is not None:
            after()
        return found
