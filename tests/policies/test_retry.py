from __future__ import annotations

import asyncio
import email.utils
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import tenacity
from _tenacity import wait_exception
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import meshlite as ml
from meshlite._events import RetriesExhausted
from meshlite.testing import FakeClock


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(mode: str, fn: Callable[[], Any], *policies: ml.Policy) -> Any:
    """Call ``fn`` through the policies, as a sync or as an async function."""
    pipeline = ml.Pipeline(*policies)
    if mode == "sync":
        return pipeline.call(fn)

    async def afn() -> Any:
        return fn()

    return asyncio.run(pipeline.acall(afn))


class Flaky:
    """Fails with ``errors`` in turn, then returns ``value``; records each attempt."""

    def __init__(self, *errors: BaseException, value: Any = "ok") -> None:
        self.errors = list(errors)
        self.value = value
        self.attempts: list[int] = []

    def next_error(self) -> BaseException | None:
        return self.errors.pop(0) if self.errors else None

    def __call__(self) -> Any:
        ctx = ml.current_context()
        assert ctx is not None
        self.attempts.append(ctx.attempt)
        error = self.next_error()
        if error is not None:
            raise error
        return self.value


class always(Flaky):
    """Fails on every attempt with a fresh ``make()``."""

    def __init__(self, make: Callable[[], BaseException]) -> None:
        super().__init__()
        self.make = make

    def next_error(self) -> BaseException:
        return self.make()


class Deadline(ml.Policy):
    """Gives each call a deadline ``seconds`` from now on ``clock`` (a Timeout stand-in)."""

    kind = "deadline"

    def __init__(self, seconds: float, clock: FakeClock) -> None:
        super().__init__()
        self.seconds, self.clock = seconds, clock

    def wrap(self, call_next: ml.Handler) -> ml.Handler:
        def handle(ctx: ml.CallContext) -> Any:
            ctx.tighten_deadline(self.seconds, self.clock)
            return call_next(ctx)

        return handle

    def awrap(self, call_next: ml.AsyncHandler) -> ml.AsyncHandler:
        async def handle(ctx: ml.CallContext) -> Any:
            ctx.tighten_deadline(self.seconds, self.clock)
            return await call_next(ctx)

        return handle


def names(events: list[ml.Event]) -> list[str]:
    return [type(e).__name__ for e in events]


# -- attempts, on, on_result -----------------------------------------------------------


def test_succeeds_after_failures_with_attempt_numbers(mode: str, clock: FakeClock) -> None:
    flaky = Flaky(ConnectionError("a"), TimeoutError("b"))
    assert run(mode, flaky, ml.Retry(attempts=3, clock=clock)) == "ok"
    assert flaky.attempts == [1, 2, 3]
    assert len(clock.sleeps) == 2


def test_exhausted_reraises_last_error_with_note(mode: str, clock: FakeClock) -> None:
    flaky = Flaky(ConnectionError("x"), ConnectionError("y"), ConnectionError("z"))
    with pytest.raises(ConnectionError, match="z") as info:
        run(mode, flaky, ml.Retry(attempts=3, clock=clock))
    assert flaky.attempts == [1, 2, 3]
    assert info.value.__notes__ == [
        "meshlite: 3 attempts failed: #1 ConnectionError('x'), #2 ConnectionError('y'), "
        "#3 ConnectionError('z')"
    ]


def test_a_shared_error_object_gathers_a_bounded_number_of_notes(clock: FakeClock) -> None:
    # A function raising one module-level exception object on every call: each call's
    # Retry gives up on that same object; its notes must not grow without end.
    shared = ConnectionError("down")

    def always() -> None:
        raise shared

    retrying = ml.Pipeline(ml.Retry(attempts=2, clock=clock))
    for _ in range(50):
        with pytest.raises(ConnectionError):
            retrying.call(always)
    assert len(shared.__notes__) == 8  # MAX_NOTES
    assert all(n.startswith("meshlite: 2 attempts failed") for n in shared.__notes__)


def test_attempts_one_never_retries(clock: FakeClock) -> None:
    flaky = Flaky(ConnectionError())
    with pytest.raises(ConnectionError):
        run("sync", flaky, ml.Retry(attempts=1, clock=clock))
    assert flaky.attempts == [1]
    assert clock.sleeps == []


