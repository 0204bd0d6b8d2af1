"""Closing a mesh from another thread than the one whose event loop opened it, while
that loop ends: the close finishes, every component stops, and nothing is reported
as failed."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import warnings

import pytest

import meshlite as ml


class _Component:
    """A mesh component recording its stop; ``slow`` ones wait in their stop until
    cancelled (the loop they run on ends meanwhile)."""

    def __init__(self, slow: bool = False) -> None:
        self.slow = slow
        self.stopping = threading.Event()
        self.stopped = False
        self.cancelled = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopping.set()
        if self.slow:
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        self.stopped = True


def test_a_loop_ending_while_a_close_from_another_thread_stops_the_components(
        caplog: pytest.LogCaptureFixture) -> None:
    # An application serving while `mesh.is_open` (false once a close begins) ends its
    # loop as soon as another thread's mesh.close() starts: the loop's end cancels the
    # stop under way. The components still all stop (the stop goes on through the
    # cancellation), but the close logged "stopping the mesh's components on its event
    # loop failed" at ERROR with a CancelledError traceback.
    first, slow = _Component(), _Component(slow=True)
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    mesh.attach(first)
    mesh.attach(slow)  # stopped first (reverse order)
    opened = threading.Event()

    async def owner() -> None:
        await mesh.start()
        opened.set()
        await asyncio.to_thread(slow.stopping.wait)  # the close is stopping it: leave

    thread = threading.Thread(target=asyncio.run, args=(owner(),))
    thread.start()
    try:
        assert opened.wait(30.0)
        with caplog.at_level(logging.DEBUG, logger="meshlite"):
            mesh.close()
    finally:
        slow.stopping.set()
        thread.join(30.0)
    assert not thread.is_alive()
    assert mesh.state == "closed"
    assert slow.cancelled
    assert first.stopped  # the others stopped after the cut one
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def _owner_thread(mesh: ml.Mesh, slow: _Component, opened: threading.Event,
                  ends: str) -> threading.Thread:
    """A thread opening ``mesh`` on an event loop of its own, which ends once the
    close has begun stopping ``slow``: ``asyncio.run`` returning (it cancels the tasks
    left and waits for them), or ``run_until_complete`` then ``loop.close()`` (the
    tasks left never run again)."""
    async def owner() -> None:
        await mesh.start()
        opened.set()
        await asyncio.to_thread(slow.stopping.wait)

    def run() -> None:
        if ends == "asyncio.run":
            asyncio.run(owner())
            return
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(owner())
        finally:
            loop.close()

    return threading.Thread(target=run)


def _collect_left_tasks() -> None:
    """Collect the tasks a closed loop left pending (the mesh's monitor, the cut
    stop), once the mesh is let go of: now, with asyncio's "Task was destroyed but it
    is pending!" in this test's log, not at a later test's or the interpreter's exit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.mark.parametrize("ends", ["asyncio.run", "loop.close"])
async def test_an_aclose_from_another_loop_while_the_mesh_loop_ends(
        ends: str, caplog: pytest.LogCaptureFixture) -> None:
    # The async twin: aclose() on another loop awaited the stop on the mesh's loop.
    # Cancelled by that loop's end, the stop's cancellation was raised to aclose()'s
    # caller, as if it had been cancelled itself; with the loop closed under it, the
    # stop never ended and aclose() waited for ever.
    first, slow = _Component(), _Component(slow=True)
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    mesh.attach(first)
    mesh.attach(slow)
    opened = threading.Event()
    thread = _owner_thread(mesh, slow, opened, ends)
    thread.start()
    try:
        assert await asyncio.to_thread(opened.wait, 30.0)
        closing = asyncio.ensure_future(mesh.aclose())
        done, _ = await asyncio.wait([closing], timeout=30.0)  # (a bound on a hang)
        assert done, "aclose() waits for a loop that has ended"
        closing.result()  # no CancelledError
    finally:
        slow.stopping.set()
        await asyncio.to_thread(thread.join, 30.0)
    assert mesh.state == "closed"
    del mesh, closing
    _collect_left_tasks()
    if ends == "asyncio.run":
        assert slow.cancelled
        assert first.stopped
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    else:
        assert "was closed before the mesh's components stopped" in caplog.text


def test_a_sync_close_from_another_thread_while_the_mesh_loop_is_closed(
        caplog: pytest.LogCaptureFixture) -> None:
    # mesh.close() waited for the stop on the mesh's loop with no end: a loop run by
    # run_until_complete() and closed once the mesh stopped being open never ran the
    # stop again, and the close (and its thread) hung for ever.
    slow = _Component(slow=True)
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:9"])])
    mesh.attach(slow)
    opened = threading.Event()
    owner = _owner_thread(mesh, slow, opened, "loop.close")
    owner.start()
    closer = threading.Thread(target=mesh.close, daemon=True)  # (daemon: if it hangs)
    try:
        assert opened.wait(30.0)
        closer.start()
        closer.join(30.0)  # (a bound on a hang)
        assert not closer.is_alive(), "mesh.close() waits for a loop that was closed"
    finally:
        slow.stopping.set()
        owner.join(30.0)
    assert mesh.state == "closed"
    del mesh, owner, closer
    _collect_left_tasks()
    assert "was closed before the mesh's components stopped" in caplog.text
