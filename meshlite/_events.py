"""Events: past-tense records of what policies did, delivered to hooks.

Every policy emits frozen, slotted event records (``RetryScheduled``,
``CircuitOpened``...) to the hooks subscribed to it, then to the process-wide
hooks added with :func:`add_hook`. Metrics, tracing and the dashboard are built on
the same hooks users subscribe to. A hook that raises is logged and never breaks
the call that emitted the event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ._fork import fork_safe
from ._validate import fail

__all__ = [
    "CallRejected",
    "CircuitClosed",
    "CircuitHalfOpened",
    "CircuitOpened",
    "CircuitStateChanged",
    "Event",
    "EventHooks",
    "FallbackUsed",
    "Hook",
    "RetriesExhausted",
    "RetryBudgetExhausted",
    "RetryScheduled",
    "TimedOut",
    "add_hook",
    "check_hook",
    "remove_hook",
]

_log = logging.getLogger("meshlite.events")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of all events.

    Attributes:
        policy: The kind of policy that emitted it, such as ``"retry"``.
        service: The service of the call, or ``None``.
        operation: The operation of the call, or ``None`` for events outside a call.
    """

    policy: str
    service: str | None = None
    operation: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled(Event):
    """An attempt failed and another one will start after ``delay`` seconds."""

    attempt: int
    delay: float
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetriesExhausted(Event):
    """The last allowed attempt failed; ``reason`` says why no more were made
    (``"attempts"``, ``"not_retryable"``, ``"deadline"``, ``"budget"``, or
    ``"retry_after"``: the server asked to wait longer than ``max_retry_after``)."""

    attempts: int
    reason: str
    error: BaseException | None = None
    retry_after: float | None = None
    """The wait the server asked for (``Retry-After``), when it decided the end."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudgetExhausted(Event):
    """A retry was skipped because the retry budget had no tokens left."""

    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitStateChanged(Event):
    """A circuit breaker moved from ``previous`` to ``state``."""

    name: str
    previous: str
    state: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitOpened(CircuitStateChanged):
    """The breaker opened: calls are rejected for ``open_seconds``."""

    open_seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitHalfOpened(CircuitStateChanged):
    """The open period ended; trial calls are admitted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitClosed(CircuitStateChanged):
    """The breaker closed: calls flow normally."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedOut(Event):
    """The call ran past its deadline of ``timeout`` seconds."""

    timeout: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected(Event):
    """A policy refused the call; ``reason`` says why."""

    reason: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackUsed(Event):
    """The call failed (or its result was rejected) and the fallback answered."""

    error: BaseException | None = None


class Hook(Protocol):
    """A subscriber to events. It must be quick: it runs on the caller's thread.

    Any callable taking one :class:`Event`; what it returns is ignored.
    """

    def __call__(self, event: Event, /) -> object: ...


_global_hooks: tuple[Hook, ...] = ()

_WRITES = fork_safe(threading.Lock())
"""Held while a tuple of hooks is replaced: threads adding or removing hooks at once
would otherwise lose each other's changes. Emitting reads the tuple without it."""


def add_hook(hook: Hook) -> Callable[[], None]:
    """Subscribe ``hook`` to the events of every policy in the process.

    Returns:
        A function that unsubscribes it.
    """
    global _global_hooks
    check_hook(hook)
    with _WRITES:
        _global_hooks = (*_global_hooks, hook)
    return lambda: remove_hook(hook)


def check_hook(hook: Any) -> Hook:
    """``hook`` when it can be called with an event.

    Raises:
        ConfigError: it cannot.
    """
    if not callable(hook):
        fail("add_hook", "hook", hook, "a callable taking an event")
    return hook  # type: ignore[no-any-return]


def remove_hook(hook: Hook) -> None:
    """Unsubscribe a hook added with :func:`add_hook` (no error if absent)."""
    global _global_hooks
    with _WRITES:
        _global_hooks = tuple(h for h in _global_hooks if h is not hook)


class EventHooks:
    """The hooks of one policy. Adding or removing swaps an immutable tuple (under a
    lock), so emitting never takes one.

    A hook is delivered each event once however many times it was added (a policy
    two services share, or that a rebuilt service kept, is subscribed through each);
    each :meth:`add` returns its own unsubscribe function, and the hook stays until
    every one of them was called (or :meth:`remove`)."""

    __slots__ = ("_adds", "_hooks")

    def __init__(self) -> None:
        self._hooks: tuple[Hook, ...] = ()
        self._adds: dict[int, list[object]] = {}  # by id(hook): the adds not undone

    def add(self, hook: Hook) -> Callable[[], None]:
        """Subscribe ``hook``; returns a function that undoes this subscription (once:
        calling it again, or after :meth:`remove`, does nothing)."""
        check_hook(hook)
        key, token = id(hook), object()
        with _WRITES:
            adds = self._adds.get(key)
            if adds is None:
                adds = self._adds[key] = []
                self._hooks = (*self._hooks, hook)
            adds.append(token)

        def undo() -> None:
            with _WRITES:
                adds = self._adds.get(key)
                if adds is None or token not in adds:
                    return
                adds.remove(token)
                if not adds:
                    del self._adds[key]
                    self._hooks = tuple(h for h in self._hooks if h is not hook)

        return undo

    def remove(self, hook: Hook) -> None:
        """Unsubscribe ``hook``, however many times it was added (no error if absent)."""
        with _WRITES:
            self._adds.pop(id(hook), None)
            self._hooks = tuple(h for h in self._hooks if h is not hook)

    def has(self, hook: Hook) -> bool:
        """Whether ``hook`` (this very object) is subscribed."""
        return any(h is hook for h in self._hooks)

    @property
    def active(self) -> bool:
        """Whether anyone listens; emitters skip building events when not."""
        return bool(self._hooks or _global_hooks)

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to this policy's hooks, then to the global ones."""
        for hook in (*self._hooks, *_global_hooks):
            try:
                hook(event)
            except Exception:
                _log.exception("meshlite event hook %r raised on %r; ignored", hook, event)