def test_default_on_skips_non_transient_errors(mode: str, clock: FakeClock) -> None:
    flaky = Flaky(ValueError("bad input"))
    with pytest.raises(ValueError, match="bad input") as info:
        run(mode, flaky, ml.Retry(attempts=3, clock=clock))
    assert flaky.attempts == [1]
    assert not hasattr(info.value, "__notes__")


def test_timeout_exceeded_is_transient(clock: FakeClock) -> None:
    flaky = Flaky(ml.TimeoutExceeded("slow", policy="timeout"))
    assert run("sync", flaky, ml.Retry(clock=clock)) == "ok"


def test_httpx_transport_errors_are_transient(clock: FakeClock) -> None:
    flaky = Flaky(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"))
    assert run("sync", flaky, ml.Retry(clock=clock)) == "ok"
    assert flaky.attempts == [1, 2, 3]


def test_user_on_is_honoured(mode: str, clock: FakeClock) -> None:
    flaky = Flaky(ValueError(), KeyError())
    assert run(mode, flaky, ml.Retry(on=(ValueError, KeyError), clock=clock)) == "ok"
    flaky = Flaky(ValueError("1"), ValueError("2"))
    retry = ml.Retry(on=lambda e: str(e) == "1", clock=clock)
    with pytest.raises(ValueError, match="2") as info:
        run(mode, flaky, retry)
    assert flaky.attempts == [1, 2]
    assert info.value.__notes__[-1].endswith("; ValueError is not retried")


@pytest.mark.parametrize(
    "error",
    [ml.CircuitOpenError("open", retry_after=1.0), ml.BulkheadFullError("full"),
     ml.RateLimitedError("slow", retry_after=0.1)],
)
@pytest.mark.parametrize("on", [{}, {"on": Exception}, {"on": (Exception,)},
                                {"on": lambda e: True}, {"on": ml.MeshliteError}])
def test_rejections_never_retried_unless_named(error: Exception, on: dict[str, Any],
                                               clock: FakeClock) -> None:
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        run("sync", flaky, ml.Retry(clock=clock, **on))
    assert flaky.attempts == [1]


def test_rejection_retried_when_on_names_its_class(mode: str, clock: FakeClock) -> None:
    flaky = Flaky(ml.RateLimitedError("slow", retry_after=2.0))
    assert run(mode, flaky, ml.Retry(on=(ml.RateLimitedError, ConnectionError),
                                     clock=clock, backoff=ml.backoff.constant(0.1))) == "ok"
    assert clock.sleeps == [2.0]  # and the rejection's retry_after was honoured
    flaky = Flaky(ml.BulkheadFullError("full"))
    assert run(mode, flaky, ml.Retry(on=ml.RejectedError, clock=clock)) == "ok"
    flaky = Flaky(ml.CircuitOpenError("open"))
    with pytest.raises(ml.CircuitOpenError):
        run(mode, flaky, ml.Retry(on=(ml.RateLimitedError,), clock=clock))


def test_on_result_retries_then_returns_good_value(mode: str, clock: FakeClock) -> None:
    values = iter([None, None, 5])
    retry = ml.Retry(attempts=3, on_result=lambda v: v is None, clock=clock)
    assert run(mode, lambda: next(values), retry) == 5
    assert len(clock.sleeps) == 2


def test_on_result_exhausted_returns_last_result(mode: str, clock: FakeClock) -> None:
    values = iter([503, 502, 500])
    events: list[ml.Event] = []
    retry = ml.Retry(attempts=3, on_result=lambda v: v >= 500, clock=clock)
    retry.add_hook(events.append)
    assert run(mode, lambda: next(values), retry) == 500
    assert names(events) == ["RetryScheduled", "RetryScheduled", "RetriesExhausted"]
    assert events[0].error is None  # type: ignore[attr-defined]


def test_error_after_rejected_result_note_lists_both(clock: FakeClock) -> None:
    outcomes: list[Any] = [503, ConnectionError("down")]

    def call() -> Any:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    retry = ml.Retry(attempts=2, on_result=lambda v: v == 503, clock=clock)
    with pytest.raises(ConnectionError) as info:
        run("sync", call, retry)
    assert info.value.__notes__ == [
        "meshlite: 2 attempts failed: #1 result 503, #2 ConnectionError('down')"
    ]


# -- backoff ---------------------------------------------------------------------------


def test_backoff_sequence_from_seeded_random(mode: str, clock: FakeClock) -> None:
    retry = ml.Retry(attempts=4, backoff=ml.backoff.exponential(initial=0.1, maximum=1.0),
                     clock=clock, random=random.Random(42))
    with pytest.raises(ConnectionError):
        run(mode, always(ConnectionError), retry)
    rng = random.Random(42)
    assert clock.sleeps == pytest.approx([0.1 * rng.random(), 0.2 * rng.random(),
                                          0.4 * rng.random()])


def test_decorrelated_previous_delay_threaded_through(clock: FakeClock) -> None:
    retry = ml.Retry(attempts=6, backoff=ml.backoff.decorrelated(initial=0.1, maximum=50.0),
                     clock=clock, random=random.Random(3))
    with pytest.raises(ConnectionError):
        run("sync", always(ConnectionError), retry)
    rng, previous, expected = random.Random(3), 0.1, []
    for _ in range(5):
        previous = min(50.0, rng.uniform(0.1, previous * 3))
        expected.append(previous)
    assert clock.sleeps == pytest.approx(expected)


@pytest.mark.parametrize(
    ("wait", "expected"),
    [(tenacity.wait_exponential(multiplier=1, max=3), [1.0, 2.0, 3.0]),
     (tenacity.wait_fixed(0.5), [0.5, 0.5, 0.5]),
     (wait_exception(lambda e: len(str(e))), [1.0, 2.0, 3.0])],
)
def test_tenacity_waits_as_backoff(mode: str, clock: FakeClock, wait: Any,
                                   expected: list[float]) -> None:
    flaky = Flaky(ConnectionError("a"), ConnectionError("ab"), ConnectionError("abc"))
    assert run(mode, flaky, ml.Retry(attempts=4, backoff=wait, clock=clock)) == "ok"
    assert clock.sleeps == expected


def test_tenacity_and_httpx_never_imported_by_meshlite() -> None:
    code = (
        "import sys, meshlite as ml\n"
        "def f(): raise ConnectionError\n"
        "r = ml.Retry(attempts=2, backoff=ml.backoff.constant(0))\n"
        "try: ml.Pipeline(r).call(f)\n"
        "except ConnectionError: pass\n"
        "assert 'tenacity' not in sys.modules and 'httpx' not in sys.modules, 'imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr


# -- Retry-After -----------------------------------------------------------------------


class Reply:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers


class Throttled(ConnectionError):
    retry_after = 3.0


def test_retry_after_from_error_raises_the_delay(mode: str, clock: FakeClock) -> None:
    flaky = Flaky(Throttled())
    retry = ml.Retry(backoff=ml.backoff.constant(0.1), clock=clock)
    assert run(mode, flaky, retry) == "ok"
    assert clock.sleeps == [3.0]


def test_retry_after_never_shortens_the_backoff(clock: FakeClock) -> None:
    flaky = Flaky(Throttled())
    assert run("sync", flaky, ml.Retry(backoff=ml.backoff.constant(5.0), clock=clock)) == "ok"
    assert clock.sleeps == [5.0]


def test_retry_after_ignored_when_not_respected(clock: FakeClock) -> None:
    flaky = Flaky(Throttled())
    retry = ml.Retry(backoff=ml.backoff.constant(0.1), respect_retry_after=False, clock=clock)
    assert run("sync", flaky, retry) == "ok"
    assert clock.sleeps == [0.1]


def test_retry_after_header_seconds_on_result(mode: str, clock: FakeClock) -> None:
    replies = iter([Reply(503, {"Retry-After": "4"}), Reply(200, {})])
    retry = ml.Retry(on_result=lambda r: r.status == 503, backoff=ml.backoff.constant(0.1),
                     clock=clock)
    assert run(mode, lambda: next(replies), retry).status == 200
    assert clock.sleeps == [4.0]


def test_retry_after_header_http_date_on_result(clock: FakeClock) -> None:
    date = email.utils.formatdate(time.time() + 100, usegmt=True)
    replies = iter([Reply(429, {"Retry-After": date}), Reply(200, {})])
    retry = ml.Retry(on_result=lambda r: r.status == 429, backoff=ml.backoff.constant(0.1),
                     max_retry_after=None, clock=clock)
    assert run("sync", lambda: next(replies), retry).status == 200
    (slept,) = clock.sleeps
    assert 98.0 <= slept <= 100.0  # the header has whole seconds


def test_retry_after_from_httpx_status_error(clock: FakeClock) -> None:
    request = httpx.Request("GET", "http://users/1")
    response = httpx.Response(503, headers={"Retry-After": "2"}, request=request)
    flaky = Flaky(httpx.HTTPStatusError("503", request=request, response=response))
    retry = ml.Retry(on=httpx.HTTPStatusError, backoff=ml.backoff.constant(0.1), clock=clock)
    assert run("sync", flaky, retry) == "ok"
    assert clock.sleeps == [2.0]


def test_retry_after_past_the_cap_ends_the_call_with_that_answer(
        mode: str, clock: FakeClock) -> None:
    replies = iter([Reply(503, {"Retry-After": "86400"}), Reply(200, {})])
    events: list[ml.Event] = []
    retry = ml.Retry(on_result=lambda r: r.status == 503, backoff=ml.backoff.constant(0.1),
                     clock=clock)
    assert retry.options.max_retry_after == 30.0  # the documented default
    retry.add_hook(events.append)
    assert run(mode, lambda: next(replies), retry).status == 503  # the server's answer
    assert clock.sleeps == []  # not 86,400 s, not 30 s: at once
    [done] = [e for e in events if isinstance(e, RetriesExhausted)]
    assert (done.attempts, done.reason, done.retry_after) == (1, "retry_after", 86400.0)


def test_retry_after_past_the_cap_raises_the_error_with_a_note(
        mode: str, clock: FakeClock) -> None:
    class Busy(ConnectionError):
        retry_after = 12.0

    flaky = Flaky(Busy("busy"))
    retry = ml.Retry(backoff=ml.backoff.constant(0.1), max_retry_after=10.0, clock=clock)
    with pytest.raises(Busy) as info:
        run(mode, flaky, retry)
    assert clock.sleeps == []
    assert flaky.attempts == [1]
    assert "more than max_retry_after=10.0s" in "".join(info.value.__notes__)


def test_retry_after_within_the_cap_is_honoured(clock: FakeClock) -> None:
    replies = iter([Reply(503, {"Retry-After": "30"}), Reply(200, {})])
    retry = ml.Retry(on_result=lambda r: r.status == 503, clock=clock)
    assert run("sync", lambda: next(replies), retry).status == 200
    assert clock.sleeps == [30.0]


def test_retry_after_longer_than_the_deadline_ends_at_once(
        mode: str, clock: FakeClock) -> None:
    replies = iter([Reply(503, {"Retry-After": "10"}), Reply(200, {})])
    events: list[ml.Event] = []
    retry = ml.Retry(on_result=lambda r: r.status == 503, backoff=ml.backoff.constant(0.1),
                     clock=clock)
    retry.add_hook(events.append)
    assert run(mode, lambda: next(replies), ml.Timeout(5.0, clock=clock), retry).status == 503
    assert clock.sleeps == []
    [done] = [e for e in events if isinstance(e, RetriesExhausted)]
    assert (done.reason, done.retry_after) == ("deadline", 10.0)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "30", True])
