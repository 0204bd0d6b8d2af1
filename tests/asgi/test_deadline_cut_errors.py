"""A request's deadline passing while a mesh call is in flight: the call's wire has a
timer of its own, set to the time the request had left, and under load it can fire
in the same loop turn as the middleware's, just before it. The handler then raises
the wire's ``httpx.ReadTimeout`` (or ``ConnectTimeout``, ``ConnectError``) instead of
being cancelled, and the caller is owed the same 504 as when the middleware's timer
came first, not the 500 of an error escaping the app (with a traceback in the
server's log per request). Served by uvicorn on loopback; the handler holds the loop
until its deadline has passed, so that its error comes after it whatever the
machine's speed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import meshlite as ml
from meshlite.asgi import MeshMiddleware, Route
from meshlite.testing import AsgiServer

_DEADLINE = {"x-meshlite-deadline": "20"}


def _raising(make: Callable[[], Exception]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (ml.remaining() or 0.0) > 0.0:
            time.sleep(0.002)  # noqa: ASYNC251 (the point: the loop held, no timer runs)
        raise make()
    return app


def _read_timeout() -> Exception:
    return httpx.ReadTimeout("service 'stock', backend http://127.0.0.1:9: timed out")


def _connect_error() -> Exception:
    return httpx.ConnectError("service 'stock', backend http://127.0.0.1:9: refused")


@pytest.mark.parametrize("routes", [[], [Route("/", timeout=30.0)]],
                         ids=["caller_deadline", "with_route_timeout"])
@pytest.mark.parametrize("make", [_read_timeout, _connect_error, TimeoutError])
async def test_a_transport_error_after_the_deadline_is_answered_504(
        make: Callable[[], Exception], routes: list[Route],
        caplog: pytest.LogCaptureFixture) -> None:
    app = MeshMiddleware(_raising(make), routes=routes, trace=False)
    with caplog.at_level(logging.ERROR):
        async with AsgiServer(app) as server, httpx.AsyncClient() as client:
            r = await client.get(server.url + "/", headers=_DEADLINE)
    assert (r.status_code, r.json()["error"]) == (504, "deadline_exceeded")
    assert app.stats.routes()[0]["statuses"] == {"504": 1}
    assert [rec.getMessage() for rec in caplog.records if rec.name.startswith("uvicorn")] == []


async def test_a_bug_after_the_deadline_is_still_the_apps_500(
        caplog: pytest.LogCaptureFixture) -> None:
    # Only what a deadline causes (a transport failure, a timeout) is the deadline's:
    # a programming error stays a 500 with its traceback.
    app = MeshMiddleware(_raising(lambda: KeyError("sku")), trace=False)
    with caplog.at_level(logging.ERROR):
        async with AsgiServer(app) as server, httpx.AsyncClient() as client:
            r = await client.get(server.url + "/", headers=_DEADLINE)
    assert r.status_code == 500
    assert app.stats.routes()[0]["statuses"] == {"500": 1}
    assert any("Exception in ASGI application" in rec.getMessage() for rec in caplog.records)


async def test_a_transport_error_before_the_deadline_is_left_to_the_app() -> None:
    # A dependency failing while the caller still waits is the app's to answer.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise _connect_error()

    wrapped = MeshMiddleware(app, trace=False)
    async with AsgiServer(wrapped) as server, httpx.AsyncClient() as client:
        r = await client.get(server.url + "/", headers={"x-meshlite-deadline": "60000"})
    assert r.status_code == 500
    assert wrapped.stats.routes()[0]["statuses"] == {"500": 1}
