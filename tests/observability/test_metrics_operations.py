"""ml.Metrics keeps at most ``max_operations`` operations per service: the calls of
any further one count under ``(other)``, so code naming operations without end adds
no series (18 samples each) without end. An HTTP call's operation is its method, and
a made-up one (a gateway passing its clients' methods on) is "HTTP". Real loopback
backends, a real scrape."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
from _exposition import by_label

import meshlite as ml
from meshlite.observability import start_http_server
from meshlite.testing import FakeBackend


def operations(text: str) -> dict[str, float]:
    return by_label(text, "meshlite_operation_requests_total", "operation")


async def test_made_up_methods_share_one_series() -> None:
    metrics = ml.Metrics(max_operations=3)
    async with FakeBackend() as backend:
        users = ml.Service("users", [backend.url], pipeline=ml.Pipeline(metrics))
        server = start_http_server(metrics)
        try:
            async with ml.Mesh([users]) as mesh, mesh.http("users") as client, \
                    httpx.AsyncClient() as scraper:
                for method in ("GET", "POST", "GET", *(f"X{i}" for i in range(500))):
                    assert (await client.request(method, "/")).status_code == 200
                text = (await scraper.get(server.url)).text
        finally:
            server.stop()
    # A method outside the standard ones is the operation "HTTP" (as its span's name)
    assert operations(text) == {"GET": 2, "POST": 1, "HTTP": 500}
    assert [r.method for r in backend.requests][-1] == "X499"  # sent as it was


def test_operations_beyond_the_bound_share_one_series(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = ml.Metrics(max_operations=3)
    pipeline = ml.Pipeline(metrics)

    def named(name: str) -> Callable[[], int]:
        def call() -> int:
            return 1
        call.__qualname__ = name
        return call

    server = start_http_server(metrics)
    try:
        with caplog.at_level(logging.WARNING, "meshlite.metrics"):
            for name in ("get", "post", "get", *(f"x{i}" for i in range(500))):
                assert pipeline.call(named(name)) == 1
        text = httpx.get(server.url).text
    finally:
        server.stop()
    assert operations(text) == {"get": 2, "post": 1, "x0": 1, "(other)": 499}
    assert len(text.splitlines()) < 150  # not 500 series of 18 samples
    folded = [r for r in caplog.records if "count under operation" in r.getMessage()]
    assert len(folded) == 1  # once a minute per service, not once per call
    assert "'x1'" in folded[0].getMessage()


def test_the_default_bound_and_a_bad_one() -> None:
    from meshlite.observability._policy import DEFAULT_MAX_OPERATIONS

    assert ml.Metrics().max_operations == DEFAULT_MAX_OPERATIONS == 256
    for bad in (0, -1, 1.5, "10", True):
        with pytest.raises(ml.ConfigError, match="max_operations"):
            ml.Metrics(max_operations=bad)  # type: ignore[arg-type]


def test_an_unnamed_breakers_transitions_fold_past_max_operations() -> None:
    # A breaker without name= in a pipeline without service= is named after each
    # function it guards: its transitions made a series set per function, past the
    # cap the calls' own series keep.
    from meshlite.observability import render
    from meshlite.testing import FakeClock

    clock = FakeClock()
    metrics = ml.Metrics(max_operations=4)
    breaker = ml.CircuitBreaker(window=1, min_calls=1, open_seconds=1, half_open_calls=1,
                                clock=clock)
    pipeline = ml.Pipeline(metrics, breaker)
    metrics.watch(pipeline)
    for i in range(12):  # each opens it (or, half-open, opens it again)
        def fail() -> None:
            raise ConnectionError

        fail.__qualname__ = f"rpc_{i}"
        with pytest.raises(ConnectionError):
            pipeline.call(fail)
        clock.advance(1)
    names = {line.split('breaker="')[1].split('"')[0]
             for line in render(metrics).splitlines()
             if line.startswith("meshlite_circuit_breaker_transitions_total{")}
    assert names == {"rpc_0", "rpc_1", "rpc_2", "rpc_3", "(other)"}  # as the calls' series