def test_max_retry_after_is_validated(bad: Any) -> None:
    with pytest.raises(ml.ConfigError, match="max_retry_after"):
        ml.Retry(max_retry_after=bad)


# -- deadline --------------------------------------------------------------------------


def test_deadline_stops_when_backoff_would_pass_it(mode: str, clock: FakeClock) -> None:
    events: list[ml.Event] = []
    retry = ml.Retry(attempts=10, backoff=ml.backoff.constant(0.4), clock=clock)
    retry.add_hook(events.append)
    flaky = always(lambda: ConnectionError("down"))
    with pytest.raises(ConnectionError) as info:
        run(mode, flaky, Deadline(1.0, clock), retry)
    assert flaky.attempts == [1, 2, 3]  # t=0, 0.4, 0.8; a 0.4 s wait would end at 1.2
    assert clock.sleeps == [0.4, 0.4]
    assert "the deadline left no time for attempt 4" in info.value.__notes__[-1]
    assert events[-1].reason == "deadline"  # type: ignore[attr-defined]


class OversleepingClock(FakeClock):
    def sleep(self, seconds: float) -> None:
        super().sleep(seconds + 1.0)

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds + 1.0)


def test_no_attempt_starts_after_the_deadline(mode: str) -> None:
    clock = OversleepingClock()
    flaky = always(lambda: ConnectionError("down"))
    retry = ml.Retry(attempts=5, backoff=ml.backoff.constant(0.1), clock=clock)
    with pytest.raises(ConnectionError) as info:
        run(mode, flaky, Deadline(1.0, clock), retry)
    assert flaky.attempts == [1]
    assert "the deadline passed during the backoff before attempt 2" in info.value.__notes__[-1]


