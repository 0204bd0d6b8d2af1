"""A hook that keeps a breaker's state changes in the order it was given them, and
threads that drive a breaker together: the event-order tests of in-process and
shared (Redis) breakers."""

from __future__ import annotations

import threading
from collections.abc import Callable

from meshlite._events import CircuitStateChanged, Event

__all__ = ["Seen", "in_threads"]


class Seen:
    """A hook keeping the breaker's state changes in the order it was given them."""

    def __init__(self) -> None:
        self.changes: list[CircuitStateChanged] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, CircuitStateChanged):
            self.changes.append(event)

    def check(self, final: str) -> None:
        """Each change starts where the one before ended, and the last ends in ``final``."""
        assert self.changes
        for before, after in zip(self.changes, self.changes[1:], strict=False):
            assert after.previous == before.state, (
                f"a hook saw {before.previous} -> {before.state}, then "
                f"{after.previous} -> {after.state}")
        assert self.changes[-1].state == final


def in_threads(*work: Callable[[], None], rounds: int) -> None:
    """Run each step of ``work`` ``rounds`` times, each on a thread of its own, all at
    once; raise here what any of them raised."""
    errors: list[BaseException] = []

    def run(step: Callable[[], None]) -> None:
        try:
            for _ in range(rounds):
                step()
        except BaseException as error:  # reported below, on the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(step,)) for step in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
