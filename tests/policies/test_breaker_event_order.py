"""A breaker's state-change events reach every hook in the order the transitions
happened, whichever threads made them: a hook (a log, the audit log, the dashboard)
that saw ``open`` then ``closed`` shows the state the breaker is in."""

from __future__ import annotations

import contextlib
import threading

import pytest
from _breaker_events import Seen, in_threads
from _forked import in_child

import meshlite as ml
from meshlite._events import CircuitStateChanged, Event
from meshlite.state import MemoryStore
from meshlite.testing import FakeClock

ROUNDS = 300
THREADS = 4


def boom() -> None:
    raise ConnectionError("down")


@pytest.mark.usefixtures("frequent_thread_switches")
def test_manual_controls_from_many_threads_reach_hooks_in_order() -> None:
    breaker = ml.CircuitBreaker(name="users")
    seen = Seen()
    breaker.add_hook(seen)

    in_threads(*[breaker.force_open, breaker.reset, breaker.disable] * 2, rounds=ROUNDS)

    seen.check(breaker.state)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_calls_opening_and_resets_closing_reach_hooks_in_order(clock: FakeClock) -> None:
    # One failed call opens it (window of 1), another thread's reset closes it.
    breaker = ml.CircuitBreaker(failure_rate=1.0, window=1, min_calls=1, name="users",
                                clock=clock)
    pipeline = ml.Pipeline(breaker)
    seen = Seen()
    breaker.add_hook(seen)

    def fail() -> None:
        with contextlib.suppress(ConnectionError, ml.CircuitOpenError):
            pipeline.call(boom)

    in_threads(*[fail, breaker.reset] * (THREADS // 2), rounds=5 * ROUNDS)

    seen.check(breaker.state)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_breakers_sharing_a_memory_store_keep_the_order_of_their_circuit() -> None:
    store = MemoryStore()
    one = ml.CircuitBreaker(name="users", store=store)
    two = ml.CircuitBreaker(name="users", store=store)
    seen = Seen()
    one.add_hook(seen)
    two.add_hook(seen)

    in_threads(one.force_open, two.reset, one.reset, two.force_open, rounds=ROUNDS)

    seen.check(one.state)


def test_a_hook_calling_back_into_the_breaker_sees_its_own_change_next() -> None:
    # The hook resets the breaker it hears opening: no deadlock, and the reset's
    # event comes after the opening's, to every hook.
    breaker = ml.CircuitBreaker(name="users")
    first, last = Seen(), Seen()

    def reset_when_forced(event: Event) -> None:
        first(event)
        if isinstance(event, CircuitStateChanged) and event.state == "forced_open":
            assert breaker.state == "forced_open"
            breaker.reset()

    breaker.add_hook(reset_when_forced)
    breaker.add_hook(last)

    breaker.force_open()

    assert [(e.previous, e.state) for e in first.changes] == [
        ("closed", "forced_open"), ("forced_open", "closed")]
    assert [(e.previous, e.state) for e in last.changes] == [
        ("closed", "forced_open"), ("forced_open", "closed")]
    assert breaker.state == "closed"


def test_a_child_forked_while_a_parent_thread_delivers_gets_its_own_events() -> None:
    # A parent's thread is in a hook when the fork comes: in the child, where that
    # delivery never ends, the child's own changes still reach the hooks.
    breaker = ml.CircuitBreaker(name="users")
    inside, leave = threading.Event(), threading.Event()
    blocking = [True]
    seen: list[str] = []

    def hook(event: Event) -> None:
        if isinstance(event, CircuitStateChanged):
            seen.append(event.state)
            if blocking[0]:
                inside.set()
                leave.wait(30)

    breaker.add_hook(hook)
    delivering = threading.Thread(target=breaker.force_open)
    delivering.start()
    assert inside.wait(30)

    def child() -> int:
        blocking[0] = False
        seen.clear()
        breaker.reset()
        breaker.disable()
        return 1 if seen == ["closed", "disabled"] else 0

    try:
        assert in_child(child) == 1
    finally:
        leave.set()
        delivering.join(30)
    assert seen == ["forced_open"]