def test_deadline_stop_on_rejected_result_returns_it(clock: FakeClock) -> None:
    retry = ml.Retry(attempts=5, backoff=ml.backoff.constant(2.0), on_result=lambda v: True,
                     clock=clock)
    assert run("sync", lambda: "meh", Deadline(1.0, clock), retry) == "meh"
    assert clock.sleeps == []


# -- events and tracing ----------------------------------------------------------------


def test_events_carry_attempt_delay_error(mode: str, clock: FakeClock) -> None:
    events: list[ml.Event] = []
    retry = ml.Retry(attempts=3, backoff=ml.backoff.constant(0.5), clock=clock)
    retry.add_hook(events.append)
    with pytest.raises(ConnectionError):
        run(mode, always(ConnectionError), retry)
    assert names(events) == ["RetryScheduled", "RetryScheduled", "RetriesExhausted"]
    first, last = events[0], events[-1]
    assert (first.attempt, first.delay, first.policy) == (1, 0.5, "retry")  # type: ignore[attr-defined]
    assert isinstance(first.error, ConnectionError)  # type: ignore[attr-defined]
    assert (last.attempts, last.reason) == (3, "attempts")  # type: ignore[attr-defined]


def test_non_retryable_after_a_retry_ends_the_loop_with_an_event(clock: FakeClock) -> None:
    events: list[ml.Event] = []
    retry = ml.Retry(clock=clock)
    retry.add_hook(events.append)
    with pytest.raises(KeyError):
        run("sync", Flaky(ConnectionError(), KeyError("k")), retry)
    assert names(events) == ["RetryScheduled", "RetriesExhausted"]
    assert events[-1].reason == "not_retryable"  # type: ignore[attr-defined]


