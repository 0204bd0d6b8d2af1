"""The static provider: a fixed list of backends (what ``backends=`` already gives)."""

from __future__ import annotations

from collections.abc import Iterable

from ..routing._backend import Backend, BackendLike, as_backend
from ._provider import BaseProvider, Resolution

__all__ = ["StaticProvider"]


class StaticProvider(BaseProvider):
    """Always resolves to the same backends.

    Args:
        backends: Backends or their addresses.

    Raises:
        ConfigError: a backend is neither a ``Backend`` nor an address.
    """

    kind = "static"

    def __init__(self, backends: Iterable[BackendLike] = ()) -> None:
        if isinstance(backends, str | Backend):
            backends = (backends,)
        self.backends = tuple(as_backend(b, "StaticProvider") for b in backends)

    async def resolve(self) -> Resolution:
        """The configured backends."""
        return Resolution(self.backends)

    def __repr__(self) -> str:
        return f"StaticProvider({[b.address for b in self.backends]!r})"
