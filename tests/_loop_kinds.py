"""The event loops the HTTP layer's loop tests run on: asyncio's own and uvloop's
(the loop uvicorn[standard] installs for the whole process), set as the process's
loop policy for one test (tests/conftest.py puts asyncio's back after it).

A module parametrizes its tests with a fixture of its own::

    @pytest.fixture(params=LOOP_KINDS, autouse=True)
    def loop_kind(request: pytest.FixtureRequest) -> str:
        return use_loop_kind(request.param)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable, Iterator

import pytest

__all__ = ["LOOP_KINDS", "WAIT", "loop_kind", "no_collector", "nothing_logged_at_error",
           "on_a_thread", "use_loop_kind"]

LOOP_KINDS = ["asyncio", "uvloop"]


def use_loop_kind(kind: str) -> str:
    """Make ``kind`` the loop of every loop made from now on in the test (``asyncio.run``,
    ``asyncio.new_event_loop``, on any thread); ``kind`` back."""
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")  # the dev extra has it (not on Windows)
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        asyncio.set_event_loop_policy(None)
    return kind


WAIT = 20.0
"""Seconds a test waits for a thread at most (a loop whose close hangs on what was
left open on it fails its test, not the suite)."""


@pytest.fixture(autouse=True)
def no_collector() -> Iterator[None]:
    """Sockets a cycle holds are closed when the collector runs: keep it from running,
    so only the mesh can have closed them."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def on_a_thread(run: Callable[[], object]) -> None:
    """Call ``run`` on a new thread and wait for it; raise what it raised."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "the thread did not end: a loop's close hung"
    if errors:
        raise errors[0]


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """The loop of every loop the test makes: asyncio's, then uvloop's."""
    return use_loop_kind(request.param)


@pytest.fixture(autouse=True)
def nothing_logged_at_error(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing of the test logged at ERROR (a transport's "Fatal error ... Event loop
    is closed"), and no close of meshlite's said it failed."""
    caplog.set_level(logging.DEBUG, logger="meshlite")
    yield
    records = caplog.get_records("call")
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR] == []
    assert [r.getMessage() for r in records if "failed" in r.getMessage()] == []
