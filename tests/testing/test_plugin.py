"""The pytest plugin: fixtures fake_clock, fake_backend, mesh, chaos and the
meshlite_no_sleep marker, run in inner pytest sessions (``pytester``), plus the
chaos machinery (Service.inject, Chaos) used directly."""

from __future__ import annotations

import importlib.metadata
import re
import threading
from pathlib import Path
from typing import Any

# httpx imports httpcore on its first request. An inner in-process session (below)
# is the first to send one here when this module runs early, and pytester removes
# the modules it imported when it ends: httpcore would then be imported anew later,
# with new exception classes, and httpx (which mapped the first ones) would let
# httpcore's own errors through to every later test of this process.
import httpcore  # noqa: F401
import pytest
from _pytester import INI, run_inner

import meshlite as ml
from meshlite.policies._fault import FaultInjected
from meshlite.testing import BackendFactory, Chaos, FakeClock, InjectedFault, MeshFactory
from meshlite.testing import _plugin as plugin

pytest_plugins = ["pytester"]



@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester whose runs see the plugin as an installed project's suite does."""
    pytester.makeini(INI)
    return pytester


# -- installation -----------------------------------------------------------------


def test_the_entry_point_names_the_plugin() -> None:
    points = importlib.metadata.entry_points(group="pytest11")
    assert {(p.name, p.value) for p in points} >= {("meshlite", "meshlite.testing._plugin")}


def test_the_plugin_is_active_in_this_suite(pytestconfig: pytest.Config,
                                            clock: FakeClock, fake_clock: FakeClock) -> None:
    assert pytestconfig.pluginmanager.get_plugin("meshlite") is plugin
    assert clock is not fake_clock  # the suite's own `clock` fixture is untouched


# -- fake_clock, fake_backend ------------------------------------------------------


def test_fake_clock_is_fresh_and_backends_are_stopped_after_the_test(
        inner: pytest.Pytester) -> None:
    inner.makepyfile("""
        import threading
        import httpx
        from meshlite.testing import FakeClock

        def test_clock_one(fake_clock):
            assert isinstance(fake_clock, FakeClock)
            assert fake_clock.monotonic() == 0.0
            fake_clock.advance(5.0)

        def test_clock_two(fake_clock):
            assert fake_clock.monotonic() == 0.0

        made = []

        def fake_threads():
            return [t for t in threading.enumerate() if "FakeBackend" in t.name]

        def test_uses_backends(fake_backend):
            a = fake_backend()
            b = fake_backend(error_rate=1.0, error_status=502)
            made.extend([a, b])
            assert a.running and b.running and a.port != b.port
            with httpx.Client() as client:
                assert client.get(a.url + "/x").status_code == 200
                assert client.get(b.url + "/x").status_code == 502
            assert len(fake_threads()) == 2

        async def test_async_test_too(fake_backend):
            b = fake_backend(status=201)
            made.append(b)
            async with httpx.AsyncClient() as client:
                assert (await client.get(b.url)).status_code == 201

        def test_all_were_stopped():
            assert len(made) == 3
            assert not any(b.running for b in made)
            assert fake_threads() == []
    """)
    run_inner(inner).assert_outcomes(passed=5)


def test_the_fake_clock_threshold_comes_from_the_marker_else_the_ini_option(
        pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "meshlite_autojump_threshold = 0.25\n")
    pytester.makepyfile("""
        import math
        import pytest

        def test_ini(fake_clock):
            assert fake_clock.autojump_threshold == 0.25

        @pytest.mark.meshlite_autojump_threshold(math.inf)
        def test_marker_wins(fake_clock):
            assert fake_clock.autojump_threshold == math.inf

        @pytest.mark.meshlite_autojump_threshold()
        def test_marker_without_seconds(fake_clock):
            pass

        @pytest.mark.meshlite_autojump_threshold(-1)
        def test_marker_below_zero(fake_clock):
            pass
    """)
    result = run_inner(pytester)
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines([
        "*ConfigError: @pytest.mark.meshlite_autojump_threshold takes one argument, the "
        "threshold in real seconds, got ()*",
        "*ConfigError: FakeClock: autojump_threshold must be a number of real seconds >= 0*",
    ])


def test_without_marker_or_ini_option_the_fake_clock_has_the_default_threshold(
        inner: pytest.Pytester) -> None:
    inner.makepyfile("""
        def test_default(fake_clock):
            assert fake_clock.autojump_threshold == 0.0
    """)
    run_inner(inner).assert_outcomes(passed=1)


