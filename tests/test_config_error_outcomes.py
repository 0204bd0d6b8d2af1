"""A configuration error ending an attempt is the caller's mistake, never the backend's:
routing leaves it out of the backend's counts, latencies and ejection, and a hedge a
client cannot race is refused before a backend is picked for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import meshlite as ml
from meshlite.testing import FakeBackend


@pytest.fixture
async def good() -> AsyncIterator[FakeBackend]:
    async with FakeBackend() as backend:
        yield backend


def _mesh(urls: list[str]) -> ml.Mesh:
    # The second backend's address has a query: each attempt sent there raises
    # ConfigError (a mistake in the configuration, not a failing backend).
    detection = ml.OutlierDetection(consecutive_failures=1, failure_on=Exception)
    return ml.Mesh([ml.Service("users", urls, balancer="round_robin",
                               outlier_detection=detection)])


def _untouched(mesh: ml.Mesh, address: str) -> None:
    (backend,) = [b for b in mesh.snapshot()["users"].backends if b.address == address]
    assert (backend.requests, backend.errors, backend.ewma) == (0, 0, 0.0)
    assert backend.status == "up"
    assert backend.ejections == 0


async def test_a_config_error_never_counts_against_a_backend(good: FakeBackend) -> None:
    bad = good.url + "/?x=1"
    async with _mesh([good.url, bad]) as mesh, mesh.http("users") as client:
        outcomes = []
        for _ in range(6):
            try:
                outcomes.append((await client.get("/a")).status_code)
            except ml.ConfigError:
                outcomes.append("ConfigError")
        assert outcomes.count("ConfigError") == 3  # never ejected: still its turn
        _untouched(mesh, bad)


def _sync_calls(mesh: ml.Mesh) -> Iterator[object]:
    with mesh.http_sync("users") as client:
        for _ in range(4):
            try:
                yield client.get("/a").status_code
            except ml.ConfigError:
                yield "ConfigError"


async def test_a_config_error_never_counts_against_a_backend_sync(good: FakeBackend) -> None:
    bad = good.url + "/?x=1"
    async with _mesh([good.url, bad]) as mesh:
        outcomes = await asyncio.to_thread(lambda: list(_sync_calls(mesh)))
        assert outcomes.count("ConfigError") == 2
        _untouched(mesh, bad)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.setattr("meshlite.telemetry._spans._tracer", provider.get_tracer("t"))
    return exporter


async def test_an_aiohttp_hedge_is_refused_before_a_backend_is_picked(
        spans: InMemorySpanExporter) -> None:
    async with FakeBackend() as a, FakeBackend() as b:
        a.set(latency=0.2)
        b.set(latency=0.2)
        service = ml.Service("users", [a.url, b.url], balancer="round_robin",
                             pipeline=ml.Pipeline(ml.Hedge(0.02, max_hedges=3)))
        events: list[ml.HedgeStarted] = []
        async with ml.Mesh([service]) as mesh:
            mesh.add_hook(lambda e: events.append(e) if isinstance(e, ml.HedgeStarted)
                          else None)
            async with mesh.aiohttp("users").get("/x") as response:
                assert response.status == 200  # the primary attempt answered
            backends = mesh.snapshot()["users"].backends
    kinds = [s.kind for s in spans.get_finished_spans()]
    assert kinds.count(trace.SpanKind.CLIENT) == 1  # one attempt: no backend for a hedge
    assert events == []  # no hedge started
    assert a.stats.requests + b.stats.requests == 1
    assert sum(x.errors for x in backends) == 0


async def test_a_refused_hedge_is_raised_when_the_primary_fails_first() -> None:
    # The primary's 503 would start a hedge at once: the refusal is the call's last
    # word, so the misconfiguration is not hidden behind a backend's answer.
    async with FakeBackend() as a:
        a.set(status=503)
        service = ml.Service("users", [a.url], pipeline=ml.Pipeline(ml.Hedge(5.0)))
        async with ml.Mesh([service]) as mesh:
            with pytest.raises(ml.ConfigError, match="cannot race"):
                await mesh.aiohttp("users").get("/x")
            (backend,) = mesh.snapshot()["users"].backends
    assert a.stats.requests == 1
    assert backend.errors == 1  # the primary's 503, and nothing for the hedge


async def test_a_config_error_never_opens_a_circuit_breaker(good: FakeBackend) -> None:
    # Every other attempt raises ConfigError (the backend with a query). Counted as
    # failures, they would be half the window and open the breaker: the callers would
    # then see CircuitOpenError in place of the mistake to correct.
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=4, min_calls=2,
                                failure_on=Exception)
    service = ml.Service("users", [good.url, good.url + "/?x=1"], balancer="round_robin",
                         pipeline=breaker)
    async with ml.Mesh([service]) as mesh, mesh.http("users") as client:
        outcomes = []
        for _ in range(8):
            try:
                outcomes.append((await client.get("/a")).status_code)
            except ml.ConfigError as error:
                outcomes.append(type(error).__name__)
        # (round robin starts at a random backend, then alternates)
        assert sorted(map(str, outcomes)) == ["200"] * 4 + ["ConfigError"] * 4
        assert breaker.state == "closed"


def test_a_config_error_says_nothing_to_a_breaker_around_a_function() -> None:
    breaker = ml.CircuitBreaker(failure_rate=0.5, window=2, min_calls=1,
                                failure_on=Exception)

    @breaker
    def misconfigured() -> None:
        raise ml.ConfigError("no such option", policy="example")

    for _ in range(3):
        with pytest.raises(ml.ConfigError):
            misconfigured()
    assert breaker.state == "closed"
