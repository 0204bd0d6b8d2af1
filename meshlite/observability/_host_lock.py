"""HostLock: which process of a host leads (serves the host's dashboard, runs its
alert rules), an ``flock`` on a file of the shared directory that the kernel
releases when its holder dies."""

from __future__ import annotations

import logging
import os

from .._fork import after_fork_in_child

__all__ = ["NOFOLLOW", "HostLock"]

_log = logging.getLogger("meshlite.metrics")

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
"""``os.open`` flag that refuses to open through a symbolic link (0 where missing):
another user of a shared directory may plant one to have us write through it."""


class HostLock:
    """An exclusive lock on a file of the shared directory, held by one process of
    the host at a time and released by the kernel when that process dies (an
    ``flock``): the worker holding ``dashboard.lock`` serves the host's dashboard
    and runs its alert rules. Where ``fcntl`` is missing (Windows), every
    :meth:`acquire` succeeds and binding the port decides.

    Args:
        path: The lock file (made if missing).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        after_fork_in_child(self)

    def after_fork(self) -> None:
        """In a forked child: not held. The child's copy of the descriptor is closed
        (the lock stays the parent's: an ``flock`` is released when the last
        descriptor of its open file closes, so a copy left open kept every other
        worker from leading after the parent let go, for as long as the child ran)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def acquire(self, *, announce: bool = True) -> bool:
        """Take the lock if it is free; True when this process holds it.

        Args:
            announce: Write this process's pid into the file at once; with False the
                file is left empty (a worker is taking over) until :meth:`announce`.
        """
        if self._fd is not None:
            if announce:
                self.announce()
            return True
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return True
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        try:  # never through a link another user of the directory planted
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o644)
        except OSError as error:
            _log.warning("cannot open the host lock %s: %s", self.path, error)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)  # not the pid of a leader that died
        self._fd = fd
        if announce:
            self.announce()
        return True

    def announce(self) -> None:
        """Write this process's pid into the file (it holds the lock): the host's
        leader, for operators and tests reading the file, once it is ready to lead."""
        fd = self._fd
        if fd is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    @property
    def held(self) -> bool:
        """Whether this process holds it."""
        return self._fd is not None

    def release(self) -> None:
        """Let another process take it."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock
