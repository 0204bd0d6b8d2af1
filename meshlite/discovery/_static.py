"""The static provider: a fixed list of backends (what ``backends=`` already gives)."""

from __future__ import annotations

from collections.abc import Iterable

from ..routing._backend import BackendLike, as_backends
from ._provider import BaseProvider, Resolution

__all__ = ["StaticProvider"]


class StaticProvider(BaseProvider):
    """Always resolves to the same backends.

    Args:
        backends: Backends or their addresses.

    Raises:
        ConfigError: ``backends`` is not a backend, an address, or a list of them.
    """

    kind = "static"

    def __init__(self, backends: BackendLike | Iterable[BackendLike] = ()) -> None:
        self.backends = tuple(as_backends(backends, "StaticProvider"))

    async def resolve(self) -> Resolution:
        """The configured backends."""
        return Resolution(self.backends)

    def __repr__(self) -> str:
        return f"StaticProvider({[b.address for b in self.backends]!r})"
