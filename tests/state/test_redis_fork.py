"""A process forked while a RedisStore's policies are in use (a pre-fork server, or
``multiprocessing`` with the fork start method): the child owns nothing that only
the parent's threads can finish."""

from __future__ import annotations

import os
import threading

import meshlite as ml
from meshlite.state import RedisStore


def test_a_cache_miss_in_flight_at_fork_does_not_hold_up_the_child(store: RedisStore) -> None:
    release = threading.Event()
    entered = threading.Event()

    @ml.Cache(ttl=30.0, store=store)
    def slow(x: int) -> int:
        entered.set()
        release.wait(5.0)
        return x * 2

    leader = threading.Thread(target=slow, args=(21,))
    leader.start()
    assert entered.wait(5.0)  # the parent's flight of slow(21) is running
    pid = os.fork()
    if pid == 0:  # the leading thread does not exist here: nothing would land
        release.set()  # the child's own call of slow() returns at once
        answer: list[int] = []
        caller = threading.Thread(target=lambda: answer.append(slow(21)), daemon=True)
        caller.start()
        caller.join(3.0)
        os._exit(0 if answer == [42] else 1)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        leader.join()
    assert os.waitstatus_to_exitcode(status) == 0
    assert slow(21) == 42


def test_an_in_memory_miss_in_flight_at_fork_does_not_hold_up_the_child() -> None:
    # The in-memory cache: the default, and a shared cache's fallback with on_error="local".
    release = threading.Event()
    entered = threading.Event()

    @ml.Cache(ttl=30.0)
    def slow(x: int) -> int:
        entered.set()
        release.wait(5.0)
        return x * 2

    leader = threading.Thread(target=slow, args=(21,))
    leader.start()
    assert entered.wait(5.0)
    pid = os.fork()
    if pid == 0:
        release.set()
        answer: list[int] = []
        caller = threading.Thread(target=lambda: answer.append(slow(21)), daemon=True)
        caller.start()
        caller.join(3.0)
        os._exit(0 if answer == [42] else 1)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        leader.join()
    assert os.waitstatus_to_exitcode(status) == 0