def test_an_ini_threshold_that_is_not_a_number_says_so(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "meshlite_autojump_threshold = soon\n")
    pytester.makepyfile("""
        def test_ini(fake_clock):
            pass
    """)
    result = run_inner(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ConfigError: ini option meshlite_autojump_threshold must "
                                 "be a number of real seconds >= 0 (or inf), got 'soon'*"])


# -- mesh --------------------------------------------------------------------------


def test_meshes_are_isolated_and_closed_after_sync_and_async_tests(
        inner: pytest.Pytester) -> None:
    inner.makepyfile("""
        import threading
        import meshlite as ml

        made = []

        def test_sync(mesh, fake_backend):
            b = fake_backend()
            m = mesh(ml.Service("users", [b.url]))
            made.append(m)
            with m.http_sync("users") as client:
                assert client.get("/u/1").json()["path"] == "/u/1"
            assert m._http.made(m.service("users"), False)

        async def test_async(mesh, fake_backend):
            b = fake_backend()
            m = mesh([ml.Service("users", [b.url])])   # one list works as well
            made.append(m)
            async with m.http("users") as client:
                assert (await client.get("/u/2")).json()["path"] == "/u/2"
            assert m._http.made(m.service("users"), True)

        def test_left_open_with_a_loop_thread(mesh, fake_backend):
            b = fake_backend()
            m = mesh(ml.Service("users", [b.url],
                                health_check=ml.HttpHealthCheck("/healthz", interval=0.05)))
            m.__enter__()                       # opened and never closed by the test
            made.append(m)
            assert any(t.name == "meshlite-mesh" for t in threading.enumerate())

        async def test_left_open_on_the_loop(mesh, fake_backend):
            b = fake_backend()
            m = mesh(ml.Service("users", [b.url],
                                health_check=ml.HttpHealthCheck("/healthz", interval=0.05)))
            await m.start()
            made.append(m)

        def test_every_mesh_was_closed():
            assert len(made) == 4
            assert [m._state for m in made] == ["closed"] * 4
            for m in made:
                assert m._http is None  # the HTTP pools were closed
                assert m._started == []
            assert not any(t.name == "meshlite-mesh" for t in threading.enumerate())

        def test_each_test_gets_its_own_factory(mesh):
            m = mesh(drain_timeout=5.0)
            assert m.drain_timeout == 5.0
            assert mesh.meshes == [m]
    """)
    run_inner(inner).assert_outcomes(passed=6)


def test_the_mesh_fixture_works_in_strict_asyncio_mode(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.replace("asyncio_mode = auto", "asyncio_mode = strict"))
    pytester.makepyfile("""
        import pytest
        import meshlite as ml

        def test_sync(mesh):
            m = mesh(ml.Service("users", ["a"]))
            assert m.call_sync("users", lambda backend: backend.address) == "a"

        @pytest.mark.asyncio
        async def test_async(mesh):
            m = mesh(ml.Service("users", ["a"]))
            assert await m.call("users", lambda backend: backend.address) == "a"
    """)
    run_inner(pytester).assert_outcomes(passed=2)


