"""A process forked while a RedisStore's policies are in use (a pre-fork server, or
``multiprocessing`` with the fork start method): the child owns nothing that only
the parent's threads can finish."""

from __future__ import annotations

import os
import threading

import meshlite as ml
from meshlite.state import RedisStore


def fork_while_a_miss_is_in_flight(cache: ml.Cache) -> None:
    """Fork while a thread of this process computes ``slow(21)`` under ``cache``; the
    child's own ``slow(21)`` must answer (the leading thread does not exist there,
    so nothing it would land ever lands), and so must the parent's afterwards."""
    release = threading.Event()
    entered = threading.Event()

    @cache
    def slow(x: int) -> int:
        entered.set()
        release.wait(5.0)
        return x * 2

    leader = threading.Thread(target=slow, args=(21,))
    leader.start()
    assert entered.wait(5.0)  # the parent's flight of slow(21) is running
    pid = os.fork()
    if pid == 0:
        release.set()  # the child's own call of slow() returns at once
        answer: list[int] = []
        caller = threading.Thread(target=lambda: answer.append(slow(21)), daemon=True)
        caller.start()
        caller.join(10.0)  # at once; a bound a loaded machine still meets
        os._exit(0 if answer == [42] else 1)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        leader.join()
    assert os.waitstatus_to_exitcode(status) == 0
    assert slow(21) == 42


def test_a_cache_miss_in_flight_at_fork_does_not_hold_up_the_child(store: RedisStore) -> None:
    fork_while_a_miss_is_in_flight(ml.Cache(ttl=30.0, store=store))


def test_an_in_memory_miss_in_flight_at_fork_does_not_hold_up_the_child() -> None:
    # The in-memory cache: the default, and a shared cache's fallback with on_error="local".
    fork_while_a_miss_is_in_flight(ml.Cache(ttl=30.0))
