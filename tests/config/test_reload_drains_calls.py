"""A service a reload retires (or an override made, once the override ends) drains
whole calls, not only attempts: a call waiting out its retry's backoff has no
attempt in flight, yet it is in flight, and its next attempt must not find the
service's connection pools closed. Real FakeBackends, real HTTP clients, a real
config file."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from _system import wait_for

import meshlite as ml
from meshlite.testing import FakeBackend

BACKOFF = 1.0
"""The retry's backoff: the reload and the retirement happen while the call waits it
out (a bound for a loaded machine, not a timing the test measures)."""

CONFIG = """services:
  users:
    backends: ["{url}"]
    balancer: {balancer}
    retry: {{attempts: 3, backoff: {backoff}}}
"""


def _config(path: Path, url: str, balancer: str) -> None:
    path.write_text(CONFIG.format(url=url, balancer=balancer, backoff=BACKOFF))


async def _until(predicate: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: never happened"
        await asyncio.sleep(0.005)


async def test_a_call_in_its_retrys_backoff_through_a_reload_completes(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    async with FakeBackend(error_rate=1.0, error_status=503) as fake:
        _config(path, fake.url, "round_robin")
        async with ml.Mesh.from_config(str(path)) as mesh, mesh.http("users") as client:
            old = mesh.service("users")
            call = asyncio.create_task(client.get("/users/1"))
            await _until(lambda: fake.stats.errors == 1, "the first attempt failed")
            fake.set(error_rate=0.0)
            _config(path, fake.url, "p2c_ewma")  # a routing change: a new service
            assert await mesh.reload()
            assert mesh.service("users") is not old
            assert mesh.in_flight == 1  # the call, between two attempts
            await asyncio.sleep(0.05)  # (the retired service's drain has looked)
            assert not call.done()
            response = await call  # was: MeshClosedError, its pools closed
            assert (response.status_code, response.json()["path"]) == (200, "/users/1")
            assert fake.stats.requests == 2
            await _until(lambda: old not in mesh._live, "the drained service let go of")
            assert mesh.in_flight == 0


def test_a_sync_call_in_its_retrys_backoff_through_a_reload_completes(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    with FakeBackend(error_rate=1.0, error_status=503) as fake:
        _config(path, fake.url, "round_robin")
        with ml.Mesh.from_config(str(path)) as mesh, mesh.http_sync("users") as client:
            answers: list[httpx.Response | BaseException] = []

            def get() -> None:
                try:
                    answers.append(client.get("/users/2"))
                except BaseException as error:
                    answers.append(error)

            caller = threading.Thread(target=get)
            caller.start()
            wait_for(lambda: fake.stats.errors == 1, 30.0, "the first attempt failed",
                     step=0.005)
            fake.set(error_rate=0.0)
            _config(path, fake.url, "p2c_ewma")
            assert mesh.reload_sync()
            caller.join(30)
            (answer,) = answers
            assert isinstance(answer, httpx.Response), answer
            assert answer.status_code == 200


async def test_a_call_in_its_retrys_backoff_when_an_override_ends_completes() -> None:
    retry = ml.Pipeline(ml.Retry(attempts=3, backoff=ml.backoff.constant(BACKOFF)))
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"], pipeline=retry)])
    async with FakeBackend(error_rate=1.0, error_status=503) as fake, mesh, \
            mesh.http("users") as client:
        with mesh.override("users", ml.Service("users", [fake.url], pipeline=retry)) as made:
            call = asyncio.create_task(client.get("/users/3"))
            await _until(lambda: fake.stats.errors == 1, "the first attempt failed")
            fake.set(error_rate=0.0)
        await asyncio.sleep(0.05)
        assert made in mesh._live  # draining: the call is still in flight on it
        response = await call
        assert response.status_code == 200
        await _until(lambda: made not in mesh._live, "the drained service let go of")