def test_the_pytest_configuration_the_testing_page_gives_runs_async_tests_cleanly(
        pytester: pytest.Pytester) -> None:
    # What docs/testing.md tells a fresh project to put in its pyproject.toml must
    # run the plugin's async fixture with no warning from pytest-asyncio.
    page = (Path(__file__).parents[2] / "docs" / "testing.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n# pyproject.toml\n(.*?)```", page, re.S)
    assert block is not None, "docs/testing.md lost its pytest configuration block"
    pytester.makepyprojecttoml(block.group(1))
    pytester.makepyfile("""
        import meshlite as ml

        async def test_async(mesh):
            m = mesh(ml.Service("users", ["a"]))
            assert await m.call("users", lambda backend: backend.address) == "a"
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "Warning" not in result.stdout.str() + result.stderr.str()


def test_the_mesh_factory_defaults_to_a_short_drain() -> None:
    factory = MeshFactory()
    assert factory().drain_timeout == 1.0
    factory.close()
    assert factory.meshes == []


# -- chaos -------------------------------------------------------------------------


def test_chaos_faults_a_named_service_for_the_test_only(inner: pytest.Pytester) -> None:
    inner.makepyfile("""
        import pytest
        import meshlite as ml

        kept = {}

        def service(name="users"):
            retry = ml.Retry(attempts=3, backoff=ml.backoff.constant(0.0))
            return ml.Service(name, ["a", "b"], pipeline=ml.Pipeline(retry),
                              outlier_detection=None)

        def test_faulted(mesh, chaos):
            m = mesh(service())
            fault = chaos("users", rate=1.0, error=ConnectionError)
            kept["mesh"], kept["fault"] = m, fault
            with pytest.raises(ConnectionError):
                m.call_sync("users", lambda backend: backend.address)
            assert fault.injected == 3            # every attempt went through it

        def test_gone_after_the_test():
            m, fault = kept["mesh"], kept["fault"]
            assert not fault.active
            assert m.service("users")._injected == ()
            assert ml.Mesh([m.service("users")]).call_sync("users", lambda backend: "ok") == "ok"

        async def test_async_calls(mesh, chaos):
            m = mesh(service())
            fault = chaos("users", rate=1.0, result="injected")
            assert await m.call("users", lambda backend: "real") == "injected"
            fault.enabled = False
            assert await m.call("users", lambda backend: "real") == "real"
            fault.enabled = True
            with chaos("users", latency=0.0, error=TimeoutError("boom")):
                pass                               # a second fault, scoped to the block
            assert await m.call("users", lambda backend: "real") == "injected"
            assert fault.injected == 2

        def test_names_are_resolved_on_the_test_meshes(mesh, chaos):
            mesh(service("users"))
            mesh(service("users"), service("orders"))
            with pytest.raises(ml.ConfigError, match="2 meshes have a service 'users'"):
                chaos("users")
            with pytest.raises(ml.ConfigError, match="no mesh made by the `mesh` fixture"):
                chaos("billing")
            chaos("orders")                        # only one mesh has it

        def test_an_explicit_mesh_or_service(chaos):
            own = ml.Mesh([service()])
            fault = chaos("users", mesh=own)
            with pytest.raises(ConnectionError):
                own.call_sync("users", lambda backend: 1)
            svc = service("solo")
            chaos(svc, error=KeyError)
            with pytest.raises(KeyError):
                ml.Mesh([svc]).call_sync("solo", lambda backend: 1)
    """)
    run_inner(inner).assert_outcomes(passed=5)


def test_chaos_with_a_seed_faults_the_same_calls() -> None:
    def outcomes(seed: int) -> list[bool]:
        m = ml.Mesh([ml.Service("users", ["a"], pipeline=ml.Pipeline(),
                                outlier_detection=None)])
        fault = Chaos()( "users", rate=0.5, mesh=m, seed=seed)
        results = []
        for _ in range(40):
            try:
                m.call_sync("users", lambda backend: None)
                results.append(True)
            except ConnectionError:
                results.append(False)
        fault.remove()
        return results

    first = outcomes(3)
    assert first == outcomes(3)
    assert 5 < first.count(False) < 35


def test_chaos_rejects_bad_input(fake_clock: FakeClock) -> None:
    m = ml.Mesh([ml.Service("users", ["a"])])
    chaos = Chaos()
    with pytest.raises(ml.ConfigError, match="rate must be in"):
        chaos("users", rate=1.5, mesh=m)
    with pytest.raises(ml.ConfigError, match="no service named 'nope'"):
        chaos("nope", mesh=m)
    with pytest.raises(ml.ConfigError, match="service must be a service name"):
        chaos(42)  # type: ignore[arg-type]
    assert m.service("users")._injected == ()


def test_chaos_latency_sleeps_on_the_services_clock(fake_clock: FakeClock) -> None:
    m = ml.Mesh([ml.Service("users", ["a"], pipeline=ml.Pipeline())], clock=fake_clock)
    fault = Chaos()("users", latency=2.5, mesh=m)
    assert m.call_sync("users", lambda backend: "late") == "late"
    assert fake_clock.sleeps == [2.5]
    assert isinstance(fault, InjectedFault)
    assert "injected=1" in repr(fault)


def test_chaos_on_a_service_before_it_joins_a_mesh_sleeps_on_the_meshs_clock(
        fake_clock: FakeClock) -> None:
    service = ml.Service("users", ["a"], pipeline=ml.Pipeline())
    Chaos()(service, latency=5.0)  # the service's clock is still the real one here
    m = ml.Mesh([service], clock=fake_clock)
    assert m.call_sync("users", lambda backend: "late") == "late"
    assert fake_clock.sleeps == [5.0]  # no real five seconds


# -- Service.inject -----------------------------------------------------------------


async def test_inject_runs_innermost_and_can_be_removed(fake_clock: FakeClock) -> None:
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=4, min_calls=4, open_seconds=10.0,
                                clock=fake_clock)
    service = ml.Service("users", ["a", "b"], pipeline=ml.Pipeline(breaker),
                         outlier_detection=None, clock=fake_clock)
    m = ml.Mesh([service])
    remove = service.inject(ml.FaultInjection(rate=1.0))
    for _ in range(4):
        with pytest.raises(ConnectionError):
            await m.call("users", lambda backend: 1)
    assert breaker.state == "open"  # the pipeline saw the faults as failures
    assert all(e.requests == 0 for e in service.endpoints)  # no backend was called
    remove()
    remove()  # harmless
    breaker.reset()
    assert await m.call("users", lambda backend: backend.address) in ("a", "b")
    assert m.call_sync("users", lambda backend: 7) == 7


def test_injected_policies_nest_in_order_and_reach_service_hooks() -> None:
    seen: list[Any] = []
    service = ml.Service("users", ["a"], pipeline=ml.Pipeline(), outlier_detection=None)
    service.add_hook(seen.append)
    m = ml.Mesh([service])
    assert m.call_sync("users", lambda backend: "real") == "real"  # sync chain built
    remove_outer = service.inject(ml.FaultInjection(rate=1.0, result="outer"))
    remove_inner = service.inject(ml.FaultInjection(rate=1.0, result="inner"))
    assert m.call_sync("users", lambda backend: "real") == "outer"
    remove_outer()
    assert m.call_sync("users", lambda backend: "real") == "inner"
    remove_inner()
    assert m.call_sync("users", lambda backend: "real") == "real"
    assert [type(e) for e in seen] == [FaultInjected, FaultInjected]


def test_a_hook_added_after_an_injection_gets_its_events_until_removed() -> None:
    m = ml.Mesh([ml.Service("users", ["a"], pipeline=ml.Pipeline(), outlier_detection=None)])
    remove_fault = m.service("users").inject(ml.FaultInjection(rate=1.0, result="fault"))
    seen: list[Any] = []
    unsubscribe = m.add_hook(seen.append)  # after the injection
    assert m.call_sync("users", lambda backend: "real") == "fault"
    assert [type(e) for e in seen] == [FaultInjected]
    unsubscribe()
    assert m.call_sync("users", lambda backend: "real") == "fault"
    assert len(seen) == 1
    remove_fault()


def test_inject_refuses_what_is_not_a_policy() -> None:
    service = ml.Service("users", ["a"])
    with pytest.raises(ml.ConfigError, match="policy"):
        service.inject(lambda ctx: None)  # type: ignore[arg-type]


# -- the no-sleep marker -------------------------------------------------------------


def test_the_marker_turns_testing_mode_on_for_one_test(inner: pytest.Pytester) -> None:
    inner.makepyfile("""
        import pytest
        import meshlite as ml

        @pytest.fixture
        def mode_in_setup():
            return ml.is_testing()

        @pytest.mark.meshlite_no_sleep
        def test_marked(mode_in_setup):
            assert mode_in_setup and ml.is_testing()
            retry = ml.Retry(attempts=3, backoff=ml.backoff.constant(3600.0))
            calls = []
            def fail():
                calls.append(1)
                raise ConnectionError("down")
            with pytest.raises(ConnectionError):
                retry(fail)()                      # would sleep two hours otherwise
            assert len(calls) == 3

        def test_unmarked():
            assert not ml.is_testing()

        @pytest.mark.meshlite_no_sleep
        async def test_marked_async():
            assert ml.is_testing()
    """)
    run_inner(inner, "--strict-markers").assert_outcomes(passed=3)  # the marker is registered
    assert not ml.is_testing()


def test_the_ini_option_turns_it_on_for_every_test(inner: pytest.Pytester) -> None:
    inner.makeini(INI + "meshlite_no_sleep = true\n")
    inner.makepyfile("""
        import meshlite as ml

        def test_one():
            assert ml.is_testing()
    """)
    run_inner(inner).assert_outcomes(passed=1)


# -- the factories without pytest ----------------------------------------------------


def test_backend_factory_stops_every_backend() -> None:
    factory = BackendFactory()
    before = {t.ident for t in threading.enumerate()}
    backends = [factory(), factory(latency=0.01)]
    assert all(b.running for b in backends)
    factory.close()
    assert not any(b.running for b in backends)
    assert [t.name for t in threading.enumerate() if t.ident not in before] == []
    assert factory.backends == []
