"""The loop thread of a mesh opened with ``with mesh``: what another thread hands it
while it stops (a ``mesh.reload_sync()`` or ``mesh.register()`` racing
``mesh.close()``) ends with ``MeshClosedError``, never a wait without end."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import meshlite as ml
from meshlite.routing._lifecycle import LoopThread


def test_a_coroutine_handed_over_while_the_loop_stops_raises_mesh_closed() -> None:
    thread = LoopThread()
    started, cleaning, release = threading.Event(), threading.Event(), threading.Event()

    async def stubborn() -> None:  # its cancellation holds the stopping loop up
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cleaning.set()
            assert release.wait(30)  # blocks the loop thread, inside its stop
            raise

    asyncio.run_coroutine_threadsafe(stubborn(), thread.loop)
    assert started.wait(30)
    stopper = threading.Thread(target=thread.stop)
    stopper.start()
    assert cleaning.wait(30)  # the loop has left run_forever and not closed yet
    outcome: list[Any] = []
    handing = threading.Event()

    def hand_over() -> None:
        handing.set()
        try:
            outcome.append(thread.run(asyncio.sleep(0.5, "ran")))
        except Exception as error:  # handed to the test
            outcome.append(error)

    caller = threading.Thread(target=hand_over, daemon=True)
    caller.start()
    assert handing.wait(30)
    release.set()
    stopper.join(30)
    caller.join(30)  # was: a wait without end (the loop closed with it pending)
    assert not caller.is_alive()
    assert isinstance(outcome[0], ml.MeshClosedError)
    assert "loop thread stopped" in str(outcome[0])


def test_a_coroutine_handed_over_after_the_stop_raises_mesh_closed() -> None:
    thread = LoopThread()
    assert thread.run(asyncio.sleep(0, "ran")) == "ran"
    thread.stop()
    thread.stop()  # twice: harmless
    with pytest.raises(ml.MeshClosedError, match="sleep"):  # was: RuntimeError
        thread.run(asyncio.sleep(0, "ran"))


async def test_arun_after_the_stop_raises_mesh_closed() -> None:
    thread = LoopThread()
    assert await thread.arun(asyncio.sleep(0, "ran")) == "ran"
    thread.stop()
    with pytest.raises(ml.MeshClosedError):
        await thread.arun(asyncio.sleep(0, "ran"))
