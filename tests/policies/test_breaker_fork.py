"""A circuit breaker half-open at a fork, its trial calls running in the parent's
threads: the child's breaker starts its round of trials over. Those trials never end
in the child, and their slots stayed taken: the child refused every call for good."""

from __future__ import annotations

import os
import threading

import pytest
from _forked import in_child

import meshlite as ml
from meshlite.testing import FakeClock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")


def test_trials_in_flight_at_the_fork_do_not_shut_the_child_out() -> None:
    clock = FakeClock()
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=4, min_calls=2, open_seconds=10.0,
                                half_open_calls=1, clock=clock)
    entered, release = threading.Event(), threading.Event()

    @breaker
    def work(mode: str) -> int:
        if mode == "fail":
            raise ValueError(mode)
        if mode == "wait":
            entered.set()
            release.wait(10.0)
        return 1

    for _ in range(2):
        with pytest.raises(ValueError, match="fail"):
            work("fail")
    clock.advance(11.0)  # half-open: one trial call
    trial = threading.Thread(target=work, args=("wait",))
    trial.start()
    assert entered.wait(5.0)  # the parent's trial runs
    with pytest.raises(ml.CircuitOpenError):
        work("ok")  # the only trial slot is taken in the parent

    def child() -> int:
        first = work("ok")  # the child's own trial: it closes the child's circuit
        return first + work("ok")

    try:
        assert in_child(child) == 2
    finally:
        release.set()
        trial.join()
    assert work("ok") == 1  # the parent's trial closed the parent's circuit
