"""Retiring the connection pools of backends a service no longer has.

When ``Service.set_backends`` takes backends out (discovery, a config reload, by
hand), :class:`~meshlite._http._pools.Pools` forgets their transports at once (a
backend that comes back gets a fresh one) and hands them here. Each is closed once
nothing runs on it any more: no attempt of the removed endpoint is in flight (an
attempt holds its transport from the moment it is picked) and no connection of the
transport is in use (a response body still being read). Until then it is left
alone, so no live request is cut. Sync transports are closed on the caller's
thread when idle already, else by a daemon thread that waits; async ones are
closed by a task on the event loop that made them (one made on a loop that has
ended since waits for the pools' close). Whatever is still retiring when the pools
close is closed with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from .._fork import fork_safe
from ..routing._endpoint import Endpoint

__all__ = ["Retired", "Retiring", "busy", "waits"]

_FIRST_WAIT = 0.01
"""Seconds before the first look again at a busy transport (doubling up to _MAX_WAIT)."""

_MAX_WAIT = 0.5


def waits() -> Iterator[float]:
    """Seconds between looks at something still in use, until it is not: 10 ms, then
    twice as long each time, at most half a second."""
    wait = _FIRST_WAIT
    while True:
        yield wait
        wait = min(wait * 2, _MAX_WAIT)


_log = logging.getLogger("meshlite.http")


def busy(transport: Any) -> bool:
    """Whether a connection of ``transport`` is in use: meshlite's wires say so
    themselves (``busy()``); httpx's own transports through their httpcore pool."""
    check = getattr(transport, "busy", None)
    if check is not None:
        return bool(check())
    pool = getattr(transport, "_pool", None)  # httpx.(Async)HTTPTransport's httpcore pool
    connections = getattr(pool, "connections", ())
    return any(not c.is_idle() and not c.is_closed() for c in connections)


class Retired:
    """One transport on its way out: the endpoints whose attempts may still use it,
    and (async) the event loop it was made on."""

    __slots__ = ("endpoints", "loop", "transport")

    def __init__(self, transport: Any, endpoints: tuple[Endpoint, ...],
                 loop: asyncio.AbstractEventLoop | None) -> None:
        self.transport = transport
        self.endpoints = endpoints
        self.loop = loop

    def idle(self) -> bool:
        """Whether nothing runs on the transport any more."""
        return not any(e.in_flight for e in self.endpoints) and not busy(self.transport)


class Retiring:
    """The transports of one ``Pools`` being retired, and what closes them."""

    def __init__(self, is_async: bool) -> None:
        self._async = is_async
        self._lock = fork_safe(threading.Lock())
        self._waiting: list[Retired] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._waiter = False  # a thread waits for busy sync transports

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, retired: list[Retired]) -> None:
        """Close each of ``retired`` once it is idle."""
        with self._lock:
            closed = self._closed
            if not closed:
                self._waiting.extend(retired)
        if not self._async:
            if closed:  # closing raced with this: close them here
                _close_all(r.transport for r in retired)
            else:
                self._sweep_sync()
            return
        for loop in {r.loop for r in retired}:
            # On the loop that made them, when it next runs. One that is closed has
            # nothing running on it: its transports wait for the pools' close.
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed meanwhile
                    loop.call_soon_threadsafe(self._start, loop)

    def _take_idle(self, loop: asyncio.AbstractEventLoop | None = None) -> tuple[
            list[Retired], bool]:
        """The idle transports (of ``loop``, for async ones), taken out; and whether
        busy ones remain."""
        with self._lock:
            mine = [r for r in self._waiting if not self._async or r.loop is loop]
            done = [r for r in mine if r.idle()]
            self._waiting = [r for r in self._waiting if r not in done]
        return done, len(done) < len(mine)

    # -- sync transports ----------------------------------------------------------

    def _sweep_sync(self) -> None:
        done, left = self._take_idle()
        _close_all(r.transport for r in done)
        if left:
            with self._lock:
                if self._waiter:
                    return
                self._waiter = True
            threading.Thread(target=self._wait_sync, name="meshlite-pool-retire",
                             daemon=True).start()

    def _wait_sync(self) -> None:
        for wait in waits():
            time.sleep(wait)
            done, _ = self._take_idle()
            _close_all(r.transport for r in done)
            with self._lock:
                if not self._waiting or self._closed:
                    self._waiter = False
                    return

    # -- async transports ---------------------------------------------------------

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._closed:
            return
        task = loop.create_task(self._wait_async(loop))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait_async(self, loop: asyncio.AbstractEventLoop) -> None:
        for wait in waits():
            done, left = self._take_idle(loop)
            for retired in done:
                try:
                    await retired.transport.aclose()
                except Exception:
                    _log.debug("closing a retired connection pool failed", exc_info=True)
            if not left or self._closed:
                return
            await asyncio.sleep(wait)

    # -- the pools close ----------------------------------------------------------

    def take_all(self) -> list[Any]:
        """Stop retiring; the transports not closed yet, for the pools' close."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = self._waiting, []
        # A waiting task ends at its next look (cancelling it could cut a close short).
        return [r.transport for r in waiting]


def _close_all(transports: Iterable[Any]) -> None:
    for transport in transports:
        try:
            transport.close()
        except Exception:
            _log.debug("closing a retired connection pool failed", exc_info=True)

