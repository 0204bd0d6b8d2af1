"""State a forked child must not inherit: :func:`after_fork_in_child`.

A pre-fork server (gunicorn, uvicorn ``--workers``) or ``multiprocessing`` with the
fork start method copies the parent's memory into every child, but not its
threads: what the parent's threads were doing (a call in flight, a held lock) never
finishes in the child, and what the parent took for itself (leased tokens, queued
outcomes, sockets) would be used once per process.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Protocol, TypeVar

L = TypeVar("L", threading.Lock, threading.RLock)

__all__ = ["AfterFork", "BeforeFork", "after_fork_in_child", "before_fork_in_parent",
           "fork_safe"]


class AfterFork(Protocol):
    """An object that resets its process-local state in a forked child."""

    def after_fork(self) -> None:
        """Called in the child, right after the fork."""


class BeforeFork(Protocol):
    """An object that notes something in the parent just before a fork."""

    def before_fork(self) -> None:
        """Called in the parent, right before the fork (its threads still run)."""


def before_fork_in_parent(obj: BeforeFork) -> None:
    """Call ``obj.before_fork()`` in the parent before every fork while ``obj`` lives
    (held weakly, as :func:`after_fork_in_child` holds its objects)."""
    _before[id(obj)] = obj


def after_fork_in_child(obj: AfterFork) -> None:
    """Call ``obj.after_fork()`` in every child forked while ``obj`` lives (held weakly,
    so registering keeps nothing alive, and a dead object's entry goes with it)."""
    _registered[id(obj)] = obj


_registered: weakref.WeakValueDictionary[int, AfterFork] = weakref.WeakValueDictionary()
"""What resets itself in a forked child, by identity. One process-wide fork hook
reads it: ``os.register_at_fork`` keeps every callable it is given for good, so one
hook per object (a cache, a shared breaker, a store's clients) was a list that only
grew, by one closure for every such object the process ever made."""


_before: weakref.WeakValueDictionary[int, BeforeFork] = weakref.WeakValueDictionary()
"""What notes something in the parent before a fork, by identity."""


def _prepare_in_parent() -> None:
    for obj in list(_before.values()):
        obj.before_fork()


def fork_safe(lock: L) -> L:
    """``lock``, released in place in every child forked while it lives.

    A lock a parent's thread held at the fork stays held in the child for good (the
    thread that would release it is not there), and the child's first call that
    takes it waits forever. Released in place, as the standard library releases
    its own locks after a fork, it is released for every closure and bound method
    that captured it (a policy's compiled handler does)."""
    _locks.add(lock)
    return lock


_locks: weakref.WeakSet[Any] = weakref.WeakSet()
"""The locks :func:`fork_safe` releases in a forked child."""


def _reset_in_child() -> None:
    for lock in list(_locks):
        lock._at_fork_reinit()  # CPython's locks all have it (3.9+)
    for obj in list(_registered.values()):
        obj.after_fork()


os.register_at_fork(before=_prepare_in_parent, after_in_child=_reset_in_child)
