"""Bounded parallel batches (being written)."""

from __future__ import annotations

from typing import Any

__all__ = ["gather", "gather_sync"]


async def gather(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


def gather_sync(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError
