"""The mesh: registry, lifecycle and dependency order, drain, overrides, state, calls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from _clocks import BrokenClock

import meshlite as ml
from meshlite.mesh import Mesh
from meshlite.routing import (
    Backend,
    HealthCheck,
    MeshClosedError,
    OutlierDetection,
    Service,
)
from meshlite.routing._health import HealthChecker
from meshlite.testing import FakeClock

NO_POLICY = ml.Pipeline()


async def until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for ``predicate()`` to be true (``seconds`` is a bound, not an expectation)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "the condition never became true"
        await asyncio.sleep(0.001)


def svc(name: str, backends: Any = ("a", "b"), **kwargs: Any) -> Service:
    kwargs.setdefault("pipeline", NO_POLICY)
    kwargs.setdefault("balancer", "round_robin")
    return Service(name, backends, **kwargs)


class Recorder:
    """A lifecycle component that records when it starts and stops."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def start(self) -> None:
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


# -- registry -----------------------------------------------------------------


def test_service_lookup_and_backends() -> None:
    mesh = Mesh([svc("users", ["http://a:1", Backend("http://b:2", weight=2)])])
    backends = mesh.service("users").backends
    assert [b.address for b in backends] == ["http://a:1", "http://b:2"]
    assert backends[1].weight == 2.0
    with pytest.raises(ml.ConfigError, match=r"no service named 'orders'.*known services: users"):
        mesh.service("orders")


def test_duplicate_names_rejected() -> None:
    with pytest.raises(ml.ConfigError, match="two services are named 'users'"):
        Mesh([svc("users"), svc("users")])


def test_unknown_dependency_named() -> None:
    with pytest.raises(ml.ConfigError, match="'orders' depends on 'billing'"):
        Mesh([svc("orders", depends_on=("billing",))])


def test_dependency_cycle_named() -> None:
    with pytest.raises(ml.ConfigError, match="cycle a -> b -> c -> a"):
        Mesh([svc("a", depends_on="b"), svc("b", depends_on="c"), svc("c", depends_on="a")])


def test_register_needs_known_dependencies() -> None:
    mesh = Mesh([svc("users")])
    with pytest.raises(ml.ConfigError, match="depends on 'billing'"):
        mesh.register(svc("orders", depends_on=("billing",)))
    mesh.register(svc("orders", depends_on=("users",)))
    assert [s.name for s in mesh.services] == ["users", "orders"]
    with pytest.raises(ml.ConfigError, match="two services"):
        mesh.register(svc("users"))
    with pytest.raises(ml.ConfigError, match="services"):
        Mesh(["users"])  # type: ignore[list-item]
    with pytest.raises(ml.ConfigError, match=r"Mesh: clock must be a clock with monotonic\(\)"):
        Mesh(clock=time.monotonic)  # type: ignore[arg-type]


# -- calls ---------------------------------------------------------------------


async def test_call_passes_the_chosen_backend() -> None:
    mesh = Mesh([svc("users")])
    seen: list[str] = []

    async def get(backend: Backend, uid: int, *, suffix: str) -> str:
        seen.append(backend.address)
        return f"{uid}{suffix}"

    results = [await mesh.call("users", get, i, suffix="!") for i in range(4)]
    assert results == ["0!", "1!", "2!", "3!"]
    assert sorted(seen) == ["a", "a", "b", "b"]
    assert await mesh.call("users", lambda backend: backend.address) in ("a", "b")


def test_call_sync_sets_the_context() -> None:
    mesh = Mesh([svc("users", ["only"])])

    def get(backend: Backend) -> tuple[str | None, str | None, Any]:
        ctx = ml.current_context()
        assert ctx is not None
        return ctx.service, ctx.operation, ctx.backend

    service, operation, backend = mesh.call_sync("users", get)
    assert (service, backend.address) == ("users", "only")
    assert operation is not None
    assert operation.endswith("get")


def test_default_pipeline_retries_once_on_another_backend() -> None:
    mesh = Mesh([Service("users", ["a", "b"], outlier_detection=None)])
    tried: list[str] = []

    def flaky(backend: Backend) -> str:
        tried.append(backend.address)
        if len(tried) == 1:
            raise ConnectionError("reset")
        return "ok"

    with ml.set_testing():
        assert mesh.call_sync("users", flaky) == "ok"
    assert len(tried) == 2
    assert tried[0] != tried[1]


# -- lifecycle ------------------------------------------------------------------


async def test_components_start_in_dependency_order_and_stop_in_reverse() -> None:
    log: list[str] = []
    web, api, db = svc("web", depends_on=("api",)), svc("api", depends_on=("db",)), svc("db")
    for s in (web, api, db):
        s.attach(Recorder(s.name, log))
    mesh = Mesh([web, api, db])
    mesh.attach(Recorder("watcher", log))
    async with mesh:
        assert log == ["start db", "start api", "start web", "start watcher"]
    assert log[4:] == ["stop watcher", "stop web", "stop api", "stop db"]


def test_sync_mesh_runs_components_on_a_loop_thread() -> None:
    log: list[str] = []
    threads: list[str] = []

    class Probe(Recorder):
        async def start(self) -> None:
            threads.append(threading.current_thread().name)
            await super().start()

    api = svc("api")
    api.attach(Probe("api", log))
    with Mesh([api]):
        assert log == ["start api"]
    assert log == ["start api", "stop api"]
    assert threads == ["meshlite-mesh"]
    assert "meshlite-mesh" not in {t.name for t in threading.enumerate()}


async def test_failed_start_stops_what_started() -> None:
    log: list[str] = []

    class Broken(Recorder):
        async def start(self) -> None:
            raise RuntimeError("cannot start")

    a, b = svc("a"), svc("b", depends_on=("a",))
    a.attach(Recorder("a", log))
    b.attach(Broken("b", log))
    mesh = Mesh([a, b])
    with pytest.raises(RuntimeError, match="cannot start"):
        await mesh.start()
    assert log == ["start a", "stop a"]


async def test_health_checks_run_under_the_mesh(clock: FakeClock) -> None:
    probed: list[str] = []
    third_round = asyncio.Event()

    async def probe(backend: Backend) -> bool:
        probed.append(backend.address)
        if len(probed) == 6:
            third_round.set()
        return backend.address != "b"

    check = HealthCheck(probe, interval=5.0, unhealthy_threshold=1)
    mesh = Mesh([svc("users", ["a", "b"], health_check=check)], clock=clock)
    async with mesh:
        [checker] = [c for c in mesh.service("users").components
                     if isinstance(c, HealthChecker)]
        task = checker._task
        assert task is not None
        assert not task.done()
        assert sorted(probed) == ["a", "b"]  # the first round ran before start returned
        await third_round.wait()
        health = mesh.health()["users"]
        # rounds are spaced by the interval (the first by at least half of it)
        assert clock.monotonic() >= 5.0 * 0.5 + 5.0 * 0.9
    assert checker._task is None
    assert task.done()
    assert [(b.address, b.status) for b in health.backends] == [("a", "up"), ("b", "unhealthy")]
    assert "probe returned False" in health.backends[1].reason


async def test_drain_waits_for_calls_in_flight() -> None:
    mesh = Mesh([svc("users")])
    release = asyncio.Event()

    async def slow(backend: Backend) -> str:
        await release.wait()
        return "done"

    await mesh.start()
    call = asyncio.ensure_future(mesh.call("users", slow))
    await until(lambda: mesh.in_flight == 1)
    closing = asyncio.ensure_future(mesh.aclose())
    await until(lambda: mesh._state == "closing")
    for _ in range(20):  # loop turns, not time: the drain polls while the call runs
        await asyncio.sleep(0)
    assert not closing.done()  # waiting for the call
    assert mesh.in_flight == 1
    with pytest.raises(MeshClosedError, match="closing"):
        await mesh.call("users", slow)
    release.set()
    assert await call == "done"
    await closing
    with pytest.raises(MeshClosedError, match="closed"):
        mesh.call_sync("users", lambda backend: 1)
    async with mesh:  # a closed mesh can be opened again
        assert await mesh.call("users", lambda backend: 2) == 2


@pytest.mark.parametrize("metrics", [True, False])
def test_in_flight_counts_nested_and_fake_calls_and_refusals_leave_none(metrics: bool
                                                                         ) -> None:
    mesh = Mesh([svc("users")], metrics=metrics)

    def outer(backend: Backend) -> tuple[int, int]:
        return mesh.in_flight, mesh.call_sync("users", lambda b: mesh.in_flight)

    assert mesh.call_sync("users", outer) == (1, 2)
    with mesh.override("users", object()):  # a fake: counted by the mesh itself
        assert mesh.call_sync("users", lambda fake: mesh.in_flight) == 1
    assert mesh.in_flight == 0
    mesh.close()
    with pytest.raises(MeshClosedError):
        mesh.call_sync("users", lambda b: 1)
    assert mesh.in_flight == 0  # the refused call was counted, then uncounted


@pytest.mark.parametrize("metrics", [True, False])
def test_sync_close_drains_calls_running_on_other_threads(metrics: bool) -> None:
    mesh = Mesh([svc("users")], metrics=metrics)
    running, release = threading.Event(), threading.Event()
    results: list[str] = []

    def slow(backend: Backend) -> str:
        running.set()
        release.wait(10)
        return "done"

    with mesh:
        caller = threading.Thread(target=lambda: results.append(mesh.call_sync("users", slow)))
        caller.start()
        assert running.wait(10)
        closer = threading.Thread(target=mesh.close)
        closer.start()
        closer.join(0.05)  # real threads are the point: close must wait for the call
        assert closer.is_alive()
        assert mesh.in_flight == 1
        release.set()
        closer.join(10)
        caller.join(10)
    assert results == ["done"]
    assert mesh.in_flight == 0


def test_a_service_registered_on_a_closed_mesh_is_refused_too() -> None:
    mesh = Mesh([svc("users")])
    mesh.close()
    mesh.register(svc("late"))  # metrics make its call series while the mesh refuses
    with pytest.raises(MeshClosedError, match="closed"):
        mesh.call_sync("late", lambda backend: 1)
    assert mesh.in_flight == 0
    with mesh:
        assert mesh.call_sync("late", lambda backend: 2) == 2


async def test_a_clock_that_raises_when_a_call_starts_leaves_nothing_in_flight() -> None:
    clock = BrokenClock()
    mesh = Mesh([svc("users")], clock=clock)
    clock.armed = True
    with pytest.raises(RuntimeError, match="clock broke"):
        mesh.call_sync("users", lambda b: 1)
    assert mesh.in_flight == 0
    clock.armed = True
    with pytest.raises(RuntimeError, match="clock broke"):
        await mesh.call("users", lambda b: 1)
    assert mesh.in_flight == 0
    assert await mesh.call("users", lambda b: 2) == 2
    assert mesh.in_flight == 0


async def test_drain_gives_up_after_the_timeout(clock: FakeClock) -> None:
    mesh = Mesh([svc("users")], drain_timeout=3.0, clock=clock)

    async def stuck(backend: Backend) -> None:
        await asyncio.Event().wait()

    await mesh.start()
    call = asyncio.ensure_future(mesh.call("users", stuck))
    await until(lambda: mesh.in_flight == 1)
    await mesh.aclose()
    assert clock.monotonic() == pytest.approx(3.0)
    assert not call.done()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_a_close_cancelled_while_draining_still_stops_everything() -> None:
    # An asyncio.timeout around the close (a shutdown bounded in time) cuts the
    # drain short; the components must still stop and the pools close, or health
    # checks run on behind a mesh that says it is closed.
    log: list[str] = []
    users = svc("users")
    users.attach(Recorder("users", log))
    mesh = Mesh([users], drain_timeout=30.0)

    async def stuck(backend: Backend) -> None:
        await asyncio.Event().wait()

    await mesh.start()
    call = asyncio.ensure_future(mesh.call("users", stuck))
    await until(lambda: mesh.in_flight == 1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await mesh.aclose()
    assert log == ["start users", "stop users"]
    assert mesh.state == "closed"
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    async with mesh:  # opened again: the component starts once more, and stops
        pass
    assert log == ["start users", "stop users"] * 2


async def test_a_close_cancelled_while_a_component_stops_stays_cancelled() -> None:
    # A health probe slow to unwind keeps the checker's stop() waiting for its task;
    # the caller cancelled meanwhile must see its CancelledError (a suppress around
    # `await task` swallowed it: the close returned as if never cancelled).
    probing, waiting = asyncio.Event(), asyncio.Event()
    unwinding, release = asyncio.Event(), asyncio.Event()

    async def probe(backend: Backend) -> bool:
        if not probing.is_set():
            probing.set()
            return True  # the first round, while the mesh starts
        waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            unwinding.set()
            await release.wait()
            raise
        return True

    log: list[str] = []
    base = svc("base")
    base.attach(Recorder("base", log))  # started before the checker, stopped after it
    mesh = Mesh([base, svc("users", backends=("a",), depends_on=("base",),
                           health_check=HealthCheck(probe, interval=0.001, jitter=0.0))])
    await mesh.start()
    await asyncio.wait_for(waiting.wait(), 10.0)  # the second round's probe waits
    closing = asyncio.ensure_future(mesh.aclose())
    await asyncio.wait_for(unwinding.wait(), 10.0)
    closing.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert log == ["start base", "stop base"]  # the close went on, then propagated it
    assert mesh.state == "closed"


class InterruptingClock(FakeClock):
    """A clock whose sleep is interrupted (Ctrl-C while the close drains)."""

    def sleep(self, seconds: float) -> None:
        raise KeyboardInterrupt


def test_a_sync_close_interrupted_while_draining_still_stops_everything() -> None:
    log: list[str] = []
    users = svc("users")
    users.attach(Recorder("users", log))
    mesh = Mesh([users], drain_timeout=30.0, clock=InterruptingClock())
    running, release = threading.Event(), threading.Event()

    def slow(backend: Backend) -> None:
        running.set()
        release.wait(10)

    caller = threading.Thread(target=mesh.call_sync, args=("users", slow))
    mesh.__enter__()  # (`with mesh` would close it again on the way out)
    caller.start()
    assert running.wait(10)
    with pytest.raises(KeyboardInterrupt):
        mesh.close()
    release.set()
    caller.join(10)
    assert log == ["start users", "stop users"]
    assert mesh.state == "closed"


async def test_register_on_an_open_mesh_starts_components() -> None:
    log: list[str] = []
    late = svc("late")
    late.attach(Recorder("late", log))
    async with Mesh([svc("users")]) as mesh:
        with pytest.raises(ml.ConfigError, match="aregister"):
            mesh.register(late)
        await mesh.aregister(late)
        assert log == ["start late"]
    assert log == ["start late", "stop late"]


def test_opening_twice_is_an_error() -> None:
    with Mesh([svc("users")]) as mesh, pytest.raises(ml.ConfigError, match="already open"):
        mesh.__enter__()


async def test_a_service_is_open_in_one_mesh_at_a_time() -> None:
    # Before, two open meshes shared one health checker: the first to close stopped
    # it, and the other's checker then failed each round ("start() the checker
    # first"), with no probe sent; and the service sent the last mesh's caller name.
    async with ml.testing.FakeBackend() as backend:
        users = Service("users", [backend.url], pipeline=NO_POLICY,
                        health_check=ml.HttpHealthCheck(interval=0.02))
        first, second = Mesh([users]), Mesh([users])  # registered in two: allowed
        async with first:
            with pytest.raises(ml.ConfigError, match="'users' is open in another mesh"):
                await second.start()
            assert second.state == "idle"  # nothing started: it may open later
            sent = backend.request_count
            await until(lambda: backend.request_count >= sent + 3)  # still probed
            async with Mesh() as third:
                with pytest.raises(ml.ConfigError, match="open in another mesh"):
                    await third.aregister(users)
                assert "users" not in third.registered()
        # Closed, the first has it no more: a later mesh opens with it (tests that
        # build a mesh per test from shared services) and probes.
        async with Mesh([users]):
            sent = backend.request_count
            await until(lambda: backend.request_count >= sent + 3)


def test_a_sync_mesh_refuses_a_service_with_components_open_in_another_mesh() -> None:
    log: list[str] = []
    users = svc("users")
    users.attach(Recorder("users", log))
    with Mesh([users]), pytest.raises(ml.ConfigError, match="open in another mesh"):
        Mesh([users]).__enter__()
    assert log == ["start users", "stop users"]  # started and stopped by one mesh
    with Mesh([users]) as again:  # the first one closed
        assert again.service("users") is users
    # Without components there is nothing one mesh's close could stop for the other.
    plain = svc("plain")
    with Mesh([plain]) as first, Mesh([plain]) as second:
        assert first.call_sync("plain", lambda b: b.address) in ("a", "b")
        assert second.call_sync("plain", lambda b: b.address) in ("a", "b")


def test_threads_opening_the_mesh_at_once_open_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    mesh = Mesh([svc("users")])
    mesh.attach(Recorder("component", log))
    ordering = mesh._components_in_order
    inside = threading.Event()

    def slow_ordering() -> list[Any]:
        inside.set()
        time.sleep(0.2)  # room for the other thread to try to open meanwhile
        return ordering()

    monkeypatch.setattr(mesh, "_components_in_order", slow_ordering)
    outcomes: list[str] = []

    def open_it() -> None:
        try:
            mesh.__enter__()
            outcomes.append("opened")
        except ml.ConfigError as error:
            outcomes.append(str(error))

    first = threading.Thread(target=open_it)
    first.start()
    inside.wait()
    open_it()
    first.join()
    try:
        assert sorted(outcomes)[1] == "opened"
        assert "already open" in sorted(outcomes)[0]
        assert log == ["start component"]  # started once, on one loop thread
    finally:
        mesh.close()
    assert log == ["start component", "stop component"]
    assert mesh.loop_thread is None


class FakeSession:
    """Stands for an ``aiohttp.ClientSession`` of ``mesh.aiohttp()``; its first
    ``closed`` check can be held up, as a thread switch would."""

    connector = None

    def __init__(self, hold: float = 0.0) -> None:
        self.hold, self.reading, self.closes = hold, threading.Event(), 0

    @property
    def closed(self) -> bool:
        if self.hold:
            hold, self.hold = self.hold, 0.0
            self.reading.set()
            time.sleep(hold)  # room for another thread to adopt a session meanwhile
        return self.closes > 0

    async def close(self) -> None:
        self.closes += 1


def test_sessions_adopted_by_threads_at_once_are_all_closed_with_the_mesh() -> None:
    slow = FakeSession(hold=0.2)
    first, second = FakeSession(), FakeSession()
    with Mesh([svc("users")]) as mesh:
        mesh.adopt_session(slow)
        adopting = threading.Thread(target=mesh.adopt_session, args=(first,))
        adopting.start()  # reads slow.closed, held up there
        slow.reading.wait()
        mesh.adopt_session(second)
        adopting.join()
    assert (slow.closes, first.closes, second.closes) == (1, 1, 1)


# -- overrides --------------------------------------------------------------------


async def test_override_with_a_fake_backend_object() -> None:
    mesh = Mesh([svc("users")])

    class FakeClient:
        def get(self, uid: int) -> str:
            return f"fake {uid}"

    with mesh.override("users", FakeClient()):
        assert await mesh.call("users", lambda client, uid: client.get(uid), 7) == "fake 7"
        assert mesh.call_sync("users", lambda client: client.get(1)) == "fake 1"
    assert await mesh.call("users", lambda backend: backend.address) in ("a", "b")


def test_overrides_nest_and_restore() -> None:
    mesh = Mesh([svc("users")])
    where = lambda backend: backend.address  # noqa: E731
    with mesh.override("users", ["x"]):
        assert mesh.call_sync("users", where) == "x"
        assert [b.address for b in mesh.service("users").backends] == ["x"]
        with mesh.override("users", svc("users", ["y"])):
            assert mesh.call_sync("users", where) == "y"
        assert mesh.call_sync("users", where) == "x"
    assert mesh.call_sync("users", where) in ("a", "b")
    with pytest.raises(ml.ConfigError, match="no service named 'orders'"), \
            mesh.override("orders", ["x"]):
        pass


# -- state and events ---------------------------------------------------------------


def test_snapshot_counts_per_backend(clock: FakeClock) -> None:
    mesh = Mesh([svc("users", ["a", "b"], outlier_detection=OutlierDetection(2))], clock=clock)

    def work(backend: Backend) -> None:
        clock.advance(0.010 if backend.address == "a" else 0.030)
        if backend.address == "b":
            raise ConnectionError("b is down")

    for _ in range(4):
        with contextlib.suppress(ConnectionError):
            mesh.call_sync("users", work)
    snap = mesh.snapshot()["users"]
    a, b = snap.backends
    assert (snap.requests, snap.errors, snap.in_flight) == (4, 2, 0)
    assert (a.requests, a.errors) == (2, 0)
    assert a.latency_p50 == pytest.approx(0.010)
    assert a.latency_p99 == pytest.approx(0.010)
    assert (b.requests, b.errors, b.status, b.ejections) == (2, 2, "ejected", 1)
    assert b.ejected_for == pytest.approx(30.0, abs=0.05)
    assert snap.as_dict()["backends"][1]["address"] == "b"
    assert mesh.health()["users"].as_dict()["status"] == "degraded"


def test_snapshot_reports_breaker_state() -> None:
    breaker = ml.CircuitBreaker(name="users-breaker")
    mesh = Mesh([svc("users", pipeline=ml.Pipeline(breaker))])
    breaker.force_open()
    assert mesh.snapshot()["users"].breakers == {"users-breaker": "forced_open"}


def test_mesh_hooks_see_routing_and_policy_events(clock: FakeClock) -> None:
    events: list[ml.Event] = []
    everyone = OutlierDetection(1, max_ejection_percent=100)
    mesh = Mesh([svc("users", ["a"], pipeline=ml.Pipeline(ml.Fallback(0)),
                     outlier_detection=everyone)], clock=clock)
    remove = mesh.add_hook(events.append)

    def down(backend: Backend) -> int:
        raise ConnectionError

    assert mesh.call_sync("users", down) == 0
    names = [type(e).__name__ for e in events]
    assert names == ["BackendEjected", "PanicModeEntered", "FallbackUsed"]
    late = mesh.register(svc("orders", ["o"], outlier_detection=everyone))
    with pytest.raises(ConnectionError):
        mesh.call_sync("orders", down)
    assert events[-2].service == "orders"
    remove()
    clock.advance(31.0)
    mesh.health()
    assert len(events) == 5  # unsubscribed: no BackendReturned recorded
    assert late.panic is False


def test_a_mesh_hook_that_raises_is_logged_on_meshlite_events(
        caplog: pytest.LogCaptureFixture) -> None:
    # docs/logging.md: a hook that raised is reported on meshlite.events, whichever
    # hook list it was added to.
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:8001"])])
    seen: list[ml.Event] = []

    def broken(event: ml.Event) -> None:
        raise RuntimeError("hook bug")

    mesh.add_hook(broken)
    mesh.add_hook(seen.append)
    event = ml.ConfigReloaded(policy="config", path="mesh.yaml", version=1)
    with caplog.at_level(logging.ERROR, logger="meshlite"):
        mesh.emit_event(event)
    assert seen == [event]  # the next hook still got it
    assert [r.name for r in caplog.records] == ["meshlite.events"]
    assert "hook bug" in caplog.text


def test_components_and_hooks_that_are_not_are_config_errors() -> None:
    # Refused when given, not when the mesh starts or the first event comes.
    mesh = Mesh([svc("users")])
    users = mesh.service("users")
    for attach in (mesh.attach, users.attach):
        with pytest.raises(ml.ConfigError, match=r"component must be an object with "
                                                 r"async start\(\) and async stop\(\)"):
            attach("health")  # type: ignore[arg-type]
    for add_hook in (mesh.add_hook, users.add_hook, ml.add_hook,
                     ml.Retry().hooks.add, Mesh().add_hook):
        with pytest.raises(ml.ConfigError, match="hook must be a callable"):
            add_hook(5)  # type: ignore[arg-type]
    assert users.components == []
    with mesh:  # nothing half-applied: it opens as before
        assert mesh.call_sync("users", lambda backend: backend.address) in ("a", "b")


def test_call_sync_refuses_an_async_function() -> None:
    runs = []

    async def lookup(backend: Any) -> str:
        runs.append(backend)
        return "ok"

    mesh = ml.Mesh([ml.Service("users", ["a", "b"])])
    with pytest.raises(TypeError, match=r"lookup is an async function.*await mesh\.call"):
        mesh.call_sync("users", lookup)
    assert runs == []
    assert asyncio.run(mesh.call("users", lookup)) == "ok"


def test_two_threads_registering_one_name_at_once_one_fails() -> None:
    # Both found the name free and both returned: the second silently replaced the
    # first, whose caller believed it registered.
    adopting, release, second_adopting = threading.Event(), threading.Event(), threading.Event()

    class Held(ml.Service):
        def add_hook(self, hook: Any) -> Any:  # the mesh subscribes it while registering
            adopting.set()
            assert release.wait(30)
            return super().add_hook(hook)

    class Noted(ml.Service):
        def add_hook(self, hook: Any) -> Any:
            second_adopting.set()
            return super().add_hook(hook)

    mesh = ml.Mesh()
    mesh.add_hook(lambda event: None)
    first, second = Held("users", ["a:1"]), Noted("users", ["b:1"])
    outcomes: dict[str, Any] = {}

    def register(key: str, service: ml.Service) -> None:
        try:
            outcomes[key] = mesh.register(service)
        except ml.ConfigError as error:
            outcomes[key] = error

    one = threading.Thread(target=register, args=("first", first))
    one.start()
    assert adopting.wait(30)
    two = threading.Thread(target=register, args=("second", second))
    two.start()
    second_adopting.wait(2.0)  # reached at once without the fix; never with it
    release.set()
    one.join(30)
    two.join(30)
    assert outcomes["first"] is first
    assert isinstance(outcomes["second"], ml.ConfigError)
    assert "two services are named 'users'" in str(outcomes["second"])
    assert mesh.service("users") is first
