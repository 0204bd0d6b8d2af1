"""State a forked child must not inherit: :func:`after_fork_in_child`.

A pre-fork server (gunicorn, uvicorn ``--workers``) or ``multiprocessing`` with the
fork start method copies the parent's memory into every child, but not its
threads: what the parent's threads were doing (a call in flight, a held lock) never
finishes in the child, and what the parent took for itself (leased tokens, queued
outcomes, sockets) would be used once per process.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["AfterFork", "after_fork_in_child"]


class AfterFork(Protocol):
    """An object that resets its process-local state in a forked child."""

    def after_fork(self) -> None:
        """Called in the child, right after the fork."""


def after_fork_in_child(obj: AfterFork) -> None:
    """Call ``obj.after_fork()`` in every child forked while ``obj`` lives (held weakly,
    so registering keeps nothing alive)."""
    ref = weakref.ref(obj)

    def child() -> None:
        target = ref()
        if target is not None:
            target.after_fork()

    os.register_at_fork(after_in_child=child)
