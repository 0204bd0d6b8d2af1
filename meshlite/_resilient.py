"""resilient(): a pipeline in the recommended order (being written)."""

from __future__ import annotations

from typing import Any

__all__ = ["resilient"]


def resilient(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError
