"""Waiting for the OpenTelemetry SDK's flush and shutdown, up to a timeout.

The SDK's ``force_flush`` and ``shutdown`` wait on the OTLP exporter, whose retries
against a collector that is down or stalled last tens of seconds whatever timeout
they are given (opentelemetry-python#4568). So each runs in a daemon thread that
the caller waits for up to its timeout, and the process does not wait for at exit.
"""

from __future__ import annotations

import atexit
import functools
import threading
import time
from collections.abc import Callable

from .._fork import fork_safe

__all__ = ["SHUTDOWN_TIMEOUT_MILLIS", "OneAtATime", "bounded", "flush_all", "forget_at_exit",
           "registered", "run_at_exit", "shut_down_at_exit"]

SHUTDOWN_TIMEOUT_MILLIS = 5_000
"""How long a shutdown (and the flush at exit, of everything together) waits for the
last export by default: well within a container's stop grace period (30 s in
Kubernetes)."""

_THREAD_NAME = "meshlite-telemetry-flush"


class _Run(threading.Thread):
    """``action()`` in a daemon thread, its result kept once it returns."""

    def __init__(self, action: Callable[[], object]) -> None:
        super().__init__(daemon=True, name=_THREAD_NAME)
        self._action = action
        self.result: list[object] = []
        self._here = False

    def run(self) -> None:
        self.result.append(self._action())

    def start(self) -> None:
        """Start the thread; where the interpreter refuses a new one (at exit, on
        Python 3.12.0 and 3.12.1, whose exit hooks run after threads may no longer
        start), run the action here instead, unbounded: flushed late beats lost."""
        try:
            super().start()
        except RuntimeError:
            if self.is_alive() or self.result:  # (started already: not that refusal)
                raise
            self._here = True
            self.run()

    def join(self, timeout: float | None = None) -> None:
        if not self._here:  # (a run done here has nothing to wait for)
            super().join(timeout)


def bounded(action: Callable[[], object], timeout_millis: float) -> object:
    """``action()``'s result if it returns within ``timeout_millis``, else None (it
    goes on in a daemon thread, which the process does not wait for at exit)."""
    run = _Run(action)
    run.start()
    run.join(max(timeout_millis, 0) / 1000)
    return run.result[0] if run.result else None


class OneAtATime:
    """:func:`bounded` for an action called again and again (``force_flush``): while
    one run is still going (its exporter stuck on a stalled collector), a new call
    waits for it instead of starting another thread, so a caller flushing often
    against a black hole holds one thread, not one per call."""

    def __init__(self) -> None:
        self._lock = fork_safe(threading.Lock())
        self._running: _Run | None = None

    def __call__(self, action: Callable[[], object], timeout_millis: float) -> object:
        """``action()``'s result if a run of it started by this call returns within
        ``timeout_millis``, else None. A run an earlier call started is waited for
        first: this call's own run starts once it is over (the earlier run may
        have begun before what this call is to flush was recorded)."""
        deadline = time.monotonic() + max(timeout_millis, 0) / 1000
        mine: _Run | None = None
        while True:
            with self._lock:
                running = self._running
                if running is None or not running.is_alive():
                    running = self._running = mine = _Run(action)
                    running.start()
            running.join(max(deadline - time.monotonic(), 0))
            if running is mine:
                return mine.result[0] if mine.result else None
            if time.monotonic() >= deadline:
                return None


_Action = Callable[[int], object]
_exits: dict[int, tuple[_Action, _Action]] = {}
_exits_lock = fork_safe(threading.Lock())
_exit_hooked = False


def shut_down_at_exit(owner: object, shutdown: _Action, flush: _Action) -> None:
    """Have ``shutdown(timeout_millis)`` called at interpreter exit for ``owner``, and
    ``flush(timeout_millis)`` by :func:`flush_all` (a later call for the same owner
    replaces them). Every registered shutdown runs at once, in its own thread, and
    the exit waits for them all together at most :data:`SHUTDOWN_TIMEOUT_MILLIS`:
    traces and metrics sent to a collector that is down do not add their waits up."""
    global _exit_hooked
    with _exits_lock:
        _exits[id(owner)] = (shutdown, flush)
        if not _exit_hooked:
            atexit.register(run_at_exit)
            _exit_hooked = True


def forget_at_exit(owner: object) -> None:
    """Undo :func:`shut_down_at_exit` for ``owner`` (it was shut down already)."""
    with _exits_lock:
        _exits.pop(id(owner), None)


def registered() -> bool:
    """Whether anything is to be flushed or shut down (one dict read, no lock)."""
    return bool(_exits)


def flush_all(timeout_millis: int | None = None) -> None:
    """Flush every registered export (traces, metrics) at once, waiting for them all
    at most ``timeout_millis`` (default :data:`SHUTDOWN_TIMEOUT_MILLIS`) in total:
    what a closing mesh does, since a server may end its process by a signal that
    runs no exit hook (uvicorn re-raises the SIGTERM it shut down on)."""
    with _exits_lock:
        flushes = [flush for _, flush in _exits.values()]
    _all_within(flushes, timeout_millis)


def run_at_exit(timeout_millis: int | None = None) -> None:
    """Run every registered shutdown at once, waiting for them all at most
    ``timeout_millis`` (default :data:`SHUTDOWN_TIMEOUT_MILLIS`) in total; what is
    still running then is abandoned (daemon threads)."""
    with _exits_lock:
        shutdowns = [shutdown for shutdown, _ in _exits.values()]
        _exits.clear()
    _all_within(shutdowns, timeout_millis)


def _all_within(actions: list[_Action], timeout_millis: int | None) -> None:
    millis = SHUTDOWN_TIMEOUT_MILLIS if timeout_millis is None else timeout_millis
    deadline = time.monotonic() + max(millis, 0) / 1000
    runs = [_Run(functools.partial(action, millis)) for action in actions]
    for run in runs:
        run.start()
    for run in runs:
        run.join(max(deadline - time.monotonic(), 0))
