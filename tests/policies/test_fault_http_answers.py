"""FaultInjection answering HTTP requests through the mesh: each request gets a response
of its own, and an injected failure status (an abort) counts as a backend's would."""

from __future__ import annotations

import httpx
import pytest

import meshlite as ml
from meshlite.http import ResponseStatusError
from meshlite.testing import BackendFactory, Chaos, MeshFactory


def _counted(policy: ml.FaultInjection) -> list[ml.FaultInjected]:
    seen: list[ml.FaultInjected] = []
    policy.hooks.add(lambda event: seen.append(event) if isinstance(
        event, ml.FaultInjected) else None)
    return seen


async def test_each_request_gets_its_own_copy_of_the_injected_response(
        mesh: MeshFactory) -> None:
    canned = httpx.Response(200, json={"items": []}, headers={"x-canned": "1"})
    m = mesh(ml.Service("users", ["http://127.0.0.1:9"], pipeline=ml.Pipeline(
        ml.FaultInjection(1.0, result=canned))))
    async with m.http("users") as users:
        first = await users.get("/users/1")
        second = await users.get("/users/2")
    assert first is not second
    assert first is not canned
    assert first.request.url.path == "/users/1"  # not overwritten by the next request
    assert second.request.url.path == "/users/2"
    assert first.json() == second.json() == {"items": []}
    assert first.headers["x-canned"] == "1"
    with m.http_sync("users") as users:
        third = users.get("/users/3")
    assert third is not canned
    assert third.json() == {"items": []}


async def test_a_streamed_response_is_refused_as_an_injected_result(mesh: MeshFactory) -> None:
    streamed = httpx.Response(200, content=iter([b"a", b"b"]))  # can be sent once only
    m = mesh(ml.Service("users", ["http://127.0.0.1:9"], pipeline=ml.Pipeline(
        ml.FaultInjection(1.0, result=streamed))))
    with m.http_sync("users") as users, pytest.raises(
            ml.ConfigError, match=r"FaultInjection: result must be an httpx.Response whose "
                                  r"body is in memory .*'users'"):
        users.get("/users/1")


async def test_an_injected_503_is_retried_and_opens_the_breaker_as_a_real_one(
        fake_backend: BackendFactory, mesh: MeshFactory) -> None:
    backend = fake_backend()
    abort = ml.FaultInjection(1.0, result=httpx.Response(503, text="aborted"))
    faults = _counted(abort)
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=4, min_calls=4)
    m = mesh(ml.Service("users", [backend.url], pipeline=ml.Pipeline(
        ml.Retry(attempts=3, backoff=ml.backoff.constant(0.0)), breaker, abort)))
    async with m.http("users") as users:
        answer = await users.get("/users/1")
    # Retry saw a failure, as for a backend's 503, and the caller got the answer
    assert len(faults) == 3
    assert answer.status_code == 503
    assert answer.text == "aborted"
    assert answer.request.url.path == "/users/1"
    with m.http_sync("users") as users, pytest.raises(ml.CircuitOpenError):
        users.get("/users/2")  # its first attempt is the fourth failure
    assert breaker.state == "open"
    assert len(faults) == 4
    assert backend.requests == []  # nothing was sent


async def test_an_injected_429_carries_its_retry_after_and_a_200_stays_an_answer(
        mesh: MeshFactory, chaos: Chaos) -> None:
    errors: list[BaseException] = []

    def fallback(error: BaseException) -> httpx.Response:
        errors.append(error)
        return httpx.Response(200, text="fallback")

    m = mesh(ml.Service("users", ["http://127.0.0.1:9"],
                        pipeline=ml.Pipeline(ml.Fallback(handler=fallback))))
    with chaos("users", result=httpx.Response(429, headers={"Retry-After": "7"})):
        async with m.http("users") as users:
            assert (await users.get("/users/1")).text == "fallback"
    [error] = errors
    assert isinstance(error, ResponseStatusError)
    assert error.status_code == 429
    assert error.retry_after == 7.0
    assert "injected by meshlite FaultInjection" in error.__notes__
    with chaos("users", result=httpx.Response(200, text="canned")):
        async with m.http("users") as users:
            assert (await users.get("/users/1")).text == "canned"
    assert len(errors) == 1
