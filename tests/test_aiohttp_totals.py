"""A ``mesh.aiohttp()`` session keeps its ``timeout.total`` with one loop timer, and
requests see aiohttp's own behaviour: a real loopback server that answers, stalls
before its answer, stalls in the middle of a body, or redirects slowly."""

from __future__ import annotations

import asyncio
import contextvars
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import attr
import pytest

import meshlite as ml
from meshlite._http._aio_total import Totals


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Connections are kept alive after "/"; every other answer ends its connection.
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode()
        while path == "/":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
        if path == "/stall":  # never answers
            await asyncio.sleep(3600)
        elif path == "/half":  # a body of 10 bytes, 2 sent, then nothing
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
            await writer.drain()
            await asyncio.sleep(3600)
        elif path.startswith("/slow/"):  # answers after the given seconds
            await asyncio.sleep(float(path.split("/")[2]))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
        elif path == "/hop":  # redirects, after 0.3 s, to an answer after 0.3 s
            await asyncio.sleep(0.3)
            writer.write(b"HTTP/1.1 302 Found\r\nLocation: /slow/0.3\r\n"
                         b"Content-Length: 0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
        pass  # (cancelled: the test's loop is ending)
    finally:
        writer.close()


@asynccontextmanager
async def _served(**session: Any) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """A session of a mesh service on a loopback server, and the server's URL."""
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with ml.Mesh([ml.Service("users", [url])]) as mesh:
            yield mesh.aiohttp("users", **session), url
    finally:
        server.close()


def _totals(session: aiohttp.ClientSession) -> Totals:
    totals = getattr(session._request, "__self__", None)
    assert isinstance(totals, Totals)
    return totals


async def test_a_request_past_the_total_raises_timeout_error_and_the_task_goes_on() -> None:
    async with _served(timeout=aiohttp.ClientTimeout(total=0.4)) as (session, _):
        assert session.timeout.total == 0.4  # the session reads as given
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await session.get("/stall")
        assert 0.35 < time.monotonic() - started < 3.0
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0  # nothing left to cancel it
        async with session.get("/") as response:  # the session goes on
            assert await response.text() == "ok"
        assert len(_totals(session)) == 0


async def test_a_body_read_past_the_total_raises_timeout_error() -> None:
    async with _served(timeout=aiohttp.ClientTimeout(total=0.4)) as (session, _):
        async with session.get("/half") as response:
            assert response.status == 200
            with pytest.raises(TimeoutError):
                await response.read()
        assert len(_totals(session)) == 0  # released with its connection
        async with session.get("/") as response:
            assert await response.text() == "ok"


async def test_the_total_covers_every_hop_of_a_redirect() -> None:
    # Each hop takes 0.3 s, both 0.6 s: over a total of 0.5 s, though no hop is.
    async with _served(timeout=aiohttp.ClientTimeout(total=0.5)) as (session, _):
        with pytest.raises(TimeoutError):
            await session.get("/hop")
    async with _served(timeout=aiohttp.ClientTimeout(total=2.0)) as (session, _), \
            session.get("/hop") as response:
        assert await response.text() == "slow"


async def test_a_request_with_its_own_timeout_is_timed_by_it() -> None:
    async with _served(timeout=aiohttp.ClientTimeout(total=0.3)) as (session, _):
        own = aiohttp.ClientTimeout(total=3.0)
        async with session.get("/slow/0.6", timeout=own) as response:
            assert await response.text() == "slow"
        with pytest.raises(TimeoutError):
            await session.get("/stall", timeout=aiohttp.ClientTimeout(total=0.2))
        assert len(_totals(session)) == 0


async def test_requests_to_other_hosts_are_held_to_the_total_too() -> None:
    async with _served(timeout=aiohttp.ClientTimeout(total=0.3)) as (session, url):
        with pytest.raises(TimeoutError):
            await session.get(f"{url}/stall")  # not the service: the middleware passes it


async def test_a_cancelled_request_stays_a_cancellation() -> None:
    async with _served(timeout=aiohttp.ClientTimeout(total=5.0)) as (session, _):
        request = asyncio.ensure_future(session.get("/stall"))
        await asyncio.sleep(0.2)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        assert len(_totals(session)) == 0


async def test_a_request_stopped_by_its_caller_as_the_total_passes_stays_cancelled() -> None:
    # aiohttp's rule: when the task was asked to stop by someone else too, the
    # cancellation goes on (no TimeoutError).
    async with _served(timeout=aiohttp.ClientTimeout(total=60.0)) as (session, _):
        request = asyncio.ensure_future(session.get("/stall"))
        await asyncio.sleep(0.2)
        totals = _totals(session)
        (entry,) = totals._open.values()
        entry[0] = 0.0  # due now
        request.cancel()  # the caller's
        totals._expire()  # and the total's
        with pytest.raises(asyncio.CancelledError):
            await request
        assert len(totals) == 0


async def test_many_requests_arm_one_loop_timer_and_leave_nothing_behind() -> None:
    # aiohttp's own timer is a loop timer a request; the session's is one.
    async with _served() as (session, _):  # aiohttp's default: total 300 s
        assert session.timeout == aiohttp.ClientTimeout(total=300, sock_connect=30)
        loop = asyncio.get_running_loop()
        armed: list[float] = []
        call_at = loop.call_at

        def counted(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            armed.append(when)
            return call_at(when, *args, **kwargs)

        loop.call_at = counted  # type: ignore[method-assign]
        try:
            for _ in range(3):
                answers = await asyncio.gather(*(_read(session) for _ in range(20)))
                assert answers == ["ok"] * 20
        finally:
            del loop.call_at
        # The session's one timer, at the total (aiohttp's would be one a request;
        # the earlier ones are the connect timeouts of the first 20 connections).
        assert len([when for when in armed if when > loop.time() + 200]) <= 1
        assert len(_totals(session)) == 0


async def _read(session: aiohttp.ClientSession) -> str:
    async with session.get("/") as response:
        return await response.text()


async def test_closing_a_session_disarms_its_timer() -> None:
    # An application making a session a request: each closed one was kept by its
    # armed timer for the total (five minutes by default).
    async with _served() as (session, _):
        assert await _read(session) == "ok"
        totals = _totals(session)
        timer = totals._timer
        assert timer is not None
        assert not timer.cancelled()
        await session.close()
        assert timer.cancelled()
        assert totals._timer is None
        assert session.closed


async def test_the_timer_holds_its_session_weakly() -> None:
    # However a session ends (closed, detached, dropped), its timer does not keep
    # it: what the timer calls holds the session's Totals through a weak reference.
    async with _served() as (session, _):
        assert await _read(session) == "ok"
        totals = _totals(session)
        timer = totals._timer
        assert timer is not None
        kept = [timer._callback, *timer._args]
        assert all(isinstance(part, weakref.ref) or getattr(part, "__self__", None) is None
                   for part in kept)
        assert totals in [part() for part in kept if isinstance(part, weakref.ref)]
        timer._run()  # its deadline comes: nothing is due, nothing is armed again
        assert totals._timer is None
        assert len(totals) == 0


async def test_the_timer_keeps_nothing_of_the_request_that_armed_it() -> None:
    # A loop timer keeps the context it is given until it runs: by default, a copy of
    # the arming request's (its caller's call, its span), for the total.
    class Big:
        pass

    # (aiohttp's own timers of the request, its connect and keep-alive timers, keep a
    # copy of it too, for their seconds.)
    held: contextvars.ContextVar[Big | None] = contextvars.ContextVar("held", default=None)
    async with _served() as (session, _):
        token = held.set(Big())
        try:
            assert await _read(session) == "ok"  # arms the timer
        finally:
            held.reset(token)
        timer = _totals(session)._timer
        assert timer is not None
        assert held not in timer._context


async def test_a_long_total_is_rounded_up_to_the_second_as_aiohttp_does() -> None:
    async with _served(timeout=aiohttp.ClientTimeout(total=10.0)) as (session, _):
        request = asyncio.ensure_future(session.get("/stall"))
        await asyncio.sleep(0.1)
        (entry,) = _totals(session)._open.values()
        assert entry[0] == int(entry[0])  # ceil_threshold 5: whole seconds
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request


async def test_the_other_timeouts_stay_with_aiohttp() -> None:
    given = aiohttp.ClientTimeout(total=30, connect=4, sock_read=5, sock_connect=6,
                                  ceil_threshold=7)
    async with _served(timeout=given) as (session, _):
        untimed = _totals(session)._untimed
        assert attr.evolve(given, total=None) == untimed
    # Every field of ClientTimeout is carried over (an aiohttp that adds one fails here).
    assert {f.name for f in attr.fields(aiohttp.ClientTimeout)} == {
        "total", "connect", "sock_read", "sock_connect", "ceil_threshold"}


async def test_a_session_without_a_total_is_aiohttps_own() -> None:
    async with _served(timeout=aiohttp.ClientTimeout(total=None, sock_read=5)) as (session, _):
        assert getattr(session._request, "__self__", None) is session
        async with session.get("/") as response:
            assert await response.text() == "ok"
