"""tenacity's ``wait_exception`` (a wait computed from the attempt's error), which
tenacity 9.1.3 added, on every tenacity the ``interop`` extra allows: before it, a
strategy of the user's own that reads ``retry_state.outcome``, as it does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tenacity

__all__ = ["wait_exception"]


class _WaitException(tenacity.wait.wait_base):  # type: ignore[misc]
    def __init__(self, predicate: Callable[[BaseException], float]) -> None:
        self.predicate = predicate

    def __call__(self, retry_state: Any) -> float:
        error = retry_state.outcome.exception()
        assert error is not None  # waits follow failures only
        return self.predicate(error)


wait_exception: Any = getattr(tenacity, "wait_exception", _WaitException)