class WithSpan(ml.Policy):
    """Puts an OpenTelemetry SDK span on the context, as Trace does."""

    kind = "span"

    def __init__(self) -> None:
        super().__init__()
        provider = TracerProvider()
        self.exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = provider.get_tracer("test")

    def wrap(self, call_next: ml.Handler) -> ml.Handler:
        def handle(ctx: ml.CallContext) -> Any:
            with self.tracer.start_as_current_span("call") as span:
                ctx.span = span
                return call_next(ctx)

        return handle

    def awrap(self, call_next: ml.AsyncHandler) -> ml.AsyncHandler:
        async def handle(ctx: ml.CallContext) -> Any:
            with self.tracer.start_as_current_span("call") as span:
                ctx.span = span
                return await call_next(ctx)

        return handle


def test_span_gets_retry_events_and_attempt_count(mode: str, clock: FakeClock) -> None:
    tracing = WithSpan()
    values = iter([None])
    flaky = Flaky(ConnectionError(), value="ok")
    retry = ml.Retry(attempts=4, backoff=ml.backoff.constant(0.25), clock=clock,
                     on_result=lambda v: v == next(values, "done"))
    assert run(mode, flaky, tracing, retry) == "ok"
    (span,) = tracing.exporter.get_finished_spans()
    assert [e.name for e in span.events] == ["meshlite.retry"]
    assert dict(span.events[0].attributes or {}) == {
        "meshlite.attempt": 1, "meshlite.retry.delay_s": 0.25, "error.type": "ConnectionError"}
    assert span.attributes is not None
    assert span.attributes["meshlite.attempts"] == 2


