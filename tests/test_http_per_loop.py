"""PerLoop, the one value per event loop both async wires keep (httpcore transports,
aiohttp sessions): real event loops in real threads, each test on asyncio's loop and
on uvloop's; the values record what was done to them. The wires themselves, with
requests, are in test_http_loops.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _loop_kinds import LOOP_KINDS, use_loop_kind

from meshlite._http._per_loop import PerLoop

WAIT = 10.0
"""Seconds a test waits for another thread at most."""


@pytest.fixture(params=LOOP_KINDS, autouse=True)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Each test on asyncio's loop and on uvloop's (every loop the test makes)."""
    return use_loop_kind(request.param)


class Value:
    """What a holder makes for one loop; records how it was closed or ended."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed_on: asyncio.AbstractEventLoop | None = None
        self.closed = threading.Event()
        self.closes = 0
        self.ended = 0


class Recorder:
    """A holder's callbacks, and what they were called with.

    Args:
        end_delay: Seconds ``end_dead`` takes.
        close_steps: Turns of its loop ``close`` takes (it is done only if awaited
            to the end).
        hold_first: The first ``close`` of a value waits until it is cancelled.
    """

    def __init__(self, end_delay: float = 0.0, close_steps: int = 1,
                 hold_first: bool = False) -> None:
        self.made: list[Value] = []
        self.ended: list[Value] = []
        self.end_delay = end_delay
        self.close_steps = close_steps
        self.hold_first = hold_first
        self.holder: PerLoop[Value] = PerLoop(self.make, self.close, self.end_dead)

    def make(self, loop: asyncio.AbstractEventLoop) -> Value:
        value = Value(loop)
        self.made.append(value)
        return value

    async def close(self, value: Value) -> None:
        value.closes += 1
        if self.hold_first and value.closes == 1:
            await asyncio.get_running_loop().create_future()  # until cancelled
        for _ in range(self.close_steps):
            await asyncio.sleep(0)
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


def closed_without_its_end(holder: PerLoop[Value]) -> Value:
    """The value of a loop that used ``holder`` and was closed by ``close()`` alone,
    without the end ``asyncio.run`` gives a loop (``shutdown_asyncgens``)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(use(holder))
    finally:
        loop.close()


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
    dead = [closed_without_its_end(holder), closed_without_its_end(holder)]

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
    # none lost: each was in the holder when its loop ended, and closed there
    assert all(value.closed_on is loop for value, loop in got.values())
    assert holder.items() == []
    assert len(recorder.made) == 6


def test_an_entry_is_closed_on_its_own_loop_as_the_loop_ends() -> None:
    # asyncio.run ends its loop (shutdown_asyncgens) before closing it: the entry is
    # closed there, awaited to the end, while its loop still runs callbacks; a uvloop
    # loop cannot close with connections open (its close() hung on them).
    recorder = Recorder(close_steps=3)
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> Value:
        seen.append(asyncio.get_running_loop())
        return await use(recorder.holder)

    value = asyncio.run(main())
    assert value.closed.is_set()
    assert value.closed_on is seen[0]
    assert (value.closes, value.ended) == (1, 0)
    assert recorder.holder.items() == []
    assert recorder.holder.last[0] is None


def test_an_entry_of_a_loop_that_closed_is_ended_when_another_loop_comes(
        stopped_loop: asyncio.AbstractEventLoop) -> None:
    recorder = Recorder()
    first = closed_without_its_end(recorder.holder)
    assert recorder.ended == []  # nothing came after it yet
    paused = stopped_loop.run_until_complete(use(recorder.holder))
    assert recorder.ended == [first]
    assert first.closed_on is None
    last = asyncio.run(use(recorder.holder))
    assert last.closed.is_set()  # at its loop's end
    # the stopped loop may run again: its entry stays until it closes
    assert recorder.ended == [first]
    assert paused.ended == 0
    assert [v for _, v in recorder.holder.items()] == [paused]


