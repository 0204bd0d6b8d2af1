"""A breaker on a RedisStore hands its state changes to hooks in the order the store
made them: each event's ``previous`` is the ``state`` of the one delivered before
it, whichever threads (of this process) made them, and a change other processes
made in between is folded into the next one this process learns of."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from _breaker_events import Seen, in_threads
from redis_server import RedisServer

import meshlite as ml
from meshlite.state import RedisStore

THREADS = 24
ROUNDS = 60


@pytest.fixture
def asking(redis_server: RedisServer, prefix: str) -> Iterator[RedisStore]:
    """A store whose breakers ask Redis before every call (``circuit_cache=0``), so
    every call may change the state."""
    s = RedisStore(redis_server.url, prefix=prefix, timeout=2.0, circuit_cache=0)
    try:
        yield s
    finally:
        s.close()


def boom() -> None:
    raise ConnectionError("down")


def stored_state(raw: redis.Redis, store: RedisStore, name: str = "users") -> str:
    """The state the store holds (``breaker.state`` reads an open circuit whose open
    period is over as half-open, a change nobody has made yet)."""
    value = raw.hget(f"{store.prefix}:cb:{{{name}}}", "st")
    return "closed" if value is None else value.decode()


def flipping(store: RedisStore, **options: Any) -> ml.CircuitBreaker:
    """A breaker that changes state at almost every call: one failure opens it, it is
    half-open a millisecond later, and one trial call closes or opens it again."""
    settings: dict[str, Any] = {"name": "users", "failure_rate": 1.0, "window": 1,
                                "min_calls": 1, "open_seconds": 0.001,
                                "half_open_calls": 1}
    settings.update(options)
    return ml.CircuitBreaker(store=store, **settings)


def watched(store: RedisStore) -> tuple[ml.CircuitBreaker, Seen]:
    """A :func:`flipping` breaker on ``store``, and the hook that sees its changes."""
    breaker, seen = flipping(store), Seen()
    breaker.add_hook(seen)
    return breaker, seen


def calls(breaker: ml.CircuitBreaker, step: int) -> Any:
    """A thread's work: calls that fail or succeed (every ``step``-th one succeeds)."""
    pipeline = ml.Pipeline(breaker)
    count = itertools.count()

    def call() -> None:
        with contextlib.suppress(ConnectionError, ml.CircuitOpenError):
            if next(count) % step:
                pipeline.call(boom)
            else:
                pipeline.call(lambda: None)

    return call


@pytest.mark.usefixtures("frequent_thread_switches")
def test_many_threads_deliver_the_changes_of_one_circuit_in_order(
        asking: RedisStore, raw: redis.Redis) -> None:
    store = asking
    breaker, seen = watched(store)

    in_threads(*[calls(breaker, step) for step in (2, 3)] * (THREADS // 4),
               *[breaker.reset] * (THREADS // 2), rounds=ROUNDS)

    assert len(seen.changes) > THREADS  # the circuit went round many times
    seen.check(stored_state(raw, store))


@pytest.mark.usefixtures("frequent_thread_switches")
def test_two_processes_changing_one_circuit_never_deliver_a_stale_change(
        store: RedisStore, other_store: RedisStore, raw: redis.Redis) -> None:
    (here, seen_here), (there, seen_there) = watched(store), watched(other_store)

    in_threads(*[calls(here, 2), calls(there, 3), here.reset, there.force_open,
                 there.reset] * (THREADS // 5), rounds=ROUNDS)
    here.force_open()  # the last change, so both learn the state they end in
    there.disable()
    here.reset()

    seen_here.check("closed")
    seen_there.check("disabled")
    assert stored_state(raw, store) == "closed"


def test_a_change_made_elsewhere_is_folded_into_the_next_one_seen_here(
        store: RedisStore, other_store: RedisStore) -> None:
    (here, seen), there = watched(store), flipping(other_store)

    here.force_open()
    there.reset()  # this process does not see it: its hooks still think forced open
    there.force_open()
    there.reset()
    here.disable()  # closed -> disabled in the store; forced open -> disabled here

    assert [(e.previous, e.state) for e in seen.changes] == [
        ("closed", "forced_open"), ("forced_open", "disabled")]
    assert [e.reason for e in seen.changes] == ["forced open", "disabled"]


def test_a_change_back_to_what_this_process_last_delivered_is_not_delivered(
        store: RedisStore, other_store: RedisStore) -> None:
    (here, seen), there = watched(store), flipping(other_store)

    here.force_open()
    there.reset()
    here.force_open()  # closed -> forced open in the store, as this process last said

    assert [(e.previous, e.state) for e in seen.changes] == [("closed", "forced_open")]
    assert here.state == "forced_open"


def test_a_circuit_forgotten_by_the_store_delivers_its_changes_again(
        store: RedisStore, raw: redis.Redis) -> None:
    # Forgotten (state_ttl, or evicted), the circuit starts again at epoch 0: its
    # changes are not taken for stale ones of the life before.
    here, seen = watched(store)
    here.force_open()
    here.reset()
    raw.delete(f"{store.prefix}:cb:{{users}}", f"{store.prefix}:cb:{{users}}:w")

    here.disable()

    assert [(e.previous, e.state) for e in seen.changes] == [
        ("closed", "forced_open"), ("forced_open", "closed"), ("closed", "disabled")]


def test_a_circuit_an_older_version_wrote_keeps_its_order(
        store: RedisStore, raw: redis.Redis) -> None:
    # Written by the scripts before this version: no `ig` field in the hash.
    key = f"{store.prefix}:cb:{{users}}"
    raw.hset(key, mapping={"st": "forced_open", "ep": 7, "oa": 0, "rs": "forced open"})
    raw.set(f"{key}:w", "")
    here, seen = watched(store)

    here.reset()
    here.disable()
    here.force_open()

    assert [(e.previous, e.state) for e in seen.changes] == [
        ("forced_open", "closed"), ("closed", "disabled"), ("disabled", "forced_open")]
    assert raw.hget(key, "ig") is None  # its life goes on as it was
    assert raw.hget(key, "ep") == b"10"
