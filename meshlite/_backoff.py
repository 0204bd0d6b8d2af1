"""Backoff strategies (being written)."""

from __future__ import annotations

from typing import Any

__all__ = ["Backoff", "constant", "decorrelated", "exponential"]


class Backoff:
    pass


def exponential(*args: Any, **kwargs: Any) -> Backoff:
    raise NotImplementedError


def constant(*args: Any, **kwargs: Any) -> Backoff:
    raise NotImplementedError


def decorrelated(*args: Any, **kwargs: Any) -> Backoff:
    raise NotImplementedError
