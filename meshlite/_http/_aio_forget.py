"""``mesh.aiohttp()`` sessions forget backends their service no longer has.

A session's middleware (``_aio_session._Route``) remembers the URL parts of each
backend it sent to, and the session's connector keeps idle keep-alive connections
per host. When ``Service.set_backends`` takes backends out, :class:`Forgetting`
(one per session, told by the one watcher of the service the session routes to;
see :data:`_WATCHING`) drops their URL
parts, and closes the session's idle connections to them on the session's event
loop: at once, and again once no attempt on them is in flight and no connection
to them is in use (an answer still being read: its connection goes back to the
pool when read). Connections in use are never closed here: no live request is
cut. (A backend addressed by host name rather than IP is not recognised in the
connections in use; those go back to the pool and aiohttp closes them after the
connector's ``keepalive_timeout``, 15 s by default.)

aiohttp has no public call to drop the idle connections to one host: this reads
the connector's pool (``_conns``, keyed by ``ConnectionKey``), and does nothing
on an aiohttp without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
from yarl import URL

from .._fork import fork_safe
from ..routing._endpoint import Endpoint
from ..routing._service import Service
from ._retire import waits

__all__ = ["Forgetting", "close_idle", "in_use"]


def close_idle(connector: Any, hosts: set[tuple[str | None, int | None]]) -> int:
    """Close the idle connections of ``connector`` to ``hosts`` (``(host, port)``);
    returns how many."""
    pool = getattr(connector, "_conns", None)
    if not isinstance(pool, dict):
        return 0
    closed = 0
    for key in [k for k in pool if (k.host, k.port) in hosts]:
        for protocol, _ in pool.pop(key, ()):
            protocol.close()
            closed += 1
    return closed


def in_use(connector: Any, hosts: set[tuple[str | None, int | None]]) -> bool:
    """Whether a connection of ``connector`` to one of ``hosts`` is in use, as far as
    its peer address tells (a backend addressed by IP; one addressed by name is not
    found, and its connections in use are left to ``keepalive_timeout``)."""
    for protocol in list(getattr(connector, "_acquired", ())):
        transport = getattr(protocol, "transport", None)
        peer = transport.get_extra_info("peername") if transport is not None else None
        if peer and (peer[0], peer[1]) in hosts:
            return True
    return False


def _hosts(addresses: Iterable[str]) -> set[tuple[str | None, int | None]]:
    return {(u.host, u.port) for u in map(URL, addresses)}


class _Sessions:
    """The sessions routing to one service, held weakly: a session dropped unclosed
    (and its :class:`Forgetting`) goes, and nothing here holds the service."""

    __slots__ = ("__weakref__", "forgettings")

    def __init__(self) -> None:
        self.forgettings: list[weakref.ref[Forgetting]] = []

    def sweep(self) -> list[Forgetting]:
        """Drop the sessions closed or gone; returns the open ones."""
        live = [f for f in (ref() for ref in self.forgettings) if f is not None and f.open()]
        self.forgettings = [weakref.ref(f) for f in live]
        return live


_WATCHING: weakref.WeakKeyDictionary[Service, _Sessions] = weakref.WeakKeyDictionary()
"""The sessions routing to each service, swept of closed ones as another starts. One
watcher per service tells them of removed backends (it stops once none is open), so
sessions made per request and closed leave no watcher each behind. Nothing reachable
from here holds a service: a service a reload replaced or removed goes with its
last user (a strong reference, to a session's forgetting which holds the service it
watched, would keep every service a closed session last routed to for good)."""
_WATCHING_LOCK = fork_safe(threading.Lock())


def _watched(service: Service) -> _Sessions:
    """The sessions of ``service``, made with the service's watcher on first use
    (the caller holds the lock)."""
    sessions = _WATCHING.get(service)
    if sessions is None:
        sessions = _WATCHING[service] = _Sessions()
        ref = weakref.ref(service)
        stop: list[Callable[[], None]] = []  # set once watching (a change may race)

        def removed(endpoints: tuple[Endpoint, ...]) -> None:
            watched = ref()
            with _WATCHING_LOCK:
                live = sessions.sweep()
                if not live and watched is not None and _WATCHING.get(watched) is sessions:
                    del _WATCHING[watched]  # the next session to come watches anew
            if watched is None or not live:
                for halt in stop:
                    halt()
                return
            for forgetting in live:
                forgetting.removed(watched, endpoints)

        stop.append(service.watch_backends(removed))
    return sessions


class Forgetting:
    """What one session forgets when a service it routes to loses backends."""

    def __init__(self, session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop,
                 forget: Callable[[Service, set[str]], None]) -> None:
        self._session = weakref.ref(session)
        self._loop = loop
        self._forget = forget  # drops the URL parts the route remembers
        self._service: weakref.ref[Service] | None = None  # the one it watches
        self._tasks: set[asyncio.Task[None]] = set()

    def watch(self, service: Service) -> None:
        """Watch ``service`` (a miss of the route's cache: rare), and no other."""
        if self._service is not None and self._service() is service:
            return
        with _WATCHING_LOCK:
            self._leave()
            sessions = _watched(service)
            sessions.sweep()  # sessions made per request and closed stop watching now
            sessions.forgettings.append(weakref.ref(self))
            self._service = weakref.ref(service)

    def _leave(self) -> None:
        """Stop watching the service watched (the caller holds the lock)."""
        old = None if self._service is None else self._service()
        self._service = None
        sessions = None if old is None else _WATCHING.get(old)
        if sessions is not None:
            sessions.forgettings = [r for r in sessions.forgettings if r() is not self]

    def open(self) -> bool:
        """Whether the session is still open."""
        session = self._session()
        return session is not None and not session.closed

    def removed(self, service: Service, endpoints: tuple[Endpoint, ...]) -> bool:
        """Forget ``endpoints`` (taken out of ``service``); False once the session
        is closed (stop watching)."""
        session = self._session()
        if session is None or session.closed:
            return False
        self._forget(service, {e.address for e in endpoints})
        # A host and port the service still sends to (backends behind one gateway,
        # told apart by their path; a pod's address reused) keeps its connections:
        # they are the remaining backends' too, and a check for the removed ones'
        # connections in use would never end while those serve.
        hosts = _hosts(e.address for e in endpoints) - _hosts(
            e.address for e in service.endpoints)
        if not hosts:
            return True
        with contextlib.suppress(RuntimeError):  # its loop is closed: so are its sockets
            self._loop.call_soon_threadsafe(self._start, session.connector, hosts,
                                            endpoints)
        return True

    def _start(self, connector: Any, hosts: set[tuple[str | None, int | None]],
               endpoints: tuple[Endpoint, ...]) -> None:
        close_idle(connector, hosts)
        if any(e.in_flight for e in endpoints) or in_use(connector, hosts):
            task = self._loop.create_task(self._after(connector, hosts, endpoints))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _after(self, connector: Any, hosts: set[tuple[str | None, int | None]],
                     endpoints: tuple[Endpoint, ...]) -> None:
        for wait in waits():
            if connector.closed or not (any(e.in_flight for e in endpoints)
                                        or in_use(connector, hosts)):
                break
            await asyncio.sleep(wait)
        close_idle(connector, hosts)

    def close(self) -> None:
        """Stop watching the service watched."""
        with _WATCHING_LOCK:
            self._leave()
