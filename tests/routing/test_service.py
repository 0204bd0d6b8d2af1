"""Service: the routing handler under a pipeline, backend sets, and validation."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.mesh import Mesh
from meshlite.routing import Backend, HealthCheck, OutlierDetection, RingHash, Service
from meshlite.testing import FakeClock


def retry(attempts: int) -> ml.Retry:
    return ml.Retry(attempts=attempts, backoff=ml.backoff.constant(0), budget=None)


def test_each_attempt_avoids_backends_already_tried() -> None:
    for _ in range(20):  # whatever the balancer draws
        mesh = Mesh([Service("s", ["a", "b", "c"], pipeline=ml.Pipeline(retry(4)),
                             outlier_detection=None)])
        tried: list[str] = []

        def down(backend: Backend, tried: list[str]) -> None:
            ctx = ml.current_context()
            assert ctx is not None
            assert ctx.backend is backend
            tried.append(backend.address)
            raise ConnectionError

        with pytest.raises(ConnectionError):
            mesh.call_sync("s", down, tried)
        assert sorted(tried[:3]) == ["a", "b", "c"]  # then, all tried, any of them
        assert len(tried) == 4


async def test_async_attempts_avoid_tried_backends_too() -> None:
    mesh = Mesh([Service("s", ["a", "b"], pipeline=ml.Pipeline(retry(2)),
                         outlier_detection=None)])
    tried: list[str] = []

    async def down(backend: Backend) -> None:
        tried.append(backend.address)
        raise ConnectionError

    with pytest.raises(ConnectionError):
        await mesh.call("s", down)
    assert sorted(tried) == ["a", "b"]


def test_a_single_policy_is_a_pipeline() -> None:
    mesh = Mesh([Service("s", ["a"], pipeline=ml.Fallback(-1))])
    assert mesh.call_sync("s", lambda b: 1 / 0) == -1


def test_without_panic_mode_the_error_lists_each_backend(clock: FakeClock) -> None:
    service = Service("s", ["a", "b"], pipeline=ml.Pipeline(), panic_mode=False,
                      outlier_detection=OutlierDetection(1, max_ejection_percent=100),
                      clock=clock)
    mesh = Mesh([service])
    for _ in range(2):
        with pytest.raises(ConnectionError):
            mesh.call_sync("s", lambda b: (_ for _ in ()).throw(ConnectionError("down")))
    with pytest.raises(ml.NoHealthyBackendError) as info:
        mesh.call_sync("s", lambda b: "never")
    message = str(info.value)
    assert "a is ejected for 30 s more after 1 consecutive failures" in message
    assert "b is ejected" in message
    assert info.value.service == "s"
    assert mesh.health()["s"].status == "down"


def test_no_backends_at_all() -> None:
    mesh = Mesh([Service("s", [], pipeline=ml.Pipeline())])
    with pytest.raises(ml.NoHealthyBackendError, match="'s' has no backends"):
        mesh.call_sync("s", lambda b: 1)
    assert mesh.health()["s"].status == "down"


def test_unhealthy_backends_are_skipped_and_named(clock: FakeClock) -> None:
    service = Service("s", ["a", "b"], pipeline=ml.Pipeline(), panic_mode=False, clock=clock)
    a, b = service.endpoints
    service._set_health(a, False, "GET /healthz answered 503")
    assert {Mesh([service]).call_sync("s", lambda x: x.address) for _ in range(5)} == {"b"}
    service._set_health(b, False, "probe timed out after 1.0 s")
    with pytest.raises(ml.NoHealthyBackendError, match="failing its health check: GET"):
        Mesh([service]).call_sync("s", lambda x: 1)


def test_set_backends_keeps_state_and_reports(clock: FakeClock) -> None:
    events: list[ml.Event] = []
    ring = RingHash(key=lambda k: k)
    service = Service("s", ["a", "b"], balancer=ring, pipeline=ml.Pipeline(), clock=clock)
    service.add_hook(events.append)
    mesh = Mesh([service])
    for _ in range(3):
        mesh.call_sync("s", lambda b, k: None, "k1")
    before = {e.address: e for e in service.endpoints}
    service.set_backends(["b", Backend("c", weight=2)])
    assert [b.address for b in mesh.service("s").backends] == ["b", "c"]
    assert service.endpoints[0] is before["b"]  # kept, with its counters
    changed = events[-1]
    assert (changed.added, changed.removed) == (("c",), ("a",))  # type: ignore[attr-defined]
    assert {mesh.call_sync("s", lambda b, k: b.address, "k1") for _ in range(3)} <= {"b", "c"}
    with pytest.raises(ml.ConfigError, match="unique addresses"):
        service.set_backends(["x", "x"])


def test_a_passed_deadline_stops_before_the_attempt(clock: FakeClock) -> None:
    service = Service("s", ["a"], pipeline=ml.Pipeline())
    called: list[Backend] = []
    ctx = ml.CallContext(called.append, (), {}, "op", "s")
    ctx.deadline, ctx.clock = 5.0, clock
    clock.advance(5.0)
    with pytest.raises(ml.TimeoutExceeded, match="deadline of 'op' passed before attempt 1"):
        service.sync_handler()(ctx)
    assert called == []
    assert service.endpoints[0].requests == 0


async def test_outside_cancellation_says_nothing_about_the_backend() -> None:
    mesh = Mesh([Service("s", ["a"], pipeline=ml.Pipeline(),
                         outlier_detection=OutlierDetection(1))])
    started = asyncio.Event()

    async def hang(backend: Backend) -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(mesh.call("s", hang))
    await started.wait()
    assert mesh.snapshot()["s"].in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    snap = mesh.snapshot()["s"]
    assert (snap.in_flight, snap.requests, snap.errors, snap.status) == (0, 0, 0, "healthy")


async def test_running_past_the_deadline_is_the_backends_failure(clock: FakeClock) -> None:
    service = Service("s", ["a", "b"], balancer="round_robin",
                      pipeline=ml.Pipeline(ml.Timeout(1.0, clock=clock)),
                      outlier_detection=OutlierDetection(1), clock=clock)
    mesh = Mesh([service])

    async def hang(backend: Backend) -> None:
        await asyncio.Event().wait()

    with pytest.raises(ml.TimeoutExceeded):
        await mesh.call("s", hang)
    snap = mesh.snapshot()["s"]
    assert (snap.in_flight, snap.errors) == (0, 1)
    assert sorted(b.status for b in snap.backends) == ["ejected", "up"]


def test_hedge_like_policies_that_cannot_run_sync_raise_config_error() -> None:
    class AsyncOnly(ml.Policy):
        kind = "async_only"

        def wrap(self, call_next: ml.Handler) -> ml.Handler:
            raise ml.ConfigError("AsyncOnly cannot run sync")

        def awrap(self, call_next: ml.AsyncHandler) -> ml.AsyncHandler:
            return call_next

    mesh = Mesh([Service("s", ["a"], pipeline=ml.Pipeline(AsyncOnly()))])
    with pytest.raises(ml.ConfigError, match="cannot run sync"):
        mesh.call_sync("s", lambda b: 1)


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    (("bad name",), {}, "Service: name"),
    (("s", ["a", "a"]), {}, "unique addresses"),
    (("s", [3]), {}, "backends must be Backend objects"),
    (("s",), {"pipeline": "fast"}, "pipeline must be"),
    (("s",), {"health_check": 5}, "health_check must be"),
    (("s",), {"outlier_detection": 5}, "outlier_detection must be"),
    (("s",), {"depends_on": [1]}, "depends_on must be"),
    (("s",), {"retry_non_idempotent": 1}, "retry_non_idempotent must be"),
    (("s",), {"panic_mode": None}, "panic_mode must be"),
    (("s",), {"http_pool": 3}, "http_pool must be"),
    (("s",), {"http_pool": {"max_connections": 10}}, "'max_connections' is not one"),
    (("s",), {"http_pool": {"limits": {"max_connections": 10}}}, "'limits' is an httpx.Limits"),
    (("s",), {"http_pool": {"http2": "yes"}}, "'http2' is True or False"),
    (("s",), {"http_pool": {"retries": -1}}, "'retries' is an integer"),
    (("s",), {"http_pool": {1: 2}}, "1 is not one"),
    (("s", 5), {}, "backends must be a list"),
    (("s", {"http://a": 1}), {}, "backends must be a list"),
    (("s",), {"depends_on": 5}, "depends_on must be"),
    (("s",), {"clock": 3}, r"Service 's': clock must be a clock with monotonic\(\)"),
    (("s",), {"random": 3}, r"Service 's': random must be a random.Random or None"),
    (("s",), {"balancer": "round_robin", "random": "seed"}, "random must be"),
    (("s", ["http://127.0.0.1:99999"]), {}, r"Backend: address .* port in 1\.\.65535"),
])
def test_bad_service_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ml.ConfigError, match=match):
        Service(*args, **kwargs)


def test_good_http_pool_options_reach_the_transport() -> None:
    limits = httpx.Limits(max_connections=3, max_keepalive_connections=1)
    service = Service("s", ["http://127.0.0.1:1"],
                      http_pool={"limits": limits, "retries": 1, "http1": True})
    assert service.http_pool == {"limits": limits, "retries": 1, "http1": True}


def test_service_accepts_single_values_and_defaults() -> None:
    service = Service("users.v2", "http://a", depends_on="auth",
                      health_check=HealthCheck(lambda b: True))
    assert service.backends == (Backend("http://a"),)
    assert service.depends_on == ("auth",)
    assert isinstance(service.outlier_detection, OutlierDetection)
    assert Service("s", outlier_detection=None).outlier_detection is None
    assert [type(p).__name__ for p in service.pipeline.walk()] == ["Pipeline", "Retry"]
    assert "users.v2" in repr(service)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"address": ""}, "Backend: address"),
    ({"address": "a", "weight": 0}, "Backend: weight must be > 0"),
    ({"address": "a", "weight": "1"}, "Backend: weight must be a number"),
    ({"address": "a", "zone": 1}, "Backend: zone"),
    ({"address": "a", "metadata": [1]}, "Backend: metadata"),
    ({"address": "http://127.0.0.1:99999"}, "Backend: address must be"),
    ({"address": "http://127.0.0.1:-1"}, "Backend: address must be"),
    ({"address": "https://127.0.0.1:x/v1"}, "Backend: address must be"),
    ({"address": "http://:8000"}, "Backend: address must be"),
])
def test_bad_backends(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ml.ConfigError, match=match):
        Backend(**kwargs)


def test_backend_is_an_immutable_value() -> None:
    b = Backend("http://a", weight=2, zone="eu-1", metadata={"rack": "r1"})
    assert b == Backend("http://a", 2.0, "eu-1")  # metadata is not part of equality
    assert hash(b) == hash(Backend("http://a", 2.0, "eu-1"))
    assert b.metadata["rack"] == "r1"
    with pytest.raises(TypeError):
        b.metadata["rack"] = "r2"  # type: ignore[index]
    with pytest.raises(AttributeError):
        b.weight = 3  # type: ignore[misc]
    assert str(b) == "http://a"


@pytest.mark.parametrize("balancer", ["round_robin", "random", "p2c_ewma"])
async def test_each_hedge_avoids_the_backends_of_every_attempt_racing(balancer: str) -> None:
    # The second hedge is forked from the primary's context, as the first was: the
    # first hedge's pick must be known to it all the same.
    for _ in range(5):
        mesh = Mesh([Service("s", ["a", "b", "c"], balancer=balancer, outlier_detection=None,
                             pipeline=ml.Pipeline(ml.Hedge(delay=0.01, max_hedges=2)))])
        seen: list[str] = []
        never = asyncio.Event()

        async def hangs_but_the_last(backend: Backend, seen: list[str],
                                     never: asyncio.Event) -> str:
            seen.append(backend.address)
            if len(seen) < 3:
                await never.wait()  # cancelled when the last hedge wins
            return backend.address

        winner = await mesh.call("s", hangs_but_the_last, seen, never)
        assert sorted(seen) == ["a", "b", "c"]
        assert winner == seen[2]


async def test_a_hedge_avoids_the_backend_of_the_primary() -> None:
    for _ in range(5):
        mesh = Mesh([Service("s", ["a", "b"], pipeline=ml.Pipeline(ml.Hedge(delay=0.001)))])
        seen: list[str] = []
        never = asyncio.Event()

        async def primary_hangs(backend: Backend, seen: list[str], never: asyncio.Event) -> str:
            seen.append(backend.address)
            if len(seen) == 1:
                await never.wait()  # cancelled when the hedge wins
            return backend.address

        winner = await mesh.call("s", primary_hangs, seen, never)
        assert sorted(seen) == ["a", "b"]
        assert winner == seen[1]
        assert mesh.snapshot()["s"].in_flight == 0
