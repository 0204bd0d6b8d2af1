"""A mesh left open: a ``ResourceWarning`` naming it, as aiohttp warns of a session
left open, and no noise, hang or lost telemetry besides.

Opened with ``async with mesh`` (or ``await mesh.start()``), a mesh keeps a guard
task on its loop. ``asyncio.run()`` (uvicorn's server, any runner) cancels the tasks
still pending when its main task ends: the guard then warns and closes the mesh on
that loop, while it still runs (and ``MeshMiddleware`` closes a mesh the app's
lifespan opened and left open before telling the server the shutdown is complete:
uvicorn ends a worker that shut down on SIGTERM by raising SIGTERM again, on its
loop, before any task is cancelled). Left to the loop's end instead, the health checks'
HTTP sessions were torn down by its shutdown of async generators ("RuntimeError:
athrow(): asynchronous generator is already running" and its traceback), the
``mesh.aiohttp()`` sessions logged "Unclosed client session", and the spans of the
last calls waited for the exit's flush.

Opened with ``with mesh``, the components run on a daemon thread, which holds no
exit up: at the interpreter's exit a mesh still open is named in a warning (the
telemetry has its own flush at exit).
"""

from __future__ import annotations

import asyncio
import atexit
import warnings
import weakref
from typing import Any

__all__ = ["close_left_open", "drop", "forget", "remember", "watch"]

_OPEN: weakref.WeakSet[Any] = weakref.WeakSet()
"""The meshes opened and not closed since (a mesh dropped meanwhile is not kept)."""


def remember(mesh: Any) -> None:
    """``mesh`` has been opened."""
    _OPEN.add(mesh)


def forget(mesh: Any) -> None:
    """``mesh`` has been closed."""
    _OPEN.discard(mesh)


def _warn(mesh: Any, name: str, when: str, then: str, how: str) -> None:
    warnings.warn(f"{name} was left open when {when}; {then}. Close it with {how}",
                  ResourceWarning, stacklevel=2, source=mesh)


def watch(mesh: Any) -> asyncio.Task[None]:
    """Start the guard of ``mesh``, just opened on the running loop."""
    return asyncio.get_running_loop().create_task(
        _guard(mesh), name=f"meshlite-unclosed-guard-{id(mesh):x}")


def drop(guard: asyncio.Task[None]) -> None:
    """End ``guard`` (it ends at once: its mesh is closing), from its loop or from
    another thread (a mesh opened on a loop may be closed from a thread)."""
    try:
        if guard is asyncio.current_task():
            return  # the guard is closing the mesh itself
    except RuntimeError:  # no loop runs in this thread
        pass
    loop = guard.get_loop()
    if not loop.is_closed():
        loop.call_soon_threadsafe(guard.cancel)


async def _guard(mesh: Any) -> None:
    """The guard task of ``mesh``, opened on this loop: it waits until it is
    cancelled, by the mesh's close (then it ends) or by the loop's end (then it
    closes the mesh, and warns)."""
    try:
        await asyncio.get_running_loop().create_future()
    except asyncio.CancelledError:
        # Cancelled by the mesh's close (which dropped it: a mesh closed and
        # opened again has a new guard), or by the loop's end.
        if mesh.state != "open" or mesh._guard is not asyncio.current_task():
            raise
    await close_left_open(mesh, "its event loop ended")


async def close_left_open(mesh: Any, when: str) -> None:
    """Close ``mesh``, found open ``when`` it should have been closed, and warn."""
    name = repr(mesh)  # while it says "open"
    try:
        await mesh.aclose()
    finally:
        _warn(mesh, name, when, "meshlite closed it then",
              "`async with mesh:` or `await mesh.aclose()`")


@atexit.register
def _at_exit() -> None:
    for mesh in list(_OPEN):
        if mesh.state == "open":
            _warn(mesh, repr(mesh), "the interpreter exited",
                  "its health checks and watchers ended with the process",
                  "`with mesh:` or `mesh.close()` (`async with mesh:` or "
                  "`await mesh.aclose()` on an event loop)")
