"""Cache (being written)."""

from __future__ import annotations

from typing import Any

from .._policy import AsyncHandler, Handler, Policy

__all__ = ["Cache"]


class Cache(Policy):
    kind = "cache"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        raise NotImplementedError

    def wrap(self, call_next: Handler) -> Handler:
        raise NotImplementedError

    def awrap(self, call_next: AsyncHandler) -> AsyncHandler:
        raise NotImplementedError
