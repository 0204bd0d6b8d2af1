"""The connections a mesh closes when it closes: the HTTP connection pools its
clients made (``MeshPools``) and the ``mesh.aiohttp()`` sessions it adopted.

A base of :class:`~meshlite.mesh._lifecycle.MeshLifecycle`, whose async close
(``aclose``) runs :meth:`MeshConnections._close_sessions` and ``_close_pools`` as
steps of its shut-down, and whose sync close (``close``) runs ``_close_http``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from .._fork import fork_safe
from .._tasks import kept
from ..routing._lifecycle import LoopThread

__all__ = ["MeshConnections", "close_async_pools_here", "close_async_pools_soon"]

_log = logging.getLogger("meshlite.mesh")

_SESSIONS = fork_safe(threading.Lock())
"""Held while a mesh's list of ``mesh.aiohttp()`` sessions changes (once a session)."""


class MeshConnections:
    """The HTTP connection pools and aiohttp sessions of a mesh (mixed into ``Mesh``
    through ``MeshLifecycle``)."""

    _sessions: list[Any] | None = None  # mesh.aiohttp() sessions
    _http: Any = None
    """The HTTP layer's connection pools of this mesh (``MeshPools``), once a client
    made some: closed with the mesh through ``aclose()`` and ``take()``."""

    def adopt_session(self, session: Any) -> None:
        """Close ``session`` (an ``aiohttp.ClientSession`` of ``mesh.aiohttp()``) when
        the mesh closes. Held strongly (a session dropped unclosed would warn), and
        forgotten once closed."""
        with _SESSIONS:  # threads adopting at once would otherwise lose sessions
            kept = [s for s in self._sessions or () if not s.closed]
            kept.append(session)
            self._sessions = kept

    async def _close_sessions(self) -> None:
        """Close the adopted sessions: this loop's here (awaited), another loop's on
        that loop (its readers are woken there: closed from here, a body being read
        on another thread's loop waited until a timer of that loop fired), a closed
        loop's sockets at once. Those closed already (by their user, or on their
        loop as it ended) are skipped."""
        with _SESSIONS:
            sessions, self._sessions = self._sessions, None
        if not sessions:
            return
        # aiohttp is imported already (there are sessions)
        from .._http._aio_adapt import close_session, end_dead_session, loop_end
        from .._http._per_loop import close_elsewhere
        here = asyncio.get_running_loop()
        for session in sessions:
            if session.closed:  # by its user, or on its loop as the loop ended
                continue
            loop = getattr(session, "_loop", None)  # (aiohttp has no public reference)
            end = loop_end(session)  # the session's part in its loop's end
            try:
                if loop is None or loop is here:
                    await close_session(session)
                    if end is not None:  # closed: it ends now, finding nothing to do
                        end.finish()
                else:  # that loop's end waits for this close
                    close_elsewhere(loop, session, close_session, end_dead_session, end)
            except Exception:
                _log.debug("closing an aiohttp session failed", exc_info=True)

    async def _close_pools(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    def _close_http(self, thread: LoopThread | None) -> None:
        """Close the HTTP pools from a sync close: async ones on the loop thread when
        there is one (else on a loop of their own), sync ones here."""
        http, self._http = self._http, None
        if http is None:
            return
        async_pools, sync_pools = http.take()
        for pools in sync_pools:
            try:
                pools.close()
            except Exception:
                _log.debug("closing HTTP connection pools failed", exc_info=True)
        for pools in async_pools:
            if thread is not None:
                thread.run_quietly(pools.aclose())
            else:
                close_async_pools_here(pools)


def close_async_pools_here(pools: Any) -> None:
    """Best effort for async pools (or a mesh's aiohttp sessions) reached by a sync
    close: their loop may be gone."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        try:
            close = getattr(pools, "_close_sessions", None) or pools.aclose
            asyncio.run(close())
        except Exception:
            _log.debug("closing async connection pools from a sync close failed",
                       exc_info=True)
        return
    _log.warning("Mesh.close() called on a running event loop: use await mesh.aclose() so "
                 "the async connection pools can be closed")


def close_async_pools_soon(pools: Any) -> None:
    """Close a retired service's async pools from sync code: by a task when an event
    loop runs here (a sync step of async code: an override ending), else on a loop
    of their own (:func:`close_async_pools_here`)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        close_async_pools_here(pools)
        return
    kept(_aclose(pools))


async def _aclose(pools: Any) -> None:
    try:
        await pools.aclose()
    except Exception:  # nobody awaits this task: say it, do not lose it
        _log.debug("closing a retired service's connection pools failed", exc_info=True)
