"""Process-wide test switches, part of the public API (as in stamina)."""

from __future__ import annotations

from types import TracebackType

__all__ = ["is_testing", "no_real_sleeps", "set_testing", "skips_sleep"]

_testing = False
_real_only = False  # testing mode skips only sleeps on the system clock (no_real_sleeps)


class _TestingSwitch:
    """Returned by :func:`set_testing`; restores the previous value when used as a
    context manager."""

    __slots__ = ("_previous",)

    def __init__(self, previous: tuple[bool, bool]) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _testing, _real_only
        _testing, _real_only = self._previous


def set_testing(testing: bool = True) -> _TestingSwitch:
    """Turn testing mode on or off for the whole process.

    In testing mode retries and other backoffs do not sleep for real, so a user's
    test suite exercising retry paths runs at full speed. Usable as a plain call or
    as a context manager that restores the previous mode on exit::

        with ml.set_testing(True):
            flaky_call()
    """
    global _testing, _real_only
    previous = (_testing, _real_only)
    _testing, _real_only = bool(testing), False
    return _TestingSwitch(previous)


def no_real_sleeps() -> _TestingSwitch:
    """Testing mode in which only sleeps on the system clock are skipped (the pytest
    plugin's ``meshlite_no_sleep``): a ``FakeClock`` given to a policy is slept on as
    usual, so its time moves and ``.sleeps`` records the backoff. Used as
    :func:`set_testing` is; not public API."""
    global _testing, _real_only
    previous = (_testing, _real_only)
    _testing, _real_only = True, True
    return _TestingSwitch(previous)


def is_testing() -> bool:
    """Whether :func:`set_testing` turned testing mode on."""
    return _testing


def skips_sleep(real: bool) -> bool:
    """Whether a backoff sleep is skipped now: testing mode is on, and the sleep is on
    the system clock (``real``) or the mode skips every sleep (:func:`set_testing`)."""
    return _testing and (real or not _real_only)
