from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from typing import Any

import pybreaker
import pytest

import meshlite as ml
from meshlite._events import (
    CallRejected,
    CircuitClosed,
    CircuitHalfOpened,
    CircuitOpened,
    CircuitStateChanged,
)
from meshlite.testing import FakeClock


def ok() -> str:
    return "ok"


def boom() -> str:
    raise ConnectionError("down")


async def aok() -> str:
    return "ok"


async def aboom() -> str:
    raise ConnectionError("down")


def make(clock: FakeClock, **kwargs: Any) -> tuple[ml.CircuitBreaker, ml.Pipeline]:
    options: dict[str, Any] = {"failure_rate": 0.5, "window": 4, "min_calls": 4,
                               "open_seconds": 30.0, "half_open_calls": 2}
    options.update(kwargs)
    breaker = ml.CircuitBreaker(clock=clock, **options)
    return breaker, ml.Pipeline(breaker, service="users")


def run(pipeline: ml.Pipeline, *outcomes: str) -> None:
    """Make one call per outcome: "s" succeeds, "f" fails."""
    for outcome in outcomes:
        if outcome == "s":
            assert pipeline.call(ok) == "ok"
        else:
            with pytest.raises(ConnectionError):
                pipeline.call(boom)


def rejection(pipeline: ml.Pipeline) -> ml.CircuitOpenError:
    calls: list[int] = []
    with pytest.raises(ml.CircuitOpenError) as info:
        pipeline.call(lambda: calls.append(1))
    assert calls == []  # rejected calls never run
    return info.value


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# -- closed -> open ---------------------------------------------------------------


def test_stays_closed_below_min_calls(clock: FakeClock) -> None:
    breaker, p = make(clock)
    run(p, "f", "f", "f")
    assert breaker.state == "closed"
    run(p, "f")
    assert breaker.state == "open"


@pytest.mark.parametrize(("outcomes", "state"), [
    ("fsss", "closed"), ("ffss", "open"), ("sffs", "open"), ("fffs", "open"),
])
def test_opens_when_failure_rate_reaches_threshold(
    clock: FakeClock, outcomes: str, state: str
) -> None:
    breaker, p = make(clock)
    run(p, *outcomes)
    assert breaker.state == state


def test_threshold_compares_rates_exactly(clock: FakeClock) -> None:
    # 3 / 30 >= 0.1 although 0.1 * 30 > 3 in floating point.
    breaker, p = make(clock, failure_rate=0.1, window=30, min_calls=30)
    run(p, *("f" * 3 + "s" * 27))
    assert breaker.state == "open"


def test_count_window_slides(clock: FakeClock) -> None:
    breaker, p = make(clock)
    run(p, *"fsssss")  # the failure has left the window
    assert breaker.metrics().failures == 0
    run(p, "f")
    assert breaker.state == "closed"
    run(p, "f")  # window s s f f: 2 of 4
    assert breaker.state == "open"
    assert breaker.metrics().calls == 4


def test_min_calls_capped_at_count_window(clock: FakeClock) -> None:
    breaker = ml.CircuitBreaker(window=3, clock=clock)  # min_calls defaults to 20
    run(ml.Pipeline(breaker), "f", "f", "f")
    assert breaker.state == "open"


# -- open -------------------------------------------------------------------------


def test_open_rejects_with_message_and_retry_after(clock: FakeClock) -> None:
    breaker, p = make(clock, window=20, min_calls=20)
    run(p, *("s" * 8 + "f" * 11))
    assert breaker.state == "closed"
    run(p, "f")
    assert breaker.state == "open"
    clock.advance(1.9)
    error = rejection(p)
    assert str(error) == "circuit 'users' is open after 12 of 20 calls failed; retry in 28.1 s"
    assert error.retry_after == pytest.approx(28.1)
    assert (error.service, error.policy) == ("users", "circuit_breaker")
    assert isinstance(error, ml.RejectedError)


def test_name_defaults_to_service_then_operation(clock: FakeClock) -> None:
    named = ml.CircuitBreaker(window=1, name="db", clock=clock)
    run(ml.Pipeline(named, service="users"), "f")
    assert "circuit 'db' is open" in str(rejection(ml.Pipeline(named, service="users")))
    anonymous = ml.CircuitBreaker(window=1, clock=clock)
    run(ml.Pipeline(anonymous), "f")
    with pytest.raises(ml.CircuitOpenError, match="circuit 'ok' is open"):
        ml.Pipeline(anonymous).call(ok)
    assert anonymous.name == "ok"


