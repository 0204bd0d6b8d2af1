"""A mesh opened on one side and closed from the other: opened on an event loop in one
thread (``await mesh.start()``) and closed by ``mesh.close()`` from another, or opened
by ``with mesh`` (its components on the mesh's loop thread) and closed by ``await
mesh.aclose()`` on an event loop. Either way the close stops the components where they
run, and nothing is left running."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import meshlite as ml
from meshlite.testing import FakeBackend


def _checked(name: str, backend: FakeBackend) -> ml.Mesh:
    return ml.Mesh([ml.Service(name, [backend.url], health_check=ml.HttpHealthCheck(
        "/healthz", interval=0.05, jitter=0.0))])


def _probes_in(backend: FakeBackend, seconds: float) -> int:
    before = backend.request_count
    time.sleep(seconds)
    return backend.request_count - before


def test_a_mesh_opened_on_a_loop_and_closed_from_a_thread_stops_its_health_checks(
        caplog: pytest.LogCaptureFixture) -> None:
    # The sync close stopped only components of a loop thread: the health checker on
    # the opening loop kept probing, a reopening ran a second one, and the loop's end
    # logged "athrow(): asynchronous generator is already running".
    with FakeBackend() as backend:
        mesh = _checked("users", backend)
        opened, reopen, done = threading.Event(), threading.Event(), threading.Event()

        async def owner() -> None:
            await mesh.start()
            opened.set()
            await asyncio.to_thread(reopen.wait)
            await mesh.start()
            opened.set()
            await asyncio.to_thread(done.wait)
            await mesh.aclose()

        thread = threading.Thread(target=asyncio.run, args=(owner(),))
        thread.start()
        try:
            assert opened.wait(10.0)
            opened.clear()
            assert _probes_in(backend, 0.5) > 0
            mesh.close()
            assert mesh.state == "closed"
            time.sleep(0.1)  # (a probe under way when the close came)
            assert _probes_in(backend, 0.5) == 0
            reopen.set()
            assert opened.wait(10.0)
            one_checker = _probes_in(backend, 1.0)
            assert 0 < one_checker <= 30  # 20 a second for one checker, 40 for two
        finally:
            reopen.set()
            done.set()
            thread.join(10.0)
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


async def test_a_mesh_opened_with_with_and_closed_by_aclose_stops_its_loop_thread() -> None:
    # aclose awaited the components' stops on the caller's loop, which waited on tasks
    # of the loop thread for ever (until a timer of the caller's loop fired), and the
    # loop thread was never stopped.
    async with FakeBackend() as backend:
        mesh = _checked("users", backend)
        mesh.__enter__()
        loop_thread = mesh.loop_thread
        assert loop_thread is not None
        await asyncio.wait_for(mesh.aclose(), 10.0)
        assert mesh.state == "closed"
        assert mesh.loop_thread is None
        assert not loop_thread._thread.is_alive()
        count = backend.request_count
        await asyncio.sleep(0.3)
        assert backend.request_count == count
