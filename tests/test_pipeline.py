"""The engine: compilation, sync/async decoration, nesting, the call context."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

import pytest

import meshlite as ml
from meshlite import CallContext


class Recorder(ml.Policy):
    """A test policy that records the order it runs in and what it sees."""

    kind = "recorder"

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__()
        self.name = name
        self.log = log
        self.wrapped = 0

    def wrap(self, call_next: ml.Handler) -> ml.Handler:
        self.wrapped += 1

        def handle(ctx: CallContext) -> Any:
            self.log.append(f"{self.name}>")
            try:
                return call_next(ctx)
            finally:
                self.log.append(f"<{self.name}")

        return handle

    def awrap(self, call_next: ml.AsyncHandler) -> ml.AsyncHandler:
        self.wrapped += 1

        async def handle(ctx: CallContext) -> Any:
            self.log.append(f"{self.name}>")
            try:
                return await call_next(ctx)
            finally:
                self.log.append(f"<{self.name}")

        return handle


def test_outermost_first_sync() -> None:
    log: list[str] = []
    p = ml.Pipeline(Recorder("a", log), Recorder("b", log))
    assert p.call(lambda: log.append("call") or 5) == 5
    assert log == ["a>", "b>", "call", "<b", "<a"]


async def test_outermost_first_async() -> None:
    log: list[str] = []
    p = ml.Pipeline(Recorder("a", log), Recorder("b", log))

    async def fn(x: int) -> int:
        log.append("call")
        return x * 2

    assert await p.acall(fn, 4) == 8
    assert log == ["a>", "b>", "call", "<b", "<a"]


def test_compiled_once_not_per_call() -> None:
    log: list[str] = []
    rec = Recorder("a", log)
    p = ml.Pipeline(rec)
    async_wraps = rec.wrapped  # the async chain is compiled at construction
    for _ in range(5):
        p.call(lambda: None)
    assert rec.wrapped == async_wraps + 1


def test_decorator_keeps_sync_and_async_and_metadata() -> None:
    p = ml.Pipeline()

    @p
    def f(x: int, *, y: int = 1) -> int:
        """Doc of f."""
        return x + y

    @p
    async def g(x: int) -> int:
        return x

    assert not inspect.iscoroutinefunction(f)
    assert inspect.iscoroutinefunction(g)
    assert f(1, y=2) == 3
    assert f.__name__ == "f"
    assert f.__doc__ == "Doc of f."
    assert f.pipeline is p  # type: ignore[attr-defined]
    assert asyncio.run(g(3)) == 3


def test_nested_pipeline_is_a_policy() -> None:
    log: list[str] = []
    inner = ml.Pipeline(Recorder("b", log), Recorder("c", log))
    outer = ml.Pipeline(Recorder("a", log), inner)
    outer.call(lambda: None)
    assert log == ["a>", "b>", "c>", "<c", "<b", "<a"]
    assert [type(p).__name__ for p in outer.walk()] == [
        "Pipeline", "Recorder", "Pipeline", "Recorder", "Recorder"
    ]


def test_single_policy_is_a_decorator() -> None:
    @ml.Fallback(0)
    def fails() -> int:
        raise ValueError

    assert fails() == 0


def test_context_seen_by_the_call() -> None:
    p = ml.Pipeline(service="users")
    seen: list[CallContext | None] = []

    def fn() -> None:
        seen.append(ml.current_context())

    p.call(fn)
    ctx = seen[0]
    assert ctx is not None
    assert ctx.service == "users"
    assert ctx.operation.endswith("fn")
    assert ml.current_context() is None
    assert ml.remaining() is None


def test_nested_call_inherits_deadline_and_service(clock: Any) -> None:
    outer = ml.Pipeline(service="api")
    inner = ml.Pipeline()
    seen: list[tuple[str | None, float | None]] = []

    def leaf() -> None:
        ctx = ml.current_context()
        assert ctx is not None
        seen.append((ctx.service, ml.remaining()))

    def middle() -> None:
        ctx = ml.current_context()
        assert ctx is not None
        ctx.tighten_deadline(5.0, clock)
        clock.advance(2.0)
        inner.call(leaf)

    outer.call(middle)
    assert seen == [("api", 3.0)]


def test_tighten_never_extends(clock: Any) -> None:
    ctx = CallContext(print, (), {}, "op")
    ctx.tighten_deadline(1.0, clock)
    ctx.tighten_deadline(10.0, clock)
    assert ctx.remaining() == 1.0
    clock.advance(5)
    assert ctx.remaining() == 0.0


def test_rejects_non_policies() -> None:
    with pytest.raises(ml.ConfigError, match=r"policies\[1\] must be a meshlite policy"):
        ml.Pipeline(ml.Fallback(0), "retry")  # type: ignore[arg-type]


@pytest.mark.parametrize("service", ["", 5])
def test_rejects_a_service_that_is_no_name(service: object) -> None:
    with pytest.raises(ml.ConfigError, match="service must be a non-empty string or None"):
        ml.Pipeline(service=service)  # type: ignore[arg-type]


def test_decorating_non_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        ml.Pipeline()(3)  # type: ignore[call-overload]


def test_pipeline_hooks_reach_nested_policies() -> None:
    events: list[ml.Event] = []
    fb = ml.Fallback(1)
    p = ml.Pipeline(ml.Pipeline(fb))
    unsubscribe = p.add_hook(events.append)

    def boom() -> int:
        raise OSError

    p.call(boom)
    unsubscribe()
    p.call(boom)
    assert len(events) == 1


def test_raising_hook_never_breaks_the_call(caplog: pytest.LogCaptureFixture) -> None:
    fb = ml.Fallback(9)

    def bad_hook(event: ml.Event) -> None:
        raise RuntimeError("hook bug")

    fb.add_hook(bad_hook)

    def boom() -> int:
        raise OSError

    assert ml.Pipeline(fb).call(boom) == 9
    assert "hook bug" in caplog.text


def test_global_hooks() -> None:
    events: list[ml.Event] = []
    remove = ml.add_hook(events.append)
    try:
        ml.Pipeline(ml.Fallback(1)).call(lambda: 1 / 0)
    finally:
        remove()
    ml.Pipeline(ml.Fallback(1)).call(lambda: 1 / 0)
    assert len(events) == 1
    assert events[0].policy == "fallback"


def test_hooks_added_and_removed_by_many_threads_at_once_are_none_lost(
        frequent_thread_switches: None) -> None:
    policy = ml.Fallback(1)
    kept: list[list[ml.Hook]] = []
    unsubscribed = 0

    def subscribe() -> None:
        nonlocal unsubscribed
        hooks: list[ml.Hook] = [lambda event: None for _ in range(1000)]
        removers = [policy.add_hook(hook) for hook in hooks]
        globally = [ml.add_hook(hook) for hook in hooks[:100]]
        for remove in (*removers[:500], *globally):
            remove()
        kept.append(hooks[500:])

    threads = [threading.Thread(target=subscribe) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events: list[ml.Event] = []
    record = events.append
    policy.add_hook(record)
    ml.Pipeline(policy).call(lambda: 1 / 0)
    assert len(events) == 1
    wanted = {id(hook) for hooks in kept for hook in hooks} | {id(record)}
    assert {id(hook) for hook in policy.hooks._hooks} == wanted


async def test_context_isolated_between_tasks() -> None:
    p = ml.Pipeline()
    seen: dict[int, Any] = {}

    async def fn(i: int) -> None:
        await asyncio.sleep(0)
        seen[i] = ml.current_context()

    await asyncio.gather(*(p.acall(fn, i) for i in range(10)))
    assert len({id(c) for c in seen.values()}) == 10
    assert all(c is not None and c.args == (i,) for i, c in seen.items())


def test_set_testing_context_manager() -> None:
    assert not ml.is_testing()
    with ml.set_testing(True):
        assert ml.is_testing()
    assert not ml.is_testing()
    ml.set_testing(True)
    ml.set_testing(False)
    assert not ml.is_testing()


def test_errors_carry_service_and_policy() -> None:
    err = ml.CircuitOpenError("open", service="users", policy="circuit_breaker", retry_after=2.0)
    assert (err.service, err.policy, err.retry_after) == ("users", "circuit_breaker", 2.0)
    assert isinstance(ml.TimeoutExceeded("t"), TimeoutError)
    assert isinstance(ml.ConfigError("c"), ValueError)
    for cls in (ml.CircuitOpenError, ml.RateLimitedError, ml.BulkheadFullError):
        assert issubclass(cls, ml.RejectedError)
        assert issubclass(cls, ml.MeshliteError)


def test_an_async_function_called_sync_is_refused_not_run_unguarded() -> None:
    # Pipeline.call returned the coroutine: the caller awaited it outside every
    # policy (no retry, no timeout), and nothing said so.
    import gc
    import warnings

    runs = []

    async def fetch(x: int) -> int:
        runs.append(x)
        return x

    pipeline = ml.Pipeline(ml.Retry(attempts=3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match=r"fetch is an async function.*pipeline\.acall"):
            pipeline.call(fetch, 1)  # type: ignore[arg-type]
        gc.collect()
    assert runs == []
    assert not [w for w in caught if "never awaited" in str(w.message)]  # it was closed
    assert asyncio.run(pipeline.acall(fetch, 2)) == 2  # the async entry runs it


def test_a_hook_added_twice_is_delivered_once_until_both_adds_are_undone() -> None:
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=10, min_calls=5)
    seen: list[object] = []
    hook = seen.append
    first, second = breaker.add_hook(hook), breaker.add_hook(hook)  # two subscribers
    breaker.force_open()
    assert len(seen) == 1
    first()
    first()  # undoing one add twice undoes it once
    breaker.reset()
    assert len(seen) == 2  # the second add still holds it
    second()
    breaker.force_open()
    assert len(seen) == 2
    again = breaker.add_hook(hook)
    breaker.hooks.remove(hook)  # every add at once
    again()  # nothing left to undo
    breaker.reset()
    assert len(seen) == 2


class _Flaky:
    """A client object called directly: its ``__call__`` is ``async def``."""

    def __init__(self, failures: int = 0, wait: float = 0.0) -> None:
        self.calls = 0
        self.failures = failures
        self.wait = wait

    async def __call__(self, uid: int) -> dict[str, int]:
        self.calls += 1
        await asyncio.sleep(self.wait)
        if self.calls <= self.failures:
            raise ConnectionError("transient")
        return {"id": uid}


async def test_an_object_with_an_async_call_is_decorated_as_async() -> None:
    # inspect.iscoroutinefunction says False for such an object (and a partial of
    # one): the wrapper was sync, the policies wrapped only the making of the
    # coroutine, and the caller awaited it outside them (no retry, no timeout, and a
    # Cache that kept the coroutine object and raised on its second hit).
    import functools

    flaky = _Flaky(failures=1)
    retried = ml.Retry(attempts=3, backoff=ml.backoff.constant(0))(flaky)
    assert inspect.iscoroutinefunction(retried)
    assert await retried(1) == {"id": 1}
    assert flaky.calls == 2

    fetch = _Flaky()
    cached = ml.Cache(ttl=60)(fetch)
    assert [await cached(1), await cached(1)] == [{"id": 1}, {"id": 1}]
    assert fetch.calls == 1

    with pytest.raises(ml.TimeoutExceeded):
        await ml.Timeout(0.05)(_Flaky(wait=5))(1)
    partial = ml.Timeout(0.05)(functools.partial(_Flaky(wait=5), 1))
    assert inspect.iscoroutinefunction(partial)
    with pytest.raises(ml.TimeoutExceeded):
        await partial()


def test_a_sync_callable_returning_a_coroutine_is_refused_not_run_unguarded() -> None:
    async def fetch(uid: int) -> int:
        return uid

    wrapped = ml.Retry(attempts=3)(lambda uid: fetch(uid))
    with pytest.raises(TypeError, match=r"a sync call returned its coroutine.*async def"):
        wrapped(1)


def test_an_object_whose_call_is_a_generator_is_refused() -> None:
    class Pages:
        def __call__(self) -> Any:
            yield 1

    class AsyncPages:
        async def __call__(self) -> Any:
            yield 1

    with pytest.raises(ml.ConfigError, match="is a generator function"):
        ml.Retry()(Pages())
    with pytest.raises(ml.ConfigError, match="is an async generator function"):
        ml.Retry()(AsyncPages())


async def test_a_sync_function_given_to_acall_is_named_not_an_await_error() -> None:
    # The reverse of the refusal above: it was "object str can't be used in 'await'
    # expression", naming neither the function nor the fix.
    def lookup() -> str:
        return "value"

    for pipeline in (ml.Pipeline(), ml.Pipeline(ml.Retry(attempts=2), ml.Timeout(1.0))):
        with pytest.raises(TypeError, match=r"lookup is a sync function.*pipeline\.call"):
            await pipeline.acall(lookup)  # type: ignore[arg-type]

    async def broken() -> None:
        raise TypeError("an await of its own went wrong")

    with pytest.raises(TypeError, match=r"^an await of its own went wrong$"):
        await ml.Pipeline().acall(broken)  # an async function's own error, as it is


async def test_a_static_or_class_method_below_the_decorator_is_decorated() -> None:
    # Over @staticmethod the wrapper was bound as a method (Svc().f(1) passed the
    # instance too: TypeError); over @classmethod it was refused as not callable.
    calls: list[str] = []
    pipeline = ml.Pipeline(ml.Retry(attempts=2, backoff=ml.backoff.constant(0.0)))

    def flaky(name: str) -> None:
        calls.append(name)
        if len(calls) % 2:
            raise ConnectionError("once")

    class Svc:
        @pipeline
        @staticmethod
        def double(x: int) -> int:
            flaky("double")
            return 2 * x

        @pipeline
        @classmethod
        def named(cls, x: int) -> str:
            flaky("named")
            return f"{cls.__name__}:{x}"

        @ml.Retry(attempts=2, backoff=ml.backoff.constant(0.0))
        @staticmethod
        async def triple(x: int) -> int:
            flaky("triple")
            return 3 * x

    assert (Svc.double(1), Svc().double(2)) == (2, 4)
    assert (Svc.named(1), Svc().named(2)) == ("Svc:1", "Svc:2")
    assert await Svc().triple(3) == 9
    assert calls.count("double") == 4  # each call retried once: the pipeline applied
    assert Svc.double.pipeline is pipeline  # type: ignore[attr-defined]
