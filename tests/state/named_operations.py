"""Functions named at run time (``op0``, ``op1``...), as operations or cached functions
named per call are: what the tests of names that churn make by the thousand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Operations"]


class Operations:
    """Makes ``operation(i)``, a function named ``op<i>`` returning ``[x, i]``, and keeps
    in ``ran`` the ``i`` of each that ran, in order."""

    def __init__(self) -> None:
        self.ran: list[int] = []

    def operation(self, i: int) -> Callable[[Any], Any]:
        """A function named ``op<i>``: its calls are operation ``op<i>``, its cache
        entries function ``op<i>``'s."""
        ran = self.ran

        def f(x: Any) -> Any:
            ran.append(i)
            return [x, i]

        f.__qualname__ = f.__name__ = f"op{i}"
        return f