class Refused(ConnectionError):
    """An error class of the application's own."""


class StatusRefused(ConnectionError):
    """An HTTP status error, as the HTTP clients' carry ``status_code``."""

    status_code = 503


@pytest.mark.parametrize(("error", "shown"), [
    (Refused(), f"{__name__}.Refused"), (StatusRefused(), "503"),
    (ConnectionError(), "ConnectionError")])
def test_a_retry_events_error_type_is_the_spans(error: Exception, shown: str,
                                                 clock: FakeClock) -> None:
    # As the attempt spans give it (the status code of an HTTP error, else the fully
    # qualified class name): the event and the spans name one error alike.
    tracing = WithSpan()
    retry = ml.Retry(attempts=2, backoff=ml.backoff.constant(0.25), clock=clock)
    assert run("sync", Flaky(error, value="ok"), tracing, retry) == "ok"
    (span,) = tracing.exporter.get_finished_spans()
    assert span.events[0].attributes is not None
    assert span.events[0].attributes["error.type"] == shown


def test_span_attempts_set_when_exhausted(clock: FakeClock) -> None:
    tracing = WithSpan()
    with pytest.raises(ConnectionError):
        run("sync", always(ConnectionError), tracing, ml.Retry(attempts=2, clock=clock))
    (span,) = tracing.exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["meshlite.attempts"] == 2


# -- budget ----------------------------------------------------------------------------


def test_default_budget_is_one_per_retry() -> None:
    a, b = ml.Retry(), ml.Retry()
    assert isinstance(a.budget, ml.RetryBudget)
    assert a.budget is not b.budget
    assert (a.budget.ratio, a.budget.min_per_second, a.budget.ttl) == (0.2, 10.0, 10.0)
    assert ml.Retry(budget=None).budget is None


def test_budget_refusal_stops_retrying(mode: str, clock: FakeClock) -> None:
    events: list[ml.Event] = []
    budget = ml.RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10.0, clock=clock)  # 1 token
    retry = ml.Retry(attempts=5, budget=budget, clock=clock)
    retry.add_hook(events.append)
    flaky = always(ConnectionError)
    with pytest.raises(ConnectionError) as info:
        run(mode, flaky, retry)
    assert flaky.attempts == [1, 2]
    assert names(events) == ["RetryScheduled", "RetryBudgetExhausted", "RetriesExhausted"]
    assert info.value.__notes__[-1].endswith("; the retry budget refused attempt 3")


def test_budget_none_disables_it(clock: FakeClock) -> None:
    flaky = always(ConnectionError)
    with pytest.raises(ConnectionError):
        run("sync", flaky, ml.Retry(attempts=30, budget=None, clock=clock))
    assert len(flaky.attempts) == 30


def test_budget_calls_deposit_ratio(clock: FakeClock) -> None:
    budget = ml.RetryBudget(ratio=0.5, min_per_second=0.0, ttl=10.0, clock=clock)
    call = ml.Pipeline(ml.Retry(budget=budget, clock=clock))(lambda: 1)
    for _ in range(4):
        call()
    assert budget.balance == 2.0
    assert [budget.try_withdraw() for _ in range(3)] == [True, True, False]


def test_budget_deposits_expire_after_ttl(clock: FakeClock) -> None:
    budget = ml.RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0, clock=clock)
    for _ in range(3):
        budget.deposit()
    clock.advance(9.5)
    budget.deposit()
    assert budget.balance == 4.0
    clock.advance(0.5)  # the first three are ten seconds old
    assert budget.balance == 1.0
    clock.advance(10.0)
    assert budget.balance == 0.0
    assert not budget.try_withdraw()


def test_budget_reserve_refills_as_withdrawals_expire(clock: FakeClock) -> None:
    budget = ml.RetryBudget(ratio=0.0, min_per_second=1.0, ttl=10.0, clock=clock)
    assert sum(budget.try_withdraw() for _ in range(12)) == 10
    clock.advance(5.0)
    assert not budget.try_withdraw()
    clock.advance(5.0)
    assert budget.try_withdraw()


