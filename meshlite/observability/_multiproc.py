"""Several worker processes, one metrics view: a shared directory.

Pre-fork servers (``uvicorn --workers N``, gunicorn) run one mesh per worker. With
``MESHLITE_MULTIPROC_DIR`` (or, failing that, ``PROMETHEUS_MULTIPROC_DIR``) naming
a directory, each worker writes its mesh's series to ``meshlite-<pid>-<n>.json``
there (``n`` tells apart two meshes of one process)
(every :data:`FLUSH_SECONDS` while the mesh is open, at each scrape and when it
closes; written to a temporary file and renamed, so a reader never sees half a
file), and a scrape of any worker reads every worker's file:

- counters and histograms are summed over workers, dead ones included (their last
  file stays, as ``prometheus_client``'s multiprocess mode keeps dead workers'
  counters), so a restarted worker (a new pid) neither loses nor double-counts;
- gauges get a ``pid`` label and only live workers report them (a dead worker's
  calls in flight are no longer in flight);
- a dead worker's file is kept as it is for :data:`EXITED_KEPT_SECONDS` after its
  last write, then a live worker folds its counters and histograms into
  ``meshlite-exited.json`` and removes it (:meth:`SharedMetrics.fold_exited`),
  within the bounds a live worker keeps its own series to (``_exited``: no removed
  backend's series, at most 256 callers, 256 operations per service and 64 errors by
  name): the directory, the exited file, and the time every scrape spends reading
  them, do not grow with each worker restart (gunicorn's ``max_requests`` restarts
  workers all day). Folding and reading take the lock of ``meshlite-files.lock``
  (exclusive, shared): a scrape never sees a file both in the exited file and on its
  own, nor in neither.

The same files give the dashboard its per-host and per-worker call counts
(``_worker_counts``); the directory also holds the lock one worker takes to lead the host
(:class:`HostLock`, in ``_host_lock``, re-exported here). The files themselves (their
names, reading, writing, merging, the files lock) are ``_worker_files``'s; this module
keeps :class:`SharedMetrics`, a mesh's writer and reader of them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .._fork import after_fork_in_child, before_fork_in_parent
from ._exited import bounded
from ._host_lock import HostLock
from ._metrics import MetricFamily
from ._prometheus import _merge
from ._since_fork import Totals, since, totals
from ._worker_files import (
    EXITED_FILE,
    PREFIX,
    SUFFIX,
    WorkerFile,
    alive,
    dump,
    locked,
    merge_workers,
    read_families,
    read_workers,
    worker_names,
    write_file,
)

if TYPE_CHECKING:
    from ._mesh_metrics import MeshMetrics

__all__ = ["EXITED_KEPT_SECONDS", "FLUSH_SECONDS", "HostLock", "SharedMetrics"]

_log = logging.getLogger("meshlite.metrics")

FLUSH_SECONDS = 0.5
"""How often an open mesh writes its worker file."""

EXITED_KEPT_SECONDS = 300.0
"""How long after its last write a dead worker's file stays as it is (the dashboard
lists it as a dead worker) before it is folded into the exited workers' file."""

_FOLD_EVERY = 20
"""Writes of a worker's file (:data:`FLUSH_SECONDS` apart) between two folds."""

_numbers = itertools.count(1)  # tells apart the meshes of one process


