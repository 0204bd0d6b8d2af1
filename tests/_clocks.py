"""Clocks for tests of what a recorder does when time cannot be read."""

from __future__ import annotations

from meshlite.testing import FakeClock


class BrokenClock(FakeClock):
    """A clock whose next read raises, when armed."""

    armed = False

    def monotonic(self) -> float:
        if self.armed:
            self.armed = False
            raise RuntimeError("clock broke")
        return super().monotonic()