def test_half_open_after_open_seconds(clock: FakeClock) -> None:
    breaker, p = make(clock)
    run(p, *"ffff")
    clock.advance(29.99)
    assert breaker.state == "open"
    assert breaker.metrics().retry_after == pytest.approx(0.01)
    clock.advance(0.01)
    assert breaker.state == "half_open"
    assert breaker.metrics().opened_at == 0.0


# -- half-open --------------------------------------------------------------------


@pytest.mark.parametrize(("failure_rate", "trials", "state"), [
    (0.5, "ss", "closed"), (0.5, "sf", "open"), (0.5, "fs", "open"), (0.75, "sf", "closed"),
    (1.0, "fs", "closed"), (1.0, "ff", "open"),
])
def test_trials_decide_once_all_completed(
    clock: FakeClock, failure_rate: float, trials: str, state: str
) -> None:
    breaker, p = make(clock, failure_rate=failure_rate, min_calls=2, window=2)
    run(p, "f", "f")
    clock.advance(30.0)
    run(p, trials[0])
    assert breaker.state == "half_open"  # one trial is not enough to decide
    run(p, trials[1])
    assert breaker.state == state


def test_closing_empties_the_window(clock: FakeClock) -> None:
    breaker, p = make(clock)
    run(p, *"ffff")
    clock.advance(30.0)
    run(p, "s", "s")
    assert breaker.state == "closed"
    assert breaker.metrics().calls == 0
    run(p, "f", "f", "f")  # a stale window would reopen here
    assert breaker.state == "closed"


def test_failed_trials_reopen_for_a_full_period(clock: FakeClock) -> None:
    breaker, p = make(clock)
    run(p, *"ffff")
    clock.advance(30.0)
    run(p, "f", "s")
    assert breaker.state == "open"
    error = rejection(p)
    assert str(error) == ("circuit 'users' is open after 1 of 2 trial calls failed; "
                          "retry in 30.0 s")
    assert breaker.metrics().opened_at == 30.0


async def test_half_open_admits_exactly_half_open_calls(clock: FakeClock) -> None:
    breaker, p = make(clock, half_open_calls=3)
    run(p, *"ffff")
    clock.advance(30.0)
    gate = asyncio.Event()
    running = 0

    async def trial() -> str:
        nonlocal running
        running += 1
        await gate.wait()
        return "ok"

    tasks = [asyncio.create_task(p.acall(trial)) for _ in range(3)]
    await settle()
    assert running == 3
    with pytest.raises(ml.CircuitOpenError) as info:
        await p.acall(trial)
    assert str(info.value) == ("circuit 'users' is half-open and all 3 trial calls are "
                               "taken; retry once they have finished")
    assert info.value.retry_after is None
    assert breaker.metrics().trial_calls == 3
    gate.set()
    assert await asyncio.gather(*tasks) == ["ok"] * 3
    assert breaker.state == "closed"
    assert running == 3


# -- slow calls -------------------------------------------------------------------


def slow_call(clock: FakeClock, seconds: float, fail: bool = False) -> Any:
    def call() -> str:
        clock.advance(seconds)
        if fail:
            raise ConnectionError("slow and down")
        return "ok"

    return call


def test_slow_calls_open(clock: FakeClock) -> None:
    breaker, p = make(clock, slow_call_seconds=1.0, slow_call_rate=0.5)
    p.call(slow_call(clock, 0.99))
    p.call(ok)
    p.call(slow_call(clock, 1.0))
    assert breaker.metrics().slow_calls == 1
    p.call(slow_call(clock, 5.0))
    assert breaker.state == "open"
    assert str(rejection(p)).startswith(
        "circuit 'users' is open after 2 of 4 calls were slow (>= 1 s); retry in")


def test_slow_calls_ignored_without_slow_call_seconds(clock: FakeClock) -> None:
    breaker, p = make(clock, slow_call_rate=0.5)
    for _ in range(4):
        p.call(slow_call(clock, 100.0))
    assert breaker.state == "closed"
    assert breaker.metrics().slow_calls == 0


def test_slow_failures_count_twice(clock: FakeClock) -> None:
    breaker, p = make(clock, slow_call_seconds=1.0, failure_rate=1.0, slow_call_rate=1.0)
    with pytest.raises(ConnectionError):
        p.call(slow_call(clock, 2.0, fail=True))
    m = breaker.metrics()
    assert (m.calls, m.failures, m.slow_calls) == (1, 1, 1)


def test_slow_trials_reopen(clock: FakeClock) -> None:
    breaker, p = make(clock, slow_call_seconds=1.0, slow_call_rate=0.5)
    run(p, *"ffff")
    clock.advance(30.0)
    p.call(slow_call(clock, 2.0))
    p.call(ok)
    assert breaker.state == "open"
    assert "1 of 2 trial calls were slow (>= 1 s)" in str(rejection(p))


async def test_async_slow_calls_open(clock: FakeClock) -> None:
    breaker, p = make(clock, slow_call_seconds=1.0, slow_call_rate=1.0, window=2,
                      min_calls=2)

    async def slow() -> str:
        await clock.asleep(3.0)
        return "ok"

    await p.acall(slow)
    await p.acall(slow)
    assert breaker.state == "open"


# -- time window ------------------------------------------------------------------


def test_time_window_forgets_old_outcomes(clock: FakeClock) -> None:
    breaker, p = make(clock, window=10, window_type="time", min_calls=3)
    run(p, "f", "f")
    clock.advance(9.0)
    assert breaker.metrics().calls == 2
    clock.advance(1.0)
    assert breaker.metrics().calls == 0
    run(p, "f")
    assert breaker.state == "closed"
    run(p, "f", "f")
    assert breaker.state == "open"


def test_time_window_keeps_recent_outcomes(clock: FakeClock) -> None:
    breaker, p = make(clock, window=10, window_type="time", min_calls=3)
    run(p, "f")
    clock.advance(4.0)
    run(p, "f")
    clock.advance(4.0)
    run(p, "s")
    assert breaker.state == "open"  # 2 of 3 within the last 10 s
    assert breaker.metrics().failure_rate == pytest.approx(2 / 3)


def test_time_window_slides_per_bucket(clock: FakeClock) -> None:
    breaker, p = make(clock, window=3, window_type="time", min_calls=100)
    for _ in range(6):
        run(p, "f", "s")
        clock.advance(1.0)
    m = breaker.metrics()
    assert (m.calls, m.failures) == (4, 2)  # the buckets of the last 2 s of 3
    clock.advance(1000.0)
    assert breaker.metrics().calls == 0


def test_fractional_time_window(clock: FakeClock) -> None:
    breaker, p = make(clock, window=0.5, window_type="time", min_calls=2)
    run(p, "f")
    clock.advance(0.5)
    run(p, "f")
    assert breaker.state == "closed"
    run(p, "f")
    assert breaker.state == "open"


# -- what counts as a failure -----------------------------------------------------


@pytest.mark.parametrize("failure_on", [ConnectionError, (ConnectionError, TimeoutError),
                                        lambda e: isinstance(e, ConnectionError)])
def test_failure_on_other_errors_count_as_successes(
    clock: FakeClock, failure_on: Any
) -> None:
    breaker, p = make(clock, failure_on=failure_on)

    def invalid() -> None:
        raise ValueError("bad request")

    for _ in range(4):
        with pytest.raises(ValueError, match="bad request"):
            p.call(invalid)
    m = breaker.metrics()
    assert (m.calls, m.failures, breaker.state) == (4, 0, "closed")
    run(p, "f", "f")
    assert breaker.state == "open"


def test_inner_rejections_are_not_failures(clock: FakeClock) -> None:
    breaker, p = make(clock)

    def full() -> None:
        raise ml.BulkheadFullError("full", service="users", policy="bulkhead")

    for _ in range(8):
        with pytest.raises(ml.BulkheadFullError):
            p.call(full)
    assert breaker.metrics().calls == 0
    assert breaker.state == "closed"


def test_inner_rejection_frees_the_trial_slot(clock: FakeClock) -> None:
    breaker, p = make(clock, half_open_calls=1)
    run(p, *"ffff")
    clock.advance(30.0)

    def limited() -> None:
        raise ml.RateLimitedError("slow down", retry_after=1.0)

    with pytest.raises(ml.RateLimitedError):
        p.call(limited)
    assert breaker.state == "half_open"
    run(p, "s")  # admitted: the rejected trial gave its slot back
    assert breaker.state == "closed"


def test_keyboard_interrupt_propagates_and_frees_the_trial(clock: FakeClock) -> None:
    breaker, p = make(clock, half_open_calls=1)
    run(p, *"ffff")
    clock.advance(30.0)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        p.call(interrupted)
    assert breaker.state == "half_open"
    run(p, "s")
    assert breaker.state == "closed"


async def test_cancellation_frees_the_trial(clock: FakeClock) -> None:
    breaker, p = make(clock, half_open_calls=1)
    run(p, *"ffff")
    clock.advance(30.0)
    never = asyncio.Event()

    async def hang() -> None:
        await never.wait()

    task = asyncio.create_task(p.acall(hang))
    await settle()
    with pytest.raises(ml.CircuitOpenError):
        await p.acall(aok)  # the one trial slot is taken
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.metrics().trial_calls == 0
    assert await p.acall(aok) == "ok"
    assert breaker.state == "closed"


async def test_cancellation_is_not_recorded_when_closed(clock: FakeClock) -> None:
    breaker, p = make(clock)
    task = asyncio.create_task(p.acall(asyncio.sleep, 10))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.metrics().calls == 0


async def hang() -> None:
    await asyncio.Event().wait()


async def test_calls_an_outer_timeout_cuts_are_failures() -> None:
    # The recommended order puts Timeout outside the breaker: a service that hangs
    # must open the circuit, not leave every later call waiting out the timeout.
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=4, min_calls=4, open_seconds=30.0)
    p = ml.Pipeline(ml.Timeout(0.02), ml.Retry(attempts=1), breaker, service="users")
    for _ in range(4):
        with pytest.raises(ml.TimeoutExceeded):
            await p.acall(hang)
    m = breaker.metrics()
    assert (breaker.state, m.failures, m.reason) == ("open", 4, "4 of 4 calls failed")
    with pytest.raises(ml.CircuitOpenError):
        await p.acall(aok)


async def test_deadline_cuts_follow_failure_on_and_feed_slow_call_detection() -> None:
    only_refused = ml.CircuitBreaker(window=2, min_calls=2, failure_on=ConnectionRefusedError)
    p = ml.Pipeline(ml.Timeout(0.02), only_refused)
    for _ in range(2):
        with pytest.raises(ml.TimeoutExceeded):
            await p.acall(hang)
    assert (only_refused.state, only_refused.metrics().failures) == ("closed", 0)
    timeouts = ml.CircuitBreaker(window=2, min_calls=2, failure_on=TimeoutError,
                                 slow_call_seconds=0.01)
    p = ml.Pipeline(ml.Timeout(0.02), timeouts)
    for _ in range(2):
        with pytest.raises(ml.TimeoutExceeded):
            await p.acall(hang)
    m = timeouts.metrics()
    assert (timeouts.state, m.failures, m.slow_calls) == ("open", 2, 2)


async def test_a_cut_by_the_callers_deadline_records_nothing() -> None:
    # The caller's time (an inbound request's budget, chosen by a client) ran out
    # before the service's own Timeout: no evidence against the service, and a client
    # asking for too little time must not open the circuit for every caller.
    breaker = ml.CircuitBreaker(window=2, min_calls=2, open_seconds=30.0)
    inner = ml.Pipeline(ml.Timeout(5.0), breaker, service="users")
    caller = ml.Pipeline(ml.Timeout(0.02))
    for _ in range(3):
        with pytest.raises(ml.TimeoutExceeded):
            await caller.acall(inner.acall, hang)
    assert (breaker.state, breaker.metrics().calls) == ("closed", 0)
    own = ml.Pipeline(ml.Timeout(0.02), breaker, service="users")  # the service's own
    for _ in range(2):
        with pytest.raises(ml.TimeoutExceeded):
            await ml.Pipeline(ml.Timeout(5.0)).acall(own.acall, hang)
    assert breaker.state == "open"


async def test_a_trial_cut_by_the_deadline_reopens_the_circuit(clock: FakeClock) -> None:
    breaker, _ = make(clock, half_open_calls=1)
    p = ml.Pipeline(ml.Timeout(0.02), breaker)
    for _ in range(4):
        with pytest.raises(ConnectionError):
            await p.acall(aboom)
    clock.advance(30.0)
    assert breaker.state == "half_open"
    with pytest.raises(ml.TimeoutExceeded):
        await p.acall(hang)
    assert breaker.state == "open"
    assert breaker.metrics().trial_calls == 0


async def test_stale_outcomes_are_dropped(clock: FakeClock) -> None:
    breaker, p = make(clock)
    gate = asyncio.Event()

    async def late() -> None:
        await gate.wait()
        raise ConnectionError("late")

    task = asyncio.create_task(p.acall(late))  # admitted while closed
    await settle()
    breaker.force_open()
    breaker.reset()
    gate.set()
    with pytest.raises(ConnectionError):
        await task
    assert breaker.metrics().calls == 0  # it belonged to the window before reset()


# -- async ------------------------------------------------------------------------


async def test_async_open_and_close(clock: FakeClock) -> None:
    breaker, p = make(clock)
    assert await p.acall(aok) == "ok"
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await p.acall(aboom)
    with pytest.raises(ml.CircuitOpenError, match="after 3 of 4 calls failed"):
        await p.acall(aok)
    clock.advance(30.0)
    assert [await p.acall(aok), await p.acall(aok)] == ["ok", "ok"]
    assert breaker.state == "closed"


def test_decorator_form(clock: FakeClock) -> None:
    breaker = ml.CircuitBreaker(window=1, clock=clock)
    guarded = breaker(boom)
    with pytest.raises(ConnectionError):
        guarded()
    with pytest.raises(ml.CircuitOpenError, match="circuit 'boom' is open"):
        guarded()


# -- manual control ---------------------------------------------------------------


def test_force_open_rejects_until_reset(clock: FakeClock) -> None:
    breaker, p = make(clock)
    breaker.force_open()
    assert breaker.state == "forced_open"
    clock.advance(1000.0)
    error = rejection(p)
    assert str(error) == ("circuit 'users' is forced open; calls are rejected until "
                          "reset() is called")
    assert error.retry_after is None
    breaker.reset()
    assert breaker.state == "closed"
    run(p, "s")


def test_reset_closes_with_an_empty_window(clock: FakeClock) -> None:
    breaker, p = make(clock)
    run(p, *"ffff")
    breaker.reset()
    assert breaker.state == "closed"
    m = breaker.metrics()
    assert (m.calls, m.opened_at, m.reason) == (0, None, "")
    run(p, "f", "f", "f")
    assert breaker.state == "closed"


def test_disable_admits_everything_and_records_nothing(clock: FakeClock) -> None:
    breaker, p = make(clock)
    run(p, *"ff")
    breaker.disable()
    assert breaker.state == "disabled"
    run(p, *("f" * 10))
    assert breaker.state == "disabled"
    assert breaker.metrics().calls == 0
    breaker.reset()
    run(p, *"ffff")
    assert breaker.state == "open"


def test_force_open_from_disabled_and_half_open(clock: FakeClock) -> None:
    breaker, p = make(clock)
    breaker.disable()
    breaker.force_open()
    assert breaker.state == "forced_open"
    breaker.reset()
    run(p, *"ffff")
    clock.advance(30.0)
    run(p, "s")
    breaker.force_open()
    run_trial_after_force = rejection(p)
    assert "forced open" in str(run_trial_after_force)


# -- events -----------------------------------------------------------------------


