"""Deliveries run in the order of the changes they report, whichever threads made them.

A state object makes its changes under its own lock but must not run hooks there (a
hook may call back into it and take that lock again). Handing the event over once
the lock is released lets two threads race: a breaker opened by one thread and
closed by the next could reach a hook closed-then-open. So each change draws a
:class:`Turn` under the state's lock (numbers follow the order of the changes), and
the delivery is handed to :meth:`Turn.take` later, on any thread: deliveries run in
number order, on whichever thread finds its own next in line and nobody delivering.
A thread whose turn is not next returns at once, its delivery left to the thread
that delivers the turns before it; no lock is held while a delivery runs, so a
hook that changes the state again (from the delivering thread or any other) only
queues the event of that change behind the one being delivered.

Every drawn turn must be taken or skipped (:meth:`Turn.skip`), else the turns after
it wait for good.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ._fork import after_fork_in_child, fork_safe

__all__ = ["InOrder", "Turn"]

Delivery = Callable[[], None]


class Turn:
    """One change's place in line: :meth:`take` it with its delivery, or :meth:`skip` it."""

    __slots__ = ("_line", "number")

    def __init__(self, line: InOrder, number: int) -> None:
        self._line = line
        self.number = number

    def take(self, delivery: Delivery) -> None:
        """Run ``delivery`` once every turn drawn before this one has been delivered:
        now on this thread, or later on the thread delivering an earlier turn."""
        self._line.ready(self.number, delivery)

    def skip(self) -> None:
        """Give up this turn (its change is reported another way, or not at all)."""
        self._line.ready(self.number, None)


class InOrder:
    """A line of deliveries run in the order their turns were drawn (see the module
    docstring). :meth:`draw` is called under the owner's lock, which orders the turns;
    the rest takes a lock of its own, never held while a delivery runs."""

    __slots__ = ("__weakref__", "_delivering", "_drawn", "_lock", "_next", "_ready")

    def __init__(self) -> None:
        self._lock = fork_safe(threading.Lock())
        self._drawn = 0  # changed under the owner's lock only
        self._next = 1
        self._ready: dict[int, Delivery | None] = {}
        self._delivering = False
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: the turns the parent's threads held are never taken
        there, nor the delivery a parent's thread was running finished."""
        self._ready.clear()
        self._next = self._drawn + 1
        self._delivering = False

    def draw(self) -> Turn:
        """The next turn; call it under the lock that orders the changes."""
        self._drawn += 1
        return Turn(self, self._drawn)

    def ready(self, number: int, delivery: Delivery | None) -> None:
        """Turn ``number`` may be delivered (``None``: skipped); deliver what is next
        in line unless another thread does."""
        with self._lock:
            self._ready[number] = delivery
            if self._delivering:
                return
            self._delivering = True
        try:
            while True:
                with self._lock:
                    if self._next not in self._ready:
                        self._delivering = False
                        return
                    delivery = self._ready.pop(self._next)
                    self._next += 1
                if delivery is not None:
                    delivery()
        except BaseException:
            with self._lock:  # interrupted: the next thread to hand one over delivers
                self._delivering = False
            raise
