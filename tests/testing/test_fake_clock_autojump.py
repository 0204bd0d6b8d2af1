"""FakeClock's autojump: the earliest sleeper moves the clock only when the loop is
quiet, so real requests (to a FakeBackend, say) are not cut by a jump of fake time."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from typing import Any

import pytest

import meshlite as ml
from meshlite.testing import FakeBackend, FakeClock
from meshlite.testing._clock import _SETTLE_TURNS
from meshlite.testing._quiet import io_pending


def timed_mesh(backend: FakeBackend, clock: FakeClock) -> ml.Mesh:
    service = ml.Service("s", [backend.url], pipeline=ml.Pipeline(ml.Timeout(5.0, clock=clock)))
    return ml.Mesh([service], clock=clock)


async def turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


# -- real I/O on the test's own loop -------------------------------------------------


async def test_a_timeout_on_a_fake_clock_does_not_cut_requests_to_a_fake_backend() -> None:
    # The backend serves on this loop: a request on its way shows as a socket event
    # the loop has yet to handle, which holds the clock. Before, the Timeout's sleeper
    # jumped 5 s after a few turns of the loop: all 50 timed out, the clock at 250 s.
    clock = FakeClock()
    async with FakeBackend() as backend, timed_mesh(backend, clock) as mesh:
        client = mesh.http("s")
        statuses = [(await client.get("/x")).status_code for _ in range(50)]
    assert statuses == [200] * 50
    assert clock.monotonic() == 0.0
    assert backend.stats.requests == 50


async def test_the_clock_holds_while_a_socket_has_events_to_handle() -> None:
    loop = asyncio.get_running_loop()
    if io_pending(loop) is None:
        pytest.skip("this event loop does not show its sockets' events")
    clock = FakeClock()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    got: list[bytes] = []
    loop.add_reader(ours, lambda: got.append(ours.recv(1)))  # one byte a turn
    try:
        theirs.sendall(b"x" * (8 * _SETTLE_TURNS))
        await clock.asleep(1.0)
        assert len(got) == 8 * _SETTLE_TURNS   # every byte handled before time moved
        assert clock.monotonic() == 1.0
    finally:
        loop.remove_reader(ours)
        ours.close()
        theirs.close()


def test_a_loop_that_does_not_show_its_sockets_is_not_guessed_at() -> None:
    class Opaque:  # uvloop and the Windows proactor keep no selectors object
        pass

    assert io_pending(Opaque()) is None  # type: ignore[arg-type]


async def test_requests_to_a_fake_backend_on_its_own_thread_are_not_cut_either() -> None:
    # The loop sees nothing while the backend's thread works; the backend itself holds
    # the clock until its answer is on the way back (before: some of the 50 timed out).
    clock = FakeClock()
    with FakeBackend() as backend:
        async with timed_mesh(backend, clock) as mesh:
            client = mesh.http("s")
            statuses = [(await client.get("/x")).status_code for _ in range(50)]
    assert statuses == [200] * 50
    assert clock.monotonic() == 0.0


async def test_a_backend_latency_in_real_time_holds_the_clock() -> None:
    clock = FakeClock()
    async with FakeBackend(latency=0.05) as backend, timed_mesh(backend, clock) as mesh:
        assert (await mesh.http("s").get("/x")).status_code == 200
    assert clock.monotonic() == 0.0


@pytest.mark.parametrize("own_thread", [False, True])
async def test_a_request_the_backend_holds_does_not_hold_the_clock(own_thread: bool) -> None:
    # hang=True is what timeouts are for: the Timeout's 5 s pass, none of them real.
    clock = FakeClock()
    backend = FakeBackend(hang=True)
    if own_thread:
        backend.start_sync()
    else:
        await backend.start()
    try:
        async with timed_mesh(backend, clock) as mesh:
            with pytest.raises(ml.TimeoutExceeded):
                await asyncio.wait_for(mesh.http("s").get("/x"), 30.0)
        assert clock.monotonic() == 5.0
    finally:
        if own_thread:
            backend.stop_sync()
        else:
            await backend.stop()


# -- the threshold -------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [60.0, math.inf])
async def test_no_jump_while_a_server_on_another_thread_holds_a_request(
        threshold: float) -> None:
    # A held request is quiet as far as the backend goes (a hang is what timeouts are
    # for): here only the threshold keeps the Timeout's sleeper from jumping.
    loop = asyncio.get_running_loop()
    arrived = asyncio.Event()

    def note_arrival() -> float:
        loop.call_soon_threadsafe(arrived.set)
        return 0.0

    clock = FakeClock(autojump_threshold=threshold)
    with FakeBackend(latency=note_arrival, hang=True) as backend:
        async with timed_mesh(backend, clock) as mesh:
            call = asyncio.ensure_future(mesh.http("s").get("/x"))
            await asyncio.wait_for(arrived.wait(), 30.0)
            await turns(50 * _SETTLE_TURNS)          # far more turns than settling takes
            assert not call.done()
            assert clock.monotonic() == 0.0
            backend.set(hang=False)
            assert (await asyncio.wait_for(call, 30.0)).status_code == 200
    assert clock.monotonic() == 0.0


async def test_with_a_threshold_the_earliest_sleeper_jumps_after_that_much_quiet() -> None:
    clock = FakeClock(autojump_threshold=0.05)
    began = time.monotonic()
    await asyncio.gather(clock.asleep(10.0), clock.asleep(3.0))
    assert time.monotonic() - began >= 0.1      # two jumps, each after 0.05 s of quiet
    assert clock.monotonic() == 10.0


async def test_a_sleeper_coming_and_going_starts_the_quiet_over() -> None:
    clock = FakeClock(autojump_threshold=0.2)
    first = asyncio.ensure_future(clock.asleep(10.0))
    await asyncio.sleep(0.1)                    # part of the quiet goes by
    if first.done():
        pytest.skip("the machine stalled for longer than the threshold")
    other = asyncio.ensure_future(clock.asleep(20.0))
    await turns(2)
    other.cancel()
    left = time.monotonic()
    await asyncio.wait_for(first, 30.0)
    assert time.monotonic() - left >= 0.2       # counted from the change, not from the start
    assert clock.monotonic() == 10.0


async def test_an_infinite_threshold_never_jumps_and_advance_still_wakes() -> None:
    clock = FakeClock(autojump_threshold=math.inf)
    sleeper = asyncio.ensure_future(clock.asleep(1.0))
    await turns(20 * _SETTLE_TURNS)
    await asyncio.sleep(0.05)                   # several of its real polls
    assert not sleeper.done()
    assert clock.monotonic() == 0.0
    clock.advance(1.0)
    await asyncio.wait_for(sleeper, 30.0)
    assert clock.monotonic() == 1.0


async def test_a_zero_threshold_jumps_as_before() -> None:
    clock = FakeClock(autojump_threshold=0)
    await clock.asleep(30.0)
    assert clock.monotonic() == 30.0
    assert clock.autojump_threshold == 0.0


@pytest.mark.parametrize("threshold", [-0.1, math.nan, -math.inf, "1", None, True])
def test_a_threshold_that_is_not_a_number_of_seconds_is_refused(threshold: Any) -> None:
    with pytest.raises(ml.ConfigError, match=r"^FakeClock: autojump_threshold must be a "
                                             r"number of real seconds >= 0 .*math\.inf"):
        FakeClock(autojump_threshold=threshold)


@pytest.mark.parametrize("threshold", [0, 0.5, 2, math.inf])
def test_thresholds_from_zero_to_infinity_are_taken(threshold: float) -> None:
    assert FakeClock(autojump_threshold=threshold).autojump_threshold == threshold