class SharedMetrics:
    """A mesh's side of the shared directory: writes this worker's file, reads all.

    Args:
        directory: The shared directory (made if missing).
        metrics: The mesh's registry.
    """

    def __init__(self, directory: str, metrics: MeshMetrics) -> None:
        self.directory = directory
        self._metrics = metrics
        self._number = next(_numbers)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.writing = True
        """False for a process that only reads (``meshlite dashboard`` attached)."""
        self._at_fork: Totals = {}
        self._baseline: Totals = {}  # in a forked child: the counts at the fork
        self._made = False  # the directory and its files lock
        before_fork_in_parent(self)
        after_fork_in_child(self)

    def before_fork(self) -> None:
        """In the parent, before a fork: note the counts, which a child leaves out of
        its file (its parent's file has them: ``_since_fork``)."""
        self._at_fork = totals(self._metrics.collect_local()) if self.writing else {}

    def after_fork(self) -> None:
        """In a forked child: count from the fork on, and no writer thread (the
        parent's is not copied), so that opening the child's mesh starts its own."""
        self._baseline, self._at_fork = self._at_fork, {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    @property
    def path(self) -> str:
        """This mesh's file (the pid is read now: a mesh made before a fork writes
        one file per worker)."""
        return os.path.join(self.directory,
                            f"{PREFIX}{os.getpid()}-{self._number}{SUFFIX}")

    def own(self) -> Iterable[MetricFamily]:
        """This worker's series: what it recorded, less what its parent had at the
        fork (the parent's file has that)."""
        families: Iterable[MetricFamily] = self._metrics.collect_local()
        return since(families, self._baseline) if self._baseline else families

    def flush(self) -> None:
        """Write this worker's series now (atomically: a temporary file, renamed)."""
        if not self.writing:
            return
        data = dump(self.own())
        path = self.path
        with self._lock:
            if not self._made:  # the lock file first: readers lock once a file exists
                os.makedirs(self.directory, exist_ok=True)
                with locked(self.directory, exclusive=True):
                    self._made = True
            write_file(path, data)

    def fold_exited(self, kept_seconds: float = EXITED_KEPT_SECONDS) -> int:
        """Fold the files of dead workers not written for ``kept_seconds`` into the
        exited workers' file (their counters and histograms; their gauges went with
        them) and remove them, with their temporary files; returns how many."""
        now, folded = time.time(), []
        with locked(self.directory, exclusive=True) as held:
            if not held or not self.writing:
                return 0
            families = list(read_families(os.path.join(self.directory, EXITED_FILE)) or ())
            running = []  # the live workers' files: what they report bounds the fold
            for name, pid in worker_names(self.directory).items():
                path = os.path.join(self.directory, name)
                with contextlib.suppress(OSError):
                    if pid and alive(pid):
                        running.append(path)
                    elif pid and now - os.stat(path).st_mtime > kept_seconds:
                        read = read_families(path)
                        if read is not None:
                            families.extend(f for f in read if f.type != "gauge")
                            folded.append(path)
            if folded:
                live = [f for path in running for f in read_families(path) or ()]
                live.extend(self.own())  # (this worker's now, whether written yet or not)
                write_file(os.path.join(self.directory, EXITED_FILE),
                       dump(bounded(_merge(families), live)))
            for path in folded + self._stale_temporary_files():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        return len(folded)

    def _stale_temporary_files(self) -> list[str]:
        # those of writes a worker killed outright never finished
        out = []
        for name in os.listdir(self.directory):
            pid = name[len(PREFIX):].split("-")[0]
            if name.startswith(PREFIX) and name.endswith(".tmp") and pid.isdigit() \
                    and not alive(int(pid)):
                out.append(os.path.join(self.directory, name))
        return out

    def collect(self) -> list[MetricFamily]:
        """Every worker's series, merged (this worker's written first, so it is
        current)."""
        self.flush()
        return merge_workers(read_workers(self.directory))

    def workers(self) -> list[WorkerFile]:
        """Every worker's file (this worker's written first)."""
        self.flush()
        return read_workers(self.directory)

    # -- the mesh lifecycle: write every FLUSH_SECONDS while open -------------------

    async def start(self) -> None:
        """Begin writing this worker's file periodically (a thread: it works for
        ``with mesh`` and ``async with mesh`` alike)."""
        if self._thread is not None or not self.writing:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="meshlite-multiproc",
                                        daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop writing, after one last write."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(5.0)
        with contextlib.suppress(OSError):
            self.flush()

    def _run(self) -> None:
        for n in itertools.count():
            try:
                self.flush()
                if n % _FOLD_EVERY == 0:  # at the start too: a worker replacing one
                    self.fold_exited()
            except Exception:  # a full disk must not kill the worker: say so, go on
                _log.warning("writing %s failed", self.path, exc_info=True)
            if self._stop.wait(FLUSH_SECONDS):
                return

    def __repr__(self) -> str:
        return f"SharedMetrics({self.directory!r})"
