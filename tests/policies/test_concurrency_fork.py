"""A bulkhead and an adaptive concurrency limit in a forked child (a prefork pool
forked while the parent's threads were in calls): the slots the parent's calls held
are not the child's. They were: the child started with them taken for good (its
calls never end there), and a limit reached at the fork refused every call of the
child."""

from __future__ import annotations

import os
import threading

import pytest
from _forked import in_child

import meshlite as ml

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")


def test_the_parents_calls_hold_no_slot_in_the_child() -> None:
    bulkhead = ml.Bulkhead(max_concurrent=1, max_queue=0)
    entered, release = threading.Event(), threading.Event()

    @bulkhead
    def work(wait: bool) -> int:
        if wait:
            entered.set()
            release.wait(10.0)
        return 1

    caller = threading.Thread(target=work, args=(True,))
    caller.start()
    assert entered.wait(5.0)  # the parent's only slot is taken
    try:
        assert in_child(lambda: work(False) + work(False) + bulkhead.running) == 2
    finally:
        release.set()
        caller.join()
    assert bulkhead.running == 0
    assert work(False) == 1


def test_the_parents_calls_are_not_in_flight_in_the_child() -> None:
    limit = ml.AdaptiveConcurrency(initial_limit=1, min_limit=1, max_limit=1)
    entered, release = threading.Event(), threading.Event()

    @limit
    def work(wait: bool) -> int:
        if wait:
            entered.set()
            release.wait(10.0)
        return 1

    caller = threading.Thread(target=work, args=(True,))
    caller.start()
    assert entered.wait(5.0)  # the parent's limit of one is reached
    try:
        assert in_child(lambda: work(False) + work(False)) == 2
    finally:
        release.set()
        caller.join()
    assert work(False) == 1
