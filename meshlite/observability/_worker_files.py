"""The shared directory of several worker processes' metrics (``_multiproc``): one file
per worker (``meshlite-<pid>-<n>.json``), the exited workers' file, and the lock of
``meshlite-files.lock`` that folding (exclusive) and reading (shared) take; files are
written to a temporary file and renamed, never through a link."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .._fork import fork_safe
from ._host_lock import NOFOLLOW
from ._metrics import MetricFamily, Sample
from ._prometheus import _merge

__all__ = ["ENV_VARS", "EXITED_FILE", "PREFIX", "SUFFIX", "WorkerFile", "alive", "dump",
           "locked", "merge_workers", "multiproc_dir", "read_families", "read_workers",
           "worker_names", "write_file"]

ENV_VARS = ("MESHLITE_MULTIPROC_DIR", "PROMETHEUS_MULTIPROC_DIR")
"""Environment variables naming the shared directory, the first set wins."""

PREFIX, SUFFIX = "meshlite-", ".json"
EXITED_FILE, _LOCK = "meshlite-exited.json", "meshlite-files.lock"
def multiproc_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """The shared directory named by :data:`ENV_VARS`, or None (one process)."""
    env = os.environ if environ is None else environ
    for name in ENV_VARS:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (signal 0 checks without signalling; a worker
    that died but that its parent has not reaped yet, a zombie, counts as dead)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # "pid (comm) state ...": the state follows the last ')'
            return stat.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):  # no /proc (not Linux), or the process just went
        return False


@dataclass(frozen=True, slots=True)
class WorkerFile:
    """One worker's last written series."""

    pid: int
    alive: bool
    families: tuple[MetricFamily, ...]


def dump(families: Iterable[MetricFamily]) -> list[Any]:
    return [[f.name, f.type, f.help, [[s.suffix, list(map(list, s.labels)), s.value]
                                      for s in f.samples]] for f in families]


def _load(data: list[Any]) -> tuple[MetricFamily, ...]:
    return tuple(MetricFamily(name, kind, help_text, tuple(
        Sample(suffix, tuple((k, v) for k, v in labels), float(value))
        for suffix, labels, value in samples)) for name, kind, help_text, samples in data)


def worker_names(directory: str) -> dict[str, int]:
    """The worker files of ``directory`` and their pids (0: the exited workers')."""
    out = {}
    for name in os.listdir(directory):
        if name == EXITED_FILE:
            out[name] = 0
        elif name.startswith(PREFIX) and name.endswith(SUFFIX):
            with contextlib.suppress(ValueError):  # not ours
                out[name] = int(name[len(PREFIX):-len(SUFFIX)].split("-")[0])
    return out


def read_families(path: str) -> tuple[MetricFamily, ...] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return _load(json.load(f))
    except (ValueError, OSError, TypeError):
        return None  # not ours, or removed meanwhile


def read_workers(directory: str) -> list[WorkerFile]:
    """Every worker file in ``directory`` (unreadable ones are skipped), by pid; the
    workers that exited before the last fold as one, pid 0, not alive."""
    by_pid: dict[int, list[MetricFamily]] = {}
    with locked(directory, exclusive=False):
        try:
            names = worker_names(directory)
        except FileNotFoundError:
            return []
        for name, pid in names.items():
            families = read_families(os.path.join(directory, name))
            if families is not None:  # a process's meshes, together
                by_pid.setdefault(pid, []).extend(families)
    return [WorkerFile(pid, pid != 0 and alive(pid), tuple(by_pid[pid]))
            for pid in sorted(by_pid)]


_IN_PROCESS = fork_safe(threading.Lock())
"""One holder of the files lock per process at a time (see :func:`locked`)."""


@contextlib.contextmanager
def locked(directory: str, *, exclusive: bool) -> Iterator[bool]:
    """Hold the directory's files lock (made by a writer, never through a link);
    yields False where there is none to hold (no fcntl, or no writer made it).

    A POSIX record lock (``lockf``), not an ``flock``: a child forked while a thread
    of the parent held an ``flock`` shared it through its copy of the descriptor, so
    the child's own writer waited on it for good (its close then waited 5 s for the
    writer) and so did every other process's, for as long as the child lived. A
    record lock belongs to the process that took it and is not inherited; it is
    released when the process closes any descriptor of the file, so the process's
    holders take turns (``_IN_PROCESS``), one descriptor at a time."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no folding either
        yield False
        return
    flags = (os.O_RDWR | os.O_CREAT) if exclusive else os.O_RDONLY
    with _IN_PROCESS:
        try:
            fd = os.open(os.path.join(directory, _LOCK), flags | NOFOLLOW, 0o644)
        except OSError:  # none yet (nothing to fold then), or a planted link
            yield False
            return
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield True
        finally:
            os.close(fd)  # (lets go of the lock)


def merge_workers(workers: Iterable[WorkerFile]) -> list[MetricFamily]:
    """One view of several workers: counters and histograms summed, gauges of live
    workers with a ``pid`` label."""
    out: list[MetricFamily] = []
    for w in workers:
        for f in w.families:
            if f.type != "gauge":
                out.append(f)
            elif w.alive:
                out.append(MetricFamily(f.name, f.type, f.help, tuple(
                    Sample(s.suffix, (*s.labels, ("pid", str(w.pid))), s.value)
                    for s in f.samples)))
    return _merge(out)


def write_file(path: str, data: list[Any]) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file, renamed)."""
    tmp = f"{path}.{threading.get_ident()}.tmp"
    with open(_fresh(tmp), "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)


def _fresh(path: str) -> int:
    """A new file at ``path``, opened for writing: whatever was there (a stale
    temporary file, or a link another user of a shared directory planted to have us
    write through it) is removed first, and the file is never opened through a link."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)
