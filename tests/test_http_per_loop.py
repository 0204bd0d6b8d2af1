"""PerLoop, the one value per event loop both async wires keep (httpcore transports,
aiohttp sessions): real event loops in real threads; the values record what was done
to them. The wires themselves, with requests, are in test_http_loops.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from meshlite._http._per_loop import PerLoop

WAIT = 10.0
"""Seconds a test waits for another thread at most."""


class Value:
    """What a holder makes for one loop; records how it was closed or ended."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed_on: asyncio.AbstractEventLoop | None = None
        self.closed = threading.Event()
        self.ended = 0


class Recorder:
    """A holder's callbacks, and what they were called with."""

    def __init__(self, end_delay: float = 0.0) -> None:
        self.made: list[Value] = []
        self.ended: list[Value] = []
        self.end_delay = end_delay
        self.holder: PerLoop[Value] = PerLoop(self.make, self.close, self.end_dead)

    def make(self, loop: asyncio.AbstractEventLoop) -> Value:
        value = Value(loop)
        self.made.append(value)
        return value

    async def close(self, value: Value) -> None:
        await asyncio.sleep(0)  # done only if awaited to the end
        value.closed_on = asyncio.get_running_loop()
        value.closed.set()

    def end_dead(self, value: Value) -> None:
        assert value.loop.is_closed()
        time.sleep(self.end_delay)  # ending sockets takes time: others may come meanwhile
        value.ended += 1
        self.ended.append(value)


async def use(holder: PerLoop[Value]) -> Value:
    """The running loop's value, as a wire gets it for a request."""
    loop = asyncio.get_running_loop()
    last = holder.last
    return last[1] if last[0] is loop else holder.get(loop)


@pytest.fixture
def stopped_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop that has run and stopped, not closed (``run_until_complete`` per job)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop running in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)
    loop.close()


def test_one_loop_gets_the_same_value_each_time() -> None:
    recorder = Recorder()

    async def twice() -> tuple[Value, Value]:
        return await use(recorder.holder), recorder.holder.get(asyncio.get_running_loop())

    first, second = asyncio.run(twice())
    assert first is second
    assert recorder.made == [first]


def test_threads_racing_the_first_use_get_their_own_and_end_dead_entries_once() -> None:
    # Two entries of loops that have closed; then four threads, each with its own
    # loop, miss at once. The one first in ends the closed loops' entries: without a
    # lock on the miss, several found the same ones (ended twice, or KeyError).
    recorder = Recorder(end_delay=0.05)
    holder = recorder.holder
    old = [asyncio.new_event_loop(), asyncio.new_event_loop()]
    dead = [loop.run_until_complete(use(holder)) for loop in old]
    for loop in old:
        loop.close()

    start, used = threading.Barrier(4), threading.Barrier(4)
    got: dict[int, tuple[Value, asyncio.AbstractEventLoop]] = {}
    errors: list[BaseException] = []

    async def first_use(n: int) -> None:
        start.wait(WAIT)
        got[n] = (await use(holder), asyncio.get_running_loop())
        used.wait(WAIT)  # no loop of these closes before all have theirs

    def run(n: int) -> None:
        try:
            asyncio.run(first_use(n))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert errors == []
    values = [value for value, _ in got.values()]
    assert len({id(v) for v in values}) == 4  # each loop its own
    assert all(value.loop is loop for value, loop in got.values())
    assert sorted(map(id, recorder.ended)) == sorted(map(id, dead))  # each ended once
    assert [v.ended for v in dead] == [1, 1]
    assert {id(v) for _, v in holder.items()} == {id(v) for v in values}  # none lost
    assert len(recorder.made) == 6


def test_an_entry_of_a_loop_that_closed_is_ended_when_another_loop_comes(
        stopped_loop: asyncio.AbstractEventLoop) -> None:
    recorder = Recorder()
    first = asyncio.run(use(recorder.holder))
    assert recorder.ended == []  # nothing came after it yet
    paused = stopped_loop.run_until_complete(use(recorder.holder))
    assert recorder.ended == [first]
    assert first.closed_on is None
    last = asyncio.run(use(recorder.holder))
    # the stopped loop may run again: its entry stays until it closes
    assert recorder.ended == [first]
    assert paused.ended == 0
    assert {id(v) for _, v in recorder.holder.items()} == {id(paused), id(last)}


def test_close_awaits_its_own_loops_entry_and_ends_the_others(
        stopped_loop: asyncio.AbstractEventLoop,
        running_loop: asyncio.AbstractEventLoop) -> None:
    recorder = Recorder()
    holder = recorder.holder
    dead = asyncio.run(use(holder))
    paused = stopped_loop.run_until_complete(use(holder))
    running = asyncio.run_coroutine_threadsafe(use(holder), running_loop).result(WAIT)

    async def close_here() -> tuple[Value, asyncio.AbstractEventLoop]:
        own = await use(holder)
        await holder.aclose()
        assert own.closed.is_set()  # awaited to the end, on this loop
        assert holder.items() == []
        return own, asyncio.get_running_loop()

    own, here = asyncio.run(close_here())
    assert own.closed_on is here
    assert own.ended == 0
    assert recorder.ended == [dead]
    assert dead.closed_on is None
    assert running.closed.wait(WAIT)  # closed on its own loop, not awaited by the closer
    assert running.closed_on is running_loop
    assert running.ended == 0
    assert not paused.closed.is_set()  # its loop does it when it runs again
    stopped_loop.run_until_complete(asyncio.sleep(0.01))
    assert paused.closed_on is stopped_loop
    assert paused.ended == 0


def test_a_loop_that_comes_after_close_gets_a_new_value() -> None:
    recorder = Recorder()

    async def close_and_use() -> tuple[Value, Value]:
        before = await use(recorder.holder)
        await recorder.holder.aclose()
        return before, await use(recorder.holder)

    before, after = asyncio.run(close_and_use())
    assert before is not after
    assert before.closed.is_set()
    assert not after.closed.is_set()