def test_budget_balance_never_negative_when_deposits_expire_first(clock: FakeClock) -> None:
    # Five retries paid by ten calls made a slice earlier: once those calls expire,
    # the withdrawals still count, but the budget has 0 retries to give, not -5.
    budget = ml.RetryBudget(ratio=0.5, min_per_second=0.0, ttl=10.0, clock=clock)
    for _ in range(10):
        budget.deposit()
    clock.advance(9.5)
    assert sum(budget.try_withdraw() for _ in range(6)) == 5
    clock.advance(1.0)
    assert budget.balance == 0.0
    assert not budget.try_withdraw()
    clock.advance(9.0)  # the withdrawals expire too
    budget.deposit()
    assert budget.balance == 0.5


@pytest.mark.parametrize("step", [0.0, 0.003], ids=["still-clock", "moving-clock"])
def test_budget_holds_under_threads(clock: FakeClock, step: float) -> None:
    budget = ml.RetryBudget(ratio=0.2, min_per_second=1.0, ttl=10.0, clock=clock)
    retry = ml.Retry(attempts=1_000, backoff=ml.backoff.constant(0.0), budget=budget,
                     clock=clock)
    lock, counts = threading.Lock(), {"attempts": 0}

    def fail() -> None:
        with lock:
            counts["attempts"] += 1
        # With a step, time crosses the budget's one-second slices while threads race
        # (about 7 s in all: inside one ttl, so nothing expires and the bound is exact).
        clock.advance(step)
        raise ConnectionError

    call = ml.Pipeline(retry)(fail)
    threads_n, calls_each = 8, 250
    start = threading.Barrier(threads_n)

    def worker() -> None:
        start.wait()
        for _ in range(calls_each):
            with pytest.raises(ConnectionError):
                call()

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls = threads_n * calls_each
    retries = counts["attempts"] - calls
    # Every call deposits before it withdraws, and the last refused withdrawal comes
    # after the last deposit, so the budget is spent exactly: reserve + ratio * calls.
    assert retries == 1.0 * 10.0 + 0.2 * calls
    assert clock.monotonic() == pytest.approx(step * counts["attempts"])


# -- cancellation, interrupts, testing mode ----------------------------------------------


