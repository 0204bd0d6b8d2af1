"""A mesh call whose wire timeout fires because its caller's deadline passed says so:
the error is still the client library's timeout (``except httpx.ReadTimeout`` keeps
working) and is also ``ml.TimeoutExceeded``, so code above tells "my caller's time ran
out" from "the backend was slow within the client's own timeout", which stays the
plain library error.

Real loopback backends that never answer in time (FakeBackend with a long latency);
the caller's deadline is a sync ``ml.Timeout``, which sets no loop timer, so the
wire's own timer is what ends the attempt (the same error a loop timer firing up to
a millisecond late lets through under uvloop or load). No timed assertion."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import httpx
import pytest

import meshlite as ml
from meshlite.testing import FakeBackend

_BUDGET = 0.2  # the caller's time; the backend takes far longer


@pytest.fixture
def mesh() -> Iterator[ml.Mesh]:
    with FakeBackend(latency=30.0) as backend:
        # "plain" has the default pipeline (no Timeout of its own): only the caller's
        # deadline bounds it; "own" has a Timeout of its own within that deadline.
        services = [ml.Service("plain", [backend.url]),
                    ml.Service("own", [backend.url], pipeline=ml.Pipeline(ml.Timeout(_BUDGET)))]
        with ml.Mesh(services) as opened:
            yield opened


def _caught(call: object) -> BaseException:
    """What a call under a caller's deadline of ``_BUDGET`` raised inside that
    deadline (``call`` is a sync function), and check what the caller itself got."""
    seen: list[BaseException] = []

    @ml.Timeout(_BUDGET)
    def caller() -> None:
        try:
            call()  # type: ignore[operator]
        except Exception as error:
            seen.append(error)
            raise

    with pytest.raises(ml.TimeoutExceeded) as outer:
        caller()
    assert outer.value.policy == "timeout"  # the caller's own Timeout, as before
    assert outer.value.__cause__ is seen[0]
    return seen[0]


def _says_caller(error: BaseException) -> None:
    assert isinstance(error, ml.TimeoutExceeded)
    assert error.policy == "routing"
    assert error.service == "plain"
    assert "its caller's deadline passed" in str(error)
    assert error.__cause__ is not None
    assert error.__cause__ is not error


def test_http_sync_cut_by_the_callers_deadline(mesh: ml.Mesh) -> None:
    def call() -> None:
        with mesh.http_sync("plain") as client:
            client.get("/slow")

    error = _caught(call)
    assert isinstance(error, httpx.ReadTimeout)  # still httpx's timeout
    assert error.request.url.path == "/slow"
    _says_caller(error)


def test_http_cut_by_the_callers_deadline(mesh: ml.Mesh) -> None:
    async def main() -> None:
        async with mesh.http("plain") as client:
            await client.get("/slow")

    error = _caught(lambda: asyncio.run(main()))
    assert isinstance(error, httpx.ReadTimeout)
    _says_caller(error)


def test_aiohttp_cut_by_the_callers_deadline(mesh: ml.Mesh) -> None:
    async def main() -> None:
        async with mesh.aiohttp("plain") as session, session.get("/slow") as response:
            await response.read()

    error = _caught(lambda: asyncio.run(main()))
    assert isinstance(error, TimeoutError)  # what a plain aiohttp request's timer raises
    _says_caller(error)
    assert type(error.__cause__) is TimeoutError  # the attempt's timer's own


def test_the_clients_own_timeout_stays_the_backends(mesh: ml.Mesh) -> None:
    # A client timeout shorter than the caller's time fires first: the backend was
    # slow, the caller still has time, and the error is httpx's own.
    def call() -> None:
        with mesh.http_sync("plain", timeout=0.05) as client:
            client.get("/slow")

    @ml.Timeout(30.0)
    def caller() -> None:
        call()

    with pytest.raises(httpx.ReadTimeout) as raised:
        caller()
    assert not isinstance(raised.value, ml.TimeoutExceeded)


def test_without_a_deadline_nothing_changes(mesh: ml.Mesh) -> None:
    async def main() -> None:
        async with mesh.http("plain", timeout=0.05) as client:
            await client.get("/slow")

    with pytest.raises(httpx.ReadTimeout) as raised:
        asyncio.run(main())
    assert not isinstance(raised.value, ml.TimeoutExceeded)


def test_the_services_own_timeout_is_its_timeouts(mesh: ml.Mesh) -> None:
    # Cut by the service's own Timeout: the caller gets that Timeout's error, whose
    # cause is the wire's timeout, marked as the service's deadline.
    with mesh.http_sync("own") as client, pytest.raises(ml.TimeoutExceeded) as raised:
        client.get("/slow")
    assert raised.value.policy == "timeout"
    cause = raised.value.__cause__
    assert isinstance(cause, httpx.ReadTimeout)
    assert "the deadline of the service's Timeout passed" in str(cause)


def test_aiohttp_timeout_error_keeps_its_cause(mesh: ml.Mesh) -> None:
    # A TimeoutError leaving a mesh.aiohttp() request is raised as it is, not made
    # its own cause (the Timeout's error keeps the cancellation it cut the call with).
    async def main() -> None:
        async with mesh.aiohttp("own") as session, session.get("/slow") as response:
            await response.read()

    with pytest.raises(ml.TimeoutExceeded) as raised:
        asyncio.run(main())
    assert raised.value.__cause__ is not raised.value
    assert isinstance(raised.value.__cause__, asyncio.CancelledError)


def test_aiohttp_session_error_type_unchanged(mesh: ml.Mesh) -> None:
    # The session's own total timeout (no deadline) is aiohttp's TimeoutError, as is.
    async def main() -> None:
        timeout = aiohttp.ClientTimeout(total=0.05)
        async with mesh.aiohttp("plain", timeout=timeout) as session, \
                session.get("/slow") as response:
            await response.read()

    with pytest.raises(TimeoutError) as raised:
        asyncio.run(main())
    assert not isinstance(raised.value, ml.TimeoutExceeded)
