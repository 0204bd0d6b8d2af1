"""What one process has told its hooks of a circuit it shares through a store.

The store orders a shared circuit's changes: each one raises the circuit's epoch,
within one *life* of its state in the store (a circuit forgotten after
``state_ttl``, or evicted, starts again at epoch 0 in a new life). Its replies
reach this process's threads in any order, though, and carry only the changes
this process made. So each change's event is ordered here by its epoch, under one
lock, before it is handed to hooks:

- a change of the life last delivered whose epoch is not above the last
  delivered one is stale (another thread of this process delivered a later change
  first): it is not delivered;
- the first change of another life starts the count again (lives are told apart,
  not ordered: a life that an older version of the scripts started has none, and
  Redis's clock may step back);
- a change that follows others this process did not see (made by other
  processes, or by a thread of this one whose reply comes later) is delivered with
  ``previous`` the state this process last delivered, the changes in between
  folded into it; when that is its own state, nothing changed as far as the hooks
  know, and nothing is delivered.

Each delivered event's ``previous`` is thus the ``state`` of the one delivered
before it, and the last delivered is the newest change this process has learned
of. The events are delivered in the order of their turns
(:mod:`meshlite._inorder`), drawn under the same lock.

While the store does not answer, the breaker decides calls with its in-process
state, whose changes it tells hooks itself; :meth:`SeenChanges.told` notes them,
so that the first reply once the store answers again (:meth:`SeenChanges.rejoin`)
tells hooks the shared state when it is not the one they last heard (a Redis that
restarted empty reads closed while the in-process state had opened).
"""

from __future__ import annotations

import threading

from .._fork import fork_safe
from .._inorder import InOrder
from ._circuit_records import Transition

__all__ = ["APART", "REJOINED", "SeenChanges"]

REJOINED = "the store answers again and its shared state is {state}"
"""The reason of the change told when the store decides calls again (see the module doc)."""

APART = ("the store does not answer: this process's own state, {state}, decides calls "
         "until it does")
"""The reason of the change told when the in-process state starts deciding calls and is
not the shared state hooks last heard (a circuit open in the store, closed here)."""


class SeenChanges:
    """The changes of one shared circuit this process has delivered (see the module
    docstring): :meth:`order` turns a change the store reported into the event to
    deliver, or ``None``."""

    __slots__ = ("_changes", "_epoch", "_life", "_local", "_lock", "_state")

    def __init__(self) -> None:
        self._lock = fork_safe(threading.Lock())
        self._changes = InOrder()
        self._life = self._epoch = -1  # nothing delivered yet
        self._state: str | None = None  # nothing delivered yet
        self._local = False  # whether the in-process state said the last word

    def order(self, previous: str, state: str, reason: str, life: int,
              epoch: int) -> Transition | None:
        """The transition to announce for the change to ``state`` the store numbered
        ``epoch`` in the circuit's ``life``, with its turn; ``None`` when it is
        stale or changes nothing this process has said."""
        with self._lock:
            if life == self._life and epoch <= self._epoch:
                return None
            self._life, self._epoch = life, epoch
            self._local = False
            if self._state is not None:
                previous = self._state
            self._state = state
            if previous == state:
                return None
            return Transition(previous, state, reason, self._changes.draw())

    def told(self, state: str) -> None:
        """Note that the breaker's in-process state told hooks ``state`` (a call the
        store could not decide)."""
        with self._lock:
            self._state, self._local = state, True

    def rejoin(self, state: str) -> Transition | None:
        """The transition to announce when a reply shows the shared ``state`` after the
        store did not answer: from the state hooks last heard, if it differs (none
        while they heard nothing: a process learns others' changes from its own)."""
        with self._lock:
            previous, self._state, self._local = self._state, state, False
            if previous is None or previous == state:
                return None
            return Transition(previous, state, REJOINED.format(state=state),
                              self._changes.draw())

    def apart(self, state: str) -> Transition | None:
        """The transition to announce when the in-process ``state`` decides calls the
        store does not answer, if hooks last heard another from the store (the
        shared circuit open, this process's closed); None when the in-process state
        said the last word (it tells its own changes) or nothing was heard."""
        with self._lock:
            previous = self._state
            if self._local or previous is None or previous == state:
                return None
            self._state, self._local = state, True
            return Transition(previous, state, APART.format(state=state),
                              self._changes.draw())
