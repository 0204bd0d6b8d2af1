"""Watch one file for changes with watchfiles (inotify, FSEvents...), from asyncio.

The file is watched, and so are its directory and the symbolic links it is reached
through, followed anew after each change: editors that save by renaming a new file
over the old one are seen; a Kubernetes ConfigMap volume mounts ``mesh.yaml ->
..data/mesh.yaml`` and updates it by pointing ``..data`` at a new directory, never
touching ``mesh.yaml``; a link may lead to another directory, through a ``current``
link moved at each deploy; a write made through another directory (a file
bind-mounted into a container, edited on the host) is told to the file's own watch
only. A directory on the way that is removed or replaced is watched anew (its
nearest existing ancestor while it is missing). The blocking watch runs on a daemon
thread, which wakes the event loop through a flag; a watcher never keeps the
interpreter from exiting.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
import time
from typing import Any

__all__ = ["DEFAULT_DEBOUNCE_MS", "DEFAULT_STEP_MS", "FileWatch"]

DEFAULT_STEP_MS = 30
"""A change is reported once the file has been quiet this long (an editor's save is
several writes in a row)."""

DEFAULT_DEBOUNCE_MS = 400
"""Changes are reported at the latest this long after the first one, even if the file
keeps changing."""

_POLL_MS = 500  # the thread re-checks its stop flag at least this often

_log = logging.getLogger("meshlite.watch")

_MAX_LINKS = 40  # links followed from the watched name (as the kernel does; a loop ends)

_running: dict[threading.Thread, threading.Event] = {}  # each watch thread: its stop flag


@atexit.register
def _stop_all() -> None:
    """At exit, stop the watch threads and wait for them to leave watchfiles' notifier
    (within a step): one still in it when the interpreter finalizes is torn down there,
    which before watchfiles 1.3 aborted the process ("FATAL: exception not rethrown",
    SIGABRT) or crashed it, after a closed mesh too (a closed watch ends in a step)."""
    running = list(_running.items())
    for _, stop in running:
        stop.set()
    for thread, _ in running:
        thread.join(_POLL_MS / 1000)


Spot = tuple[str, str]
"""A directory, and a name in it that the watched file is reached through."""


def _spots(path: str) -> set[Spot]:
    """Where a change can change what ``path`` reads: each symbolic link on the way
    from ``path`` to the file it reaches (those of the link targets included), and
    that file, each as (its directory, its name); directories are resolved, as the
    kernel's notifications name them. Where a directory on the way is missing, the
    walk ends at its nearest existing ancestor, with the missing name."""
    spots: set[Spot] = set()
    parts = path.split(os.sep)[:0:-1]  # a stack: the next component last
    current, links = os.sep, 0
    while parts:
        name = parts.pop()
        if name in ("", os.curdir):
            continue
        if name == os.pardir:
            current = os.path.dirname(current)
            continue
        full = os.path.join(current, name)
        try:
            target = os.readlink(full)
        except OSError:  # not a link, or missing
            if not parts or not os.path.isdir(full):
                spots.add((current, name))
                break
            current = full
            continue
        spots.add((current, name))
        links += 1
        if links > _MAX_LINKS:
            break
        if os.path.isabs(target):
            current = os.sep
        parts.extend(target.split(os.sep)[::-1])
    return spots


def _identity(paths: set[str]) -> dict[str, tuple[int, int] | None]:
    """Each path's (device, inode): a directory or file removed and made again is new."""
    found: dict[str, tuple[int, int] | None] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            found[path] = None
        else:
            found[path] = (st.st_dev, st.st_ino)
    return found


_NOTIFY = "watchfiles._rust_notify"
_DELETED = 3  # watchfiles.Change.deleted


def _rust_notify() -> Any:
    """watchfiles' compiled notifier, without running ``watchfiles/__init__`` (which
    imports anyio and multiprocessing for APIs not used here: ~12 ms of a mesh's
    start). Registered under its own name, so a later ``import watchfiles`` uses
    this same module; any surprise falls back to the plain import."""
    module = sys.modules.get(_NOTIFY)
    if module is not None:
        return module
    try:
        spec = importlib.util.find_spec("watchfiles")  # locates it, runs nothing
        locations = list(spec.submodule_search_locations or ()) if spec else []
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(locations[0], "_rust_notify" + suffix)
            if os.path.exists(path):
                loader = importlib.machinery.ExtensionFileLoader(_NOTIFY, path)
                found = importlib.util.spec_from_file_location(_NOTIFY, path, loader=loader)
                if found is None:
                    break
                module = importlib.util.module_from_spec(found)
                sys.modules[_NOTIFY] = module
                loader.exec_module(module)
                return module
    except Exception:
        sys.modules.pop(_NOTIFY, None)
    from watchfiles import _rust_notify

    return _rust_notify


