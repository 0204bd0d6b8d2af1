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
from pathlib import Path
from typing import Any

import pytest
from _forked import in_child_while_held

import meshlite as ml
from meshlite.state import MemoryStore
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
        answer = in_child_while_held(locks, lambda: users.get("/").status_code
                                     + mesh.call_sync("users", lambda backend: 7))
        assert answer == 207
        assert users.get("/").status_code == 200  # the parent's locks are its own
        mesh.close()


def test_the_metrics_policy_and_the_memory_store_do_not_hold_up_the_child() -> None:
    # The Metrics policy's series table (a new operation, a scrape), its log
    # throttle, and the MemoryStore's tables (its shared cache on every call) were
    # plain locks: the child waited on them for good.
    store = MemoryStore()
    metrics = ml.Metrics(max_operations=1)
    pipeline = ml.Pipeline(metrics, ml.Cache(ttl=30.0, store=store),
                           ml.CircuitBreaker(store=store, name="cb"),
                           ml.RateLimit(1000.0, store=store, name="rl"))

    @pipeline
    def double(x: int) -> int:
        return 2 * x

    @pipeline
    def triple(x: int) -> int:  # beyond max_operations: folded, and logged once
        return 3 * x

    assert double(1) + triple(1) == 5
    locks = locks_of((pipeline, store))
    assert len(locks) >= 6

    def in_the_child() -> int:
        @pipeline
        def square(x: int) -> int:  # a new operation: the series table
            return x * x

        families = list(metrics.collect())  # a scrape
        return double(1) + double(2) + triple(3) + square(3) + min(len(families), 1)

    assert in_child_while_held(locks, in_the_child) == 2 + 4 + 9 + 9 + 1
    assert double(5) == 10  # the parent's locks are its own


def test_every_lock_of_meshlite_is_released_in_a_forked_child() -> None:
    # A lock made without fork_safe() stays held in a child forked while a thread
    # held it, unless its module resets it in an after_fork() (a new lock; the
    # locks of queued callers, a bulkhead's or a cache flight's, go with the
    # parent's queue that after_fork() empties: made in the module that has it, or
    # marked "# fork: queued" where the queue's module empties it).
    package = Path(ml.__file__).parent
    bare = []
    for path in sorted(package.rglob("*.py")):
        if path.parent.name == "testing":  # the test kit's servers are not forked
            continue
        text = path.read_text(encoding="utf-8")
        remade = "def after_fork(" in text
        for number, line in enumerate(text.splitlines(), 1):
            made = "threading.Lock()" in line or "threading.RLock()" in line
            queued = "# fork: queued" in line
            if made and "fork_safe(" not in line and not remade and not queued:
                bare.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
    assert not bare, "locks a forked child may find held:\n" + "\n".join(bare)
