"""Process-wide test switches, part of the public API (as in stamina)."""

from __future__ import annotations

from types import TracebackType

__all__ = ["is_testing", "set_testing"]

_testing = False


class _TestingSwitch:
    """Returned by :func:`set_testing`; restores the previous value when used as a
    context manager."""

    __slots__ = ("_previous",)

    def __init__(self, previous: bool) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _testing
        _testing = self._previous


def set_testing(testing: bool = True) -> _TestingSwitch:
    """Turn testing mode on or off for the whole process.

    In testing mode retries and other backoffs do not sleep for real, so a user's
    test suite exercising retry paths runs at full speed. Usable as a plain call or
    as a context manager that restores the previous mode on exit::

        with ml.set_testing(True):
            flaky_call()
    """
    global _testing
    previous = _testing
    _testing = bool(testing)
    return _TestingSwitch(previous)


def is_testing() -> bool:
    """Whether :func:`set_testing` turned testing mode on."""
    return _testing