class FileWatch:
    """Wait for changes of one file.

    Args:
        path: The file (it need not exist yet; its directory must).
        step_ms: Quiet time after a change before it is reported.
        debounce_ms: Longest a burst of changes is held back.

    Raises:
        FileNotFoundError: (from :meth:`open`) the directory does not exist.
    """

    def __init__(self, path: str | os.PathLike[str], *, step_ms: int = DEFAULT_STEP_MS,
                 debounce_ms: int = DEFAULT_DEBOUNCE_MS) -> None:
        full = os.path.abspath(os.fspath(path))
        self.path = full
        self._directory, self._name = os.path.split(full)
        self._step = step_ms
        self._debounce = debounce_ms
        self._stop = threading.Event()
        self._flag: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._notify: Any = None
        self._spots: set[Spot] = set()
        self._watched: dict[str, tuple[int, int] | None] = {}
        self._stale = False  # a watched path itself went, and its watch with it

    def open(self) -> None:
        """Start watching now (changes from this moment on are seen); call it on the
        event loop that will await :meth:`changed`."""
        if not os.path.isdir(self._directory):
            raise FileNotFoundError(f"{self._directory}: no such directory")
        self._loop = asyncio.get_running_loop()
        self._flag = asyncio.Event()
        self._rewatch()
        self._thread = threading.Thread(target=self._run, name=f"meshlite-watch {self._name}",
                                        daemon=True)
        _running[self._thread] = self._stop
        self._thread.start()

    def _rewatch(self) -> bool:
        """Watch the directories the file is now reached through, and the file, if
        they are not those watched (a link now points elsewhere, a directory or the
        file was removed or replaced); returns whether they changed."""
        spots = _spots(self.path)
        directories = {directory for directory, _ in spots}
        # A directory one may pass through but not list cannot be watched: the file
        # is still read through it, so only the others are watched.
        paths = {d for d in directories if os.access(d, os.R_OK)} or directories
        file = os.path.realpath(self.path)
        if os.path.isfile(file) and os.access(file, os.R_OK):
            # A write made through another directory (a file bind-mounted into a
            # container, a hard link) is told to the file's watches, not the directory's.
            paths.add(file)
        watched = _identity(paths)
        self._spots = spots
        if watched == self._watched and self._notify is not None and not self._stale:
            return False
        RustNotify = _rust_notify().RustNotify
        notify = RustNotify(sorted(watched), False, False, 300, False, False)
        old, self._notify, self._watched = self._notify, notify, watched
        self._stale = False
        if old is not None:
            old.close()
        return True

    def _seen(self, result: Any) -> bool:
        """Whether a batch of the notifier's changes touches the file or a way to it."""
        if not isinstance(result, set):
            return False
        if any(kind == _DELETED and path in self._watched for kind, path in result):
            self._stale = True  # removed or renamed: its inode may be reused at once
            return True
        return any(path in self._watched or os.path.split(path) in self._spots
                   for _, path in result)

    def _settle(self) -> None:
        """Hold a change back until the file has been quiet for ``step_ms``, or at
        most ``debounce_ms``: the notifier's own grouping ends as soon as no *new*
        (kind, path) pair arrives, so a file written over and over would be
        reported every other step. A file last written ``step_ms`` ago or more is
        quiet already (its modification time is the file system's wall clock)."""
        try:
            if time.time() - os.stat(self.path).st_mtime >= self._step / 1000:
                return
        except OSError:  # gone: nothing to wait for
            return
        end = time.monotonic() + self._debounce / 1000
        while not self._stop.is_set() and time.monotonic() < end:
            if not self._seen(self._notify.watch(self._debounce, self._step, self._step,
                                                 self._stop)):
                return

    def _run(self) -> None:
        failure = ""
        try:
            while not self._stop.is_set():
                changed = False
                try:
                    result = self._notify.watch(self._debounce, self._step, _POLL_MS,
                                                self._stop)
                    changed = self._seen(result)
                    if changed:
                        self._settle()
                    changed = self._rewatch() or changed
                    failure = ""
                except OSError as error:  # a directory went, or is shut, as it is watched
                    self._stale = True  # anew: the previous watch goes on, tried again
                    if str(error) != failure and not isinstance(error, FileNotFoundError):
                        failure = str(error)
                        _log.warning("cannot watch the way to %s anew (%s); the previous "
                                     "watch goes on", self.path, error)
                if changed:
                    self._signal()
        except Exception:
            _log.exception("watching %s failed; changes to it are no longer seen", self.path)
        finally:
            if self._notify is not None:
                self._notify.close()
            _running.pop(threading.current_thread(), None)

    def _signal(self) -> None:
        loop, flag = self._loop, self._flag
        if loop is None or flag is None:
            return
        try:
            loop.call_soon_threadsafe(flag.set)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            self._stop.set()

    async def changed(self) -> None:
        """Return after the next change of the file (or at once if one happened since
        the last call)."""
        flag = self._flag
        if flag is None:
            raise RuntimeError("FileWatch.changed: open() the watch first")
        await flag.wait()
        flag.clear()

    def close(self) -> None:
        """Stop watching (the thread ends within half a second)."""
        self._stop.set()
        self._thread = None
