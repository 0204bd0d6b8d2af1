"""The breaker driven by hypothesis against a small reference model of its states.

Calls run as real asyncio tasks on a private event loop, each waiting on a future
the machine resolves later, so several calls (and half-open trials) can be in
flight at once; sync calls go through the sync handler. The fake clock is moved
by the machine only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import meshlite as ml
from meshlite.testing import FakeClock

WINDOW, MIN_CALLS, FAILURE_RATE = 4, 3, 0.5
SLOW_SECONDS, SLOW_RATE = 5.0, 0.75
OPEN_SECONDS, TRIALS = 10.0, 2

OUTCOMES = ("success", "failure", "ignored", "inner_reject", "cancel")


@dataclass
class Model:
    """What the breaker should do, written for clarity rather than speed."""

    state: str = "closed"
    epoch: int = 0
    window: deque[tuple[bool, bool]] = field(default_factory=lambda: deque(maxlen=WINDOW))
    open_until: float = 0.0
    admitted: int = 0
    done: int = 0
    failed: int = 0
    slow: int = 0

    def view(self, now: float) -> str:
        if self.state == "open" and now >= self.open_until:
            return "half_open"
        return self.state

    def _enter(self, state: str) -> None:
        self.state = state
        self.epoch += 1

    def _open(self, now: float) -> None:
        self._enter("open")
        self.open_until = now + OPEN_SECONDS

    def _close(self) -> None:
        self._enter("closed")
        self.window.clear()

    def admit(self, now: float) -> tuple[str, int] | float | None:
        """``(kind, epoch)`` for an admitted call, else the rejection's retry_after."""
        if self.state in ("closed", "disabled"):
            return (self.state, self.epoch)
        if self.state == "open":
            if now < self.open_until:
                return self.open_until - now
            self._enter("half_open")
            self.admitted = self.done = self.failed = self.slow = 0
        if self.state == "half_open" and self.admitted < TRIALS:
            self.admitted += 1
            return ("trial", self.epoch)
        return None

    def finish(self, ticket: tuple[str, int], outcome: str, duration: float,
               now: float) -> None:
        kind, epoch = ticket
        if kind == "disabled" or epoch != self.epoch:
            return
        if outcome in ("cancel", "inner_reject"):
            self.admitted -= kind == "trial"
            return
        failed, slow = outcome == "failure", duration >= SLOW_SECONDS
        if kind == "closed":
            self.window.append((failed, slow))
            calls = len(self.window)
            failures = sum(f for f, _ in self.window)
            slows = sum(s for _, s in self.window)
            if calls >= MIN_CALLS and (failures / calls >= FAILURE_RATE
                                       or slows / calls >= SLOW_RATE):
                self._open(now)
            return
        self.done += 1
        self.failed += failed
        self.slow += slow
        if self.done == TRIALS:
            if self.failed / TRIALS >= FAILURE_RATE or self.slow / TRIALS >= SLOW_RATE:
                self._open(now)
            else:
                self._close()

    def force_open(self) -> None:
        self._enter("forced_open")

    def reset(self) -> None:
        self._close()

    def disable(self) -> None:
        self._enter("disabled")
        self.window.clear()


@dataclass
class Call:
    task: asyncio.Task[Any]
    future: asyncio.Future[str]
    ticket: tuple[str, int]
    started: float


