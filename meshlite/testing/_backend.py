"""FakeBackend: a real HTTP server on a loopback port, whose behaviour a test scripts."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from .._validate import fail
from ._behaviour import Behaviour, updated
from ._http11 import ReceivedRequest
from ._quiet import serving_loop
from ._server import LoopServer, SharedState

__all__ = ["BackendStats", "FakeBackend"]

_TIMEOUT = 10.0  # seconds to wait for the server's loop before giving up


@dataclass(frozen=True, slots=True)
class BackendStats:
    """Counters of a :class:`FakeBackend` since it was created.

    Attributes:
        requests: Requests received (health checks included).
        responses: Responses sent.
        errors: Errors injected by ``error_rate``.
        resets: Connections reset by ``reset=True``.
        hangs: Requests held by ``hang=True``.
    """

    requests: int = 0
    responses: int = 0
    errors: int = 0
    resets: int = 0
    hangs: int = 0


class FakeBackend:
    """A real HTTP/1.1 server on ``127.0.0.1`` and a free port, for tests.

    ``async with FakeBackend() as b:`` serves on the running event loop;
    ``with FakeBackend() as b:`` serves on its own loop in a background thread,
    stopped and joined on exit. Every request is recorded in :attr:`requests`;
    :meth:`set` changes the behaviour at any time, from any thread.

    Args:
        latency: Seconds to wait before each answer, or a callable returning them.
        error_rate: Share of requests (0..1) answered with ``error_status``.
        error_status: Status of injected errors (default 503).
        seed: Seed of the random draws of ``error_rate``, for repeatable tests.
        port: Port to listen on; 0 (the default) picks a free one.
        **behaviour: Any other behaviour of :meth:`set` (``status=``, ``body=``...).

    Raises:
        ConfigError: an invalid or unknown behaviour, or a bad port.
    """

    def __init__(
        self,
        latency: float | Callable[[], float] = 0.0,
        error_rate: float = 0.0,
        error_status: int = 503,
        seed: int | None = None,
        *,
        port: int = 0,
        **behaviour: Any,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            fail("FakeBackend", "port", port, "an int in 0..65535 (0: any free port)")
        changes = {"latency": latency, "error_rate": error_rate, "error_status": error_status}
        self._state = SharedState(updated(Behaviour(), {**changes, **behaviour}), seed, port)
        self._server: LoopServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested: asyncio.Event | None = None

    # -- what tests read -------------------------------------------------------------

    @property
    def url(self) -> str:
        """``"http://127.0.0.1:PORT"``; still valid after the backend stopped.

        Raises:
            RuntimeError: the backend was never started, so it has no port yet.
        """
        if not self._state.port:
            raise RuntimeError("FakeBackend has no port yet: enter `with`/`async with` first")
        return self._state.url

    @property
    def port(self) -> int:
        """The port listened on (0 before the first start, unless given)."""
        return self._state.port

    @property
    def running(self) -> bool:
        """Whether the server is started (it may still be ``down``)."""
        return self._server is not None

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received, oldest first: the live list (``clear()`` it at will)."""
        return self._state.requests

    @property
    def request_count(self) -> int:
        """``len(self.requests)``."""
        return len(self._state.requests)

    @property
    def stats(self) -> BackendStats:
        """A snapshot of the counters."""
        with self._state.lock:
            return BackendStats(**self._state.counts)

    # -- behaviour -------------------------------------------------------------------

    def set(self, **behaviour: Any) -> None:
        """Change the behaviour; safe from any thread, in effect when this returns.

        Args:
            latency: Seconds before each answer, or a callable drawing them.
            error_rate: Share of requests (0..1) answered with ``error_status``.
            error_status: Status of injected errors.
            retry_after: ``Retry-After`` value sent with every response >= 400.
            hang: Read requests but answer none until set back to False.
            reset: Drop each connection with a TCP reset instead of answering.
            down: Close the listening port (connections refused, open ones dropped);
                ``down=False`` listens again on the same port.
            health_status: Status of ``GET /healthz`` (default 200).
            status: Status of normal responses (default 200).
            body: Body of normal responses: bytes or str as they are, other values
                as JSON, a callable taking the :class:`ReceivedRequest` and
                returning one of those, or None for the echo
                ``{"backend": url, "method": ..., "path": ...}``.
            headers: Extra headers of normal responses (a content-type included).

        Raises:
            ConfigError: an invalid or unknown behaviour; nothing is changed.
            OSError: ``down=False`` and another process took the port meanwhile.
        """
        state = self._state
        with state.lock:
            state.behaviour = updated(state.behaviour, behaviour)
        self._on_loop()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> Self:
        """Listen and serve on the running event loop; returns ``self``.

        Raises:
            RuntimeError: already running.
            OSError: the port cannot be listened on.
        """
        if self._server is not None:
            raise RuntimeError("FakeBackend is already running")
        server = LoopServer(self._state)
        await server.start()
        self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
        self._server = server
        server.reconcile()  # a set() from another thread while starting found no server
        return self

    async def stop(self) -> None:
        """Close the port and every connection, and wait for all the server's tasks.

        Raises:
            RuntimeError: the backend was started with :meth:`start_sync` (or
                ``with``): its own thread stops it, in :meth:`stop_sync`.
        """
        if self._thread is not None and threading.get_ident() != self._loop_thread:
            raise RuntimeError("FakeBackend was started by start_sync() (or `with`): "
                               "call stop_sync()")
        server, self._server = self._server, None
        if server is not None:
            self._loop = self._loop_thread = None
            await server.close()

    def start_sync(self) -> Self:
        """Serve on a new event loop in a background thread; returns once listening.

        Raises:
            RuntimeError: already running.
            OSError: the port cannot be listened on.
        """
        if self._server is not None or self._thread is not None:
            raise RuntimeError("FakeBackend is already running")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=_serve_in_thread, args=(self._run_in_thread(ready),),
            name=f"meshlite-FakeBackend-{id(self):x}", daemon=True,
        )
        self._thread.start()
        try:
            ready.result(timeout=_TIMEOUT)
        except BaseException:
            self.stop_sync()
            raise
        return self

    def stop_sync(self) -> None:
        """Stop a backend started by :meth:`start_sync` and join its thread.

        Raises:
            RuntimeError: the backend was started with ``await start()``.
        """
        thread, loop, event = self._thread, self._loop, self._stop_requested
        if thread is None:
            if self._server is not None:
                raise RuntimeError("FakeBackend was started by `await start()`: await stop()")
            return
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # its loop has already ended
                loop.call_soon_threadsafe(event.set)
        thread.join()
        self._thread = self._stop_requested = None

    async def _run_in_thread(self, ready: concurrent.futures.Future[None]) -> None:
        self._stop_requested = asyncio.Event()
        try:
            await self.start()
        except BaseException as error:
            ready.set_exception(error)
            return
        ready.set_result(None)
        try:
            await self._stop_requested.wait()
        finally:
            await self.stop()

    def __enter__(self) -> Self:
        return self.start_sync()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_sync()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        where = self._state.url if self._state.port else "no port yet"
        return f"FakeBackend({where}, running={self.running})"

    def _on_loop(self) -> None:
        """Reconcile the server with the behaviour on its loop, and wait for it."""
        server, loop = self._server, self._loop
        if server is None or loop is None:
            return  # not running: start() reconciles
        if threading.get_ident() == self._loop_thread:
            server.reconcile()
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                server.reconcile()
            except Exception as error:
                done.set_exception(error)
                return
            # Answer one loop turn later: connection closes scheduled by the
            # reconcile (transport.abort) run first, so they are done on return.
            loop.call_soon(done.set_result, None)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:
            return  # the loop closed meanwhile: nothing left to change
        try:
            done.result(timeout=_TIMEOUT)
        except concurrent.futures.TimeoutError:
            if self._server is not None:
                raise RuntimeError("FakeBackend: its event loop did not respond in "
                                   f"{_TIMEOUT} s (is it blocked?)") from None


def _serve_in_thread(main: Coroutine[Any, Any, None]) -> None:
    # On a loop other threads can ask whether it is idle, so FakeClocks wait for it.
    with asyncio.Runner(loop_factory=serving_loop) as runner:
        runner.run(main)