class BlockingClock(FakeClock):
    """Its sleeps never end (until cancelled); ``sleeping`` is set when one starts."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = asyncio.Event()

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.sleeping.set()
        await asyncio.Event().wait()


async def test_cancellation_during_backoff_propagates_at_once() -> None:
    clock = BlockingClock()
    attempts = 0

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError

    retry = ml.Retry(attempts=5, backoff=ml.backoff.constant(1.0), clock=clock)
    task = asyncio.ensure_future(ml.Pipeline(retry).acall(flaky))
    await clock.sleeping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempts == 1


async def test_cancellation_during_backoff_gives_the_budget_token_back() -> None:
    # One token in all: a caller cancelled while it waits for its retry made no retry,
    # so the next caller may still retry once.
    clock = BlockingClock()
    budget = ml.RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10.0, clock=FakeClock())

    async def down() -> None:
        raise ConnectionError

    retry = ml.Retry(attempts=2, backoff=ml.backoff.constant(1.0), budget=budget, clock=clock)
    task = asyncio.ensure_future(ml.Pipeline(retry).acall(down))
    await clock.sleeping.wait()
    assert budget.balance == 0.0  # taken for the retry being waited for
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget.balance == 1.0


class InterruptedClock(FakeClock):
    def sleep(self, seconds: float) -> None:
        raise KeyboardInterrupt


def test_interrupted_backoff_gives_the_budget_token_back() -> None:
    budget = ml.RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10.0, clock=FakeClock())
    retry = ml.Retry(attempts=2, backoff=ml.backoff.constant(1.0), budget=budget,
                     clock=InterruptedClock())
    with pytest.raises(KeyboardInterrupt):
        retry(Flaky(ConnectionError(), value="ok"))()
    assert budget.balance == 1.0


def test_deadline_passing_during_backoff_gives_the_budget_token_back(clock: FakeClock) -> None:
    # The backoff fits the deadline, but the sleep overshoots it (a busy machine): no
    # retry is made, so its token goes back.
    class Overshooting(FakeClock):
        def sleep(self, seconds: float) -> None:
            clock.advance(seconds * 3)

    budget = ml.RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10.0, clock=clock)
    retry = ml.Retry(attempts=2, backoff=ml.backoff.constant(1.0), budget=budget,
                     clock=Overshooting())
    flaky = Flaky(ConnectionError(), value="ok")
    with pytest.raises(ConnectionError):
        ml.Pipeline(ml.Timeout(2.0, clock=clock), retry).call(flaky)
    assert flaky.attempts == [1]
    assert budget.balance == 1.0


async def test_cancellation_from_the_call_is_not_retried(clock: FakeClock) -> None:
    attempts = 0

    async def cancelled() -> None:
        nonlocal attempts
        attempts += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await ml.Pipeline(ml.Retry(on=BaseException, clock=clock)).acall(cancelled)
    assert attempts == 1


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_interrupts_never_retried(mode: str, clock: FakeClock, error: type) -> None:
    flaky = Flaky(error(), value="ok")
    with pytest.raises(error):
        run(mode, flaky, ml.Retry(on=BaseException, clock=clock))
    assert flaky.attempts == [1]


def test_testing_mode_skips_sleeping_but_keeps_events(mode: str, clock: FakeClock) -> None:
    events: list[ml.Event] = []
    retry = ml.Retry(attempts=3, backoff=ml.backoff.constant(30.0), clock=clock)
    retry.add_hook(events.append)
    flaky = Flaky(ConnectionError(), ConnectionError())
    with ml.set_testing(True):
        assert run(mode, flaky, retry) == "ok"
    assert flaky.attempts == [1, 2, 3]
    assert clock.sleeps == []
    assert [e.delay for e in events] == [30.0, 30.0]  # type: ignore[attr-defined]


@pytest.mark.timeout(20)
def test_testing_mode_with_the_system_clock(mode: str) -> None:
    flaky = Flaky(ConnectionError(), ConnectionError())
    retry = ml.Retry(attempts=3, backoff=ml.backoff.constant(3600.0))  # would hang if it slept
    with ml.set_testing(True):
        assert run(mode, flaky, retry) == "ok"
    assert flaky.attempts == [1, 2, 3]


# -- options -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": -3}, "attempts"),
        ({"attempts": 2.5}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"backoff": 0.1}, "backoff"),
        ({"backoff": "exponential"}, "backoff"),
        ({"backoff": tenacity.wait_fixed}, "backoff"),
        ({"backoff": lambda attempt: 0.0}, "backoff"),
        ({"on": 3}, "on"),
        ({"on": ()}, "on"),
        ({"on": (ValueError, "x")}, "on"),
        ({"on_result": 5}, "on_result"),
        ({"on_result": bool}, "on_result"),
        ({"budget": 0.2}, "budget"),
        ({"respect_retry_after": "yes"}, "respect_retry_after"),
        ({"clock": object()}, "clock"),
        ({"random": 42}, "random"),
    ],
)
def test_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"^Retry: {field} must be") as info:
        ml.Retry(**kwargs)
    assert info.value.policy == "Retry"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ratio": -0.1}, "ratio"),
        ({"ratio": "0.2"}, "ratio"),
        ({"min_per_second": float("nan")}, "min_per_second"),
        ({"min_per_second": -1}, "min_per_second"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": float("inf")}, "ttl"),
        ({"clock": "system"}, "clock"),
    ],
)
def test_bad_budget_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ml.ConfigError, match=f"^RetryBudget: {field} must be"):
        ml.RetryBudget(**kwargs)


def test_options_are_frozen_and_repr_is_readable() -> None:
    retry = ml.Retry(attempts=4, backoff=ml.backoff.constant(0.1))
    with pytest.raises(AttributeError):
        retry.options.attempts = 9  # type: ignore[misc]
    assert repr(retry) == "Retry(attempts=4, backoff=ConstantBackoff(delay=0.1))"
    assert "ratio=0.2" in repr(retry.budget)