def _raise_for(outcome: str) -> BaseException | None:
    if outcome == "failure":
        return ConnectionError("down")
    if outcome == "ignored":
        return ValueError("not a failure")
    if outcome == "inner_reject":
        return ml.BulkheadFullError("full")
    return None


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.breaker = ml.CircuitBreaker(
            failure_rate=FAILURE_RATE, window=WINDOW, min_calls=MIN_CALLS,
            slow_call_seconds=SLOW_SECONDS, slow_call_rate=SLOW_RATE,
            open_seconds=OPEN_SECONDS, half_open_calls=TRIALS,
            failure_on=ConnectionError, clock=self.clock)
        self.pipeline = ml.Pipeline(self.breaker, service="svc")
        self.model = Model()
        self.loop = asyncio.new_event_loop()
        self.inflight: list[Call] = []
        self.tasks: list[asyncio.Task[Any]] = []

    def _settle(self) -> None:
        for _ in range(4):
            self.loop.run_until_complete(asyncio.sleep(0))

    def _check_rejection(self, error: BaseException, expected: float | None) -> None:
        assert isinstance(error, ml.CircuitOpenError)
        if expected is None:
            assert error.retry_after is None
        else:
            assert error.retry_after == pytest.approx(expected)

    @rule(count=st.integers(1, 3))
    def start_calls(self, count: int) -> None:
        for _ in range(count):
            self._start_call()

    def _start_call(self) -> None:
        future: asyncio.Future[str] = self.loop.create_future()

        async def wait() -> str:
            return await future

        task = self.loop.create_task(self.pipeline.acall(wait))
        self.tasks.append(task)
        self._settle()
        expected = self.model.admit(self.clock.monotonic())
        if isinstance(expected, tuple):
            assert not task.done()
            self.inflight.append(Call(task, future, expected, self.clock.monotonic()))
        else:
            assert task.done()
            self._check_rejection(task.exception() or Exception(), expected)

    @precondition(lambda self: self.inflight)
    @rule(index=st.integers(0, 100), outcome=st.sampled_from(OUTCOMES))
    def finish_call(self, index: int, outcome: str) -> None:
        call = self.inflight.pop(index % len(self.inflight))
        error = _raise_for(outcome)
        if outcome == "cancel":
            call.task.cancel()
        elif error is None:
            call.future.set_result("ok")
        else:
            call.future.set_exception(error)
        self._settle()
        assert call.task.done()
        if outcome == "cancel":
            assert call.task.cancelled()
        elif error is None:
            assert call.task.result() == "ok"
        else:
            assert type(call.task.exception()) is type(error)
        now = self.clock.monotonic()
        self.model.finish(call.ticket, outcome, now - call.started, now)

    @rule(outcome=st.sampled_from(("failure", *OUTCOMES[:4])),
          duration=st.sampled_from([0.0, 6.0]))
    def sync_call(self, outcome: str, duration: float) -> None:
        self._sync_call(outcome, duration)

    @rule()
    def outage(self) -> None:
        for _ in range(WINDOW):
            self._sync_call("failure", 0.0)

    def _sync_call(self, outcome: str, duration: float) -> None:
        expected = self.model.admit(self.clock.monotonic())

        def run() -> str:
            self.clock.advance(duration)
            error = _raise_for(outcome)
            if error is not None:
                raise error
            return "ok"

        raised: BaseException | None = None
        result: str | None = None
        try:
            result = self.pipeline.call(run)
        except Exception as error:  # outside the try, a failed assert is never swallowed
            raised = error
        if not isinstance(expected, tuple):
            self._check_rejection(raised or Exception(), expected)
            return
        wanted = _raise_for(outcome)
        if wanted is None:
            assert (raised, result) == (None, "ok")
        else:
            assert type(raised) is type(wanted)  # the call's own error, not a rejection
        self.model.finish(expected, outcome, duration, self.clock.monotonic())

    @rule(seconds=st.sampled_from([0.5, 3.0, 9.9, 10.0, 25.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(action=st.sampled_from(["force_open", "reset", "disable"]))
    def manual_control(self, action: str) -> None:
        getattr(self.breaker, action)()
        getattr(self.model, action)()

    @invariant()
    def agrees_with_model(self) -> None:
        now = self.clock.monotonic()
        assert self.breaker.state == self.model.view(now)
        m = self.breaker.metrics()
        window = self.model.window
        assert (m.calls, m.failures, m.slow_calls) == (
            len(window), sum(f for f, _ in window), sum(s for _, s in window))
        if self.model.state == "half_open":
            assert m.trial_calls == self.model.admitted

    def teardown(self) -> None:
        for task in self.tasks:
            task.cancel()
        self._settle()
        for task in self.tasks:
            if not task.cancelled():
                task.exception()  # retrieved, so asyncio does not log it
        self.loop.close()


BreakerMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=30, deadline=None)
test_breaker_matches_model = BreakerMachine.TestCase
