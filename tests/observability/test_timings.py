"""Timings: a call series recorded without a lock. A call takes a token from the
gate when it starts and appends its latency when it ends; the gate counts calls in
flight, bounds what waits to be counted, and refuses calls while it is closed."""

from __future__ import annotations

import threading
import time

from meshlite._histogram import FOLD_AT
from meshlite.observability._metrics import Timings

BOUNDS = (0.01, 0.1, 1.0)


def start(t: Timings) -> bool:
    """What a recorder does when a call starts: False when refused."""
    try:
        t.gate.pop()
    except IndexError:
        return t.reopen()
    return True


def test_calls_in_flight_are_tokens_taken_less_calls_finished() -> None:
    t = Timings((("service", "s"),), BOUNDS)
    for _ in range(3):
        assert start(t)
    assert t.in_flight == 3
    t.pending.append(0.05)
    t.error(0.5, ConnectionError("down"))
    reading = t.read_all()
    assert (reading.in_flight, reading.count, reading.errors) == (1, 2, {"ConnectionError": 1})
    assert reading.buckets == (0, 1, 1, 0)
    t.pending.append(2.0)
    assert t.in_flight == 0


def test_the_call_that_finds_the_gate_empty_counts_the_batch() -> None:
    t = Timings((), BOUNDS)
    for _ in range(FOLD_AT):
        assert start(t)
        t.pending.append(0.001)
    assert t.gate == []
    assert len(t.pending) == FOLD_AT
    assert start(t)  # the gate was empty: counted what was pending, refilled
    assert t.pending == []
    assert len(t.gate) == FOLD_AT - 1
    assert t.in_flight == 1
    t.pending.append(0.001)
    assert t.read_all().buckets == (FOLD_AT + 1, 0, 0, 0)


def test_a_closed_gate_refuses_calls_and_keeps_counting_those_running() -> None:
    t = Timings((), BOUNDS)
    assert start(t)
    assert start(t)
    t.close_gate()
    assert not start(t)
    assert t.in_flight == 2  # the refused call was never counted
    t.pending.append(0.001)
    t.pending.append(0.001)
    assert t.in_flight == 0
    t.open_gate()
    assert start(t)
    assert t.in_flight == 1


def test_threads_and_a_gate_closed_and_opened_meanwhile_lose_no_count() -> None:
    t = Timings((), BOUNDS)
    admitted, refused = [0] * 4, [0] * 4
    done = threading.Event()
    seen: list[int] = []

    def caller(i: int) -> None:
        # Until this thread has both got through and been refused (the flipper
        # yields while the gate is closed and waits while it is open).
        for attempt in range(1_000_000):
            if attempt >= 2_000 and admitted[i] and refused[i]:
                return
            if start(t):
                admitted[i] += 1
                t.pending.append(0.001)
            else:
                refused[i] += 1

    def flipper() -> None:
        while not done.is_set():
            t.close_gate()
            seen.append(t.in_flight)
            time.sleep(0)  # let callers find it closed
            t.open_gate()
            done.wait(0.0002)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    flip = threading.Thread(target=flipper)
    flip.start()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    done.set()
    flip.join()
    reading = t.read_all()
    assert reading.in_flight == 0
    assert reading.count == sum(admitted)
    assert all(admitted), admitted
    assert all(refused), refused
    assert min(seen, default=0) >= 0
    assert max(seen, default=0) <= 4


def test_a_call_abandoned_while_the_gate_is_closed_leaves_it_closed() -> None:
    t = Timings((), BOUNDS)
    assert start(t)
    t.close_gate()
    t.abandoned()  # its clock raised: it never ran
    assert t.in_flight == 0
    assert t.gate == []
    assert not start(t)  # no token came back to let a call through