def test_close_awaits_its_own_loops_entry_and_ends_the_others(
        stopped_loop: asyncio.AbstractEventLoop,
        running_loop: asyncio.AbstractEventLoop) -> None:
    recorder = Recorder()
    holder = recorder.holder
    dead = closed_without_its_end(holder)
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
    assert (own.closes, own.ended) == (1, 0)  # not again at its loop's end
    assert recorder.ended == [dead]
    assert dead.closed_on is None
    assert running.closed.wait(WAIT)  # closed on its own loop, not awaited by the closer
    assert running.closed_on is running_loop
    assert running.ended == 0
    assert not paused.closed.is_set()  # its loop does it when it runs again
    stopped_loop.run_until_complete(asyncio.sleep(0.01))
    assert paused.closed_on is stopped_loop
    assert (paused.closes, paused.ended) == (1, 0)


def test_a_loop_that_comes_after_close_gets_a_new_value() -> None:
    recorder = Recorder()

    async def close_and_use() -> tuple[Value, Value]:
        before = await use(recorder.holder)
        await recorder.holder.aclose()
        return before, await use(recorder.holder)

    before, after = asyncio.run(close_and_use())
    assert before is not after
    assert before.closes == 1
    assert after.closes == 1  # the new one at its loop's end


def test_a_close_handed_to_a_stopped_loop_is_awaited_by_that_loops_end(
        stopped_loop: asyncio.AbstractEventLoop) -> None:
    # A close from another loop is handed to the entry's loop, stopped between jobs;
    # when it next runs, it is to end (shutdown_asyncgens): the end waits for the
    # close, which takes a few turns of the loop, before the loop closes.
    recorder = Recorder(close_steps=5)
    paused = stopped_loop.run_until_complete(use(recorder.holder))
    asyncio.run(recorder.holder.aclose())
    assert not paused.closed.is_set()
    stopped_loop.run_until_complete(stopped_loop.shutdown_asyncgens())
    assert paused.closed_on is stopped_loop
    assert (paused.closes, paused.ended) == (1, 0)


def test_a_handed_close_that_the_loops_end_cancelled_is_done_again() -> None:
    # asyncio.Runner's close cancels the tasks left, the handed close among them,
    # before shutdown_asyncgens: the entry is closed again there.
    recorder = Recorder(hold_first=True)
    with asyncio.Runner() as runner:
        loop = runner.get_loop()
        paused = runner.run(use(recorder.holder))
        asyncio.run(recorder.holder.aclose())
        runner.run(asyncio.sleep(0))  # the close starts: it waits until cancelled
        assert paused.closes == 1
        assert not paused.closed.is_set()
    assert paused.closed_on is loop
    assert (paused.closes, paused.ended) == (2, 0)


def test_a_loop_that_ends_before_a_handed_close_reaches_it_closes_the_entry() -> None:
    # The mesh closes on another thread just as a loop ends: the close it hands to
    # that loop (a callback) comes after the loop's end, here held back, and the loop
    # closes without running it. The loop's end closed the entry instead.
    recorder = Recorder()
    held: list[object] = []
    probe = asyncio.new_event_loop()
    kind = type(probe)  # the policy's: asyncio's or uvloop's
    probe.close()

    class Late(kind):  # type: ignore[valid-type,misc]
        def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None
                                 ) -> Any:
            if getattr(callback, "__name__", "") == "_start_closing":
                held.append((callback, args))  # never delivered, kept as a loop would
                return None
            return super().call_soon_threadsafe(callback, *args, context=context)

    loop = Late()
    try:
        paused = loop.run_until_complete(use(recorder.holder))
        asyncio.run(recorder.holder.aclose())
        assert len(held) == 1
        assert not paused.closed.is_set()
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    assert paused.closed_on is loop
    assert (paused.closes, paused.ended) == (1, 0)
