"""Locks held at a fork (a process forking while its threads are in calls: a
``multiprocessing`` pool or a prefork pool started by a threaded app): the child's
calls never wait on a lock only a thread of the parent could release. They did, for
good: a backend's endpoint lock, a bulkhead's, a breaker's, a rate limiter's, an
adaptive limiter's (each taken on every call), copied held into the child."""

from __future__ import annotations

import gc
import os
import sys
import threading
from typing import Any

import pytest
from _forked import in_child

import meshlite as ml
from meshlite.testing import FakeBackend

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")

_LOCKS = (type(threading.Lock()), type(threading.RLock()))


def locks_of(root: object) -> list[Any]:
    """Every lock reachable from ``root`` through meshlite's objects, and those of
    meshlite's modules (the test tools' own excepted: they serve the backend)."""
    found: dict[int, Any] = {}
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, _LOCKS):
            found[id(obj)] = obj
            continue
        module = getattr(type(obj), "__module__", "")
        if isinstance(obj, (dict, list, tuple, set)) or (
                isinstance(module, str) and module.startswith("meshlite")
                and not module.startswith("meshlite.testing")):
            todo.extend(gc.get_referents(obj))
    for name, module in list(sys.modules.items()):
        if name.startswith("meshlite") and not name.startswith("meshlite.testing"):
            for value in list(vars(module).values()):
                if isinstance(value, _LOCKS):
                    found[id(value)] = value
    return list(found.values())


def test_locks_held_by_the_parents_threads_do_not_hold_up_the_child() -> None:
    with FakeBackend() as backend:
        pipeline = ml.Pipeline(ml.Retry(attempts=2), ml.CircuitBreaker(),
                               ml.RateLimit(1000.0), ml.Bulkhead(max_concurrent=8),
                               ml.AdaptiveConcurrency(), ml.Timeout(5.0))
        mesh = ml.Mesh([ml.Service("users", [backend.url], pipeline=pipeline)])
        users = mesh.http_sync("users")
        assert users.get("/").status_code == 200
        assert mesh.call_sync("users", lambda backend: 7) == 7
        locks = locks_of(mesh)
        assert len(locks) >= 10
        held, release = threading.Event(), threading.Event()

        def hold() -> None:  # the parent's threads, mid-call when the fork comes
            for lock in locks:
                lock.acquire()
            held.set()
            release.wait(15.0)
            for lock in locks:
                lock.release()

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(5.0)
        try:
            answer = in_child(lambda: users.get("/").status_code
                              + mesh.call_sync("users", lambda backend: 7))
        finally:
            release.set()
            holder.join()
        assert answer == 207
        assert users.get("/").status_code == 200  # the parent's locks are its own
        mesh.close()