def test_events_follow_the_state_machine(clock: FakeClock) -> None:
    events: list[ml.Event] = []
    breaker, p = make(clock)
    breaker.add_hook(events.append)
    run(p, *"sfff")
    rejection(p)
    clock.advance(30.0)
    run(p, "s", "s")
    assert [type(e) for e in events] == [CircuitOpened, CallRejected, CircuitHalfOpened,
                                         CircuitClosed]
    opened, rejected, half, closed = events
    assert isinstance(opened, CircuitOpened)
    assert (opened.name, opened.previous, opened.state, opened.reason, opened.open_seconds,
            opened.service, opened.policy) == ("users", "closed", "open",
                                               "3 of 4 calls failed", 30.0, "users",
                                               "circuit_breaker")
    assert isinstance(rejected, CallRejected)
    assert (rejected.reason, rejected.retry_after) == ("circuit_open", 30.0)
    assert isinstance(half, CircuitHalfOpened)
    assert (half.previous, half.state) == ("open", "half_open")
    assert isinstance(closed, CircuitClosed)
    assert (closed.previous, closed.state, closed.reason) == (
        "half_open", "closed", "2 of 2 trial calls succeeded")


def test_manual_control_events(clock: FakeClock) -> None:
    events: list[ml.Event] = []
    breaker = ml.CircuitBreaker(name="db", clock=clock)
    breaker.add_hook(events.append)
    breaker.force_open()
    breaker.force_open()  # no change, no event
    breaker.disable()
    breaker.reset()
    breaker.reset()
    summary = [(type(e), e.previous, e.state, e.name) for e in events
               if isinstance(e, CircuitStateChanged)]
    assert summary == [
        (CircuitStateChanged, "closed", "forced_open", "db"),
        (CircuitStateChanged, "forced_open", "disabled", "db"),
        (CircuitClosed, "disabled", "closed", "db"),
    ]
    assert len(events) == 3


def test_no_events_built_without_hooks(clock: FakeClock) -> None:
    breaker, p = make(clock)
    assert not breaker.hooks.active
    run(p, *"ffff")
    rejection(p)
    assert breaker.state == "open"


# -- concurrency ------------------------------------------------------------------


def test_threads_never_lose_counts() -> None:
    breaker = ml.CircuitBreaker(window=1_000_000, min_calls=1_000_000)
    p = ml.Pipeline(breaker)
    per_thread, threads_n = 2_000, 8
    start = threading.Barrier(threads_n)

    def worker() -> None:
        start.wait()
        for i in range(per_thread):
            if i % 4 == 0:
                with pytest.raises(ConnectionError):
                    p.call(boom)
            else:
                p.call(ok)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m = breaker.metrics()
    assert m.calls == per_thread * threads_n
    assert m.failures == per_thread * threads_n // 4


async def test_half_open_never_exceeds_trial_limit_under_tasks(clock: FakeClock) -> None:
    limit = 3
    breaker, p = make(clock, half_open_calls=limit, window=4, min_calls=2, open_seconds=1.0)
    rng = random.Random(7)
    trials_running = peak = half_opens = 0

    async def call() -> str:
        nonlocal trials_running, peak
        # No await between admission and here: the state now is the admitting state.
        trial = breaker.state == "half_open"
        trials_running += trial
        peak = max(peak, trials_running)
        try:
            for _ in range(rng.randrange(6)):
                await asyncio.sleep(0)
            if rng.random() < 0.4:
                raise ConnectionError("flaky")
            return "ok"
        finally:
            trials_running -= trial

    async def client() -> None:
        for _ in range(60):
            with contextlib.suppress(ConnectionError, ml.CircuitOpenError):
                await p.acall(call)
            await asyncio.sleep(0)

    def count(event: ml.Event) -> None:
        nonlocal half_opens
        half_opens += isinstance(event, CircuitHalfOpened)

    breaker.add_hook(count)
    clients = asyncio.gather(*(client() for _ in range(20)))
    while not clients.done():
        clock.advance(0.25)
        await asyncio.sleep(0)
    await clients
    assert half_opens >= 5
    assert peak == limit


# -- pybreaker --------------------------------------------------------------------


def test_from_pybreaker_maps_options(clock: FakeClock) -> None:
    pb = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=10, name="pb")
    breaker = ml.CircuitBreaker.from_pybreaker(pb, clock=clock)
    o = breaker.options
    assert (o.window, o.window_type, o.min_calls, o.failure_rate, o.open_seconds,
            o.half_open_calls, o.name) == (3, "count", 3, 1.0, 10, 1, "pb")
    assert breaker.state == "closed"


def test_from_pybreaker_opens_after_fail_max_consecutive_failures(clock: FakeClock) -> None:
    pb = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=10, name="pb")
    breaker = ml.CircuitBreaker.from_pybreaker(pb, clock=clock)
    p = ml.Pipeline(breaker)
    run(p, *"ffsff")
    assert breaker.state == "closed"
    run(p, "f")
    assert breaker.state == "open"
    with pytest.raises(ml.CircuitOpenError, match="circuit 'pb' is open"):
        p.call(ok)
    clock.advance(10.0)
    run(p, "f")  # the single trial fails
    assert breaker.state == "open"
    clock.advance(10.0)
    run(p, "s")
    assert breaker.state == "closed"


def test_from_pybreaker_carries_the_current_failure_count(clock: FakeClock) -> None:
    pb = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=10, name="pb")

    def boom() -> None:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            pb.call(boom)
    assert (pb.fail_counter, pb.current_state) == (2, "closed")
    breaker = ml.CircuitBreaker.from_pybreaker(pb, clock=clock)
    assert breaker.state == "closed"
    assert breaker.metrics().failures == 2
    run(ml.Pipeline(breaker), "f")  # pybreaker would open on its next failure: so do we
    assert breaker.state == "open"


def test_from_pybreaker_ignores_excluded_exceptions(clock: FakeClock) -> None:
    exclude: list[Any] = [KeyError, lambda e: isinstance(e, ValueError)]
    pb = pybreaker.CircuitBreaker(fail_max=2, exclude=exclude)
    breaker = ml.CircuitBreaker.from_pybreaker(pb, clock=clock)
    p = ml.Pipeline(breaker)

    def raise_(error: Exception) -> None:
        raise error

    for error in (KeyError("k"), ValueError("v"), KeyError("k")):
        with pytest.raises(type(error)):
            p.call(raise_, error)
    run(p, "f")
    with pytest.raises(ValueError, match="v"):
        p.call(raise_, ValueError("v"))  # breaks the run of failures, as in pybreaker
    run(p, "f")
    assert breaker.state == "closed"
    run(p, "f")
    assert breaker.state == "open"


def test_from_pybreaker_starts_open_when_open(clock: FakeClock) -> None:
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60)
    pb.open()
    breaker = ml.CircuitBreaker.from_pybreaker(pb, clock=clock)
    assert breaker.state == "open"
    retry_after = breaker.metrics().retry_after
    assert retry_after is not None
    assert 55.0 < retry_after <= 60.0
    clock.advance(60.0)
    assert breaker.state == "half_open"


def test_from_pybreaker_half_open(clock: FakeClock) -> None:
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60)
    pb.half_open()
    assert ml.CircuitBreaker.from_pybreaker(pb, clock=clock).state == "half_open"


def test_from_pybreaker_rejects_other_objects() -> None:
    with pytest.raises(ml.ConfigError, match="from_pybreaker: cb must be a pybreaker"):
        ml.CircuitBreaker.from_pybreaker(object())


# -- options ----------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"failure_rate": 0}, "failure_rate"), ({"failure_rate": 1.5}, "failure_rate"),
    ({"window": 0}, "window"), ({"window": 2.5}, "window"),
    ({"window": 0, "window_type": "time"}, "window"), ({"window_type": "calls"}, "window_type"),
    ({"min_calls": 0}, "min_calls"), ({"slow_call_seconds": 0}, "slow_call_seconds"),
    ({"slow_call_rate": 0}, "slow_call_rate"), ({"open_seconds": -1}, "open_seconds"),
    ({"half_open_calls": 0}, "half_open_calls"), ({"failure_on": 3}, "failure_on"),
    ({"name": ""}, "name"), ({"store": "redis://x"}, "store"),
    ({"window": 10**100}, "window"), ({"window": 10**100, "window_type": "time"}, "window"),
    ({"window": 1e308, "window_type": "time"}, "window"),
])
def test_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"^CircuitBreaker: {field} must be"):
        ml.CircuitBreaker(**kwargs)


def test_store_error_points_to_meshlite_state() -> None:
    with pytest.raises(ml.ConfigError, match=r"store must be None or a meshlite\.state store"):
        ml.CircuitBreaker(store=object())


def test_time_window_accepts_fractional_seconds_and_repr(clock: FakeClock) -> None:
    breaker = ml.CircuitBreaker(window=2.5, window_type="time", clock=clock)
    assert "state='closed'" in repr(breaker)
